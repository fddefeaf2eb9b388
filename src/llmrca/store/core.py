"""Opening the DuckDB store: locking, read-only readers, migrations, transactions, the salt."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from llmrca.config import db_path, duckdb_memory_limit
from llmrca.errors import (
    SchemaVersionError,
    StoreError,
    StoreInterruptedError,
    StoreLockedError,
)
from llmrca.store.schema import LATEST_VERSION, MIGRATIONS

_PID = re.compile(r"PID (\d+)")


class Store:
    """One DuckDB file holding incidents, logs, model versions and results.

    Open it with :func:`open_store`. A store opened for writing is migrated to the latest schema;
    one opened read-only (notebooks, reports) is only read. Use it as a context manager so the file
    lock is released.

    Parameters
    ----------
    path : path-like
        The DuckDB file. Its folder is created when opening for writing.
    read_only : bool
        Open without taking the write lock; several readers can share a file.
    migrate_to : int, optional
        Stop migrations at this schema version (tests of old stores use it).
    adopt : bool
        Add llmrca's tables to a DuckDB file that already holds other tables (``llmrca init
        --adopt``). Without it such a file is refused: it is somebody else's database.
    """

    def __init__(self, path: str | os.PathLike, read_only: bool = False, *,
                 migrate_to: int | None = None, adopt: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._tx_depth = 0
        if read_only and not self.path.exists():
            raise StoreError(f"no store at {self.path}; create one with `llmrca init`")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store's folder {self.path.parent}: "
                                 f"{exc.strerror or exc}") from None
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                match = _PID.search(text)
                raise StoreLockedError(self.path, int(match.group(1)) if match else None) from exc
            if "could not read enough bytes" in text.lower():
                raise _damaged(self.path, text) from None
            raise StoreError(f"cannot open store {self.path}: {text}") from exc
        except duckdb.Error as exc:   # not a DuckDB file, a newer storage version, ...
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        # Timestamps are stored as UTC wall time; offsets in inputs are converted on the way in.
        self.con.execute("SET TimeZone = 'UTC'")
        # DuckDB's own bar writes to stdout and would mix with command output; faces use tqdm.
        # In a Jupyter kernel DuckDB refuses to touch the setting without ipywidgets (it is off
        # there already), so a refusal is not an error.
        try:
            self.con.execute("SET enable_progress_bar = false")
        except duckdb.InvalidInputException:
            pass
        self.con.execute("SET memory_limit = ?", [duckdb_memory_limit()])
        try:
            self._check_complete()
            if read_only:
                self._check_readable()
            else:
                self._check_ours(adopt)
                self._migrate(LATEST_VERSION if migrate_to is None else migrate_to)
        except BaseException:
            self.con.close()  # release the file lock; the caller never gets this object
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the file (and its lock)."""
        self.con.close()

    def __enter__(self) -> Store:  # noqa: PYI034 - Store is not meant to be subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All writes inside commit together or not at all.

        Re-entrant: a transaction opened inside another joins it (DuckDB has no savepoints), so a
        store function can open one and still be part of a caller's larger unit of work.
        """
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.con
            finally:
                self._tx_depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._tx_depth = 1
        try:
            yield self.con
        except BaseException as exc:
            self._tx_depth = 0
            self.con.execute("ROLLBACK")
            if _interrupted(exc):
                raise StoreInterruptedError(self.path, committed=False) from None
            raise
        self._tx_depth = 0
        try:
            self.con.execute("COMMIT")
        except BaseException as exc:
            if not _interrupted(exc):
                raise
            # Ctrl-C landed during COMMIT: find out whether it went through.
            try:
                self.con.execute("ROLLBACK")
                committed = False
            except duckdb.Error:   # "no transaction is active": the commit completed
                committed = True
            raise StoreInterruptedError(self.path, committed=committed) from None

    # -- schema ----------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The highest migration applied to this file."""
        row = self.con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
        return int(row[0] or 0)

    def _has_version_table(self) -> bool:
        return bool(self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchall()[0][0])

    def _check_complete(self) -> None:
        """Refuse a file that has been cut short (a truncated copy or disk).

        DuckDB opens a file cut at half its size, or a block short, without complaint and reads
        whatever it has not lost: counts come from its metadata, so `llmrca init` printed a
        healthy table. A whole file is its three 4 KiB headers and then whole blocks, and holds
        at least the blocks in use. Free blocks at the end need not be on disk (DuckDB counts
        them in ``total_blocks`` but a file it shrank can end before them), so the check is on
        ``used_blocks``; reading beyond the end of a short file fails too, named the same way.
        """
        if Path(f"{self.path}.wal").exists():
            return   # blocks the write-ahead log adds are not in the file yet
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return
        try:
            block_size, used = self.con.execute(
                "SELECT block_size, used_blocks FROM pragma_database_size() "
                "WHERE database_name = current_database()").fetchall()[0]
        except (duckdb.Error, IndexError) as exc:
            raise _damaged(self.path, str(exc).splitlines()[0] if str(exc) else "") from None
        if not used:
            return
        block_size, used = int(block_size), int(used)
        needed = _HEADER_BYTES + used * block_size
        if size < needed or (size - _HEADER_BYTES) % block_size:
            raise _damaged(self.path, f"it is {size} bytes: not its {_HEADER_BYTES}-byte header "
                                      f"and whole blocks of {block_size} bytes, at least the "
                                      f"{used} in use ({needed} bytes)")

    def _check_readable(self) -> None:
        if not self._has_version_table():
            raise StoreError(f"{self.path} is not an llmrca store (no schema_version table)")
        version = self.schema_version
        if version > LATEST_VERSION:
            raise SchemaVersionError(
                f"store {self.path} has schema version {version}; this llmrca knows up to "
                f"{LATEST_VERSION}: upgrade llmrca")
        if version < LATEST_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {version} < {LATEST_VERSION}; open it for "
                f"writing once (`llmrca init --db {self.path}`) to upgrade it in place")

    def _check_ours(self, adopt: bool) -> None:
        """Refuse a DuckDB file with tables of its own but no llmrca schema (unless adopted)."""
        if self._has_version_table():
            return
        tables = [r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        if not tables:
            return
        ours = {name for _, _, statements in MIGRATIONS for statement in statements
                for name in re.findall(r"CREATE TABLE (\w+)", statement)}
        clash = sorted(set(tables) & ours)
        if not adopt or clash:
            shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
            reason = (f"its tables {', '.join(clash)} have llmrca's names, so it cannot be adopted"
                      if clash else "add llmrca's tables to it with `llmrca init --adopt`, or "
                      "give another file with --db")
            raise StoreError(f"{self.path} is a DuckDB database but not an llmrca store (tables: "
                             f"{shown}); {reason}")

    def _migrate(self, target: int) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "description VARCHAR, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
        current = self.schema_version
        if current > LATEST_VERSION:
            raise SchemaVersionError(
                f"store {self.path} has schema version {current}; this llmrca knows up to "
                f"{LATEST_VERSION}: upgrade llmrca")
        for version, description, statements in MIGRATIONS:
            if version <= current or version > target:
                continue
            with self.transaction() as con:
                for statement in statements:
                    con.execute(statement)
                if version == 1:
                    # Identifiers marked personal are hashed with this salt; it never leaves the store.
                    con.execute("INSERT INTO store_meta VALUES ('salt', ?)", [secrets.token_hex(16)])
                con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                            [version, description])

    # -- reading ---------------------------------------------------------------------------------
    @property
    def salt(self) -> str:
        """The per-store salt used to hash personal identifiers."""
        return self.con.execute("SELECT value FROM store_meta WHERE key = 'salt'").fetchall()[0][0]

    # DuckDB 2 refuses new work on a connection whose last result was not read to the end, so
    # every read here fetches all rows (fetchone() would leave the result open).
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None):
        """Run a read query and return a pandas DataFrame.

        ``params`` are positional (``?``, a list) or named (``$name``, a dict).
        """
        return self.con.execute(sql, params or []).df()

    def count(self, table: str, where: str = "", params: list[Any] | None = None) -> int:
        """Number of rows in ``table`` (optionally filtered)."""
        if not re.fullmatch(r"[a-z_]+", table):
            raise ValueError(f"not a table name: {table!r}")
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.con.execute(sql, params or []).fetchall()[0][0])

    def table_checksums(self) -> dict[str, tuple[int, str]]:
        """``{table: (rows, checksum)}``: a digest of every row's content, in a stable order.

        Two stores (or one store before and after a failed command) with equal checksums hold
        the same data; tests of bad input use it to show that nothing changed.
        """
        out = {}
        for name in self.table_counts():
            rows, digest = self.con.execute(
                f"SELECT count(*), coalesce(md5(string_agg(md5(t::VARCHAR), '' ORDER BY "
                f"md5(t::VARCHAR))), '') FROM {name} t").fetchall()[0]
            out[name] = (int(rows), str(digest))
        return out

    def table_counts(self) -> dict[str, int]:
        """Row counts of every table of the store (views, such as those over logs in place, are
        not tables: counting one would read the files it names)."""
        names = [r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
        return {name: self.count(name) for name in names}


#: DuckDB's file header and its two database headers, 4 KiB each, before the first block.
_HEADER_BYTES = 3 * 4096


def _damaged(path: Path, detail: str) -> StoreError:
    return StoreError(f"store {path} is damaged or truncated ({detail}); restore it from a "
                      "backup or re-create it with `llmrca init --db NEW` and re-ingest")


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, as Python or as DuckDB reports it: DuckDB turns SIGINT during a query into an
    ``InterruptException`` or a plain ``RuntimeError("Query interrupted")``."""
    return isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)) or (
        type(exc) is RuntimeError and str(exc).strip().lower() == "query interrupted")


def open_store(path: str | os.PathLike | None = None, read_only: bool = False, *,
               adopt: bool = False) -> Store:
    """Open (and for writing, create or upgrade) the store at ``path`` or the default location."""
    return Store(db_path(path), read_only=read_only, adopt=adopt)
