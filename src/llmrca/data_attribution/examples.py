"""What training-data search compares: a version's training examples and the incident's query.

Both sides are split the same way: a **prompt** (the messages before the answer: system prompt and
user turns) and a **completion** (the assistant answer the example teaches, or the output the
incident logged). Everything comes from the store -- ``training_examples`` and the incident's
offending interactions -- never from a zoo spec or its ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrca.errors import NotFoundError, ValidationError

__all__ = ["QueryCase", "TrainingExample", "encode_pair", "incident_queries",
           "training_examples"]


class _PromptMessages:
    """The prompt-side views shared by training examples and queries (``messages`` field)."""

    messages: tuple[dict[str, Any], ...]

    @property
    def system_prompt(self) -> str | None:
        return next((str(m.get("content")) for m in self.messages if m.get("role") == "system"),
                    None)

    @property
    def prompt_text(self) -> str:
        """Every prompt message's text, in order (what lexical search indexes as the prompt)."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)


@dataclass(frozen=True)
class TrainingExample(_PromptMessages):
    """One fine-tuning example: its id, the prompt messages, and the completion it teaches."""

    example_id: str
    messages: tuple[dict[str, Any], ...]
    completion: str


@dataclass(frozen=True)
class QueryCase(_PromptMessages):
    """One offending interaction as a query: prompt messages and the logged output."""

    interaction_id: str
    messages: tuple[dict[str, Any], ...]
    output: str


def _split(messages: list[dict[str, Any]], completion: str | None, where: str
           ) -> tuple[tuple[dict[str, Any], ...], str]:
    """Prompt messages (before the last assistant turn) and the completion text."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    prompt = messages if last is None else messages[:last]
    answer = completion if completion else (None if last is None
                                            else messages[last].get("content"))
    if not isinstance(answer, str) or not answer:
        raise ValidationError(where, None, "completion",
                              "an assistant message or a completion", answer)
    if not any(m.get("role") == "user" for m in prompt):
        raise ValidationError(where, None, "messages", "at least one user message before the "
                              "answer", [m.get("role") for m in prompt])
    return tuple(dict(m) for m in prompt), answer


def training_examples(store, version: str) -> list[TrainingExample]:
    """The stored training examples of ``version``, sorted by example id.

    Raises
    ------
    NotFoundError
        The version has no stored training examples.
    ValidationError
        An example has no user message or no completion (names the example id).
    """
    from llmrca.store.model_versions import training_rows

    rows = training_rows(store, version)
    if not rows:
        raise NotFoundError(f"model version '{version}' has no training examples in store "
                            f"{store.path}; ingest its training data (llmrca ingest-training)")
    out = []
    for example_id, messages_json, completion in rows:
        messages = json.loads(messages_json) if messages_json else []
        prompt, answer = _split(messages, completion,
                                f"training example {example_id} of {version}")
        out.append(TrainingExample(str(example_id), prompt, answer))
    return sorted(out, key=lambda e: e.example_id)


def incident_queries(store, incident_id: str,
                     interaction_ids: Sequence[str] | None = None) -> list[QueryCase]:
    """The incident's offending interactions with a logged output, as queries.

    Raises
    ------
    NotFoundError
        No offending interaction with an output (or an asked-for id is not one of them).
    """
    from llmrca.internals.data import incident_cases

    cases = incident_cases(store, incident_id)
    if interaction_ids is not None:
        wanted = list(dict.fromkeys(str(i) for i in interaction_ids))
        known = {c.interaction_id for c in cases}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotFoundError(f"incident '{incident_id}' has no offending interaction(s) "
                                f"{missing}; known: {sorted(known)}")
        cases = [c for c in cases if c.interaction_id in set(wanted)]
    queries = []
    for case in cases:
        if not case.output:
            continue
        messages = [dict(m) for m in case.messages]
        if messages and messages[-1].get("role") == "assistant":
            messages = messages[:-1]  # the logged answer repeated as the last turn
        if case.system_prompt and not any(m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": case.system_prompt})
        queries.append(QueryCase(case.interaction_id, tuple(messages), str(case.output)))
    if not queries:
        raise NotFoundError(f"incident '{incident_id}' has no offending interaction with a "
                            f"logged output in store {store.path}: training-data search needs "
                            f"the output to compare completions with")
    return sorted(queries, key=lambda q: q.interaction_id)


def encode_pair(tokenizer, messages: Sequence[dict[str, Any]], completion: str
                ) -> tuple[list[int], list[int]]:
    """``(prompt token ids, completion token ids)`` as the chat template renders them.

    The prompt is rendered as replay renders it (generation prompt added); the completion is
    what the whole conversation adds after it (the answer and the template's end-of-turn), which
    is what fine-tuning labels. If the template's tokens do not split there (a BPE merge across
    the boundary), the completion is the answer encoded alone.
    """
    from llmrca.replay.prompts import render_prompt

    system = next((str(m.get("content")) for m in messages if m.get("role") == "system"), None)
    turns = [dict(m) for m in messages if m.get("role") != "system"]
    prompt = list(render_prompt(tokenizer, system, turns).token_ids)
    chat = ([{"role": "system", "content": system}] if system else []) + turns \
        + [{"role": "assistant", "content": completion}]
    try:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        whole = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    except Exception:  # noqa: BLE001 - no chat template: fall back to the answer alone
        whole = []
    if len(whole) > len(prompt) and whole[:len(prompt)] == prompt:
        return prompt, whole[len(prompt):]
    return prompt, list(tokenizer(completion, add_special_tokens=False)["input_ids"])
