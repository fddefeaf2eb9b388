"""Writes of the ingestion layer: incidents, interactions, logs, training data, rejects, runs.

Large files (logs, training data) never pass through Python row by row: DuckDB reads the file
once into a TEMP table of numbered lines (spilled to disk past the memory limit, so memory does not
grow with the file), checks every row in SQL and inserts the good ones with one
``INSERT ... SELECT``. A bad row aborts the transaction, so nothing of the run is written.

None of these functions opens or commits a transaction of its own unless the caller has none:
:func:`llmrca.ingest.ingest_bundle` wraps a whole bundle in one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from llmrca.errors import ValidationError
from llmrca.store.core import Store
from llmrca.textcheck import sql_unencodable_or

if TYPE_CHECKING:  # only annotations here; importing pandas slows the start of every ingest
    import pandas as pd

#: Guardrail decisions accepted in guardrail logs.
GUARDRAIL_DECISIONS = ("allow", "block", "flag", "redact")
#: Fields of a log row that map to columns; everything else is kept in ``attributes``.
LOG_FIELDS = ("timestamp", "score", "decision", "level", "event_type", "session_id", "user_id",
              "model_version", "model", "prompt", "output", "rule")
#: How many of LOG_FIELDS (a prefix) the checks read; the check pass extracts only these.
_LOG_CHECKED = 3
#: Identifiers hashed whatever the bundle says.
ALWAYS_PERSONAL = ("user_id", "session_id")

# A byte that cannot occur in valid JSON text (raw control characters must be escaped), so reading
# a JSONL file as a one-column CSV with it as delimiter yields each physical line, blank ones too.
_LINE_READER = ("read_csv({path}, columns={{'raw': 'VARCHAR'}}, header=false, delim=chr(30), "
                "quote='', escape='', auto_detect=false, max_line_size=4194304, "
                "buffer_size=16777216) "
                "WITH ORDINALITY AS src(raw, line)")


def sha256_text(*parts: object) -> str:
    """The id of a record: sha256 of its parts joined with a separator that cannot occur in them."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts)
                          .encode("utf-8")).hexdigest()


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def source_relation(path: Path) -> str:
    """SQL for ``(line BIGINT, raw VARCHAR)`` over a JSONL, CSV or Parquet file.

    ``line`` is the 1-based physical line for JSONL (blank lines give ``raw`` NULL), the line of
    the data row for CSV (header is line 1), and the row number for Parquet.
    """
    suffix = path.suffix.lower()
    lit = _literal(str(path))
    if suffix in (".jsonl", ".ndjson", ".json"):
        return f"SELECT line, raw FROM {_LINE_READER.format(path=lit)}"
    if suffix == ".csv":
        return ("SELECT ordinality + 1 AS line, "
                "json_merge_patch(to_json(r), '{\"ordinality\":null}')::VARCHAR AS raw FROM "
                f"(SELECT * FROM read_csv({lit}, header=true, all_varchar=true) WITH ORDINALITY) r")
    if suffix == ".parquet":
        return ("SELECT ordinality AS line, "
                "json_merge_patch(to_json(r), '{\"ordinality\":null}')::VARCHAR AS raw FROM "
                f"(SELECT * FROM read_parquet({lit}) WITH ORDINALITY) r")
    raise ValidationError(str(path), None, None, "a .jsonl, .csv or .parquet file", path.suffix)


# starts_with first: trim copies every line it reads, and most lines are objects.
_NOT_BLANK = "raw IS NOT NULL AND (starts_with(raw, '{') OR trim(raw) <> '')"


