"""Reads and writes of the replay tables (``replay_runs``, ``replay_samples``,
``replay_run_samples``, ``replay_scores``), and the incident reads replay needs.

Every write is ``INSERT OR IGNORE`` keyed by a content hash, inside one transaction per call, so
writing the same chunk twice is a no-op and a chunk is either all in the store or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError, StoreError
from llmrca.store.cache import ContentTable
from llmrca.store.core import Store

SAMPLE_COLUMNS = ("sample_id", "model_version", "model_fingerprint", "engine", "prompt_hash",
                  "prompt_text", "prompt_tokens", "decoding", "seed", "output", "token_ids",
                  "token_logprobs", "total_logprob", "finish_reason", "warnings", "run_id")
RUN_SAMPLE_COLUMNS = ("run_id", "incident_id", "interaction_id", "variant", "model_version",
                      "sample_index", "seed", "sample_id", "warnings")
SCORE_COLUMNS = ("score_id", "incident_id", "interaction_id", "model_version", "model_fingerprint",
                 "engine", "prompt_hash", "prompt_tokens", "output", "token_ids",
                 "token_logprobs", "argmax_ids", "total_logprob", "warnings")
_JSON_COLUMNS = {"decoding", "token_ids", "token_logprobs", "argmax_ids", "warnings"}
#: Statuses of ``replay_runs``: a run is ``running`` while it works, ``complete`` when its
#: results are stored, ``failed`` (an error) or ``interrupted`` (Ctrl-C, a kill it could see)
#: otherwise, with the reason in ``counts["error"]``.
RUN_STATUSES = ("running", "complete", "failed", "interrupted")

#: Content-addressed tables (:mod:`llmrca.store.cache`).
SAMPLES = ContentTable("replay_samples", "sample_id", SAMPLE_COLUMNS,
                       frozenset(_JSON_COLUMNS & set(SAMPLE_COLUMNS)))
SCORES = ContentTable("replay_scores", "score_id", SCORE_COLUMNS,
                      frozenset(_JSON_COLUMNS & set(SCORE_COLUMNS)))


def _writable(store: Store, what: str) -> None:
    if store.read_only:
        raise StoreError(f"store {store.path} is open read-only: cannot {what}; open it for "
                         f"writing, or read a stored run with load_replay / `llmrca runs show`")


def _insert_rows(store: Store, table: str, columns: Sequence[str], rows: Iterable[dict]) -> int:
    """Insert rows (existing keys skipped) through the same writer as the content tables."""
    rows = list(rows)
    if not rows:
        return 0
    _writable(store, f"write {len(rows)} row(s) to {table}")
    writer = ContentTable(table, columns[0], tuple(columns),
                          frozenset(_JSON_COLUMNS & set(columns)))
    return writer.write(store, rows)


# -- incident reads ---------------------------------------------------------------------------------

def incident_record(store: Store, incident_id: str) -> dict[str, Any]:
    """The incident's row as a dict; :class:`NotFoundError` naming the known ones otherwise."""
    frame = store.query("SELECT * FROM incidents WHERE incident_id = ?", [incident_id])
    if frame.empty:
        known = store.query("SELECT incident_id FROM incidents ORDER BY 1")["incident_id"].tolist()
        raise NotFoundError(f"incident '{incident_id}' is not in the store; known: "
                            + (", ".join(known) if known else "(none)"))
    return frame.iloc[0].to_dict()


