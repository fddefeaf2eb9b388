"""Rows of the model-internals tables: cached hidden states and stored analysis results.

``activation_cache`` holds one prompt's residual stream at one position (every hidden-state
index) per model, keyed by :func:`activation_id`; ``internals_results`` holds one typed result
of :mod:`llmrca.internals` (its tables as records, its provenance) keyed by :func:`result_id`.
Both are written through :class:`~llmrca.store.cache.ContentTable`: writing twice is a no-op.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.ids import content_id
from llmrca.store.cache import ContentTable
from llmrca.store.core import Store

__all__ = ["ACTIVATIONS", "RESULTS", "activation_id", "decode_activation", "encode_activation",
           "list_results", "read_result", "result_id", "write_result"]

ACTIVATIONS = ContentTable(
    "activation_cache", "activation_id",
    ("activation_id", "model_fingerprint", "engine", "prompt_hash", "position", "n_states",
     "width", "data"))

RESULTS = ContentTable(
    "internals_results", "result_id",
    ("result_id", "kind", "incident_id", "versions", "fingerprints", "parameters", "seed",
     "tables", "info", "package_version"),
    json_columns=frozenset({"versions", "fingerprints", "parameters", "tables", "info"}))


def activation_id(model_fingerprint: str, engine: str, prompt_hash: str, position: str) -> str:
    """One prompt's cached residual stream: model, engine, rendered prompt id, position."""
    return content_id({"kind": "activation", "model": model_fingerprint, "engine": engine,
                       "prompt": prompt_hash, "position": position})


def encode_activation(array: np.ndarray) -> str:
    """base64 of the float32 bytes (C order): an exact round trip, unlike decimal JSON."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.float32).tobytes()).decode()


def decode_activation(data: str, n_states: int, width: int) -> np.ndarray:
    """The ``[n_states, width]`` float32 array :func:`encode_activation` wrote."""
    raw = np.frombuffer(base64.b64decode(data), dtype=np.float32)
    return raw.reshape(int(n_states), int(width)).copy()


def result_id(kind: str, versions: Sequence[str], fingerprints: Mapping[str, str],
              parameters: Mapping[str, Any], seed: int | None,
              incident_id: str | None = None) -> str:
    """An analysis result: everything that decides it (not the package version)."""
    return content_id({"kind": kind, "incident": incident_id, "versions": list(versions),
                       "fingerprints": dict(fingerprints), "parameters": dict(parameters),
                       "seed": seed})


def write_result(store: Store, row: Mapping[str, Any]) -> int:
    """Insert one result row (columns of :data:`RESULTS`); 0 when its id was stored already."""
    return RESULTS.write(store, [row])


def read_result(store: Store, result_id_: str) -> dict[str, Any]:
    """One stored result as a dict, JSON columns parsed; :class:`NotFoundError` otherwise."""
    frame = RESULTS.rows(store, [result_id_], RESULTS.columns + ("created_at",))
    if frame.empty:
        raise NotFoundError(f"no internals result {result_id_} in store {store.path}")
    row: dict[str, Any] = {str(k): v for k, v in frame.iloc[0].to_dict().items()}
    for column in RESULTS.json_columns:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row


def list_results(store: Store, kind: str | None = None,
                 incident_id: str | None = None) -> pd.DataFrame:
    """Stored results (id, kind, incident, versions, seed, created_at), newest first."""
    where, args = [], []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if incident_id is not None:
        where.append("incident_id = ?")
        args.append(incident_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return store.query("SELECT result_id, kind, incident_id, CAST(versions AS VARCHAR) AS "
                       "versions, seed, created_at FROM internals_results" + clause +
                       " ORDER BY created_at DESC", args)
