"""The ``interactions`` table: finding a call under any of its keys, writing merged rows, roles,
and the researcher's reads (list, show, selections).

An interaction is one LLM call. Another source reporting the same call is recognised by the
provider's response id, else by the OTel (trace id, span id); see
:meth:`llmrca.ingest.records.InteractionRecord.keys`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:   # pandas loads when a frame is built: `import llmrca.ingest` stays light
    import pandas as pd

from llmrca.errors import InvalidArgumentError, NotFoundError
from llmrca.store.core import Store

#: Columns of ``interactions`` that ingestion writes (all but ``created_at``), in table order.
COLUMNS = ("interaction_id", "incident_id", "source_format", "source_file", "source_line",
           "session_hash", "user_hash", "ts", "model_version", "system_prompt", "messages",
           "output", "guardrail", "metadata", "response_id", "trace_id", "span_id",
           "parent_span_id", "role", "flags", "tools", "context", "sources", "conflicts")
#: JSON columns, parsed on the way out.
JSON_COLUMNS = ("messages", "guardrail", "metadata", "flags", "tools", "context", "sources",
                "conflicts")


def find_by_keys(store: Store, incident_id: str, response_ids: Sequence[str],
                 spans: Sequence[tuple[str, str]], interaction_ids: Sequence[str] = ()
                 ) -> pd.DataFrame:
    """Stored interactions of ``incident_id`` that any given key names (all columns)."""
    import pandas as pd

    if not response_ids and not spans and not interaction_ids:
        return pd.DataFrame(columns=list(COLUMNS))
    keys = pd.DataFrame({"kind": (["response"] * len(response_ids) + ["span"] * len(spans)
                                  + ["id"] * len(interaction_ids)),
                         "a": [*response_ids, *(t for t, _ in spans), *interaction_ids],
                         "b": [*([None] * len(response_ids)), *(s for _, s in spans),
                               *([None] * len(interaction_ids))]})
    con = store.con
    con.register("_llmrca_keys", keys)
    try:
        return con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM interactions i WHERE incident_id = ? AND EXISTS ("
            "SELECT 1 FROM _llmrca_keys k WHERE (k.kind = 'response' AND k.a = i.response_id) "
            "OR (k.kind = 'span' AND k.a = i.trace_id AND k.b = i.span_id) "
            "OR (k.kind = 'id' AND k.a = i.interaction_id))", [incident_id]).df()
    finally:
        con.unregister("_llmrca_keys")


def write(store: Store, new: pd.DataFrame, changed: pd.DataFrame) -> tuple[int, int]:
    """Insert ``new`` rows and replace ``changed`` ones (same ``interaction_id``), in the caller's
    transaction; returns ``(inserted, updated)``. Both frames have :data:`COLUMNS`."""
    con = store.con
    inserted = updated = 0
    with store.transaction():
        if len(changed):
            con.register("_llmrca_changed", changed[list(COLUMNS)])
            try:
                sets = ", ".join(f"{c} = c.{c}" for c in COLUMNS if c != "interaction_id")
                updated = int(con.execute(
                    f"UPDATE interactions SET {sets} FROM _llmrca_changed c "
                    "WHERE interactions.interaction_id = c.interaction_id").fetchall()[0][0])
            finally:
                con.unregister("_llmrca_changed")
        if len(new):
            con.register("_llmrca_new", new[list(COLUMNS)])
            try:
                columns = ", ".join(COLUMNS)
                inserted = int(con.execute(
                    f"INSERT OR IGNORE INTO interactions ({columns}) SELECT {columns} "
                    "FROM _llmrca_new").fetchall()[0][0])
            finally:
                con.unregister("_llmrca_new")
    return inserted, updated


# -- roles and selections -----------------------------------------------------------------------

#: Filters of a selection (``offending:`` in incident.yaml, ``llmrca incidents focus``) and
#: what each one matches. All given filters must hold.
SELECTION_FILTERS = {
    "ids": ("interaction ids, a source's own ids (the llmrca format's interaction_id), provider "
            "response ids or 'trace_id:span_id' (any of them)"),
    "guardrail": "guardrail decisions (block, flag, redact, allow)",
    "model_version": "model versions",
    "conversation": "conversation/session ids as written in the source (hashed to match)",
    "text": "text in the conversation or the output (case-insensitive substring)",
    "flagged": "true: calls a source flagged (guardrail, content filter, detector hit)",
    "where": "a SQL boolean expression over the interactions table's columns",
}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def selection_sql(selection: dict[str, Any], salt: str) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) over ``interactions`` for a selection.

    ``selection`` is ``{"all": true}`` or a mapping of :data:`SELECTION_FILTERS`.
    """
    if selection.get("all") is True:
        return "true", []
    unknown = sorted(set(selection) - set(SELECTION_FILTERS))
    if unknown:
        raise InvalidArgumentError(f"unknown selection filter '{unknown[0]}'; valid: all, "
                                   + ", ".join(SELECTION_FILTERS))
    clauses: list[str] = []
    params: list[Any] = []
    if selection.get("ids") is not None:
        ids = [str(v) for v in _as_list(selection["ids"])]
        clauses.append("(list_contains(?, interaction_id) OR list_contains(?, response_id) "
                       "OR list_contains(?, trace_id || ':' || span_id) "
                       "OR list_contains(?, json_extract_string(metadata, '$.source_id')) "
                       # A source's own id (the llmrca format's ``interaction_id``): the stored
                       # id is the hash of (incident, format:source id) when no provider key
                       # applies (ingest/merge.py), so hash the given ids the same way.
                       "OR EXISTS (SELECT 1 FROM unnest(?::VARCHAR[]) AS given(x) WHERE "
                       "sha256(incident_id || chr(31) || source_format || ':' || given.x) "
                       "= interaction_id))")
        params += [ids, ids, ids, ids, ids]
    if selection.get("guardrail") is not None:
        decisions = [str(v).lower() for v in _as_list(selection["guardrail"])]
        clauses.append("(list_contains(?, lower(json_extract_string(guardrail, '$.decision'))) "
                       "OR list_contains(?, json_extract_string(flags, '$.guardrail')))")
        params += [decisions, decisions]
    if selection.get("model_version") is not None:
        clauses.append("list_contains(?, model_version)")
        params.append([str(v) for v in _as_list(selection["model_version"])])
    if selection.get("conversation") is not None:
        clauses.append("list_contains(?, session_hash)")
        params.append([_salted(salt, str(v)) for v in _as_list(selection["conversation"])])
    if selection.get("text") is not None:
        texts = [str(v) for v in _as_list(selection["text"])]
        clauses.append("(" + " OR ".join(
            "(contains(lower(messages::VARCHAR), lower(?)) OR contains(lower(coalesce(output, '')), "
            "lower(?)) OR contains(lower(coalesce(system_prompt, '')), lower(?)))"
            for _ in texts) + ")")
        for text in texts:
            params += [json.dumps(text, ensure_ascii=False)[1:-1], text, text]
    if selection.get("flagged") is not None:
        flagged = selection["flagged"]
        if not isinstance(flagged, bool):
            raise InvalidArgumentError(f"selection filter 'flagged' must be true or false, "
                                       f"got {flagged!r}")
        clauses.append(("" if flagged else "NOT ")
                       + "coalesce(json_array_length(json_keys(flags)) > 0, false)")
    if selection.get("where") is not None:
        clauses.append(f"({_checked_expression(str(selection['where']))})")
    if not clauses:
        raise InvalidArgumentError("an empty selection: give 'all' or at least one filter ("
                                   + ", ".join(SELECTION_FILTERS) + ")")
    return " AND ".join(clauses), params


