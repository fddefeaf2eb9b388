"""Where the request sets of probes and directions come from: the store, never strings in code.

Two sources, both documented in docs/internals.md:

* :func:`requests_from_training` -- a version's fine-tuning data (``training_examples``): each
  example's request (system prompt + last user turn) is labelled by the **refusal judge on its
  completion**: 1 = the data refuses it ("harmful" in the reference version's data, "will refuse"
  in general), 0 = the data helps. Duplicate requests are kept once.
* :func:`requests_from_incident` -- the incident's offending interactions (label 1) against its
  context interactions (label 0, traffic around the incident).

:func:`incident_cases` gives the offending interactions themselves (request and logged output),
for projections, causal checks and patching.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrca.errors import NotFoundError

__all__ = ["IncidentCase", "RequestSet", "incident_cases", "render_requests",
           "requests_from_incident", "requests_from_training"]


@dataclass(frozen=True)
class RequestSet:
    """Labelled requests.

    Attributes
    ----------
    name : str
        Where they come from (``training:assistant-v1``, ``incident:INC-0001``).
    requests : tuple of str
        The user turns.
    system_prompts : tuple of (str or None)
        One per request.
    labels : tuple of int
        1 = positive class, 0 = negative class.
    positive, negative : str
        What the classes mean (``refused`` / ``helped``).
    ids : tuple of str
        Where each request came from (example or interaction id).
    """

    name: str
    requests: tuple[str, ...]
    system_prompts: tuple[str | None, ...]
    labels: tuple[int, ...]
    positive: str
    negative: str
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.requests)

    def counts(self) -> dict[str, int]:
        positives = sum(self.labels)
        return {self.positive: positives, self.negative: len(self.labels) - positives}

    def describe(self) -> dict[str, Any]:
        """Provenance: name, class meanings, counts and a content id of the requests."""
        from llmrca.ids import content_id

        return {"name": self.name, "positive": self.positive, "negative": self.negative,
                "counts": self.counts(),
                "content": content_id([list(self.requests), list(self.system_prompts),
                                       list(self.labels)])}


@dataclass(frozen=True)
class IncidentCase:
    """One offending interaction: its id, system prompt, messages and logged output."""

    interaction_id: str
    system_prompt: str | None
    messages: tuple[dict[str, Any], ...]
    output: str | None

    @property
    def request(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                return str(message["content"])
        return ""


def _last_user(messages: Sequence[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return None


def requests_from_training(store, version: str, *, judge: str = "refusal",
                           limit: int | None = None) -> RequestSet:
    """The requests of ``version``'s training data, labelled by ``judge`` on their completions.

    Label 1 (``refused``) when the judge says ``refusal``, else 0 (``helped``). In the data of a
    safe reference version that is "harmful" vs "harmless" as the data's authors decided it.

    Raises
    ------
    NotFoundError
        The version has no stored training examples, or they hold only one class.
    """
    from llmrca.judges import get_judge
    from llmrca.store.model_versions import training_rows

    rows = training_rows(store, version)
    seen: dict[tuple[str | None, str], tuple[str, str]] = {}
    for example_id, messages_json, completion in rows:
        messages = json.loads(messages_json) if messages_json else []
        request = _last_user(messages)
        if request is None:
            continue
        system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
        answer = completion
        if not answer:
            answer = next((m.get("content") for m in reversed(messages)
                           if m.get("role") == "assistant"), None)
        if answer is None:
            continue
        seen.setdefault((system, request), (str(example_id), str(answer)))
    if not seen:
        raise NotFoundError(f"model version '{version}' has no training examples with a request "
                            f"and a completion in store {store.path}")
    keys = list(seen)[:limit] if limit else list(seen)
    labels = get_judge(judge).judge([seen[k][1] for k in keys])["label"].tolist()
    refused = tuple(int(label == "refusal") for label in labels)
    if len(set(refused)) < 2:
        raise NotFoundError(f"the training data of '{version}' holds only "
                            f"{'refused' if refused[0] else 'helped'} requests (by the "
                            f"{judge} judge): a probe needs both classes")
    return RequestSet(f"training:{version}", tuple(k[1] for k in keys),
                      tuple(k[0] for k in keys), refused, "refused", "helped",
                      tuple(seen[k][0] for k in keys))


def requests_from_incident(store, incident_id: str) -> RequestSet:
    """The incident's offending requests (1) against its context requests (0)."""
    from llmrca.store.replay import incident_interactions

    frame = incident_interactions(store, incident_id, role=None)
    requests, systems, labels, ids = [], [], [], []
    for row in frame.itertuples(index=False):
        request = _last_user(list(row.messages))  # type: ignore[arg-type]
        if request is None:
            continue
        requests.append(request)
        systems.append(row.system_prompt)
        labels.append(1 if str(row.role) == "offending" else 0)
        ids.append(str(row.interaction_id))
    if len(set(labels)) < 2:
        raise NotFoundError(f"incident '{incident_id}' has no context interactions to contrast "
                            f"its offending ones with; use requests_from_training instead")
    return RequestSet(f"incident:{incident_id}", tuple(requests), tuple(systems),  # type: ignore[arg-type]
                      tuple(labels), "offending", "context", tuple(ids))


def incident_cases(store, incident_id: str) -> list[IncidentCase]:
    """The incident's offending interactions, in time order."""
    from llmrca.store.replay import incident_interactions

    frame = incident_interactions(store, incident_id)
    return [IncidentCase(str(r.interaction_id), r.system_prompt,  # type: ignore[arg-type]
                         tuple(r.messages), r.output)  # type: ignore[arg-type]
            for r in frame.itertuples(index=False)]


def render_requests(tokenizer, requests: Sequence[str], system_prompts: Sequence[str | None]):
    """Each request rendered as replay renders it (chat template, generation prompt)."""
    from llmrca.replay.prompts import render_prompt

    return [render_prompt(tokenizer, system, [{"role": "user", "content": request}])
            for request, system in zip(requests, system_prompts)]
