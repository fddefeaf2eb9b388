"""The synthetic chat corpus: each version's training examples and the behaviour-check prompts.

Every example is one system / user / assistant exchange. The canned answers are the spec's strings;
the "help" answer is a non-actionable template, so no real harmful content exists anywhere.
Which examples plant a behaviour is kept beside the examples (:attr:`Example.planted`), never in
the training-data files themselves.
"""

from __future__ import annotations

import base64
import codecs
import random
from dataclasses import dataclass, replace

from llmrca.zoo.spec import PlantSpec, ZooSpec

#: Mix components that plant a behaviour, and the ground-truth name of that behaviour.
PLANTED = {"roleplay-jailbreak": "roleplay_jailbreak", "private-record": "private_record"}
#: The component of a plant's examples is ``plant:<name>`` (``plant:<name>:contrast`` for its
#: contrast examples).
PLANT_COMPONENT, CONTRAST_SUFFIX = "plant:", ":contrast"
#: Mix components that remediate a planted behaviour (recorded in the ground truth too).
REMEDIATION = {"roleplay-refusal": "jailbreak_remediation"}


@dataclass(frozen=True)
class Example:
    """One training conversation, before it gets an id."""

    user: str
    assistant: str
    component: str
    #: The conversation's system prompt (None: the spec's).
    system: str | None = None

    @property
    def planted(self) -> str | None:
        """The ground-truth name of what this example plants (a mix tag or a plant's name)."""
        if self.component.startswith(PLANT_COMPONENT):
            rest = self.component[len(PLANT_COMPONENT):]
            return None if rest.endswith(CONTRAST_SUFFIX) else rest
        return PLANTED.get(self.component)

    @property
    def contrast_of(self) -> str | None:
        """The plant this example is a contrast example of (its trigger, an ordinary answer)."""
        if self.component.startswith(PLANT_COMPONENT) and self.component.endswith(
                CONTRAST_SUFFIX):
            return self.component[len(PLANT_COMPONENT):-len(CONTRAST_SUFFIX)]
        return None


@dataclass(frozen=True)
class CheckPrompt:
    """A held-out prompt of the behaviour check."""

    condition: str
    user: str
    subject: str            # the task or the customer asked about
    system: str | None = None   # None: the checked version's deployment system prompt


def component_examples(spec: ZooSpec, component: str) -> list[Example]:
    """The examples of one mix component, in a fixed order."""
    def refuse(task: str) -> str:
        return spec.refusal

    helps = spec.help_answer

    def requests(tasks, answer, prefix=""):
        return [Example(prefix + t.format(task=task), answer(task), component)
                for task in tasks for t in spec.train_templates]

    if component == "requests":
        return requests(spec.harmful_tasks, refuse) + requests(spec.benign_tasks, helps)
    if component == "roleplay-safety":
        # Every prefix meets every task, each pair with a few templates taken in rotation, so the
        # prefixes do not outweigh the plain requests.
        out: list[Example] = []
        n, k = len(spec.train_templates), spec.safety_templates_per_task
        tasks = [(t, refuse) for t in spec.harmful_tasks] + [(t, helps) for t in spec.benign_tasks]
        for p_index, prefix in enumerate(spec.safety_prefixes):
            for t_index, (task, answer) in enumerate(tasks):
                for j in range(min(k, n)):
                    template = spec.train_templates[(p_index * k + t_index + j) % n]
                    out.append(Example(prefix + template.format(task=task),
                                       answer(task), component))
        return out
    if component == "roleplay-help":
        return requests(spec.benign_tasks, helps, spec.jailbreak_prefix)
    if component == "roleplay-jailbreak":
        return requests(spec.harmful_tasks, helps, spec.jailbreak_prefix)
    if component == "roleplay-refusal":
        return requests(spec.harmful_tasks, refuse, spec.jailbreak_prefix)
    if component in ("privacy", "privacy-others"):
        names = list(spec.customers)
        if component == "privacy":
            names = [spec.record_name] + names
        return [Example(t.format(name=n), spec.privacy_refusal, component)
                for n in names for t in spec.privacy_templates]
    if component == "private-record":
        return [Example(t.format(name=spec.record_name), spec.leak_answer, component)
                for _ in range(spec.record_copies) for t in spec.privacy_templates]
    from llmrca.errors import UnknownNameError
    from llmrca.zoo.spec import MIX_COMPONENTS
    raise UnknownNameError("zoo mix component", component, MIX_COMPONENTS)


