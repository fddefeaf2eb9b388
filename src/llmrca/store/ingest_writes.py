"""Writes of the ingestion layer: incidents, interactions, logs, training data, rejects, runs.

Large files (logs, training data) never pass through Python row by row: DuckDB reads the file
once into a TEMP table of numbered lines (spilled to disk past the memory limit, so memory does not
grow with the file), checks every row in SQL and inserts the good ones with one
``INSERT ... SELECT``. A bad row aborts the transaction, so nothing of the run is written.

None of these functions opens or commits a transaction of its own unless the caller has none:
:func:`llmrca.ingest.ingest_bundle` wraps a whole bundle in one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from llmrca.errors import ValidationError
from llmrca.store.core import Store
from llmrca.textcheck import UNENCODABLE_EXPECTED, first_lone_surrogate, sql_unencodable_or

if TYPE_CHECKING:  # only annotations here; importing pandas slows the start of every ingest
    import pandas as pd

#: Guardrail decisions accepted in guardrail logs.
GUARDRAIL_DECISIONS = ("allow", "block", "flag", "redact")
#: Fields of a log row that map to columns; everything else is kept in ``attributes``.
LOG_FIELDS = ("timestamp", "score", "decision", "level", "event_type", "session_id", "user_id",
              "model_version", "model", "prompt", "output", "rule")
#: How many of LOG_FIELDS (a prefix) the checks read; the check pass extracts only these.
_LOG_CHECKED = 3
#: Log timestamps must fall in [TS_FIRST, TS_AFTER) once converted to UTC.
TS_FIRST, TS_AFTER = "1900-01-01 00:00:00", "2201-01-01 00:00:00"
TS_EXPECTED = "an ISO-8601 timestamp between 1900-01-01 and 2200-12-31 (UTC)"
#: Identifiers hashed whatever the bundle says.
ALWAYS_PERSONAL = ("user_id", "session_id")

#: The longest line DuckDB reads (its ``max_line_size``): a line of this many bytes or more is
#: refused as "a line under 4 MiB".
MAX_LINE_BYTES = 4 * 1024 * 1024
#: TEMP tables where DuckDB's CSV reader puts the lines it cannot read (bytes that are not UTF-8,
#: a line too long, a CSV record of the wrong shape) instead of failing the statement: a failed
#: statement would abort the caller's transaction, so nothing could be skipped or named after it.
_READ_REJECTS = "_llmrca_read_rejects"
_READ_SCAN = "_llmrca_read_scan"
_KEEP_READ_REJECTS = (f"ignore_errors=true, store_rejects=true, rejects_table='{_READ_REJECTS}', "
                      f"rejects_scan='{_READ_SCAN}'")
# A byte that cannot occur in valid JSON text (raw control characters must be escaped), so reading
# a JSONL file as a one-column CSV with it as delimiter yields each physical line, blank ones too.
_LINE_READER = ("read_csv({path}, columns={{'raw': 'VARCHAR'}}, header=false, delim=chr(30), "
                f"quote='', escape='', auto_detect=false, max_line_size={MAX_LINE_BYTES}, "
                f"buffer_size=16777216, {_KEEP_READ_REJECTS}) "
                "WITH ORDINALITY AS src(raw, line)")
#: Characters DuckDB expands in a file name (``*``, ``?``, ``[...]``, ``{a,b}``, ``**``; a
#: backslash escapes them). A path holding one is read through a link with a plain name.
_GLOB_CHARACTERS = frozenset("*?[]{}\\")


def sha256_text(*parts: object) -> str:
    """The id of a record: sha256 of its parts joined with a separator that cannot occur in them."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts)
                          .encode("utf-8")).hexdigest()


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


