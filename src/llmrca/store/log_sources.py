"""Logs queried where they live: Parquet files registered in place, read through DuckDB views.

Large production logs stay in Parquet (a local file or folder, a glob, or any URL the user's
DuckDB can read, such as ``s3://`` with httpfs loaded). Registering them records where they are
in ``log_sources`` (files, per-file row counts and schema digests, a schema fingerprint, the
scan's counts) and creates one view per source that computes exactly the ``log_events`` columns
a copying ingest would store -- the same checks (bad rows are left out, as ``--skip-invalid``
leaves them out), event ids, hashed identifiers and attributes, from the same SQL
(:func:`llmrca.store.ingest_writes.log_row_sql`). The view ``all_log_events`` is ``log_events``
plus every registered source, and every read query of the store reads it, so incident queries
and triage work the same on copied and on in-place logs.

A scan (:func:`scan_parquet_logs`) reads the files and reports what an ingest would report --
rows, rejects by reason with file, row and field -- and writes nothing. Before logs are read,
:func:`check_log_sources` checks that every registered file is still there with the rows and
schema it had: a moved, deleted or rewritten file is named in a :class:`LogSourceError` instead
of surfacing as a DuckDB error in the middle of triage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from llmrca import ids
from llmrca.errors import StoreError, ValidationError
from llmrca.store.core import Store
from llmrca.store.ingest_writes import _GLOB_CHARACTERS, ALWAYS_PERSONAL, log_row_sql

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ALL_LOG_EVENTS", "LogScan", "LogSourceError", "ScanReject", "check_log_sources",
           "expand_location", "list_log_sources", "register_log_source", "scan_parquet_logs",
           "unregister_log_source"]

#: The view every log query reads: ``log_events`` and the logs registered in place.
ALL_LOG_EVENTS = "all_log_events"
#: Columns of ``log_events`` that the views give, in order.
LOG_EVENT_COLUMNS = ("event_id", "incident_id", "stream", "source_file", "source_line", "ts",
                     "level", "event_type", "session_hash", "user_hash", "model_version",
                     "prompt", "output", "guardrail_rule", "guardrail_decision",
                     "guardrail_score", "attributes", "created_at")
#: How many rejects a scan keeps with their file, row and field (all are counted by reason).
MAX_LISTED_REJECTS = 1000
_SALT = "(SELECT value FROM store_meta WHERE key = 'salt')"
_FILE_COLUMN = "_llmrca_file"


class LogSourceError(StoreError):
    """Logs registered in place cannot be read as registered (a file moved, deleted or rewritten).

    Attributes
    ----------
    file : str
        The file at fault.
    location : str
        What was registered (path, folder, glob or URL).
    incident_id : str
        The incident the logs belong to.
    """

    def __init__(self, file: str, location: str, incident_id: str, reason: str):
        self.file = file
        self.location = location
        self.incident_id = incident_id
        super().__init__(
            f"{file}: {reason} (logs of incident '{incident_id}' registered in place from "
            f"{location}); put the file back, or register the logs again with `llmrca ingest "
            f"--in-place {location} --incident {incident_id}`")


@dataclass(frozen=True)
class ScanReject:
    """One row a scan found bad: where, which field, what was expected, what was there."""

    file: str
    row: int
    field: str | None
    reason: str
    got: str | None


@dataclass(frozen=True)
class LogScan:
    """What reading logs in place found, before (or without) registering them.

    Attributes
    ----------
    location : str
        The path, folder, glob or URL as given (local paths made absolute).
    incident_id, stream : str
    files : tuple of str
        Every file read, sorted.
    file_rows : dict
        ``{file: rows}`` from each file's metadata.
    file_schemas : dict
        ``{file: digest of its Parquet schema}``.
    columns : tuple of (str, str)
        Column names and DuckDB types, the same in every file.
    schema_fingerprint : str
        A content id of ``columns``.
    rows, rejected, repeats : int
        Rows read; rows that fail the checks an ingest makes; good rows identical to an earlier
        one (kept once, as an ingest keeps them).
    by_reason : tuple of (field, reason, count)
        Every reject counted, most frequent first.
    rejects : tuple of ScanReject
        The first :data:`MAX_LISTED_REJECTS` rejects in file and row order.
    personal_fields : tuple of str
        Fields hashed besides ``user_id`` and ``session_id``.
    """

    location: str
    incident_id: str
    stream: str
    files: tuple[str, ...]
    file_rows: dict[str, int]
    file_schemas: dict[str, str]
    columns: tuple[tuple[str, str], ...]
    schema_fingerprint: str
    rows: int
    rejected: int
    repeats: int
    by_reason: tuple[tuple[str | None, str, int], ...]
    rejects: tuple[ScanReject, ...]
    personal_fields: tuple[str, ...] = ()

    @property
    def good(self) -> int:
        """Rows the view gives (good and not a repeat)."""
        return self.rows - self.rejected - self.repeats

    def to_frame(self) -> pd.DataFrame:
        """The listed rejects: ``file, row, field, reason, got``."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rejects],
                            columns=["file", "row", "field", "reason", "got"])

    def summary(self) -> str:
        """A few lines for the command line."""
        head = (f"{self.stream} of {self.incident_id} in place: {len(self.files)} Parquet "
                f"file(s) at {self.location}, {self.rows} rows, {self.rejected} rejected, "
                f"{self.repeats} repeated, {self.good} readable "
                f"(schema {self.schema_fingerprint[:12]})")
        lines = [head]
        for field, reason, count in self.by_reason:
            lines.append(f"  {count} rejected: field '{field or '(record)'}': "
                         f"expected {reason}")
        for reject in self.rejects[:5]:
            lines.append(f"  {reject.file}, row {reject.row}: field "
                         f"'{reject.field or '(record)'}': expected {reject.reason}"
                         + (f", got {reject.got!r}" if reject.got is not None else ""))
        return "\n".join(lines)


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _list(files: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(f) for f in files) + "]"


