"""Hypothesis results in the store: one content-addressed row per (investigation run, hypothesis).

The row's ``test_id`` identifies the test alone (kind, parameters, every input), so a later run
that repeats a test reuses its effect, interval and p-value; ``adjusted_p`` and the verdict
belong to the run (Holm depends on the other hypotheses tested with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.store.cache import ContentTable
from llmrca.store.core import Store

__all__ = ["HYPOTHESIS_RESULTS", "hypothesis_run", "latest_test_outcome",
           "list_hypothesis_runs", "write_hypothesis_results"]

HYPOTHESIS_RESULTS = ContentTable(
    table="hypothesis_results", key="result_id",
    columns=("result_id", "run_id", "incident_id", "name", "kind", "test_id", "parameters",
             "applicable", "verdict", "effect", "effect_low", "effect_high", "p_value",
             "adjusted_p", "min_effect", "alpha", "rank", "summary", "finding", "evidence",
             "inputs", "method", "package_version"),
    json_columns=frozenset({"parameters", "finding", "evidence", "inputs"}))

_JSON = ("parameters", "finding", "evidence", "inputs")


def _parse(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _JSON:
        frame[column] = [json.loads(v) if isinstance(v, str) else v for v in frame[column]]
    return frame


def write_hypothesis_results(store: Store, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write one run's rows in one transaction (rows already stored are skipped)."""
    return HYPOTHESIS_RESULTS.write(store, rows)


def hypothesis_run(store: Store, run_id: str) -> pd.DataFrame:
    """One run's rows, JSON parsed, in the order they were tested (``created_at`` ties keep the
    stored ``rank`` order: ranked ones first).

    Raises
    ------
    NotFoundError
        No such run.
    """
    frame = store.query("SELECT * EXCLUDE (created_at) FROM hypothesis_results WHERE run_id = ? "
                        "ORDER BY rank NULLS LAST, name", [run_id])
    if frame.empty:
        raise NotFoundError(f"no hypothesis run '{run_id}' in store {store.path}; list them with "
                            f"llmrca.store.hypotheses.list_hypothesis_runs(store, 'INCIDENT') or "
                            f"run `llmrca investigate INCIDENT`")
    return _parse(frame)


def latest_test_outcome(store: Store, test_id: str) -> dict[str, Any] | None:
    """The newest stored row of a test (any run), JSON parsed; None when it was never run."""
    frame = store.query("SELECT * EXCLUDE (created_at) FROM hypothesis_results WHERE test_id = ? "
                        "ORDER BY created_at DESC LIMIT 1", [test_id])
    if frame.empty:
        return None
    return {str(k): v for k, v in _parse(frame).iloc[0].to_dict().items()}


def list_hypothesis_runs(store: Store, incident_id: str | None = None) -> pd.DataFrame:
    """Runs, newest first: ``run_id, incident_id, hypotheses, supported, created_at``."""
    sql = ("SELECT run_id, any_value(incident_id) AS incident_id, count(*) AS hypotheses, "
           "count(*) FILTER (WHERE verdict = 'supported') AS supported, "
           "max(created_at) AS created_at FROM hypothesis_results")
    params: list[Any] = []
    if incident_id is not None:
        sql += " WHERE incident_id = ?"
        params.append(incident_id)
    return store.query(sql + " GROUP BY run_id ORDER BY created_at DESC", params)
