"""Attributions in the store: one content-addressed row per (interaction, version, method,
baseline, target), and one row per attribution run (its members and faithfulness check)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.store.cache import ContentTable
from llmrca.store.core import Store

__all__ = ["ATTRIBUTIONS", "ATTRIBUTION_RUNS", "attribution_row_order", "attribution_run",
           "list_attribution_runs", "write_attribution_run"]

ATTRIBUTIONS = ContentTable(
    table="attributions", key="attribution_id",
    columns=("attribution_id", "incident_id", "interaction_id", "model_version",
             "model_fingerprint", "engine", "method", "baseline", "target", "prompt_hash",
             "target_text", "contrast_text", "parameters", "segments", "scores", "full_score",
             "empty_score", "details", "package_version"),
    json_columns=frozenset({"parameters", "segments", "scores", "details"}))

ATTRIBUTION_RUNS = ContentTable(
    table="attribution_runs", key="run_id",
    columns=("run_id", "incident_id", "model_version", "parameters", "attribution_ids",
             "faithfulness", "info"),
    json_columns=frozenset({"parameters", "attribution_ids", "faithfulness", "info"}))


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def attribution_row_order(store: Store, attribution_ids: list[str]) -> pd.DataFrame:
    """The stored attributions among ``attribution_ids``, JSON columns parsed, in that order."""
    frame = ATTRIBUTIONS.rows(store, attribution_ids)
    for column in ATTRIBUTIONS.json_columns:
        frame[column] = frame[column].map(_loads)
    order = {a: i for i, a in enumerate(attribution_ids)}
    return frame.sort_values("attribution_id", key=lambda c: c.map(order)).reset_index(drop=True)


def write_attribution_run(store: Store, row: Mapping[str, Any]) -> int:
    """Record a run (a no-op when its id is stored)."""
    return ATTRIBUTION_RUNS.write(store, [row])


def attribution_run(store: Store, run_id: str) -> dict[str, Any]:
    """One run's record, JSON parsed.

    Raises
    ------
    NotFoundError
        No such run.
    """
    frame = ATTRIBUTION_RUNS.rows(store, [run_id])
    if frame.empty:
        raise NotFoundError(f"no attribution run '{run_id}' in store {store.path}; list them "
                            f"with `llmrca attribute INCIDENT --list` (list_attribution_runs), or recompute one (cached) with `llmrca attribute "
                            f"INCIDENT --version VERSION`, which prints its run id")
    record: dict[str, Any] = {str(k): v for k, v in frame.iloc[0].to_dict().items()}
    for column in ATTRIBUTION_RUNS.json_columns:
        record[column] = _loads(record[column])
    return record


def list_attribution_runs(store: Store, incident_id: str | None = None,
                          details: bool = False) -> pd.DataFrame:
    """Runs, newest first: ``run_id, incident_id, model_version, created_at``; with ``details``
    also ``parameters, attribution_ids, faithfulness`` (JSON parsed)."""
    columns = "run_id, incident_id, model_version, created_at"
    if details:
        columns += ", parameters, attribution_ids, faithfulness"
    sql = f"SELECT {columns} FROM attribution_runs"
    params: list[Any] = []
    if incident_id is not None:
        sql += " WHERE incident_id = ?"
        params.append(incident_id)
    frame = store.query(sql + " ORDER BY created_at DESC, run_id", params)
    if details:
        for column in ("parameters", "attribution_ids", "faithfulness"):
            frame[column] = frame[column].map(_loads)
    return frame
