"""Rows of the ``judgements`` table: judges' labels of replayed samples.

``judgement_id`` is a content hash of (sample_id, judge, judge_config_hash): a judge with the same
configuration judging the same sample twice writes one row, so re-running judging is a no-op.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from llmrca import ids
from llmrca.store.core import Store

#: Columns a judgements DataFrame must have to be written (``details`` holds dicts or JSON text).
REQUIRED_COLUMNS = ("sample_id", "judge", "judge_config_hash", "label", "score", "details")
#: Columns :func:`judgements_frame` returns.
COLUMNS = ("judgement_id",) + REQUIRED_COLUMNS + ("created_at",)


def judgement_id(sample_id: str, judge: str, judge_config_hash: str) -> str:
    """32 hex digits of SHA-256 over (sample_id, judge, judge_config_hash) as a JSON list
    (:func:`llmrca.ids.judgement_id`)."""
    return ids.judgement_id(sample_id, judge, judge_config_hash)


def _details_json(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def write_judgements(store: Store, judgements) -> int:
    """Write judges' results (the DataFrame :meth:`llmrca.judges.Judge.judge` returns).

    Rows already in the store (same sample, judge and configuration) are skipped, as are
    duplicates within ``judgements``.

    Returns
    -------
    int
        The number of rows that were new.
    """
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in judgements.columns]
    if missing:
        raise ValueError(f"judgements lack columns {missing}; expected {list(REQUIRED_COLUMNS)}")
    if len(judgements) == 0:
        return 0
    judgements = judgements.reset_index(drop=True)
    frame = pd.DataFrame({
        "judgement_id": [judgement_id(s, j, h) for s, j, h in zip(
            judgements["sample_id"], judgements["judge"], judgements["judge_config_hash"])],
        "sample_id": judgements["sample_id"].astype(str).astype(object),
        "judge": judgements["judge"].astype(str).astype(object),
        "judge_config_hash": judgements["judge_config_hash"].astype(str).astype(object),
        "label": judgements["label"].astype(str).astype(object),
        "score": [_score(v) for v in judgements["score"]],
        "details": pd.Series([_details_json(v) for v in judgements["details"]], dtype=object),
    }).drop_duplicates("judgement_id", keep="first")
    frame["score"] = frame["score"].astype("float64")
    names = ", ".join(frame.columns)
    view = "_llmrca_judgements"
    with store.transaction() as con:
        con.register(view, frame)
        try:
            inserted = con.execute(
                f"INSERT OR IGNORE INTO judgements ({names}) "
                f"SELECT judgement_id, sample_id, judge, judge_config_hash, label, score, "
                f"CAST(details AS JSON) FROM {view}").fetchall()
        finally:
            con.unregister(view)
    return int(inserted[0][0]) if inserted else 0


def judgements_frame(store: Store, sample_ids: Iterable[str] | None = None,
                     judges: Iterable[str] | None = None):
    """Stored judgements (``details`` parsed back to dicts), optionally for some samples/judges."""
    where, params = [], []
    if sample_ids is not None:
        ids = [str(s) for s in sample_ids]
        if not ids:
            where.append("false")
        else:
            where.append("sample_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(ids)
    if judges is not None:
        names = [str(j) for j in judges]
        where.append("judge IN (SELECT unnest(?::VARCHAR[]))" if names else "false")
        if names:
            params.append(names)
    sql = (f"SELECT {', '.join(COLUMNS)} FROM judgements"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created_at, judgement_id")
    frame = store.query(sql, params)
    frame["details"] = [json.loads(v) if isinstance(v, str) else v for v in frame["details"]]
    return frame
