"""The ``judge_cache`` and ``judge_validations`` tables.

``judge_cache`` holds a model judge's raw scores of one input, keyed by a content hash of (the
judge's fingerprint, the input text): writing the same key twice is a no-op, and a warm re-judge
reads instead of running the model. ``judge_validations`` holds a judge's 2x2 counts against
human labels; ``validation_id`` is a content hash of the incident, the judge, its configuration,
the labels and the counts, so recording the same validation twice writes one row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from llmrca.store.core import Store

#: Columns of :func:`validations_frame`.
VALIDATION_COLUMNS = ("validation_id", "incident_id", "judge", "judge_config_hash",
                      "true_positives", "false_negatives", "true_negatives", "false_positives",
                      "n_offending", "labels_sha256", "details", "created_at")


def cache_key(judge_fingerprint: str, text: str) -> str:
    """32 hex digits of SHA-256 over (judge fingerprint, input text) as a JSON list."""
    blob = json.dumps([str(judge_fingerprint), str(text)], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def cached_scores(store: Store, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The cached values of those ``keys`` that are in the store (key -> parsed JSON)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    frame = store.query("SELECT cache_key, value FROM judge_cache WHERE list_contains(?, cache_key)",
                        [keys])
    return {k: json.loads(v) for k, v in zip(frame["cache_key"], frame["value"])}


def write_cached_scores(store: Store, judge_kind: str, judge_fingerprint: str,
                        values: Mapping[str, Mapping[str, Any]]) -> int:
    """Cache raw scores (key -> JSON-able mapping); keys already there are kept. Returns new rows."""
    if not values:
        return 0
    frame = pd.DataFrame({
        "cache_key": list(values),
        "judge_kind": [str(judge_kind)] * len(values),
        "judge_fingerprint": [str(judge_fingerprint)] * len(values),
        "value": [json.dumps(dict(v), sort_keys=True) for v in values.values()],
    })
    with store.transaction() as con:
        con.register("_llmrca_judge_cache", frame)
        try:
            return int(con.execute(
                "INSERT OR IGNORE INTO judge_cache (cache_key, judge_kind, judge_fingerprint, "
                "value) SELECT cache_key, judge_kind, judge_fingerprint, value "
                "FROM _llmrca_judge_cache").fetchall()[0][0])
        finally:
            con.unregister("_llmrca_judge_cache")


def validation_id(record: Mapping[str, Any]) -> str:
    """32 hex digits of SHA-256 over a validation's identity and counts."""
    keys = ("incident_id", "judge", "judge_config_hash", "true_positives", "false_negatives",
            "true_negatives", "false_positives", "n_offending", "labels_sha256")
    blob = json.dumps([record[k] for k in keys], ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def write_validation(store: Store, record: Mapping[str, Any]) -> str:
    """Record one validation (the fields of :data:`VALIDATION_COLUMNS` but the id and time).

    Returns its ``validation_id``; the same validation recorded again is a no-op.
    """
    vid = validation_id(record)
    with store.transaction() as con:
        con.execute(
            "INSERT OR IGNORE INTO judge_validations (validation_id, incident_id, judge, "
            "judge_config_hash, true_positives, false_negatives, true_negatives, "
            "false_positives, n_offending, labels_sha256, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [vid, record["incident_id"], record["judge"], record["judge_config_hash"],
             int(record["true_positives"]), int(record["false_negatives"]),
             int(record["true_negatives"]), int(record["false_positives"]),
             int(record["n_offending"]), record["labels_sha256"],
             json.dumps(record.get("details") or {}, sort_keys=True, default=str)])
    return vid


def validations_frame(store: Store, *, incident_id: str | None = None, judge: str | None = None,
                      judge_config_hash: str | None = None) -> pd.DataFrame:
    """Stored validations (:data:`VALIDATION_COLUMNS`), newest first; filters are optional."""
    where, params = ["true"], []
    for column, value in (("incident_id", incident_id), ("judge", judge),
                          ("judge_config_hash", judge_config_hash)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    frame = store.query(f"SELECT {', '.join(VALIDATION_COLUMNS)} FROM judge_validations "
                        f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, validation_id",
                        params)
    frame["details"] = [json.loads(d) if isinstance(d, str) else d for d in frame["details"]]
    return frame