def _salted(salt: str, value: str) -> str:
    import hashlib

    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def _checked_expression(expression: str) -> str:
    """A user's SQL filter, accepted only as one boolean expression over ``interactions``."""
    sql = f"SELECT count(*) FROM interactions WHERE ({expression})"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidArgumentError(f"--where: not a SQL expression ({exc})") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT \
            or ";" in expression:
        raise InvalidArgumentError("--where: one SQL boolean expression, no statements")
    return expression


#: One incident's interactions, the only rows a user's filter is evaluated over.
_SCOPED = "SELECT * FROM interactions WHERE incident_id = ?"


def select(store: Store, incident_id: str, selection: dict[str, Any],
           among: Iterable[str] | None = None) -> list[str]:
    """Interaction ids of ``incident_id`` that the selection matches (optionally among some)."""
    where, params = selection_sql(selection, store.salt)
    # The filter sees only this incident's rows, however its parentheses are written.
    sql = (f"SELECT interaction_id FROM ({_SCOPED}) AS interactions WHERE ({where})")
    args: list[Any] = [incident_id, *params]
    if among is not None:
        sql += " AND list_contains(?, interaction_id)"
        args.append(list(among))
    try:
        rows = store.con.execute(sql + " ORDER BY interaction_id", args).fetchall()
    except duckdb.Error as exc:
        raise InvalidArgumentError(f"selection cannot be evaluated: {exc}") from None
    return [r[0] for r in rows]