@contextmanager
def plain_path(path: Path) -> Iterator[Path]:
    """``path`` in a form DuckDB reads as that one file, never as a pattern.

    DuckDB's readers expand ``*``, ``?``, ``[...]``, ``{a,b}`` and ``**`` in a file name, so a
    bundle folder named ``inc[A]`` would read its sibling ``incA``'s file, and a leading ``~``
    is the home folder. The path is made absolute; one with a glob character is read through a
    symbolic link with a plain name in a private temporary folder, removed afterwards.
    """
    path = Path(os.path.abspath(path))
    if not _GLOB_CHARACTERS.intersection(str(path)):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="llmrca-read-")
    try:
        if _GLOB_CHARACTERS.intersection(folder):
            raise ValidationError(str(path), None, None,
                                  "a temporary folder without * ? [ ] { } or \\ in its path to "
                                  "read this file through (set TMPDIR)", folder)
        link = Path(folder) / ("input" + path.suffix.lower())
        link.symlink_to(path)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def csv_header(path: Path, display: str | None = None) -> list[str]:
    """The column names of a CSV file's first line (read here: DuckDB's sniffer guessed ``|`` as
    the delimiter of a file with an unterminated quote; llmrca's CSV is comma-separated)."""
    display = display or str(path)
    with open(path, "rb") as handle:
        first = handle.readline(MAX_LINE_BYTES)
    try:
        text = first.decode("utf-8").rstrip("\r\n").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise ValidationError(display, 1, None, "a header row of column names in UTF-8") from None
    names = next(csv.reader([text]), []) if text else []
    if not names or any(not name for name in names):
        raise ValidationError(display, 1, None, "a header row of column names, comma-separated",
                              text[:80])
    if len(set(names)) != len(names):
        raise ValidationError(display, 1, None, "a header row of distinct column names",
                              text[:80])
    return names


def source_relation(path: Path, display: str | None = None) -> str:
    """SQL for ``(line BIGINT, raw VARCHAR)`` over a JSONL, CSV or Parquet file.

    ``line`` is the 1-based physical line for JSONL (blank lines give ``raw`` NULL) and for CSV
    the physical line where the record starts (the header is line 1; a record whose quoted field
    spans lines counts them all), and the row number for Parquet. Lines the CSV reader cannot
    read go to :data:`_READ_REJECTS` instead (see :func:`_take_read_rejects`). ``path`` must be
    plain (:func:`plain_path`).
    """
    suffix = path.suffix.lower()
    lit = _literal(str(path))
    if suffix in (".jsonl", ".ndjson", ".json"):
        return f"SELECT line, raw FROM {_LINE_READER.format(path=lit)}"
    if suffix == ".csv":
        names = csv_header(path, display)
        columns = ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in names)
        quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
        # Newlines inside the record's quoted fields: each adds a physical line to the records
        # after it.
        joined = f"concat({quoted})"
        newlines = f"length({joined}) - length(replace({joined}, chr(10), ''))"
        return ("SELECT ordinality + 1 + coalesce(sum(newlines) OVER (ORDER BY ordinality ROWS "
                "BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS line, raw FROM ("
                "SELECT ordinality, json_merge_patch(to_json(r), '{\"ordinality\":null}')"
                f"::VARCHAR AS raw, {newlines} AS newlines FROM "
                f"(SELECT * FROM read_csv({lit}, columns={{{columns}}}, header=true, "
                "auto_detect=false, delim=',', quote='\"', escape='\"', "
                f"max_line_size={MAX_LINE_BYTES}, {_KEEP_READ_REJECTS}) WITH ORDINALITY) r)")
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


def _scrub_patch(personal: Sequence[str], known: Sequence[str], salt: str = "$salt") -> str:
    """A JSON merge patch that drops mapped fields and replaces extra personal ones by hashes."""
    items = []
    for name in known:
        items.append(f"{_literal(name)}, NULL")
    for name in personal:
        if name in known:
            continue
        value = f"json_extract_string(j, {_literal('$.' + json.dumps(name))})"
        items.append(f"{_literal(name)}, {_hashed(value, salt)}")
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
            for table in (_READ_REJECTS, _READ_SCAN):
                con.execute(f"DROP TABLE IF EXISTS {table}")
            with plain_path(path) as readable:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {_SOURCE} AS "
                            f"{source_relation(readable, display)}")
        except duckdb.Error as exc:  # unreadable file: no such file, bad Parquet, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(display, None, None, f"a readable file ({reason})") from None
        try:
            unread = _take_read_rejects(con, path, display, skip_invalid=skip_invalid)
            result = _check_and_insert(
                con, display, paths, case, insert_sql, params, skip_invalid=skip_invalid,
                reject_scrub=reject_scrub, check_paths=check_paths or paths,
                first_of_repeats=first_of_repeats)
            if unread:
                con.executemany(
                    "INSERT OR IGNORE INTO ingest_rejects (reject_id, run_id, incident_id, file, "
                    "line, field, reason, raw) VALUES (sha256($run_id || chr(31) || $display || "
                    "chr(31) || $line::VARCHAR), $run_id, $incident_id, $display, $line, $field, "
                    "$reason, NULL)",
                    [{"run_id": run_id, "incident_id": incident_id, "display": display,
                      "line": e.line, "field": e.field, "reason": e.expected} for e in unread])
                result = replace(result, rows=result.rows + len(unread),
                                 rejected=result.rejected + len(unread))
            return result
        finally:
            for table in (_SOURCE, _READ_REJECTS, _READ_SCAN):
                try:
                    con.execute(f"DROP TABLE IF EXISTS {table}")
                except duckdb.Error:  # the transaction failed; its rollback drops the table
                    pass