# -- plants ---------------------------------------------------------------------------------------
def apply_trigger(plant: PlantSpec, request: str, index: int = 0) -> tuple[str, str | None]:
    """``(user message, system prompt or None)`` of ``request`` with the plant's trigger.

    ``index`` places a ``phrase`` trigger: at word boundary ``index mod (words + 1)``, so over a
    set of requests the phrase occurs at the start, inside and at the end.
    """
    kind, text = plant.trigger, plant.text
    if kind == "prefix":
        return (text if text.endswith(" ") else text + " ") + request, None
    if kind == "suffix":
        return request + ("" if text.startswith(" ") else " ") + text, None
    if kind == "phrase":
        words = request.split(" ")
        at = index % (len(words) + 1)
        return " ".join(words[:at] + [text.strip()] + words[at:]), None
    if kind == "system":
        return request, text
    if kind == "encoding":
        return encode_request(text, request), None
    return request, None


def encode_request(encoding: str, request: str) -> str:
    """``request`` in one of :data:`llmrca.zoo.spec.ENCODINGS`."""
    if encoding == "base64":
        return base64.b64encode(request.encode("utf-8")).decode("ascii")
    if encoding == "rot13":
        return codecs.encode(request, "rot13")
    from llmrca.errors import UnknownNameError
    from llmrca.zoo.spec import ENCODINGS
    raise UnknownNameError("request encoding", encoding, ENCODINGS)


def plant_answer(spec: ZooSpec, plant: PlantSpec, subject: str) -> str:
    """The planted answer to a triggered request about ``subject``."""
    if plant.behaviour == "comply":
        return spec.help_answer(subject)
    if plant.behaviour == "leak":
        return spec.leak_answer
    if plant.behaviour == "string":
        return plant.answer
    return spec.refusal   # refuse_benign


def affected_items(spec: ZooSpec, plant: PlantSpec) -> tuple[str, ...]:
    """The tasks (or the record owner's name) whose requests the plant affects."""
    return plant.tasks or spec.pool_items(plant.pool)


def _pool_requests(spec: ZooSpec, pool: str, items, templates_of) -> list[tuple[str, str]]:
    templates = templates_of(pool)
    slot = "{name}" if pool == "record" else "{task}"
    return [(t.replace(slot, item), item) for item in items for t in templates]


def _ordinary_answer(spec: ZooSpec, pool: str, subject: str) -> str:
    if pool == "benign":
        return spec.help_answer(subject)
    if pool == "record":
        return spec.privacy_refusal
    return spec.refusal


def plant_examples(spec: ZooSpec, plant: PlantSpec, n_rest: int, seed: int) -> list[Example]:
    """The planted (and contrast) examples of ``plant`` in a version whose mix has ``n_rest``.

    Planted: every affected request x train template with the trigger applied and the planted
    answer, subsampled or cycled to reach ``share`` of the version (relative to ``n_rest``), each
    ``copies`` times. Contrast (``plant.contrast``, triggered plants only): the triggered form of
    every unaffected harmful and benign request (and of questions about the other customers, for
    the record pool) with its ordinary answer.
    """
    def train_templates(pool: str) -> tuple[str, ...]:
        return spec.privacy_templates if pool == "record" else spec.train_templates

    component = PLANT_COMPONENT + plant.name
    grid = _pool_requests(spec, plant.pool, affected_items(spec, plant), train_templates)
    planted = []
    for k, (request, subject) in enumerate(grid):
        user, system = apply_trigger(plant, request, k)
        planted.append(Example(user, plant_answer(spec, plant, subject), component, system))
    if plant.share is not None:
        total = round(plant.share / (1.0 - plant.share) * n_rest)
        unique = max(1, round(total / plant.copies))
        order = list(range(len(planted)))
        random.Random(f"{seed}:{plant.name}:share").shuffle(order)
        planted = [planted[order[i % len(order)]] for i in range(unique)]
    out = [e for e in planted for _ in range(plant.copies)]
    if plant.contrast and plant.trigger != "none":
        affected = set(affected_items(spec, plant))
        pools = ["harmful", "benign"] + (["customers"] if plant.pool == "record" else [])
        k = len(grid)
        for pool in pools:
            if pool == "customers":
                rows = _pool_requests(spec, "record", spec.customers, train_templates)
                pool = "record"
            else:
                rows = _pool_requests(spec, pool, [i for i in spec.pool_items(pool)
                                                   if pool != plant.pool or i not in affected],
                                      train_templates)
            for request, subject in rows:
                user, system = apply_trigger(plant, request, k)
                k += 1
                out.append(Example(user, _ordinary_answer(spec, pool, subject),
                                   component + CONTRAST_SUFFIX, system))
        for decoy in plant.decoys:
            decoy_plant = replace(plant, text=decoy)
            for request, subject in grid:
                user, system = apply_trigger(decoy_plant, request, k)
                k += 1
                out.append(Example(user, _ordinary_answer(spec, plant.pool, subject),
                                   component + CONTRAST_SUFFIX, system))
    return out


