"""The small YAML/JSON documents of a bundle: ``incident.yaml`` and ``models.yaml``.

They are parsed with line numbers kept, so a bad field is reported at its line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from llmrca.errors import ValidationError
from llmrca.ingest.records import Where

CATEGORIES = ("jailbreak", "harmful-content", "privacy", "bias", "prompt-injection", "other")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "investigating", "contained", "resolved", "closed")
DETECTION_SOURCES = ("monitoring", "user-report", "red-team", "guardrail", "audit", "other")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    mapping = {}
    lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _Mapping(mapping, lines)


class _Mapping(dict):
    def __init__(self, values: dict, lines: dict):
        super().__init__(values)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_document(path: Path) -> Any:
    """Load a YAML or JSON document; syntax errors name the file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_LineLoader)
    except json.JSONDecodeError as exc:
        raise ValidationError(str(path), exc.lineno, None, f"valid JSON ({exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValidationError(str(path), mark.line + 1 if mark else None, None,
                              f"valid YAML ({getattr(exc, 'problem', exc)})") from None


def _line(obj: Any, key: str) -> int | None:
    return getattr(obj, "lines", {}).get(key)


class _FieldChecker:
    """Checks the fields of one mapping, each error at the field's own line."""

    def __init__(self, path: Path, obj: Any, prefix: str = "", line: int | None = None):
        self.path, self.obj, self.prefix, self.line = str(path), obj, prefix, line

    def where(self, key: str) -> Where:
        return Where(self.path, _line(self.obj, key) or self.line)

    def get(self, key: str, kind, *, required: bool = False, default=None):
        return self.where(key).get(self.obj, key, kind, path=self.prefix + key,
                                   required=required, default=default)

    def choice(self, key: str, choices: tuple[str, ...], *, required: bool = False,
               default: str | None = None) -> str | None:
        value = self.get(key, str, required=required, default=default)
        if value is not None and value not in choices:
            raise self.where(key).error(self.prefix + key, "one of " + ", ".join(choices), value)
        return value

    def timestamp(self, key: str, *, required: bool = False) -> datetime | None:
        value = self.obj.get(key)
        if isinstance(value, datetime):  # YAML parses unquoted timestamps itself
            if value.tzinfo is not None:
                value = value.astimezone(timezone.utc)
            return value.replace(tzinfo=None)
        return self.where(key).timestamp(value, self.prefix + key, required=required)


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
    doc = load_document(path)
    if not isinstance(doc, dict):
        raise ValidationError(str(path), 1, None, "a mapping of incident fields", type(doc).__name__)
    check = _FieldChecker(path, doc)
    incident_id = check.get("id", (str, int), required=True)
    incident_id = str(incident_id)
    if not _ID.fullmatch(incident_id):
        raise check.where("id").error("id", "letters, digits, '.', '_' or '-' (at most 64)",
                                      incident_id)
    personal = check.get("personal_fields", list, default=[])
    for i, name in enumerate(personal):
        if not isinstance(name, str):
            raise check.where("personal_fields").error(f"personal_fields.{i}", "a field name",
                                                       name)
    known = {"id", "title", "detected_at", "detection_source", "category", "severity", "status",
             "summary", "deployed_model_version", "personal_fields", "interactions_format",
             "metadata", "offending"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise check.where(unknown[0]).error(
            unknown[0], "a known incident field (" + ", ".join(sorted(known)) + ")")
    record = {
        "incident_id": incident_id,
        "title": check.get("title", str, required=True),
        "detected_at": check.timestamp("detected_at", required=True),
        "detection_source": check.choice("detection_source", DETECTION_SOURCES),
        "category": check.choice("category", CATEGORIES, required=True),
        "severity": check.choice("severity", SEVERITIES, default="medium"),
        "status": check.choice("status", STATUSES, default="open"),
        "summary": check.get("summary", str),
        "deployed_model_version": check.get("deployed_model_version", str),
        "personal_fields": list(personal),
        "metadata": _plain(check.get("metadata", dict, default={})),
    }
    return IncidentDocument(record=record,
                            interactions_format=check.get("interactions_format", str),
                            personal_fields=tuple(personal), source=str(path),
                            offending=_offending(check))


def _offending(check: _FieldChecker) -> dict[str, Any] | None:
    """``offending:``: ``all``, a list of ids, or a mapping of selection filters."""
    from llmrca.store.interactions import SELECTION_FILTERS

    value = check.obj.get("offending")
    if value is None:
        return None
    if value == "all":
        return {"all": True}
    if isinstance(value, list):
        value = {"ids": value}
    if not isinstance(value, dict) or not value:
        raise check.where("offending").error(
            "offending", "'all', a list of interaction ids, or a mapping of filters ("
            + ", ".join(SELECTION_FILTERS) + ")", value)
    for key, item in value.items():
        if key not in SELECTION_FILTERS:
            raise check.where("offending").error(
                f"offending.{key}", "one of " + ", ".join(SELECTION_FILTERS), key)
        if key == "flagged" and not isinstance(item, bool):
            raise check.where("offending").error(f"offending.{key}", "true or false", item)
        if key in ("ids", "guardrail", "model_version", "conversation", "text") and not all(
                isinstance(v, (str, int)) and not isinstance(v, bool)
                for v in (item if isinstance(item, list) else [item])):
            raise check.where("offending").error(f"offending.{key}",
                                                 "a string or a list of strings", item)
        if key == "where" and not isinstance(item, str):
            raise check.where("offending").error("offending.where", "a SQL expression", item)
    return {key: ([str(v) for v in item] if isinstance(item, list)
                  else str(item) if isinstance(item, int) and not isinstance(item, bool) else item)
            for key, item in value.items()}


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
    doc = load_document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise ValidationError(str(path), 1, "versions", "a list of model versions under 'versions'")
    entries = []
    base_line = _line(doc, "versions")
    for i, item in enumerate(doc["versions"]):
        if not isinstance(item, dict):
            raise ValidationError(str(path), base_line, f"versions.{i}", "a mapping", item)
        first_line = min(getattr(item, "lines", {}).values(), default=base_line)
        check = _FieldChecker(path, item, prefix=f"versions.{i}.", line=first_line)
        source = check.get("source", str)
        if source and not re.match(r"^[a-z]+://", source) and not Path(source).is_absolute():
            local = (path.parent / source)
            if local.exists():
                source = str(local.resolve())
        revision = check.get("revision", (str, int))
        entries.append(ModelVersionEntry(
            name=check.get("name", str, required=True), source=source,
            revision=None if revision is None else str(revision),  # a bare `3` in YAML is an int
            parent=check.get("parent", str),
            deployed_from=check.timestamp("deployed_from"),
            deployed_to=check.timestamp("deployed_to"), notes=check.get("notes", str),
            line=first_line))
    return entries


def _plain(value: Any) -> Any:
    """Drop the line bookkeeping (and make datetimes strings) so values serialise as JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