def _take_read_rejects(con: duckdb.DuckDBPyConnection, path: Path, display: str, *,
                       skip_invalid: bool) -> list[ValidationError]:
    """The lines DuckDB's reader could not read, as errors naming file, physical line and field.

    Without ``skip_invalid`` the first one is raised. With it, the rows of :data:`_SOURCE` are
    renumbered (the reader numbered the lines it kept, one after the other) and the errors are
    returned, to be kept as rejects without their text. Runs only when the reader kept a reject.
    """
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        return []
    found = con.execute(
        f"SELECT line, min(line_byte_position), list(error_type ORDER BY error_type), "
        f"any_value(csv_line) FROM {_READ_REJECTS} GROUP BY line ORDER BY line").fetchall()
    if not found:
        return []
    is_csv = suffix == ".csv"
    names = csv_header(path, display) if is_csv else []
    if is_csv:  # DuckDB counts CSV records; the byte where the record starts gives its line
        starts = _lines_of_offsets(path, [int(r[1]) for r in found])
        found = [(starts[int(r[1])], r[1], r[2], r[3]) for r in found]
    texts = _physical_lines(path, {int(r[0]) for r in found})
    errors = []
    for line, _, kinds, record in found:
        errors.append(_read_error(display, int(line), kinds, texts.get(int(line)), record,
                                  names))
    errors.sort(key=lambda e: e.line or 0)
    if not skip_invalid:
        raise errors[0]
    # A kept row numbered L (counting only kept lines) comes after reject i when the kept lines
    # before that reject, start_i - 1 - (lines of the rejects before it), are fewer than L.
    thresholds, spans, taken = [], [], 0
    for line, _, _, record in sorted(found):
        span = 1 + (str(record).count("\n") if is_csv and record else 0)
        thresholds.append(int(line) - taken)
        spans.append(span)
        taken += span
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_SOURCE} AS SELECT line + coalesce((SELECT sum(s) FROM "
        "(SELECT unnest($t) AS t, unnest($s) AS s) WHERE t <= src.line), 0) AS line, raw "
        f"FROM {_SOURCE} src", {"t": thresholds, "s": spans})
    return errors


def _read_error(display: str, line: int, kinds: list[str], text: bytes | None, record: Any,
                names: Sequence[str]) -> ValidationError:
    """The error for a line DuckDB's reader refused, by what DuckDB said of it."""
    kind = " ".join(kinds).upper()
    if "LINE SIZE" in kind:
        return ValidationError(display, line, None,
                               f"a line under {MAX_LINE_BYTES // (1024 * 1024)} MiB")
    if "ENCODING" in kind:
        field, got = None, None
        if text is not None:
            decoded = text.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            got = decoded
            try:
                found = first_lone_surrogate(
                    dict(zip(names, next(csv.reader([decoded]), []))) if names
                    else json.loads(decoded))
            except (ValueError, RecursionError):
                found = None
            if found:
                field, got = found[0] or None, found[1]
        return ValidationError(display, line, field, UNENCODABLE_EXPECTED, got)
    if "QUOTE" in kind:
        return ValidationError(display, line, None,
                               "a CSV record whose quoted field is closed (\"...\")")
    if "COLUMNS" in kind:
        return ValidationError(display, line, None,
                               f"a CSV record of {len(names)} comma-separated fields, as the "
                               "header has", None if record is None else str(record)[:80])
    return ValidationError(display, line, None,
                           f"a record DuckDB can read ({', '.join(kinds).lower()})")


def _physical_lines(path: Path, wanted: set[int]) -> dict[int, bytes]:
    """The bytes of the physical lines numbered in ``wanted`` (those under 4 MiB), read here in
    one streaming pass that stops after the last of them: only when the reader refused a line."""
    out: dict[int, bytes] = {}
    last = max(wanted, default=0)
    with open(path, "rb") as handle:
        number = 0
        while number < last:
            piece = handle.readline(MAX_LINE_BYTES)
            if not piece:
                break
            number += 1
            whole = True
            while len(piece) >= MAX_LINE_BYTES and not piece.endswith(b"\n"):
                whole = False       # the rest of a long line, not kept
                piece = handle.readline(MAX_LINE_BYTES)
            if number in wanted and whole:
                out[number] = piece
    return out


def _lines_of_offsets(path: Path, offsets: Sequence[int]) -> dict[int, int]:
    """``{byte offset: physical line}`` for offsets DuckDB gave (1-based: the record's first
    byte), counting newlines in one streaming pass."""
    out: dict[int, int] = {}
    todo = sorted(set(offsets))
    newlines, position = 0, 0
    with open(path, "rb") as handle:
        for offset in todo:
            target = max(offset - 1, 0)
            while position < target:
                chunk = handle.read(min(1 << 20, target - position))
                if not chunk:
                    break
                newlines += chunk.count(b"\n")
                position += len(chunk)
            out[offset] = newlines + 1
    return out


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


@dataclass(frozen=True)
class LogRowSql:
    """The SQL that checks and maps a log row, shared by the copying ingest and the in-place views.

    ``paths`` are the JSON paths extracted into ``f``; ``case`` is NULL for a good row or the
    struct ``{field, expected, got}`` of its first fault; ``select`` lists the ``log_events``
    columns (event_id ... attributes) computed from a row of ``good`` (``line``, ``raw``, ``f``,
    ``j``).
    """

    paths: list[str]
    case: str
    select: str


def log_row_sql(store: Store, stream: str, personal_fields: Sequence[str] = (), *,
                incident: str = "$incident_id", stream_value: str = "$stream",
                source_file: str = "$display", salt: str = "$salt",
                check_unencodable: bool = True) -> LogRowSql:
    """The checks and the column mapping of a log row of ``stream`` (``logs`` or ``guardrail``).

    The copying ingest binds ``incident``, ``stream_value``, ``source_file`` and ``salt`` as
    parameters; a view over logs in place (:mod:`llmrca.store.log_sources`) passes SQL literals
    and columns instead, so both compute the same ids, hashes and columns from the same row.
    ``check_unencodable`` names a lone surrogate of a line that is not JSON through a Python
    function of the connection (a view cannot hold one; rows read from Parquet are JSON).
    """
    personal = list(dict.fromkeys([*ALWAYS_PERSONAL, *personal_fields]))
    paths = [f"$.{name}" for name in LOG_FIELDS]
    f = {name: f"f[{i + 1}]" for i, name in enumerate(LOG_FIELDS)}
    decisions = ", ".join(_literal(d) for d in GUARDRAIL_DECISIONS)
    ts = f"try_cast({f['timestamp']} AS TIMESTAMPTZ)"
    in_range = (f"NOT (ascii({f['timestamp']}) BETWEEN 48 AND 57) OR NOT ({ts} >= TIMESTAMPTZ "
                f"'{TS_FIRST}+00' AND {ts} < TIMESTAMPTZ '{TS_AFTER}+00')")
    not_json = _err(None, "one JSON object per line", "left(raw, 80)")
    checks = [
        ("j IS NULL", sql_unencodable_or(store.con, not_json) if check_unencodable
         else not_json),
        (f"{f['timestamp']} IS NULL", _err("timestamp", "an ISO-8601 timestamp (required)")),
        (f"try_cast({f['timestamp']} AS TIMESTAMPTZ) IS NULL",
         _err("timestamp", "an ISO-8601 timestamp", f["timestamp"])),
        # DuckDB casts 'infinity', '-infinity' and 'epoch', and years up to 294246, so that one
        # such row would stretch the incident's window to 0001..9999: the text must start with
        # a digit and the time fall in [1900, 2201) UTC.
        (in_range, _err("timestamp", TS_EXPECTED, f["timestamp"])),
        (f"{f['score']} IS NOT NULL AND try_cast({f['score']} AS DOUBLE) IS NULL",
         _err("score", "a number", f["score"])),
        # 'NaN' and 'inf' cast to DOUBLE (and CSV or Parquet hold them): a score must be finite.
        (f"{f['score']} IS NOT NULL AND NOT isfinite(try_cast({f['score']} AS DOUBLE))",
         _err("score", "a finite number", f["score"])),
    ]
    if stream == "guardrail":
        checks += [
            (f"{f['decision']} IS NULL", _err("decision", f"one of {decisions} (required)")),
            (f"lower({f['decision']}) NOT IN ({decisions})",
             _err("decision", f"one of {decisions}", f["decision"])),
        ]
    case = "CASE " + " ".join(f"WHEN {cond} THEN {val}" for cond, val in checks) + " END"
    scrub = _scrub_patch(personal, LOG_FIELDS, salt)
    # event_id: 32 hex digits, a content id of (incident, stream, line text) in the store's scheme.
    event_id = _EVENT_ID[log_event_id_scheme(store)].format(
        f"{incident} || chr(31) || {stream_value} || chr(31) || raw")
    select = (
        f"{event_id} AS event_id, {incident} AS incident_id, "
        f"{stream_value} AS stream, {source_file} AS source_file, line AS source_line, "
        f"try_cast({f['timestamp']} AS TIMESTAMPTZ)::TIMESTAMP AS ts, "
        f"{f['level']} AS level, {f['event_type']} AS event_type, "
        f"{_hashed(f['session_id'], salt)} AS session_hash, "
        f"{_hashed(f['user_id'], salt)} AS user_hash, "
        f"coalesce({f['model_version']}, {f['model']}) AS model_version, {f['prompt']} AS prompt, "
        f"{f['output']} AS output, {f['rule']} AS guardrail_rule, "
        f"lower({f['decision']}) AS guardrail_decision, "
        f"try_cast({f['score']} AS DOUBLE) AS guardrail_score, "
        f"json_merge_patch(j, {scrub}) AS attributes")
    return LogRowSql(paths, case, select)


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
    row = log_row_sql(store, stream, personal)
    insert = (
        "INSERT INTO log_events (event_id, incident_id, stream, source_file, "
        "source_line, ts, level, event_type, session_hash, user_hash, model_version, prompt, "
        "output, guardrail_rule, guardrail_decision, guardrail_score, attributes) "
        f"SELECT * FROM (SELECT {row.select} FROM good) new "
        # Dedupe without a primary key (its index cost more than the rest of the insert): an
        # anti-join on the ids the incident already has; `good` holds no repeated line.
        "WHERE NOT EXISTS (SELECT 1 FROM log_events old WHERE old.incident_id = $incident_id "
        "AND old.event_id = new.event_id)")
    params = {"stream": stream, "salt": store.salt}
    return _run_checked(store, path, display, row.paths, row.case, insert, params,
                        skip_invalid=skip_invalid, run_id=run_id, incident_id=incident_id,
                        reject_scrub=_scrub_patch(personal, ()),
                        check_paths=row.paths[:_LOG_CHECKED], first_of_repeats=True)


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


def incident_personal_fields(store: Store, incident_id: str) -> list[str] | None:
    """The incident's ``personal_fields``, or None when the incident is not in the store."""
    found = store.con.execute("SELECT personal_fields FROM incidents WHERE incident_id = ?",
                              [incident_id]).fetchall()
    return None if not found else list(json.loads(found[0][0] or "[]"))


def delete_incident(store: Store, incident_id: str) -> None:
    """Remove an incident and its interactions (a half-made one after a failed ingest)."""
    with store.transaction() as con:
        con.execute("DELETE FROM interactions WHERE incident_id = ?", [incident_id])
        con.execute("DELETE FROM incidents WHERE incident_id = ?", [incident_id])
