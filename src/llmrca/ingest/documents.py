"""The small YAML/JSON documents of a bundle: ``incident.yaml`` and ``models.yaml``.

They are read by :func:`llmrca.documents.load_document` (strict: ids stay strings as written,
duplicate keys and aliases are errors) and checked with :class:`llmrca.documents.Fields`, so a bad
field is reported at its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llmrca.documents import Fields, load_document

CATEGORIES = ("jailbreak", "harmful-content", "privacy", "bias", "prompt-injection", "other")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "investigating", "contained", "resolved", "closed")
DETECTION_SOURCES = ("monitoring", "user-report", "red-team", "guardrail", "audit", "other")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
INCIDENT_FIELDS = ("id", "title", "detected_at", "detection_source", "category", "severity",
                   "status", "summary", "deployed_model_version", "personal_fields",
                   "interactions_format", "metadata", "offending")
MODEL_FIELDS = ("name", "source", "revision", "parent", "deployed_from", "deployed_to", "notes")


@dataclass(frozen=True)
class IncidentDocument:
    """``incident.yaml``: the incident record and how to read the rest of the bundle."""

    record: dict[str, Any]
    interactions_format: str | None = None
    personal_fields: tuple[str, ...] = ()
    source: str = ""
    offending: dict[str, Any] | None = None


def parse_incident(path: Path) -> IncidentDocument:
    """Parse and check an incident document (see docs/formats.md)."""
    check = Fields.of_document(path, load_document(path), "a mapping of incident fields")
    check.only(INCIDENT_FIELDS, "a known incident field (" + ", ".join(sorted(INCIDENT_FIELDS))
               + ")")
    incident_id = check.string("id", required=True, pattern=_ID,
                               expected="letters, digits, '.', '_' or '-' (at most 64)")
    personal = check.strings("personal_fields", default=[], blank_items=False)
    check.mapping("metadata")  # free form, but a mapping
    record = {
        "incident_id": incident_id,
        "title": check.string("title", required=True),
        "detected_at": check.timestamp("detected_at", required=True),
        "detection_source": check.string("detection_source", choices=DETECTION_SOURCES),
        "category": check.string("category", required=True, choices=CATEGORIES),
        "severity": check.string("severity", choices=SEVERITIES, default="medium"),
        "status": check.string("status", choices=STATUSES, default="open"),
        "summary": check.string("summary"),
        "deployed_model_version": check.string("deployed_model_version"),
        "personal_fields": list(personal),
        "metadata": check.plain("metadata", default={}),
    }
    return IncidentDocument(record=record,
                            interactions_format=check.string("interactions_format"),
                            personal_fields=tuple(personal), source=str(path),
                            offending=_offending(check))


#: Selection filters whose value is a string or a list of strings.
_LIST_FILTERS = ("ids", "guardrail", "model_version", "conversation", "text")


def _offending(check: Fields) -> dict[str, Any] | None:
    """``offending:``: ``all``, a list of ids, or a mapping of selection filters."""
    from llmrca.store.interactions import SELECTION_FILTERS

    value = check.raw("offending")
    expected = ("'all', a list of interaction ids, or a mapping of filters ("
                + ", ".join(SELECTION_FILTERS) + ")")
    if value is None:
        return None
    if isinstance(value, str):
        if value != "all":
            raise check.error("offending", expected, value)
        return {"all": True}
    if isinstance(value, list):
        return {"ids": check.strings("offending", nonempty=True, blank_items=False)}
    filters = check.mapping("offending", expected=expected)
    if filters is None or not len(filters.data):
        raise check.error("offending", expected, value)
    filters.only(tuple(SELECTION_FILTERS))
    selection: dict[str, Any] = {}
    for key in map(str, filters):  # a mapping's keys, so strings already
        if key in _LIST_FILTERS:
            selection[key] = (filters.strings(key, nonempty=True, blank_items=False)
                              if isinstance(filters.raw(key), list)
                              else [filters.string(key, required=True)])
        elif key == "flagged":
            selection[key] = filters.boolean(key, required=True)
        else:
            selection[key] = filters.string(key, required=True)
    return selection


@dataclass(frozen=True)
class ModelVersionEntry:
    """One entry of ``models.yaml``."""

    name: str
    source: str | None
    revision: str | None = None
    parent: str | None = None
    deployed_from: datetime | None = None
    deployed_to: datetime | None = None
    notes: str | None = None
    line: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_models(path: Path) -> list[ModelVersionEntry]:
    """Parse ``models.yaml``: ``versions:`` a list of model version entries."""
    check = Fields.of_document(path, load_document(path),
                               "a mapping with a list of model versions under 'versions'")
    check.only(("versions",))
    entries = []
    for item in check.mappings("versions", required=True,
                               expected="a list of model versions under 'versions'"):
        item.only(MODEL_FIELDS)
        source = item.string("source")
        if source and not re.match(r"^[a-z]+://", source) and not Path(source).is_absolute():
            local = (path.parent / source)
            if local.exists():
                source = str(local.resolve())
        deployed_from = item.timestamp("deployed_from")
        deployed_to = item.timestamp("deployed_to")
        if deployed_from is not None and deployed_to is not None and deployed_to < deployed_from:
            raise item.error("deployed_to", f"a time after deployed_from ({deployed_from} UTC)",
                             item.raw("deployed_to"))
        entries.append(ModelVersionEntry(
            name=item.string("name", required=True), source=source,
            revision=item.string("revision"),  # as written: `revision: 3` is "3"
            parent=item.string("parent"),
            deployed_from=deployed_from, deployed_to=deployed_to, notes=item.string("notes"),
            line=item.line))
    return entries