def _parsed(source: str, paths: Sequence[str]) -> str:
    """Non-blank rows of ``source`` with ``f``, the text at each JSON path, and ``j``, the object.

    ``f`` is NULL when the line is not JSON; ``j`` is the line when it is a JSON object, else NULL.
    """
    # One parse per row: try() turns the error on a line that is not JSON into NULL (json_valid,
    # json_type and a ::JSON cast each parsed the line again). A valid JSON text that starts with
    # '{' is an object, so json_type runs only on the rare line that does not.
    return (f"SELECT line, raw, f, CASE WHEN f IS NOT NULL AND CASE WHEN starts_with(raw, '{{') "
            "THEN true ELSE try(json_type(raw)) = 'OBJECT' END THEN raw END AS j FROM "
            f"(SELECT line, raw, try(json_extract_string(raw, {list(paths)!r})) AS f "
            f"FROM {source} WHERE {_NOT_BLANK})")


def _hashed(expr: str, salt_param: str = "$salt") -> str:
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE sha256({salt_param} || {expr}) END"


def _scrub_patch(personal: Sequence[str], known: Sequence[str]) -> str:
    """A JSON merge patch that drops mapped fields and replaces extra personal ones by hashes."""
    items = []
    for name in known:
        items.append(f"{_literal(name)}, NULL")
    for name in personal:
        if name in known:
            continue
        value = f"json_extract_string(j, {_literal('$.' + json.dumps(name))})"
        items.append(f"{_literal(name)}, {_hashed(value)}")
    return f"json_object({', '.join(items)})" if items else "'{}'::JSON"


@dataclass(frozen=True)
class FileIngestResult:
    """What one file contributed: rows (lines) read, rows new to the store, rows rejected.

    Interaction files say more: the format read, records that merged into an interaction another
    source (or line) already gave, interactions found unchanged, fields on which sources
    disagreed, and what was skipped by reason, with hints (e.g. how to capture content).
    """

    file: str
    rows: int
    inserted: int
    rejected: int
    format: str | None = None
    merged: int = 0
    unchanged: int = 0
    conflicts: int = 0
    skipped: tuple[tuple[str, int], ...] = ()
    hints: tuple[str, ...] = ()


def _named(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The named parameters that ``sql`` uses (DuckDB rejects unused ones)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


#: The TEMP table that holds the lines of the file being ingested, dropped after each file.
_SOURCE = "_llmrca_source"


def _run_checked(store: Store, path: Path, display: str, paths: Sequence[str], case: str,
                 insert_sql: str, params: dict[str, Any], *, skip_invalid: bool, run_id: str,
                 incident_id: str | None, reject_scrub: str, check_paths: Sequence[str] = (),
                 first_of_repeats: bool = False) -> FileIngestResult:
    """Check every row with ``case``; abort on the first bad one or reject them; insert the rest.

    The file is read once, into a TEMP table of ``(line, raw)`` (DuckDB spills it to disk past its
    memory limit), because numbering lines runs on one thread and everything after it then runs
    on all. ``f`` holds the text at each of ``paths`` (only ``check_paths``, a prefix, in a pass
    that only checks); ``case`` yields NULL for a good row or a struct ``{field, expected, got}``
    for a bad one; ``insert_sql`` reads the good rows from ``good``, which keeps only the first of
    identical lines when ``first_of_repeats``. A rejected row is kept with ``reject_scrub``
    applied (its personal fields hashed), or without its text when it is not JSON (it may hold
    identifiers). Runs in a transaction (the caller's when it holds one): a bad row raises
    :class:`ValidationError` and the rollback removes whatever the file had inserted.
    """
    con = store.con
    params = {**params, "run_id": run_id, "display": display, "incident_id": incident_id}
    with store.transaction():  # joins the caller's: a bad row leaves nothing of the bundle
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_SOURCE} AS {source_relation(path)}")
        except duckdb.Error as exc:  # unreadable file: no such file, bad CSV or Parquet, ...
            raise ValidationError(display, None, None, f"a readable file ({exc})") from None
        try:
            return _check_and_insert(
                con, display, paths, case, insert_sql, params, skip_invalid=skip_invalid,
                reject_scrub=reject_scrub, check_paths=check_paths or paths,
                first_of_repeats=first_of_repeats)
        finally:
            try:
                con.execute(f"DROP TABLE IF EXISTS {_SOURCE}")
            except duckdb.Error:  # the transaction failed; its rollback drops the table
                pass


