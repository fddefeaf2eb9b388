"""Read queries that more than one face needs (CLI, notebooks, reports)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.store.core import Store


def list_incidents(store: Store) -> pd.DataFrame:
    """One row per incident with its interaction and log counts."""
    return store.query(
        "SELECT i.incident_id, i.title, i.category, i.severity, i.status, i.detected_at, "
        "i.deployed_model_version, "
        "(SELECT count(*) FROM interactions x WHERE x.incident_id = i.incident_id) AS interactions, "
        "(SELECT count(*) FROM log_events l WHERE l.incident_id = i.incident_id) AS log_events, "
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
    for key in ("metadata", "personal_fields"):
        if isinstance(record.get(key), str):
            record[key] = json.loads(record[key])
    per_version = store.query(
        "WITH v AS (SELECT model_version, 'interactions' AS kind FROM interactions "
        "WHERE incident_id = $id UNION ALL SELECT model_version, "
        "CASE stream WHEN 'guardrail' THEN 'guardrail_events' ELSE 'log_events' END "
        "FROM log_events WHERE incident_id = $id) "
        "SELECT coalesce(model_version, '(unknown)') AS model_version, "
        "count(*) FILTER (WHERE kind = 'interactions') AS interactions, "
        "count(*) FILTER (WHERE kind = 'log_events') AS log_events, "
        "count(*) FILTER (WHERE kind = 'guardrail_events') AS guardrail_events "
        "FROM v GROUP BY 1 ORDER BY 1", {"id": incident_id})
    window_row = store.con.execute(
        "SELECT min(ts), max(ts), count(DISTINCT session_hash), count(DISTINCT user_hash) FROM "
        "(SELECT ts, session_hash, user_hash FROM interactions WHERE incident_id = $id "
        "UNION ALL SELECT ts, session_hash, user_hash FROM log_events WHERE incident_id = $id)",
        {"id": incident_id}).fetchall()[0]
    window = {"first": window_row[0], "last": window_row[1], "sessions": window_row[2],
              "users": window_row[3]}
    guardrail = store.query(
        "SELECT guardrail_decision AS decision, coalesce(guardrail_rule, '') AS rule, "
        "count(*) AS events FROM log_events WHERE incident_id = ? AND stream = 'guardrail' "
        "GROUP BY ALL ORDER BY events DESC", [incident_id])
    history = store.query(
        "SELECT revision, content_hash, replaced_at FROM incident_history WHERE incident_id = ? "
        "ORDER BY revision", [incident_id])
    rejects = store.count("ingest_rejects", "incident_id = ?", [incident_id])
    return IncidentSummary(record, per_version, window, guardrail, history, rejects)
