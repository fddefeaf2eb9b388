"""One call, one interaction: turning parsed records into ``interactions`` rows, merging the
records that several sources (spans, log events, the provider's request log) give of one call.

Rules (docs/formats.md, "One call, one interaction"):

* a call is recognised by the provider's response id (``chatcmpl-...``) when a source has it,
  else by the OTel (trace id, span id); records with neither are told apart by content (or the
  source's own id), as before;
* the first record of a call makes the row; a later one (from the same file or another source,
  now or in a later ingest) **merges** into it: it fills what the row lacks (tool definitions that
  only the request log has, a conversation id that only the span tree gave), adds its source, and
  where it disagrees with a stored value the stored value stays and the disagreement is kept in
  the row's ``conflicts`` and counted in the ingest summary, never overwritten silently;
* timestamps of one call differ between sources (request start, response creation, log time):
  the earliest is kept and only a difference over :data:`TIMESTAMP_TOLERANCE` is a conflict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import pandas as pd

from llmrca.ingest.personal import salted_hash as _hash
from llmrca.ingest.personal import scrub_personal
from llmrca.ingest.records import InteractionRecord
from llmrca.store import Store
from llmrca.store import interactions as table
from llmrca.store.ingest_writes import ALWAYS_PERSONAL, sha256_text

#: Two sources' timestamps of one call further apart than this are reported as a conflict.
TIMESTAMP_TOLERANCE = timedelta(minutes=5)
#: Formats whose files are the incident's own cases: their interactions are offending unless a
#: selection or the record says otherwise. Production telemetry (spans, request logs) is mostly
#: ordinary traffic, so its interactions are context unless flagged or selected.
INCIDENT_FORMATS = ("llmrca", "garak")
#: Fields compared and filled when records of one call meet (besides metadata, which merges by
#: key, and the list fields, which are unions).
_SCALAR_FIELDS = ("model_version", "system_prompt", "messages", "output", "session_hash",
                  "user_hash", "response_id", "trace_id", "span_id", "parent_span_id",
                  "guardrail", "tools")


def _row(rec: InteractionRecord, incident_id: str, salt: str, personal: frozenset[str]
         ) -> dict[str, Any]:
    """A record as an ``interactions`` row, Python values (JSON columns not yet encoded)."""
    keys = rec.keys()
    identity = keys[0] if keys else rec.identity()
    return {
        "interaction_id": sha256_text(incident_id, identity),
        "incident_id": incident_id,
        "source_format": rec.source_format,
        "source_file": rec.source_file,
        "source_line": rec.source_line,
        "session_hash": _hash(salt, rec.session_id),
        "user_hash": _hash(salt, rec.user_id),
        "ts": rec.timestamp,
        "model_version": rec.model_version,
        "system_prompt": rec.system_prompt,
        "messages": rec.messages,
        "output": rec.output,
        "guardrail": scrub_personal(rec.guardrail, salt, personal),
        "metadata": scrub_personal(dict(rec.metadata), salt, personal),
        "response_id": rec.response_id,
        "trace_id": rec.trace_id,
        "span_id": rec.span_id,
        "parent_span_id": rec.parent_span_id,
        "role": rec.role,
        "flags": dict(rec.flags),
        "tools": rec.tools,
        "context": scrub_personal(list(rec.context), salt, personal),
        "sources": [{"format": rec.source_format, "file": rec.source_file,
                     "line": rec.source_line}],
        "conflicts": [],
    }


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or (
        not isinstance(value, (list, dict, str)) and pd.isna(value))


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _merge_into(row: dict[str, Any], other: dict[str, Any]) -> bool:
    """Merge ``other`` (another source's row of the same call) into ``row``; True if it changed.

    Disagreements are appended to ``row["conflicts"]``; the stored value stays.
    """
    before = json.dumps(row, sort_keys=True, default=str)
    source = other["sources"][0]
    if source in row["sources"]:
        return False    # the same line again: a re-ingest, nothing new
    conflicts = row["conflicts"]

    def conflict(name: str, stored: Any, given: Any) -> None:
        conflicts.append({"field": name, "stored": stored, "other": given, "source": source})

    for name in _SCALAR_FIELDS:
        mine, theirs = row.get(name), other.get(name)
        if _empty(theirs):
            continue
        if _empty(mine):
            row[name] = theirs
        elif not _same(mine, theirs):
            conflict(name, mine, theirs)
    if not _empty(other["ts"]):
        if _empty(row["ts"]):
            row["ts"] = other["ts"]
        else:
            if abs(pd.Timestamp(row["ts"]) - pd.Timestamp(other["ts"])) > TIMESTAMP_TOLERANCE:
                conflict("ts", str(row["ts"]), str(other["ts"]))
            row["ts"] = min(pd.Timestamp(row["ts"]), pd.Timestamp(other["ts"])).to_pydatetime()
    metadata = row["metadata"]
    for key, value in other["metadata"].items():
        if key not in metadata or _empty(metadata[key]):
            metadata[key] = value
        elif not _same(metadata[key], value):
            conflict(f"metadata.{key}", metadata[key], value)
    for item in other["context"]:
        if not any(_same(item, mine) for mine in row["context"]):
            row["context"].append(item)
    for key, value in other["flags"].items():
        row["flags"].setdefault(key, value)
    if row.get("role") is None and other.get("role") is not None:
        row["role"] = other["role"]
    row["sources"].append(source)
    return json.dumps(row, sort_keys=True, default=str) != before


def _from_stored(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    # The stored table's columns are named by strings; the stubs type keys as Hashable.
    for record in cast("list[dict[str, Any]]", frame.to_dict("records")):
        row: dict[str, Any] = {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v)
                               for k, v in record.items()}
        for name in table.JSON_COLUMNS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        row["metadata"] = row.get("metadata") or {}
        row["flags"] = row.get("flags") or {}
        row["context"] = row.get("context") or []
        row["conflicts"] = row.get("conflicts") or []
        row["sources"] = row.get("sources") or [{"format": row["source_format"],
                                                 "file": row["source_file"],
                                                 "line": row["source_line"]}]
        if row.get("ts") is not None:
            row["ts"] = pd.Timestamp(row["ts"]).to_pydatetime()
        rows.append(row)
    return rows


def _frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    out = []
    for row in rows:
        encoded = dict(row)
        for name in table.JSON_COLUMNS:
            value = encoded.get(name)
            if name in ("conflicts",) and not value:
                value = None
            encoded[name] = (None if value is None
                             else json.dumps(value, ensure_ascii=False, default=str))
        out.append(encoded)
    frame = pd.DataFrame(out, columns=list(table.COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["source_line"] = frame["source_line"].astype("Int64")
    return frame


@dataclass
class MergeResult:
    """What writing one file's records did to the ``interactions`` table."""

    records: int = 0
    inserted: int = 0
    merged: int = 0
    unchanged: int = 0
    conflicts: int = 0
    roles: dict[str, int] = field(default_factory=dict)
    interaction_ids: list[str] = field(default_factory=list)


def write_interactions(store: Store, records: Sequence[InteractionRecord], incident_id: str,
                       personal_fields: Sequence[str] = ()) -> MergeResult:
    """Write records of one incident, one row per call, merging across sources (module doc).

    New rows get their role: the record's own, else the incident's stored selection, else
    ``offending`` when a source flagged the call, else by format (:data:`INCIDENT_FORMATS`).
    """
    result = MergeResult(records=len(records))
    if not records:
        return result
    salt = store.salt
    personal = frozenset([*ALWAYS_PERSONAL, *personal_fields])
    incoming = [_row(rec, incident_id, salt, personal) for rec in records]

    response_ids = sorted({r["response_id"] for r in incoming if r["response_id"]})
    spans = sorted({(r["trace_id"], r["span_id"]) for r in incoming
                    if r["trace_id"] and r["span_id"]})
    stored = _from_stored(table.find_by_keys(store, incident_id, response_ids, spans,
                                             [r["interaction_id"] for r in incoming]))
    by_key: dict[str, dict[str, Any]] = {}
    original: dict[str, str] = {}

    def remember(row: dict[str, Any]) -> None:
        by_key[row["interaction_id"]] = row
        if row.get("response_id"):
            by_key[f"response:{row['response_id']}"] = row
        if row.get("trace_id") and row.get("span_id"):
            by_key[f"span:{row['trace_id']}:{row['span_id']}"] = row

    for row in stored:
        original[row["interaction_id"]] = json.dumps(row, sort_keys=True, default=str)
        remember(row)
    new_ids: list[str] = []
    for row, rec in zip(incoming, records):
        keys = rec.keys() or [row["interaction_id"]]
        target = next((by_key[k] for k in keys if k in by_key), None)
        if target is None:
            by_key[row["interaction_id"]] = row
            remember(row)
            new_ids.append(row["interaction_id"])
            continue
        before = len(target["conflicts"])
        _merge_into(target, row)
        result.conflicts += len(target["conflicts"]) - before
        remember(target)    # it may have gained a response id or span id to be found by

    rows = {row["interaction_id"]: row for row in by_key.values()}
    new = [rows[i] for i in dict.fromkeys(new_ids)]
    changed = [row for i, row in rows.items()
               if i in original and json.dumps(row, sort_keys=True, default=str) != original[i]]
    result.unchanged = sum(1 for i in original if i not in {r["interaction_id"] for r in changed})
    result.merged = len(records) - len(new)
    _assign_roles(store, incident_id, new)
    inserted, _ = table.write(store, _frame(new), _frame(changed))
    result.inserted = inserted
    _apply_selection(store, incident_id, [r["interaction_id"] for r in new if r["_by_default"]])
    result.interaction_ids = list(rows)
    result.roles = table.role_counts(store, incident_id)
    return result


def _assign_roles(store: Store, incident_id: str, rows: list[dict[str, Any]]) -> None:
    """Provisional roles of new rows: their own, else flagged -> offending, else by format.

    ``_by_default`` marks the rows whose role the incident's selection may still override.
    """
    for row in rows:
        row["_by_default"] = row["role"] is None
        if row["role"] is None:
            row["role"] = ("offending" if row["flags"] or row["source_format"] in INCIDENT_FORMATS
                           else "context")


def _apply_selection(store: Store, incident_id: str, ids: list[str]) -> None:
    """Roles of the given new rows from the incident's stored selection, when it has one."""
    selection = table.offending_selection(store, incident_id)
    if selection is None or not ids:
        return
    chosen = table.select(store, incident_id, selection, among=ids)
    table.set_roles(store, incident_id, chosen, among=ids)