def is_remote(location: str) -> bool:
    """True for a URL (``s3://``, ``https://``, ...): DuckDB reads it, Python cannot check it."""
    return "://" in location


def expand_location(store: Store, location: str) -> tuple[str, list[str]]:
    """``(location, files)``: a local path made absolute (a folder means every ``*.parquet``
    under it), and the files DuckDB's ``glob`` finds for it, sorted."""
    location = str(location)
    pattern = location
    if not is_remote(location):
        location = os.path.abspath(os.path.expanduser(location))
        pattern = location
        if os.path.isdir(location):
            pattern = os.path.join(location, "**", "*.parquet")
    try:
        found = store.con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(location, None, None,
                              f"a path, folder, glob or URL DuckDB can list ({reason})") from None
    files = [str(r[0]) for r in found]
    if not files:
        raise ValidationError(location, None, None,
                              "at least one Parquet file (none matched " + pattern + ")")
    for file in files:
        # The views list the files by name, and DuckDB would read such a name as a pattern
        # (another file's rows, or none).
        if _GLOB_CHARACTERS.intersection(file):
            raise ValidationError(file, None, None,
                                  "a file name without * ? [ ] { } or \\ (DuckDB reads those "
                                  "as a pattern): rename it, or copy it in with `llmrca ingest`")
    return location, files


