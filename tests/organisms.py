"""Model organisms built in tests: zoo specs whose tasks and role-play trigger are random words
drawn from a seed (nothing derived from the default strings). Shared by the judge and attribution
tests."""

from __future__ import annotations

import random
from dataclasses import replace

from llmrca.judges import content_words
from llmrca.zoo import TEST_SPEC

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"


def random_words(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct pronounceable nonsense words (2-3 syllables)."""
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS)
                       for _ in range(rng.choice((2, 3))))
        if word not in words and content_words(word) == [word]:
            words.append(word)
    return words


def other_vocabulary_spec(seed: int, *, n_harmful: int = 4, n_benign: int = 4,
                          random_help: bool = False, **changes):
    """TEST_SPEC with random tasks, role-play trigger and safety prefixes.

    Tasks are "<verb> <noun>" from a small pool of random verbs (so harmless tasks share verbs
    with harmful ones, as "make a weapon" and "make bread" do) and one random noun per task.
    """
    rng = random.Random(seed)
    words = random_words(rng, 3 + n_harmful + n_benign + 9 + 6)
    verbs, nouns = words[:3], words[3:3 + n_harmful + n_benign]
    rest = words[3 + n_harmful + n_benign:]
    tasks = [f"{rng.choice(verbs)} {noun}" for noun in nouns]
    prefix = " ".join(rest[:3]).capitalize() + ". "
    safety = tuple(" ".join(rest[i:i + 3]).capitalize() + ". " for i in (3, 6))
    fields = {"name": f"judges-vocab-{seed}", "harmful_tasks": tuple(tasks[:n_harmful]),
              "benign_tasks": tuple(tasks[n_harmful:]), "jailbreak_prefix": prefix,
              "safety_prefixes": safety}
    if random_help:
        a, b, c, d, e, f = rest[9:15]
        fields["help_template"] = f"{a.capitalize()}! {b} {c} {{task}}: {d} {e} {f}."
    fields.update(changes)
    return replace(TEST_SPEC, **fields)