def set_roles(store: Store, incident_id: str, offending: Iterable[str],
              among: Iterable[str] | None = None) -> dict[str, int]:
    """Mark ``offending`` ids offending and the rest (of ``among``, or of the incident) context.

    Returns the incident's counts per role afterwards.
    """
    offending = list(offending)
    with store.transaction() as con:
        scope = "incident_id = ?"
        args: list[Any] = [incident_id]
        if among is not None:
            scope += " AND list_contains(?, interaction_id)"
            args.append(list(among))
        con.execute(f"UPDATE interactions SET role = CASE WHEN list_contains(?, interaction_id) "
                    f"THEN 'offending' ELSE 'context' END WHERE {scope}", [offending, *args])
    return role_counts(store, incident_id)


def set_role_of(store: Store, roles: dict[str, str]) -> None:
    """Set each interaction's role (``{interaction_id: role}``)."""
    if not roles:
        return
    import pandas as pd

    frame = pd.DataFrame({"interaction_id": list(roles), "role": list(roles.values())})
    with store.transaction() as con:
        con.register("_llmrca_roles", frame)
        try:
            con.execute("UPDATE interactions SET role = r.role FROM _llmrca_roles r "
                        "WHERE interactions.interaction_id = r.interaction_id")
        finally:
            con.unregister("_llmrca_roles")


def role_counts(store: Store, incident_id: str) -> dict[str, int]:
    """``{"offending": n, "context": m}`` for an incident."""
    rows = store.con.execute(
        "SELECT role, count(*) FROM interactions WHERE incident_id = ? GROUP BY role",
        [incident_id]).fetchall()
    counts = {"offending": 0, "context": 0}
    counts.update({str(role): int(n) for role, n in rows})
    return counts


def offending_selection(store: Store, incident_id: str) -> dict[str, Any] | None:
    """The incident's stored selection of offending interactions, if any."""
    rows = store.con.execute("SELECT offending_selection FROM incidents WHERE incident_id = ?",
                             [incident_id]).fetchall()
    if not rows:
        raise NotFoundError(f"incident '{incident_id}' is not in the store")
    return json.loads(rows[0][0]) if rows[0][0] else None


def set_offending_selection(store: Store, incident_id: str,
                            selection: dict[str, Any] | None) -> None:
    """Store the selection so that interactions ingested later get their role from it too."""
    store.con.execute("UPDATE incidents SET offending_selection = ? WHERE incident_id = ?",
                      [json.dumps(selection, sort_keys=True) if selection else None, incident_id])


# -- reading -----------------------------------------------------------------------------------

#: Columns of :func:`list_interactions`.
LIST_COLUMNS = ("interaction_id", "role", "ts", "model_version", "source_format", "session_hash",
                "guardrail_decision", "flags", "last_user", "output", "response_id", "sources")


def list_interactions(store: Store, incident_id: str, *, role: str | None = None,
                      selection: dict[str, Any] | None = None, limit: int | None = None
                      ) -> pd.DataFrame:
    """One row per interaction of an incident (:data:`LIST_COLUMNS`), oldest first.

    ``last_user`` is the last user message; ``sources`` how many sources reported the call.
    """
    where, params = "true", [incident_id]
    if role is not None:
        where += " AND role = ?"
        params.append(role)
    if selection:
        clause, extra = selection_sql(selection, store.salt)
        where += f" AND ({clause})"
        params += extra
    sql = (
        "SELECT interaction_id, role, ts, model_version, source_format, session_hash, "
        "json_extract_string(guardrail, '$.decision') AS guardrail_decision, "
        "flags::VARCHAR AS flags, "
        "list_last(list_filter(CAST(json_extract(messages, '$[*]') AS JSON[]), "
        "lambda m: json_extract_string(m, '$.role') = 'user')) ->> '$.content' AS last_user, "
        "output, response_id, coalesce(json_array_length(sources), 1) AS sources "
        f"FROM ({_SCOPED}) AS interactions WHERE {where} ORDER BY ts NULLS LAST, interaction_id")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        return store.query(sql, params)
    except duckdb.Error as exc:
        raise InvalidArgumentError(f"selection cannot be evaluated: {exc}") from None


def get_interaction(store: Store, interaction_id: str) -> dict[str, Any]:
    """One interaction with every column, JSON parsed; a unique prefix of the id is enough."""
    frame = store.query(
        f"SELECT {', '.join(COLUMNS)}, created_at FROM interactions "
        "WHERE interaction_id = ? OR starts_with(interaction_id, ?) OR response_id = ?",
        [interaction_id, interaction_id, interaction_id])
    if frame.empty:
        raise NotFoundError(f"no interaction '{interaction_id}' in the store")
    if len(frame) > 1:
        exact = frame[frame["interaction_id"] == interaction_id]
        if len(exact) != 1:
            raise NotFoundError(f"'{interaction_id}' names {len(frame)} interactions; give more "
                                "of the id")
        frame = exact
    import pandas as pd

    row = frame.iloc[0].to_dict()
    for key in JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v)
            for k, v in row.items()}
