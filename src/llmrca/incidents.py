"""The researcher's view of an incident: create one, see its interactions, say which are the
incident.

A production export is mostly ordinary traffic around a few offending calls. Every interaction
has a **role**: ``offending`` (the calls that are the incident; replay, attribution and hypotheses
use them by default) or ``context`` (the traffic around them: the benign regression set and the
base of triage's scope). :func:`focus` sets the roles from a selection and stores the selection,
so interactions ingested later get their role from it too.

Everything here is also a CLI command (``llmrca incidents create|focus``, ``llmrca interactions
list|show``) and returns DataFrames or plain records for notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from llmrca.errors import InvalidArgumentError
from llmrca.ingest.documents import CATEGORIES, DETECTION_SOURCES, SEVERITIES, STATUSES
from llmrca.store import Store
from llmrca.store import interactions as table
from llmrca.store.ingest_writes import upsert_incident
from llmrca.store.interactions import SELECTION_FILTERS

__all__ = ["SELECTION_FILTERS", "FocusResult", "create_incident", "focus", "interaction",
           "interactions"]


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise InvalidArgumentError(f"{name} {value!r}; valid: {', '.join(choices)}")
    return value


def create_incident(store: Store, incident_id: str, *, title: str, category: str,
                    detected_at: datetime | None = None, detection_source: str | None = None,
                    severity: str = "medium", status: str = "open", summary: str | None = None,
                    deployed_model_version: str | None = None,
                    personal_fields: list[str] | None = None) -> str:
    """Create an incident record without a bundle (so one export file can be ingested into it).

    Returns ``"inserted"``; an existing id is an error (edit its bundle's incident.yaml and
    ingest that to change it, which keeps the old record in the history).
    """
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", incident_id):
        raise InvalidArgumentError(f"incident id {incident_id!r}: letters, digits, '.', '_' or "
                                   "'-' (at most 64)")
    if not title.strip():
        raise InvalidArgumentError("a title is required")
    detected_at = detected_at or datetime.now(timezone.utc)
    if detected_at.tzinfo is not None:     # the store keeps UTC wall time
        detected_at = detected_at.astimezone(timezone.utc).replace(tzinfo=None)
    record = {
        "incident_id": incident_id, "title": title, "detected_at": detected_at,
        "detection_source": _choice("detection source", detection_source, DETECTION_SOURCES),
        "category": _choice("category", category, CATEGORIES),
        "severity": _choice("severity", severity, SEVERITIES),
        "status": _choice("status", status, STATUSES),
        "summary": summary, "deployed_model_version": deployed_model_version,
        "personal_fields": list(personal_fields or []), "metadata": {},
    }
    with store.transaction():
        if store.count("incidents", "incident_id = ?", [incident_id]):
            raise InvalidArgumentError(f"incident '{incident_id}' already exists")
        return upsert_incident(store, record)


@dataclass(frozen=True)
class FocusResult:
    """What :func:`focus` did: the selection, the ids it matched, and the roles afterwards."""

    incident_id: str
    selection: dict[str, Any]
    matched: tuple[str, ...]
    roles: dict[str, int]
    applied: bool


def focus(store: Store, incident_id: str, selection: dict[str, Any], *, add: bool = False,
          judge: str | None = None, label: str | None = None, dry_run: bool = False
          ) -> FocusResult:
    """Mark the interactions a selection matches ``offending``, the others ``context``.

    Parameters
    ----------
    selection : dict
        ``{"all": True}`` or filters (:data:`SELECTION_FILTERS`), all of which must hold.
    add : bool
        Add the matches to the offending set instead of replacing it.
    judge, label : str, optional
        Also require that this judge (``llmrca.judges.get_judge`` spec) gives the logged
        output this label (``unsafe``, ``refusal``, ``safe``).
    dry_run : bool
        Count without changing anything.
    """
    if (judge is None) != (label is None):
        raise InvalidArgumentError("--judge and --label go together")
    table.offending_selection(store, incident_id)     # NotFoundError for an unknown incident
    matched = table.select(store, incident_id, selection) if selection else \
        table.select(store, incident_id, {"all": True})
    stored = dict(selection)
    if judge is not None:
        matched = _judged(store, incident_id, matched, judge, str(label))
        stored.update(judge=judge, label=label)
    if dry_run:
        return FocusResult(incident_id, stored, tuple(matched), table.role_counts(store, incident_id),
                           False)
    with store.transaction():
        if add:
            current = table.select(store, incident_id, {"where": "role = 'offending'"})
            matched = sorted(set(current) | set(matched))
        roles = table.set_roles(store, incident_id, matched)
        # A judge's verdict is not a filter the store can re-run on new rows: store the ids.
        table.set_offending_selection(store, incident_id,
                                      {"ids": list(matched)} if judge or add else stored)
    return FocusResult(incident_id, stored, tuple(matched), roles, True)


def _judged(store: Store, incident_id: str, ids: list[str], judge_spec: str, label: str
            ) -> list[str]:
    from llmrca.judges import LABELS, get_judge
    from llmrca.store.replay import incident_record

    if label not in LABELS:
        raise InvalidArgumentError(f"label {label!r}; valid: {', '.join(LABELS)}")
    frame = interactions(store, incident_id)
    frame = frame[frame["interaction_id"].isin(ids) & frame["output"].notna()]
    if frame.empty:
        return []
    category = incident_record(store, incident_id).get("category")
    judged = get_judge(judge_spec).judge(
        [{"sample_id": i, "output": o, "prompt": p, "category": category}
         for i, o, p in zip(frame["interaction_id"], frame["output"], frame["last_user"])])
    return sorted(judged.loc[judged["label"] == label, "sample_id"])


def interactions(store: Store, incident_id: str, *, role: str | None = None,
                 selection: dict[str, Any] | None = None, limit: int | None = None
                 ) -> pd.DataFrame:
    """The incident's interactions, one row each (:data:`llmrca.store.interactions.LIST_COLUMNS`).

    ``role`` keeps one role; ``selection`` filters as :func:`focus` would.
    """
    if role is not None and role not in ("offending", "context"):
        raise InvalidArgumentError(f"role {role!r}; valid: offending, context")
    table.offending_selection(store, incident_id)     # NotFoundError for an unknown incident
    return table.list_interactions(store, incident_id, role=role, selection=selection,
                                   limit=limit)


def interaction(store: Store, interaction_id: str) -> dict[str, Any]:
    """One interaction: conversation, output, guardrail, flags, context, sources, conflicts.

    A unique prefix of the id, or the provider's response id, is enough.
    """
    return table.get_interaction(store, interaction_id)
