"""Content-addressed caching in the store: compute unless a row with this key exists.

Every cached result (a replay sample, a teacher-forced score, a judgement; later an attribution
or a probe result) is a row whose primary key is a content id (:mod:`llmrca.ids`) of everything
that decides it. :func:`compute_missing` is the one loop that uses that: find which keys are
stored, compute only the others (each distinct key once), write them in chunks of one transaction
each, so a killed computation keeps every finished chunk and a re-run computes only what is
missing. Writes are ``INSERT OR IGNORE``: writing a row twice is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from llmrca.errors import StoreError
from llmrca.store.core import Store

T = TypeVar("T")

__all__ = ["CacheReport", "ContentTable", "compute_missing", "stream_missing"]


def _as_json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)


@dataclass(frozen=True)
class ContentTable:
    """A store table keyed by a content id.

    Attributes
    ----------
    table, key : str
        The table and its primary-key column.
    columns : tuple of str
        The columns :meth:`write` inserts.
    json_columns : frozenset of str
        Columns written as JSON text (lists, dicts).
    """

    table: str
    key: str
    columns: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()

    def existing(self, store: Store, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` that has a row."""
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        view = f"_llmrca_wanted_{self.table}"
        try:
            store.con.register(view, pd.DataFrame({self.key: wanted}))
            try:
                rows = store.con.execute(
                    f"SELECT t.{self.key} FROM {self.table} t JOIN {view} w USING ({self.key})"
                ).fetchall()
            finally:
                store.con.unregister(view)
        except Exception as exc:  # duckdb.Error, without importing duckdb's types here
            raise _store_error(store, f"reading {self.table}", exc) from exc
        return {r[0] for r in rows}

    def rows(self, store: Store, keys: Iterable[str],
             columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored rows among ``keys`` (``columns``, default :attr:`columns`)."""
        wanted = sorted(set(keys))
        names = list(columns or self.columns)
        if not wanted:
            return pd.DataFrame(columns=names)
        view = f"_llmrca_rows_{self.table}"
        try:
            store.con.register(view, pd.DataFrame({self.key: wanted}))
            try:
                frame = store.con.execute(
                    f"SELECT {', '.join('t.' + c for c in names)} FROM {self.table} t "
                    f"JOIN {view} w USING ({self.key})").df()
            finally:
                store.con.unregister(view)
        except Exception as exc:
            raise _store_error(store, f"reading {self.table}", exc) from exc
        return frame

    def write(self, store: Store, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows in one transaction; rows whose key exists are skipped. Returns how many
        were new."""
        records = [{c: (_as_json(r.get(c)) if c in self.json_columns else r.get(c))
                    for c in self.columns} for r in rows]
        if not records:
            return 0
        if store.read_only:
            raise StoreError(f"store {store.path} is open read-only: cannot write {len(records)} "
                             f"row(s) to {self.table}; open it for writing")
        frame = pd.DataFrame.from_records(records, columns=list(self.columns))
        for column in self.columns:
            if column in self.json_columns or frame[column].dtype == object:
                frame[column] = frame[column].astype(object)
        view = f"_llmrca_{self.table}"
        names = ", ".join(self.columns)
        try:
            with store.transaction() as con:
                con.register(view, frame)
                try:
                    inserted = con.execute(f"INSERT OR IGNORE INTO {self.table} ({names}) "
                                           f"SELECT {names} FROM {view}").fetchall()
                finally:
                    con.unregister(view)
        except StoreError:
            raise
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            raise _store_error(store, f"writing {self.table}", exc) from exc
        return int(inserted[0][0]) if inserted else 0


def _store_error(store: Store, doing: str, exc: BaseException) -> StoreError:
    text = " ".join(str(exc).split())
    return StoreError(f"store {store.path}: {doing} failed: {type(exc).__name__}: {text[:300]}")


@dataclass(frozen=True)
class CacheReport:
    """What :func:`compute_missing` did.

    Attributes
    ----------
    keys : int
        Distinct keys asked for.
    cached : frozenset of str
        Keys that already had a row.
    computed : int
        Rows computed and written now.
    """

    keys: int
    cached: frozenset[str]
    computed: int


def compute_missing(store: Store, table: ContentTable, items: Mapping[str, T],
                    compute: Callable[[list[T]], list[dict[str, Any]]], *,
                    chunk_size: int | None = None,
                    group: Callable[[T], Any] | None = None,
                    existing: set[str] | None = None) -> CacheReport:
    """Compute the rows of the keys in ``items`` that have none, and write them.

    Parameters
    ----------
    items : mapping
        Content id -> what ``compute`` needs to produce that row, in the order to compute.
    compute : callable
        Takes a list of items (one chunk, all of one ``group``) and returns one row per item
        (dicts with :attr:`ContentTable.columns`, the key included), in order.
    chunk_size : int, optional
        Items per ``compute`` call and per transaction (default: all of a group at once).
    group : callable, optional
        Items are computed group by group (e.g. one model version at a time), in first-seen
        order.
    existing : set of str, optional
        The keys already known to be stored (skips the lookup).

    Returns
    -------
    CacheReport
    """
    def chunks(members: list[T]) -> Iterator[list[dict[str, Any]]]:
        size = int(chunk_size or len(members) or 1)
        for start in range(0, len(members), size):
            yield compute(members[start:start + size])

    return stream_missing(store, table, items, chunks, group=group, existing=existing)


def stream_missing(store: Store, table: ContentTable, items: Mapping[str, T],
                   compute_chunks: Callable[[list[T]], Iterable[list[dict[str, Any]]]], *,
                   group: Callable[[T], Any] | None = None,
                   existing: set[str] | None = None) -> CacheReport:
    """Like :func:`compute_missing`, for a computation that streams its rows back.

    ``compute_chunks`` receives all the missing items of one ``group`` at once (so an engine can
    schedule them together: a Ray Data pipeline over a cluster) and yields lists of rows as they
    finish, in any order and any sizes. Each yielded list is written in one transaction as soon
    as it arrives, so a computation stopped mid-way keeps every list it delivered, and a re-run
    computes only the keys still missing.
    """
    known = table.existing(store, items) if existing is None else set(existing) & set(items)
    todo = [(key, item) for key, item in items.items() if key not in known]
    groups: dict[Any, list[T]] = {}
    for _key, item in todo:
        groups.setdefault(group(item) if group else None, []).append(item)
    computed = 0
    for members in groups.values():
        for rows in compute_chunks(members):
            table.write(store, rows)  # one transaction per chunk: a killed run keeps it, whole
            computed += len(rows)
    return CacheReport(keys=len(items), cached=frozenset(known), computed=computed)