def incident_interactions(store: Store, incident_id: str,
                          interaction_ids: Sequence[str] | None = None,
                          role: str | None = "offending") -> pd.DataFrame:
    """The incident's interactions (``interaction_id, system_prompt, messages, output,
    model_version``), ``messages`` parsed, ordered by time then id.

    By default the offending ones (the incident itself); ``role=None`` gives all, and explicit
    ``interaction_ids`` are taken whatever their role.
    """
    frame = store.query(
        "SELECT interaction_id, system_prompt, messages, output, model_version, ts, role "
        "FROM interactions WHERE incident_id = ? ORDER BY ts NULLS LAST, interaction_id",
        [incident_id])
    if interaction_ids is None and role is not None:
        frame = frame[frame["role"] == role]
        if frame.empty:
            raise NotFoundError(
                f"incident '{incident_id}' has no {role} interactions; mark the calls that are "
                f"the incident with `llmrca incidents focus {incident_id} ...` (or `offending:` "
                "in incident.yaml)")
    if interaction_ids is not None:
        wanted = list(interaction_ids)
        missing = sorted(set(wanted) - set(frame["interaction_id"]))
        if missing:
            raise NotFoundError(f"incident '{incident_id}' has no interaction(s) "
                                f"{', '.join(missing)}")
        frame = frame[frame["interaction_id"].isin(wanted)]
    frame = frame.reset_index(drop=True)
    frame["messages"] = [json.loads(m) if isinstance(m, str) else m for m in frame["messages"]]
    for column in ("system_prompt", "output"):
        frame[column] = [None if pd.isna(v) else v for v in frame[column]]
    return frame


def interaction_prompt(store: Store, interaction_id: str) -> tuple[str | None, list[dict]]:
    """One interaction's ``(system_prompt, messages)`` (messages parsed)."""
    frame = store.query("SELECT system_prompt, messages FROM interactions WHERE "
                        "interaction_id = ?", [interaction_id])
    if frame.empty:
        raise NotFoundError(f"interaction '{interaction_id}' is not in the store")
    system_prompt, messages = frame.iloc[0]["system_prompt"], frame.iloc[0]["messages"]
    return (system_prompt if isinstance(system_prompt, str) else None,
            json.loads(messages) if isinstance(messages, str) else list(messages))


# -- runs -------------------------------------------------------------------------------------------

def run_status(store: Store, run_id: str) -> str | None:
    """The run's status, or None when it is not recorded."""
    found = store.con.execute("SELECT status FROM replay_runs WHERE run_id = ?",
                              [run_id]).fetchall()
    return str(found[0][0]) if found else None


def start_run(store: Store, *, run_id: str, incident_id: str, versions: list[dict[str, Any]],
              parameters: dict[str, Any], seed: int, backend: str, package_version: str) -> bool:
    """Record a run as ``running``; returns False when it was already recorded (a resumed or
    repeated run; a ``complete`` one keeps its status until it completes again).

    Call it only once the run's arguments are valid and its plan is made: a row is never left
    behind by a call that refused its arguments.
    """
    _writable(store, f"record replay run {run_id}")
    with store.transaction() as con:
        found = con.execute("SELECT status FROM replay_runs WHERE run_id = ?", [run_id]).fetchall()
        if found:
            if found[0][0] != "complete":
                con.execute("UPDATE replay_runs SET status = 'running', "
                            "updated_at = current_timestamp WHERE run_id = ?", [run_id])
            return False
        con.execute(
            "INSERT INTO replay_runs (run_id, incident_id, versions, parameters, seed, backend, "
            "package_version, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
            [run_id, incident_id, json.dumps(versions), json.dumps(parameters, sort_keys=True),
             int(seed), backend, package_version])
        return True


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def finish_run(store: Store, run_id: str, counts: dict[str, Any], status: str = "complete",
               reason: str | None = None) -> None:
    """Mark a run ``complete`` with its counts (generated, cached, forward passes, ...), or
    ``failed`` / ``interrupted`` with ``reason`` (stored as ``counts["error"]``)."""
    if status not in RUN_STATUSES:
        raise ValueError(f"run status {status!r}; valid: {', '.join(RUN_STATUSES)}")
    counts = dict(counts)
    if reason:
        counts["error"] = reason
    with store.transaction() as con:
        con.execute("UPDATE replay_runs SET status = ?, counts = ?, "
                    "updated_at = current_timestamp WHERE run_id = ?",
                    [status, json.dumps(_json_safe(counts), sort_keys=True, default=str),
                     run_id])


def run_record(store: Store, run_id: str) -> dict[str, Any]:
    """A ``replay_runs`` row as a dict, JSON fields parsed."""
    frame = store.query("SELECT * FROM replay_runs WHERE run_id = ?", [run_id])
    if frame.empty:
        raise NotFoundError(f"replay run '{run_id}' is not in the store")
    record = frame.iloc[0].to_dict()
    for key in ("versions", "parameters", "counts"):
        if isinstance(record.get(key), str):
            record[key] = json.loads(record[key])
    return record


