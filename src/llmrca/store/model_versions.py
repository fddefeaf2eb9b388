"""Rows of the ``model_versions`` table: the registry of model versions.

The store owns every statement that writes; :mod:`llmrca.store.model_registry` decides *what* to write
(fingerprints, conflicts, lineage) and calls these functions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llmrca.store.core import Store

#: The columns of ``model_versions``, in the order :func:`model_versions_frame` returns them.
COLUMNS: tuple[str, ...] = (
    "name", "source", "revision", "parent", "deployed_from", "deployed_to", "fingerprint",
    "notes", "allow_pickle", "created_at", "updated_at",
)

_WRITABLE = ("source", "revision", "parent", "deployed_from", "deployed_to", "fingerprint",
             "notes", "allow_pickle")


def upsert_model_version(store: Store, name: str, *, source: str, revision: str | None,
                         parent: str | None, deployed_from: datetime | None,
                         deployed_to: datetime | None, fingerprint: str | None,
                         notes: str | None, allow_pickle: bool) -> None:
    """Insert the version ``name``, or replace every field of it but ``created_at``.

    Timestamps are naive UTC wall time, as everywhere in the store.
    """
    values = [name, source, revision, parent, deployed_from, deployed_to, fingerprint, notes,
              bool(allow_pickle)]
    updates = ", ".join(f"{col} = excluded.{col}" for col in _WRITABLE)
    with store.transaction() as con:
        con.execute(
            f"INSERT INTO model_versions (name, {', '.join(_WRITABLE)}) "
            f"VALUES ({', '.join('?' * len(values))}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates}, updated_at = now()::TIMESTAMP",
            values)


def set_model_fingerprint(store: Store, name: str, fingerprint: str) -> None:
    """Record the fingerprint of a version whose files were not on this machine when registered."""
    with store.transaction() as con:
        con.execute("UPDATE model_versions SET fingerprint = ?, updated_at = now()::TIMESTAMP "
                    "WHERE name = ?", [fingerprint, name])


def model_version_row(store: Store, name: str) -> dict[str, Any] | None:
    """The row of version ``name`` as a dict, or ``None`` when it is not registered."""
    # fetchall, not fetchone: DuckDB 2 refuses new work on a connection with an unread result.
    rows = store.con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM model_versions WHERE name = ?", [name]).fetchall()
    return dict(zip(COLUMNS, rows[0])) if rows else None


def model_version_names(store: Store) -> list[str]:
    """The registered version names, sorted."""
    return [r[0] for r in store.con.execute(
        "SELECT name FROM model_versions ORDER BY name").fetchall()]


def model_versions_frame(store: Store):
    """Every registered version as a DataFrame with :data:`COLUMNS`, oldest registration first."""
    return store.query(f"SELECT {', '.join(COLUMNS)} FROM model_versions "
                       "ORDER BY created_at, name")


def training_messages(store: Store, version: str) -> dict[str, Any]:
    """``{example_id: messages}`` of a version's stored fine-tuning examples (parsed JSON)."""
    import json

    rows = store.con.execute(
        "SELECT example_id, CAST(messages AS VARCHAR) FROM training_examples "
        "WHERE model_version = ?", [version]).fetchall()
    return {example_id: None if messages is None else json.loads(messages)
            for example_id, messages in rows}


def training_rows(store: Store, version: str) -> list[tuple[str, str | None, str | None]]:
    """``(example_id, messages as JSON text, completion)`` of a version's training examples,
    ordered by id."""
    return [(str(r[0]), r[1], r[2]) for r in store.con.execute(
        "SELECT example_id, CAST(messages AS VARCHAR), completion FROM training_examples "
        "WHERE model_version = ? ORDER BY example_id", [version]).fetchall()]


def training_data_digest(store: Store, version: str) -> dict[str, Any]:
    """``{"examples": n, "digest": md5}`` of a version's stored fine-tuning examples (ids,
    messages and completions, in id order): what a result computed from that data depends on."""
    row = store.con.execute(
        "SELECT count(*), md5(coalesce(string_agg(example_id || chr(31) || "
        "coalesce(CAST(messages AS VARCHAR), '') || chr(31) || coalesce(completion, ''), "
        "chr(30) ORDER BY example_id), '')) FROM training_examples WHERE model_version = ?",
        [version]).fetchone()
    assert row is not None  # an aggregate always returns a row
    return {"examples": int(row[0]), "digest": str(row[1])}