def _check_and_insert(con: duckdb.DuckDBPyConnection, display: str, paths: Sequence[str],
                      case: str, insert_sql: str, params: dict[str, Any], *, skip_invalid: bool,
                      reject_scrub: str, check_paths: Sequence[str], first_of_repeats: bool
                      ) -> FileIngestResult:
    """The body of :func:`_run_checked`, on the lines already in :data:`_SOURCE`."""
    def checked_with(fields: Sequence[str]) -> str:
        return f"WITH checked AS (SELECT *, {case} AS err FROM ({_parsed(_SOURCE, fields)})) "

    # Identical lines get one id. hash() is cheap and equal for equal lines, so equal counts
    # prove there are none; a collision only sends the file down the exact path below.
    repeats_sql = "count(*) - count(DISTINCT hash(raw))" if first_of_repeats else "0"
    total, repeats = con.execute(
        f"SELECT count(*), {repeats_sql} FROM {_SOURCE} WHERE {_NOT_BLANK}").fetchall()[0]
    good = "good AS (SELECT * FROM checked WHERE err IS NULL"
    if repeats:
        # Every line after the first of a run of identical ones.
        good += (f" AND line NOT IN (SELECT line FROM {_SOURCE} WHERE hash(raw) IN "
                 f"(SELECT hash(raw) FROM {_SOURCE} GROUP BY ALL HAVING count(*) > 1) "
                 "QUALIFY row_number() OVER (PARTITION BY raw ORDER BY line) > 1)")
    insert = f"{checked_with(paths)}, {good}) {insert_sql}"
    inserted = None
    if not skip_invalid and not repeats:
        # Insert first: when every line went in, none was bad and the check pass can be skipped
        # (one parse of the file instead of two). Otherwise a bad row raises below and the
        # transaction, which run_checked holds, takes these rows back.
        inserted = _insert(con, insert, params)
        if inserted == total:
            return FileIngestResult(display, int(total), int(inserted), 0)

    checked = checked_with(check_paths)
    count_sql = f"{checked} SELECT count(err) FROM checked"
    bad = con.execute(count_sql, _named(count_sql, params)).fetchall()[0][0]
    if bad and not skip_invalid:
        first_sql = (f"{checked} SELECT line, err FROM checked WHERE err IS NOT NULL "
                     "ORDER BY line LIMIT 1")
        line, err = con.execute(first_sql, _named(first_sql, params)).fetchall()[0]
        raise ValidationError(display, int(line), err["field"], err["expected"], err["got"])
    rejected = 0
    if bad:
        reject_sql = (
            f"{checked} INSERT OR IGNORE INTO ingest_rejects "
            "(reject_id, run_id, incident_id, file, line, field, reason, raw) "
            "SELECT sha256($run_id || chr(31) || $display || chr(31) || line::VARCHAR), "
            "$run_id, $incident_id, $display, line, err['field'], err['expected'], "
            f"CASE WHEN j IS NULL THEN NULL ELSE json_merge_patch(j, {reject_scrub})"
            "::VARCHAR "
            "END FROM checked WHERE err IS NOT NULL")
        rejected = con.execute(reject_sql, _named(reject_sql, params)).fetchall()[0][0]
    if inserted is None:
        inserted = _insert(con, insert, params)
    return FileIngestResult(display, int(total), int(inserted), int(rejected))