def _file_schemas(store: Store, files: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """``{file: [(column, DuckDB type), ...]}`` from each file's Parquet footer."""
    out: dict[str, list[tuple[str, str]]] = {f: [] for f in files}
    for file in files:
        try:
            rows = store.con.execute(
                "SELECT name, coalesce(duckdb_type, logical_type::VARCHAR, type::VARCHAR, "
                "'GROUP') FROM parquet_schema(?) WHERE column_id > 0 ORDER BY column_id",
                [file]).fetchall()
        except duckdb.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(file, None, None, f"a readable Parquet file ({reason})") \
                from None
        out[file] = [(str(name), str(kind)) for name, kind in rows]
    return out


def _file_rows(store: Store, files: Sequence[str]) -> dict[str, int]:
    rows = store.con.execute(
        f"SELECT file_name, num_rows FROM parquet_file_metadata({_list(files)})").fetchall()
    return {str(name): int(n) for name, n in rows}


def _check_same_schema(schemas: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The schema every file shares; else the first file that differs, naming its column."""
    files = list(schemas)
    first = schemas[files[0]]
    for file in files[1:]:
        other = schemas[file]
        for i in range(max(len(first), len(other))):
            want = first[i] if i < len(first) else None
            have = other[i] if i < len(other) else None
            if want == have:
                continue
            if want is None:
                extra = have or ("", "")
                raise ValidationError(file, None, extra[0],
                                      f"only the columns of {files[0]} (this column is not "
                                      "there)", extra[1])
            raise ValidationError(
                file, None, want[0],
                f"column {i + 1} '{want[0]}' of type {want[1]}, as in {files[0]}",
                "missing" if have is None else f"'{have[0]}' of type {have[1]}")
    return first


def _relation(files: Sequence[str]) -> str:
    """``(source_file, line, raw)`` over the files: ``raw`` is the row as the JSON text a copying
    ingest of the same file reads (so event ids agree), ``line`` the 1-based row number."""
    drop = "{" + f'"{_FILE_COLUMN}":null,"file_row_number":null' + "}"
    return (f"SELECT {_FILE_COLUMN} AS source_file, file_row_number + 1 AS line, "
            f"json_merge_patch(to_json(r), '{drop}')::VARCHAR AS raw FROM "
            f"read_parquet({_list(files)}, filename='{_FILE_COLUMN}', file_row_number=true) r")


def _parsed(files: Sequence[str], paths: Sequence[str]) -> str:
    return (f"SELECT source_file, line, raw, try(json_extract_string(raw, {_list(paths)})) AS f, "
            f"raw AS j FROM ({_relation(files)})")


def _row_sql(store: Store, incident_id: str, stream: str, personal: Sequence[str]):
    return log_row_sql(store, stream, personal, incident=_literal(incident_id),
                       stream_value=_literal(stream), source_file="source_file", salt=_SALT,
                       check_unencodable=False)


def scan_parquet_logs(store: Store, location: str, *, incident_id: str, stream: str = "logs",
                      personal_fields: Sequence[str] = ()) -> LogScan:
    """Read Parquet logs where they are and report what an ingest would; write nothing.

    Parameters
    ----------
    location : str
        A Parquet file, a folder (every ``*.parquet`` under it), a glob, or a URL DuckDB reads.
    stream : {"logs", "guardrail"}
    personal_fields : sequence of str
        Fields hashed besides ``user_id`` and ``session_id`` (the incident's).

    Raises
    ------
    ValidationError
        Nothing matches; a file is not readable Parquet; files differ in schema (naming the file
        and the column).
    """
    if stream not in ("logs", "guardrail"):
        raise ValidationError(str(location), None, None, "logs or guardrail logs", stream)
    location, files = expand_location(store, location)
    schemas = _file_schemas(store, files)
    columns = _check_same_schema(schemas)
    file_rows = _file_rows(store, files)
    personal = tuple(p for p in dict.fromkeys(personal_fields) if p not in ALWAYS_PERSONAL)
    row = _row_sql(store, incident_id, stream, personal)
    checked = (f"SELECT source_file, line, {row.case} AS err, "
               f"CASE WHEN {row.case} IS NULL THEN raw END AS good_raw FROM "
               f"({_parsed(files, row.paths)})")
    try:
        store.con.execute(f"CREATE OR REPLACE TEMP TABLE _llmrca_scan AS {checked}")
        total, rejected, repeats = store.con.execute(
            "SELECT count(*), count(err), count(good_raw) - count(DISTINCT good_raw) "
            "FROM _llmrca_scan").fetchall()[0]
        by_reason = store.con.execute(
            "SELECT err['field'], err['expected'], count(*) FROM _llmrca_scan "
            "WHERE err IS NOT NULL GROUP BY ALL ORDER BY 3 DESC, 1, 2").fetchall()
        listed = store.con.execute(
            "SELECT source_file, line, err['field'], err['expected'], err['got'] "
            "FROM _llmrca_scan WHERE err IS NOT NULL ORDER BY source_file, line "
            f"LIMIT {MAX_LISTED_REJECTS}").fetchall()
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(location, None, None, f"Parquet files DuckDB can read ({reason})") \
            from None
    finally:
        try:
            store.con.execute("DROP TABLE IF EXISTS _llmrca_scan")
        except duckdb.Error:  # pragma: no cover - an aborted transaction drops it itself
            pass
    return LogScan(
        location=location, incident_id=incident_id, stream=stream, files=tuple(files),
        file_rows=file_rows,
        file_schemas={f: ids.content_id(s, digits=32) for f, s in schemas.items()},
        columns=tuple(columns), schema_fingerprint=ids.content_id(columns, digits=32),
        rows=int(total), rejected=int(rejected), repeats=int(repeats),
        by_reason=tuple((f, str(r), int(n)) for f, r, n in by_reason),
        rejects=tuple(ScanReject(str(f), int(line), field, str(reason),
                                 None if got is None else str(got))
                      for f, line, field, reason, got in listed),
        personal_fields=personal)


def _view_name(source_id: str) -> str:
    return f"log_source_{source_id[:16]}"


def _rebuild_union(con: duckdb.DuckDBPyConnection) -> None:
    """``all_log_events`` = ``log_events`` + every registered source's view.

    An in-place row whose event the incident already holds in ``log_events`` (the same logs
    also copied in) is left out, as a second copying ingest would leave it out.
    """
    columns = ", ".join(LOG_EVENT_COLUMNS)
    parts = [f"SELECT {columns} FROM log_events"]
    for (view,) in con.execute("SELECT view_name FROM log_sources ORDER BY source_id").fetchall():
        parts.append(f"SELECT {columns} FROM {view} v WHERE NOT EXISTS (SELECT 1 FROM "
                     "log_events old WHERE old.incident_id = v.incident_id AND "
                     "old.event_id = v.event_id)")
    con.execute(f"CREATE OR REPLACE VIEW {ALL_LOG_EVENTS} AS " + " UNION ALL ".join(parts))


def register_log_source(store: Store, scan: LogScan, *, skip_invalid: bool = False) -> str:
    """Record scanned logs in ``log_sources`` and expose them in ``all_log_events``.

    Registering the same location for the same incident and stream again replaces the old
    registration. Without ``skip_invalid`` a scan with rejects is refused with the first one
    (nothing is registered); with it, the view leaves them out, as an ingest with
    ``--skip-invalid`` does. Returns the source id.
    """
    if scan.rejected and not skip_invalid:
        first = scan.rejects[0]
        raise ValidationError(first.file, first.row, first.field, first.reason, first.got)
    source_id = ids.content_id(
        {"incident": scan.incident_id, "stream": scan.stream, "location": scan.location,
         "files": scan.file_rows, "schemas": scan.file_schemas,
         "personal": list(scan.personal_fields)}, digits=32)
    view = _view_name(source_id)
    row = _row_sql(store, scan.incident_id, scan.stream, scan.personal_fields)
    columns = ", ".join(LOG_EVENT_COLUMNS)
    with store.transaction() as con:
        old = con.execute(
            "SELECT source_id, view_name FROM log_sources WHERE incident_id = ? AND stream = ? "
            "AND location = ?", [scan.incident_id, scan.stream, scan.location]).fetchall()
        for old_id, old_view in old:
            con.execute("DELETE FROM log_sources WHERE source_id = ?", [old_id])
            _rebuild_union(con)
            con.execute(f"DROP VIEW IF EXISTS {old_view}")
        con.execute(
            "INSERT INTO log_sources (source_id, incident_id, stream, location, format, files, "
            "file_rows, file_schemas, columns, schema_fingerprint, rows, rejected, repeats, "
            "personal_fields, view_name) VALUES (?, ?, ?, ?, 'parquet', ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)",
            [source_id, scan.incident_id, scan.stream, scan.location, json.dumps(scan.files),
             json.dumps(scan.file_rows), json.dumps(scan.file_schemas),
             json.dumps([list(c) for c in scan.columns]), scan.schema_fingerprint, scan.rows,
             scan.rejected, scan.repeats, json.dumps(list(scan.personal_fields)), view])
        registered = con.execute("SELECT registered_at FROM log_sources WHERE source_id = ?",
                                 [source_id]).fetchall()[0][0]
        # Identical rows give one event (the first), as a copying ingest keeps one. The window
        # that drops repeats costs a sort of every row on every query: only files the scan
        # found repeats in pay it (a rewritten file is caught by its row count first).
        dedupe = (" QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_file, "
                  "source_line) = 1" if scan.repeats else "")
        con.execute(
            f"CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM (SELECT {row.select}, "
            f"TIMESTAMP '{registered}' AS created_at FROM ({_parsed(scan.files, row.paths)}) "
            f"WHERE ({row.case}) IS NULL){dedupe}")
        _rebuild_union(con)
    return source_id


def unregister_log_source(store: Store, source_id: str) -> None:
    """Forget logs registered in place (the files are not touched)."""
    with store.transaction() as con:
        found = con.execute("SELECT view_name FROM log_sources WHERE source_id = ?",
                            [source_id]).fetchall()
        if not found:
            from llmrca.errors import NotFoundError

            raise NotFoundError(f"no logs registered in place with id '{source_id}'")
        con.execute("DELETE FROM log_sources WHERE source_id = ?", [source_id])
        _rebuild_union(con)
        con.execute(f"DROP VIEW IF EXISTS {found[0][0]}")


def list_log_sources(store: Store, incident_id: str | None = None) -> pd.DataFrame:
    """The registered in-place logs: ``source_id, incident_id, stream, location, format, files
    (count), rows, rejected, repeats, schema_fingerprint, registered_at``."""
    where, params = ("WHERE incident_id = ?", [incident_id]) if incident_id else ("", [])
    return store.query(
        "SELECT source_id, incident_id, stream, location, format, json_array_length(files) "
        "AS files, rows, rejected, repeats, schema_fingerprint, registered_at FROM log_sources "
        f"{where} ORDER BY registered_at, source_id", params)


def check_log_sources(store: Store, incident_id: str | None = None) -> None:
    """Check that the in-place logs (of one incident, or all) are still as registered.

    Each local file must exist; each file, local or remote, must have the rows and the schema
    it had. Costs one footer read per file; nothing when no logs are registered in place.

    Raises
    ------
    LogSourceError
        Naming the first file that is gone, unreadable or changed.
    """
    where, params = ("WHERE incident_id = ?", [incident_id]) if incident_id else ("", [])
    sources: list[Any] = store.con.execute(
        f"SELECT incident_id, location, files, file_rows, file_schemas FROM log_sources {where} "
        "ORDER BY source_id", params).fetchall()
    for incident, location, files_json, rows_json, schemas_json in sources:
        files = json.loads(files_json)
        for file in files:
            if not is_remote(file) and not os.path.isfile(file):
                raise LogSourceError(file, location, incident,
                                     "the file is gone (moved or deleted)")
        try:
            rows = _file_rows(store, files)
            schemas = _file_schemas(store, files)
        except (duckdb.Error, ValidationError) as exc:
            file = getattr(exc, "file", None) or next(
                (f for f in files if f in str(exc)), files[0])
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LogSourceError(file, location, incident,
                                 f"cannot be read as registered ({reason})") from None
        recorded_rows = json.loads(rows_json)
        recorded_schemas = json.loads(schemas_json)
        for file in files:
            if rows.get(file) != recorded_rows.get(file):
                raise LogSourceError(file, location, incident,
                                     f"it has {rows.get(file)} rows, {recorded_rows.get(file)} "
                                     "when registered (the file was rewritten)")
            if ids.content_id(schemas[file], digits=32) != recorded_schemas.get(file):
                raise LogSourceError(file, location, incident,
                                     "its columns changed since it was registered")
