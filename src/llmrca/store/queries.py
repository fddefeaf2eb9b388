"""Read queries that more than one face needs (CLI, notebooks, reports).

Log queries read the view ``all_log_events``: the copied ``log_events`` and the logs registered
in place (:mod:`llmrca.store.log_sources`), checked first so a moved file is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.store.core import Store
from llmrca.store.log_sources import check_log_sources


def list_incidents(store: Store) -> pd.DataFrame:
    """One row per incident with its interaction and log counts (copied and in place)."""
    check_log_sources(store)
    return store.query(
        "SELECT i.incident_id, i.title, i.category, i.severity, i.status, i.detected_at, "
        "i.deployed_model_version, "
        "(SELECT count(*) FROM interactions x WHERE x.incident_id = i.incident_id) AS interactions, "
        "(SELECT count(*) FROM all_log_events l WHERE l.incident_id = i.incident_id) AS log_events, "
        "i.revision FROM incidents i ORDER BY i.detected_at, i.incident_id")


@dataclass(frozen=True)
class IncidentSummary:
    """An incident record with what the store holds about it."""

    record: dict[str, Any]
    per_version: pd.DataFrame
    window: dict[str, Any]
    guardrail: pd.DataFrame
    history: pd.DataFrame
    rejects: int


def incident_summary(store: Store, incident_id: str) -> IncidentSummary:
    """Record, counts per model version, time window, guardrail decisions, change history."""
    frame = store.query("SELECT * FROM incidents WHERE incident_id = ?", [incident_id])
    if frame.empty:
        known = store.query("SELECT incident_id FROM incidents ORDER BY 1")["incident_id"].tolist()
        raise NotFoundError(f"incident '{incident_id}' is not in the store; known: "
                            + (", ".join(known) if known else "(none)"))
    record = frame.iloc[0].to_dict()
    check_log_sources(store, incident_id)
    for key in ("metadata", "personal_fields"):
        if isinstance(record.get(key), str):
            record[key] = json.loads(record[key])
    per_version = store.query(
        "WITH v AS (SELECT model_version, 'interactions' AS kind FROM interactions "
        "WHERE incident_id = $id UNION ALL SELECT model_version, "
        "CASE stream WHEN 'guardrail' THEN 'guardrail_events' ELSE 'log_events' END "
        "FROM all_log_events WHERE incident_id = $id) "
        "SELECT coalesce(model_version, '(unknown)') AS model_version, "
        "count(*) FILTER (WHERE kind = 'interactions') AS interactions, "
        "count(*) FILTER (WHERE kind = 'log_events') AS log_events, "
        "count(*) FILTER (WHERE kind = 'guardrail_events') AS guardrail_events "
        "FROM v GROUP BY 1 ORDER BY 1", {"id": incident_id})
    window_row = store.con.execute(
        "SELECT min(ts), max(ts), count(DISTINCT session_hash), count(DISTINCT user_hash) FROM "
        "(SELECT ts, session_hash, user_hash FROM interactions WHERE incident_id = $id "
        "UNION ALL SELECT ts, session_hash, user_hash FROM all_log_events WHERE incident_id = $id)",
        {"id": incident_id}).fetchall()[0]
    window = {"first": window_row[0], "last": window_row[1], "sessions": window_row[2],
              "users": window_row[3]}
    guardrail = store.query(
        "SELECT guardrail_decision AS decision, coalesce(guardrail_rule, '') AS rule, "
        "count(*) AS events FROM all_log_events WHERE incident_id = ? AND stream = 'guardrail' "
        "GROUP BY ALL ORDER BY events DESC", [incident_id])
    history = store.query(
        "SELECT revision, content_hash, replaced_at FROM incident_history WHERE incident_id = ? "
        "ORDER BY revision", [incident_id])
    rejects = store.count("ingest_rejects", "incident_id = ?", [incident_id])
    return IncidentSummary(record, per_version, window, guardrail, history, rejects)


#: Columns of :func:`log_outputs`.
LOG_OUTPUT_COLUMNS = ("event_id", "ts", "model_version", "session_hash", "user_hash", "prompt",
                      "output")


def log_outputs(store: Store, incident_id: str) -> pd.DataFrame:
    """The incident's log events that carry a model output (:data:`LOG_OUTPUT_COLUMNS`)."""
    check_log_sources(store, incident_id)
    return store.query(
        "SELECT event_id, ts, coalesce(model_version, '(unknown)') AS model_version, "
        "session_hash, user_hash, prompt, output FROM all_log_events "
        "WHERE incident_id = ? AND output IS NOT NULL ORDER BY ts, event_id", [incident_id])


def event_counts(store: Store, incident_id: str, bucket: str = "day") -> pd.DataFrame:
    """Log and guardrail events per time bucket, version, stream and guardrail decision.

    Columns: ``bucket`` (start of the bucket, naive UTC), ``model_version``, ``stream``
    (``logs``, ``guardrail``, ...), ``decision`` (the guardrail decision; ``''`` for other
    streams), ``events``.
    """
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket {bucket!r}; valid: hour, day")
    check_log_sources(store, incident_id)
    return store.query(
        f"SELECT date_trunc('{bucket}', ts) AS bucket, "
        "coalesce(model_version, '(unknown)') AS model_version, stream, "
        "coalesce(guardrail_decision, '') AS decision, count(*) AS events FROM all_log_events "
        "WHERE incident_id = ? GROUP BY ALL ORDER BY 1, 2, 3, 4", [incident_id])


def interaction_frame(store: Store, incident_id: str) -> pd.DataFrame:
    """Every interaction of an incident for triage: ``interaction_id, role, ts, model_version,
    session_hash, user_hash, system_prompt, messages (JSON text), output, guardrail (JSON
    text)``, ordered by time."""
    return store.query(
        "SELECT interaction_id, role, ts, coalesce(model_version, '(unknown)') AS model_version, "
        "session_hash, user_hash, system_prompt, CAST(messages AS VARCHAR) AS messages, output, "
        "CAST(guardrail AS VARCHAR) AS guardrail FROM interactions WHERE incident_id = ? "
        "ORDER BY ts NULLS LAST, interaction_id", [incident_id])


def guardrail_scores(store: Store, incident_id: str) -> pd.DataFrame:
    """Scored guardrail events: ``ts, model_version, rule, decision, score``."""
    check_log_sources(store, incident_id)
    return store.query(
        "SELECT ts, coalesce(model_version, '(unknown)') AS model_version, "
        "coalesce(guardrail_rule, '') AS rule, coalesce(guardrail_decision, '') AS decision, "
        "guardrail_score AS score FROM all_log_events WHERE incident_id = ? AND stream = 'guardrail' "
        "AND guardrail_score IS NOT NULL ORDER BY ts", [incident_id])