def _insert(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> int:
    """Run an ``INSERT ... SELECT`` of a file's good rows; returns how many went in.

    Every row carries its line number, so the table need not keep the file's order: without
    that constraint DuckDB appends from all threads at once instead of collecting ordered batches.
    """
    con.execute("SET preserve_insertion_order = false")
    try:
        return int(con.execute(sql, _named(sql, params)).fetchall()[0][0])
    finally:
        try:
            con.execute("RESET preserve_insertion_order")
        except duckdb.Error:  # an interrupt or error aborted the transaction: let that through
            pass


def _err(field: str | None, expected: str, got: str = "NULL") -> str:
    return (f"{{'field': {_literal(field) if field else 'NULL'}, "
            f"'expected': {_literal(expected)}, 'got': {got}}}")


#: SQL of a log event's id over the text it identifies, by the scheme in ``store_meta``: md5 in
#: stores made since schema 6, the first 128 bits of sha256 in stores that held log rows before.
_EVENT_ID = {"md5": "md5({})", "sha256": "left(sha256({}), 32)"}


def log_event_id_scheme(store: Store) -> str:
    """How this store makes log event ids (``md5`` or ``sha256``), fixed when it got schema 6."""
    found = store.con.execute(
        "SELECT value FROM store_meta WHERE key = 'log_event_id'").fetchall()
    return str(found[0][0]) if found else "sha256"


def ingest_log_file(store: Store, path: Path, *, incident_id: str, stream: str, run_id: str,
                    personal_fields: Sequence[str] = (), skip_invalid: bool = False,
                    display: str | None = None) -> FileIngestResult:
    """Stream a production or guardrail log file into ``log_events``.

    Parameters
    ----------
    stream : {"logs", "guardrail"}
        Guardrail logs must carry a ``decision``.
    personal_fields : sequence of str
        Extra keys of a row to hash (``user_id`` and ``session_id`` always are).
    """
    display = display or str(path)
    personal = list(dict.fromkeys([*ALWAYS_PERSONAL, *personal_fields]))
    paths = [f"$.{name}" for name in LOG_FIELDS]
    f = {name: f"f[{i + 1}]" for i, name in enumerate(LOG_FIELDS)}
    decisions = ", ".join(_literal(d) for d in GUARDRAIL_DECISIONS)
    checks = [
        ("j IS NULL", sql_unencodable_or(
            store.con, _err(None, "one JSON object per line", "left(raw, 80)"))),
        (f"{f['timestamp']} IS NULL", _err("timestamp", "an ISO-8601 timestamp (required)")),
        (f"try_cast({f['timestamp']} AS TIMESTAMPTZ) IS NULL",
         _err("timestamp", "an ISO-8601 timestamp", f["timestamp"])),
        (f"{f['score']} IS NOT NULL AND try_cast({f['score']} AS DOUBLE) IS NULL",
         _err("score", "a number", f["score"])),
    ]
    if stream == "guardrail":
        checks += [
            (f"{f['decision']} IS NULL", _err("decision", f"one of {decisions} (required)")),
            (f"lower({f['decision']}) NOT IN ({decisions})",
             _err("decision", f"one of {decisions}", f["decision"])),
        ]
    case = "CASE " + " ".join(f"WHEN {cond} THEN {val}" for cond, val in checks) + " END"
    scrub = _scrub_patch(personal, LOG_FIELDS)
    # event_id: 32 hex digits, a content id of (incident, stream, line text) in the store's scheme.
    event_id = _EVENT_ID[log_event_id_scheme(store)].format(
        "$incident_id || chr(31) || $stream || chr(31) || raw")
    insert = (
        "INSERT INTO log_events (event_id, incident_id, stream, source_file, "
        "source_line, ts, level, event_type, session_hash, user_hash, model_version, prompt, "
        "output, guardrail_rule, guardrail_decision, guardrail_score, attributes) "
        f"SELECT * FROM (SELECT {event_id} AS event_id, $incident_id, "
        f"$stream, $display, line, try_cast({f['timestamp']} AS TIMESTAMPTZ)::TIMESTAMP, "
        f"{f['level']}, {f['event_type']}, {_hashed(f['session_id'])}, {_hashed(f['user_id'])}, "
        f"coalesce({f['model_version']}, {f['model']}), {f['prompt']}, {f['output']}, "
        f"{f['rule']}, lower({f['decision']}), try_cast({f['score']} AS DOUBLE), "
        f"json_merge_patch(j, {scrub}) FROM good) new "
        # Dedupe without a primary key (its index cost more than the rest of the insert): an
        # anti-join on the ids the incident already has; `good` holds no repeated line.
        "WHERE NOT EXISTS (SELECT 1 FROM log_events old WHERE old.incident_id = $incident_id "
        "AND old.event_id = new.event_id)")
    params = {"stream": stream, "salt": store.salt}
    return _run_checked(store, path, display, paths, case, insert, params,
                        skip_invalid=skip_invalid, run_id=run_id, incident_id=incident_id,
                        reject_scrub=_scrub_patch(personal, ()),
                        check_paths=paths[:_LOG_CHECKED], first_of_repeats=True)


def ingest_training_file(store: Store, path: Path, *, model_version: str, run_id: str,
                         skip_invalid: bool = False, display: str | None = None
                         ) -> FileIngestResult:
    """Stream ``training_data/<model_version>.jsonl`` into ``training_examples``.

    Each row needs ``example_id`` and either ``messages`` (chat list) or ``prompt`` and
    ``completion``; ``source`` and ``metadata`` are optional.
    """
    display = display or str(path)
    fields = ("example_id", "prompt", "completion", "source")
    f = {name: f"f[{i + 1}]" for i, name in enumerate(fields)}
    paths = [f"$.{n}" for n in fields]
    has_messages = "json_type(j, '$.messages') IS NOT NULL AND json_type(j, '$.messages') <> 'NULL'"
    checks = [
        ("j IS NULL", sql_unencodable_or(
            store.con, _err(None, "one JSON object per line", "left(raw, 80)"))),
        (f"{f['example_id']} IS NULL", _err("example_id", "a string (required)")),
        (f"{has_messages} AND json_type(j, '$.messages') <> 'ARRAY'",
         _err("messages", "a list of chat messages", "json_extract(j, '$.messages')::VARCHAR")),
        (f"NOT ({has_messages}) AND ({f['prompt']} IS NULL OR {f['completion']} IS NULL)",
         _err("messages", "either 'messages' or both 'prompt' and 'completion'")),
        (("json_type(j, '$.metadata') IS NOT NULL AND json_type(j, '$.metadata') NOT IN "
          "('OBJECT', 'NULL')"), _err("metadata", "an object", "json_extract(j, '$.metadata')::VARCHAR")),
    ]
    case = "CASE " + " ".join(f"WHEN {cond} THEN {val}" for cond, val in checks) + " END"
    insert = (
        "INSERT OR IGNORE INTO training_examples (model_version, example_id, source_file, "
        "source_line, messages, prompt, completion, metadata) "
        f"SELECT $model_version, {f['example_id']}, $display, line, "
        f"json_extract(j, '$.messages'), {f['prompt']}, {f['completion']}, "
        f"json_merge_patch(coalesce(json_extract(j, '$.metadata'), '{{}}'::JSON), "
        f"json_object('source', {f['source']})) "
        "FROM good")
    params = {"model_version": model_version}
    return _run_checked(store, path, display, paths, case, insert, params,
                        skip_invalid=skip_invalid, run_id=run_id, incident_id=None,
                        reject_scrub="'{}'::JSON")


# -- incidents ---------------------------------------------------------------------------------
INCIDENT_COLUMNS = ("incident_id", "title", "detected_at", "detection_source", "category",
                    "severity", "status", "summary", "deployed_model_version", "personal_fields",
                    "metadata")


def upsert_incident(store: Store, record: dict[str, Any]) -> str:
    """Insert or update an incident; an update keeps the replaced record in ``incident_history``.

    Returns ``"inserted"``, ``"updated"`` or ``"unchanged"``.
    """
    values = {k: record.get(k) for k in INCIDENT_COLUMNS}
    for key in ("personal_fields", "metadata"):
        values[key] = json.dumps(values[key] if values[key] is not None else
                                 ([] if key == "personal_fields" else {}), sort_keys=True)
    content_hash = sha256_text(json.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()},
        sort_keys=True, default=str))
    con = store.con
    with store.transaction():
        found = con.execute("SELECT content_hash, revision FROM incidents WHERE incident_id = ?",
                            [values["incident_id"]]).fetchall()
        row = found[0] if found else None
        if row is None:
            con.execute(
                f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}, content_hash) "
                f"VALUES ({', '.join('?' * (len(INCIDENT_COLUMNS) + 1))})",
                [*values.values(), content_hash])
            return "inserted"
        if row[0] == content_hash:
            return "unchanged"
        old = con.execute(
            f"SELECT to_json(i) FROM (SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents "
            "WHERE incident_id = ?) i", [values["incident_id"]]).fetchall()[0][0]
        con.execute("INSERT INTO incident_history (incident_id, revision, record, content_hash) "
                    "VALUES (?, ?, ?, ?)", [values["incident_id"], row[1], old, row[0]])
        sets = ", ".join(f"{k} = ?" for k in INCIDENT_COLUMNS if k != "incident_id")
        con.execute(
            f"UPDATE incidents SET {sets}, content_hash = ?, revision = revision + 1, "
            "updated_at = current_timestamp WHERE incident_id = ?",
            [*(v for k, v in values.items() if k != "incident_id"), content_hash,
             values["incident_id"]])
        return "updated"


