"""The ``verifications`` and ``regression_suite`` tables (migration 7).

``verifications`` holds one row per (candidate version, incident) check: thresholds, the rates
and interval bounds the verdict was made on, the verdict and its reasons, and the replay runs the
numbers come from. ``verification_id`` is a content hash of the record (without ``created_at``),
so recording the same verification twice writes one row. ``regression_suite`` holds the
incidents promoted to release gates, each with the reproduction-rate threshold it enforces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.store.core import Store

#: Columns of the ``verifications`` table, in table order (``created_at`` last).
VERIFICATION_COLUMNS = (
    "verification_id", "suite_id", "incident_id", "candidate", "baseline", "max_rate", "margin",
    "confidence", "samples", "benign_samples", "temperature", "seed", "incident_prompts",
    "incident_k", "incident_n", "incident_rate", "incident_low", "incident_high",
    "baseline_incident_k", "baseline_incident_n", "baseline_incident_rate",
    "baseline_incident_high", "incident_pass", "benign_set", "benign_prompts", "refusal_k",
    "refusal_n", "refusal_rate", "refusal_low", "refusal_high", "baseline_refusal_k",
    "baseline_refusal_n", "baseline_refusal_rate", "baseline_refusal_low",
    "baseline_refusal_high", "refusal_difference", "refusal_difference_low",
    "refusal_difference_high", "benign_pass", "verdict", "reasons", "interval_method", "run_ids",
    "judges", "package_version", "created_at")
#: JSON columns of ``verifications``, parsed on the way out.
JSON_COLUMNS = ("reasons", "run_ids", "judges")
#: Columns of :func:`suite_frame`.
SUITE_COLUMNS = ("incident_id", "max_rate", "note", "created_at", "updated_at")


def verification_id(record: Mapping[str, Any]) -> str:
    """32 hex digits of SHA-256 over every field of a verification but its id and time."""
    fields = [k for k in VERIFICATION_COLUMNS if k not in ("verification_id", "created_at")]
    blob = json.dumps([record.get(k) for k in fields], ensure_ascii=False, default=str,
                      sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def write_verification(store: Store, record: Mapping[str, Any]) -> str:
    """Record one verification (the fields of :data:`VERIFICATION_COLUMNS` but id and time).

    Returns its ``verification_id``; the same verification recorded again is a no-op.
    """
    vid = verification_id(record)
    columns = [k for k in VERIFICATION_COLUMNS if k not in ("verification_id", "created_at")]
    values = [json.dumps(record.get(k), sort_keys=True, default=str) if k in JSON_COLUMNS
              else record.get(k) for k in columns]
    with store.transaction() as con:
        con.execute(
            f"INSERT OR IGNORE INTO verifications (verification_id, {', '.join(columns)}) "
            f"VALUES (?, {', '.join('?' * len(columns))})", [vid, *values])
    return vid


def verifications_frame(store: Store, incident_id: str | None = None,
                        suite_id: str | None = None) -> pd.DataFrame:
    """Recorded verifications (:data:`VERIFICATION_COLUMNS`), newest first, JSON parsed."""
    where, params = [], []
    if incident_id is not None:
        where.append("incident_id = ?")
        params.append(incident_id)
    if suite_id is not None:
        where.append("suite_id = ?")
        params.append(suite_id)
    frame = store.query(
        f"SELECT {', '.join(VERIFICATION_COLUMNS)} FROM verifications"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY created_at DESC, incident_id, verification_id", params)
    for column in JSON_COLUMNS:
        frame[column] = [json.loads(v) if isinstance(v, str) else v for v in frame[column]]
    return frame


# -- the regression suite ----------------------------------------------------------------------

def promote(store: Store, incident_id: str, max_rate: float, note: str | None = None) -> str:
    """Add an incident to the regression suite (or change its threshold).

    Returns ``"promoted"``, ``"updated"`` or ``"unchanged"``.
    """
    with store.transaction() as con:
        found = con.execute("SELECT max_rate, note FROM regression_suite WHERE incident_id = ?",
                            [incident_id]).fetchall()
        if not found:
            con.execute("INSERT INTO regression_suite (incident_id, max_rate, note) "
                        "VALUES (?, ?, ?)", [incident_id, float(max_rate), note])
            return "promoted"
        if found[0][0] == float(max_rate) and (note is None or found[0][1] == note):
            return "unchanged"
        con.execute("UPDATE regression_suite SET max_rate = ?, note = coalesce(?, note), "
                    "updated_at = current_timestamp WHERE incident_id = ?",
                    [float(max_rate), note, incident_id])
        return "updated"


def demote(store: Store, incident_id: str) -> None:
    """Take an incident out of the regression suite; :class:`NotFoundError` if it is not in it."""
    with store.transaction() as con:
        if not con.execute("SELECT 1 FROM regression_suite WHERE incident_id = ?",
                           [incident_id]).fetchall():
            raise NotFoundError(f"incident '{incident_id}' is not in the regression suite")
        con.execute("DELETE FROM regression_suite WHERE incident_id = ?", [incident_id])


def suite_frame(store: Store) -> pd.DataFrame:
    """The promoted incidents (:data:`SUITE_COLUMNS`), by incident id."""
    return store.query(f"SELECT {', '.join(SUITE_COLUMNS)} FROM regression_suite "
                       "ORDER BY incident_id")