def list_runs(store: Store, incident_id: str | None = None) -> pd.DataFrame:
    """Replay runs, newest first (``versions``, ``parameters`` and ``counts`` parsed)."""
    where = "WHERE incident_id = ?" if incident_id else ""
    frame = store.query(f"SELECT run_id, incident_id, versions, parameters, seed, backend, "
                        f"status, counts, created_at, updated_at FROM replay_runs {where} "
                        f"ORDER BY created_at DESC, run_id", [incident_id] if incident_id else [])
    for key in ("versions", "parameters", "counts"):
        frame[key] = [json.loads(v) if isinstance(v, str) else v for v in frame[key]]
    return frame


# -- samples ----------------------------------------------------------------------------------------

def sample_record(store: Store, sample_id: str) -> dict[str, Any]:
    """One stored replay sample (every column of ``replay_samples``)."""
    frame = store.query("SELECT * FROM replay_samples WHERE sample_id = ?", [sample_id])
    if frame.empty:
        raise NotFoundError(f"replay sample '{sample_id}' is not in the store")
    return frame.iloc[0].to_dict()


def existing_sample_ids(store: Store, sample_ids: Iterable[str]) -> set[str]:
    """The subset of ``sample_ids`` already in ``replay_samples``."""
    return SAMPLES.existing(store, sample_ids)


def write_samples(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Insert generated samples (columns :data:`SAMPLE_COLUMNS`) in one transaction.

    Returns how many were new; rows whose ``sample_id`` exists are skipped.
    """
    return SAMPLES.write(store, rows)


def write_run_samples(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Insert run membership rows (columns :data:`RUN_SAMPLE_COLUMNS`) in one transaction."""
    return _insert_rows(store, "replay_run_samples", RUN_SAMPLE_COLUMNS, rows)


def run_samples(store: Store, run_id: str) -> pd.DataFrame:
    """The run's samples: membership joined with the generations, JSON columns parsed.

    Columns: ``run_id, incident_id, interaction_id, variant, model_version, model_fingerprint,
    sample_index, seed, sample_id, engine, prompt_hash, prompt_tokens, output, token_ids,
    token_logprobs, total_logprob, n_tokens, finish_reason, warnings, decoding, generated_by_run``.
    """
    frame = store.query(
        "SELECT m.run_id, m.incident_id, m.interaction_id, m.variant, m.model_version, "
        "s.model_fingerprint, m.sample_index, m.seed, m.sample_id, s.engine, s.prompt_hash, "
        "s.prompt_tokens, s.output, s.token_ids, s.token_logprobs, s.total_logprob, "
        "s.finish_reason, m.warnings, s.decoding, s.run_id AS generated_by_run "
        "FROM replay_run_samples m JOIN replay_samples s USING (sample_id) "
        "WHERE m.run_id = ? ORDER BY m.model_version, m.interaction_id, m.variant, m.sample_index",
        [run_id])
    for column in ("token_ids", "token_logprobs", "warnings", "decoding"):
        frame[column] = [json.loads(v) if isinstance(v, str) else (v if v is not None else [])
                         for v in frame[column]]
    frame.insert(frame.columns.get_loc("total_logprob") + 1, "n_tokens",
                 [len(t) for t in frame["token_ids"]])
    return frame


# -- teacher-forced scores --------------------------------------------------------------------------

def existing_scores(store: Store, score_ids: Iterable[str]) -> pd.DataFrame:
    """Stored scores among ``score_ids`` (all :data:`SCORE_COLUMNS`, JSON columns parsed)."""
    frame = SCORES.rows(store, score_ids)
    for column in ("token_ids", "token_logprobs", "argmax_ids", "warnings"):
        frame[column] = [json.loads(v) if isinstance(v, str) else (v or []) for v in frame[column]]
    return frame


def write_scores(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Insert teacher-forced scores (columns :data:`SCORE_COLUMNS`) in one transaction."""
    return SCORES.write(store, rows)