def insert_interactions(store: Store, rows: pd.DataFrame) -> int:
    """Insert interaction rows (ids and hashes already computed); returns how many were new.

    ``rows`` has the columns of the ``interactions`` table but ``created_at``.
    """
    if rows.empty:
        return 0
    con = store.con
    con.register("_llmrca_interactions", rows)
    try:
        columns = ", ".join(rows.columns)
        return int(con.execute(
            f"INSERT OR IGNORE INTO interactions ({columns}) SELECT {columns} "
            "FROM _llmrca_interactions").fetchall()[0][0])
    finally:
        con.unregister("_llmrca_interactions")


def insert_rejects(store: Store, rejects: pd.DataFrame) -> int:
    """Insert rejects found in Python (``run_id, incident_id, file, line, field, reason, raw``)."""
    if rejects.empty:
        return 0
    frame = rejects.copy()
    frame.insert(0, "reject_id", [sha256_text(r.run_id, r.file, r.line, r.field)
                                  for r in frame.itertuples()])
    con = store.con
    con.register("_llmrca_rejects", frame)
    try:
        columns = ", ".join(frame.columns)
        return int(con.execute(f"INSERT OR IGNORE INTO ingest_rejects ({columns}) "
                               f"SELECT {columns} FROM _llmrca_rejects").fetchall()[0][0])
    finally:
        con.unregister("_llmrca_rejects")


def record_ingest_run(store: Store, run_id: str, incident_id: str | None, path: str,
                      skip_invalid: bool, counts: dict[str, Any]) -> None:
    """One row per ``llmrca ingest`` call, with what each file contributed."""
    store.con.execute(
        "INSERT INTO ingest_runs (run_id, incident_id, path, skip_invalid, counts) "
        "VALUES (?, ?, ?, ?, ?)", [run_id, incident_id, path, skip_invalid,
                                   json.dumps(counts, sort_keys=True)])


def set_model_deployment(store: Store, name: str, *, deployed_from: datetime | None,
                         deployed_to: datetime | None, parent: str | None,
                         notes: str | None) -> bool:
    """Update the deployment window (and parent, notes) of a registered version.

    Returns False when no version of that name is registered.
    """
    changed = store.con.execute(
        "UPDATE model_versions SET deployed_from = coalesce(?, deployed_from), "
        "deployed_to = coalesce(?, deployed_to), parent = coalesce(?, parent), "
        "notes = coalesce(?, notes), updated_at = current_timestamp WHERE name = ?",
        [deployed_from, deployed_to, parent, notes, name]).fetchall()[0][0]
    return bool(changed)
