"""Rows of the training-data search tables (migration 11).

``training_search_signals`` holds one signal's scores of a version's training examples against an
incident (keyed by :func:`signal_id`), ``training_search_runs`` a search that combined signals
(:func:`search_run_id`), ``leave_out_results`` one leave-k-out check (:func:`leave_out_id`). All
three are written through :class:`~llmrca.store.cache.ContentTable`: writing twice is a no-op, and
the read functions work on a read-only store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from llmrca.ids import content_id
from llmrca.store.cache import ContentTable
from llmrca.store.core import Store

__all__ = ["LEAVE_OUTS", "RUNS", "SIGNAL_SCORES", "leave_out_id", "list_searches",
           "read_leave_out", "read_run", "read_signals", "search_run_id", "signal_id"]

SIGNAL_SCORES = ContentTable(
    "training_search_signals", "signal_id",
    ("signal_id", "incident_id", "model_version", "model_fingerprint", "signal", "parameters",
     "seed", "example_ids", "query_ids", "scores", "per_query", "seconds", "info",
     "package_version"),
    json_columns=frozenset({"parameters", "example_ids", "query_ids", "scores", "per_query",
                            "info"}))

RUNS = ContentTable(
    "training_search_runs", "run_id",
    ("run_id", "incident_id", "model_version", "model_fingerprint", "signals", "signal_ids",
     "parameters", "seed", "info", "package_version"),
    json_columns=frozenset({"signals", "signal_ids", "parameters", "info"}))

LEAVE_OUTS = ContentTable(
    "leave_out_results", "leave_out_id",
    ("leave_out_id", "incident_id", "model_version", "parent", "parent_fingerprint", "removed",
     "recipe", "retrained_version", "retrained_fingerprint", "replay_run_id", "result",
     "parameters", "seed", "package_version"),
    json_columns=frozenset({"removed", "recipe", "result", "parameters"}))


def signal_id(signal: str, model_fingerprint: str, data_id: str, query_id: str,
              parameters: Mapping[str, Any], seed: int | None) -> str:
    """One signal's scores: signal, model, training data, queries, parameters, seed."""
    return content_id({"kind": "training-search-signal", "signal": signal,
                       "model": model_fingerprint, "data": data_id, "queries": query_id,
                       "parameters": dict(parameters), "seed": seed})


def search_run_id(incident_id: str, model_fingerprint: str, signal_ids: Sequence[str],
                  parameters: Mapping[str, Any]) -> str:
    """A search: the incident, the model, the signal rows combined and how."""
    return "search-" + content_id({"incident": incident_id, "model": model_fingerprint,
                                   "signals": list(signal_ids),
                                   "parameters": dict(parameters)}, digits=24)


def leave_out_id(incident_id: str, parent_fingerprint: str, removed: Sequence[str],
                 recipe: Mapping[str, Any], data_id: str, parameters: Mapping[str, Any],
                 seed: int | None) -> str:
    """A leave-k-out check: parent, removed ids (sorted), recipe, data, replay parameters."""
    return content_id({"kind": "leave-out", "incident": incident_id,
                       "parent": parent_fingerprint, "removed": sorted(removed),
                       "recipe": dict(recipe), "data": data_id, "parameters": dict(parameters),
                       "seed": seed})


def _parsed(frame: pd.DataFrame, table: ContentTable) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        for column in table.json_columns:
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
        out.append(row)
    return out


def read_signals(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored signal rows among ``ids`` (JSON parsed), by id."""
    rows = _parsed(SIGNAL_SCORES.rows(store, ids, SIGNAL_SCORES.columns + ("created_at",)),
                   SIGNAL_SCORES)
    return {row["signal_id"]: row for row in rows}


def read_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """One search run (JSON parsed), or None."""
    rows = _parsed(RUNS.rows(store, [run_id], RUNS.columns + ("created_at",)), RUNS)
    return rows[0] if rows else None


def read_leave_out(store: Store, leave_out_id_: str) -> dict[str, Any] | None:
    """One leave-k-out result (JSON parsed), or None."""
    rows = _parsed(LEAVE_OUTS.rows(store, [leave_out_id_], LEAVE_OUTS.columns + ("created_at",)),
                   LEAVE_OUTS)
    return rows[0] if rows else None


def list_searches(store: Store, incident_id: str | None = None) -> pd.DataFrame:
    """Stored searches (run id, incident, version, signals, created_at), newest first."""
    where, args = "", []
    if incident_id is not None:
        where, args = " WHERE incident_id = ?", [incident_id]
    return store.query("SELECT run_id, incident_id, model_version, CAST(signals AS VARCHAR) AS "
                       "signals, created_at FROM training_search_runs" + where +
                       " ORDER BY created_at DESC", args)