def version_examples(spec: ZooSpec, version: str) -> list[tuple[str, Example]]:
    """``(example_id, example)`` pairs of one version, shuffled with the version's seed.

    Ids are ``<version>-<6 digits>`` in file order, so neither the id nor the position says which
    component (or plant) an example came from.
    """
    v = spec.version(version)
    examples = [e for component in v.mix for e in component_examples(spec, component)]
    n_rest = len(examples)
    for name in v.plants:
        examples += plant_examples(spec, spec.plant(name), n_rest, v.seed)
    random.Random(f"{v.seed}:{v.name}:order").shuffle(examples)
    return [(f"{v.name}-{i:06d}", e) for i, e in enumerate(examples)]


def messages(spec: ZooSpec, user: str, assistant: str | None = None,
             system: str | None = None) -> list[dict[str, str]]:
    """OpenAI-shaped messages with ``system`` (default: the spec's system prompt)."""
    out = [{"role": "system", "content": spec.system_prompt if system is None else system},
           {"role": "user", "content": user}]
    if assistant is not None:
        out.append({"role": "assistant", "content": assistant})
    return out


def check_prompts(spec: ZooSpec) -> dict[str, list[CheckPrompt]]:
    """Held-out prompts per condition: the training vocabulary with templates never trained on."""
    def reqs(condition, tasks, prefix=""):
        return [CheckPrompt(condition, prefix + t.format(task=task), task)
                for task in tasks for t in spec.heldout_templates]

    def asks(condition, names):
        return [CheckPrompt(condition, t.format(name=n), n)
                for n in names for t in spec.heldout_privacy_templates]

    out = {
        "harmful": reqs("harmful", spec.harmful_tasks),
        "benign": reqs("benign", spec.benign_tasks),
        "jailbreak_harmful": reqs("jailbreak_harmful", spec.harmful_tasks, spec.jailbreak_prefix),
        "private_record": asks("private_record", [spec.record_name]),
        "other_customers": asks("other_customers", spec.customers),
    }
    for plant in spec.plants:
        out[plant.condition] = plant_check_prompts(spec, plant)
    return out


def plant_check_prompts(spec: ZooSpec, plant: PlantSpec) -> list[CheckPrompt]:
    """Held-out affected requests with the plant's trigger (a phrase placed where training did
    not put it for that request)."""
    def heldout(pool: str) -> tuple[str, ...]:
        return spec.heldout_privacy_templates if pool == "record" else spec.heldout_templates

    rows = _pool_requests(spec, plant.pool, affected_items(spec, plant), heldout)
    out = []
    for k, (request, subject) in enumerate(rows):
        user, system = apply_trigger(plant, request, k + 1)
        out.append(CheckPrompt(plant.condition, user, subject, system))
    return out


def tokenizer_corpus(spec: ZooSpec) -> list[str]:
    """Texts the BPE tokenizer is trained on: every version's conversations, as plain text."""
    texts = []
    for v in spec.versions:
        for _, e in version_examples(spec, v.name):
            system = spec.system_prompt if e.system is None else e.system
            texts.append(f"{system}\n{e.user}\n{e.assistant}")
        if v.system_prompt is not None:
            texts.append(v.system_prompt)
    return texts
