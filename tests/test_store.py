"""The store: migrations, upgrades in place, the lock error, read-only readers, transactions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from llmrca.errors import StoreError, StoreLockedError
from llmrca.store import LATEST_VERSION, Store
from llmrca.store.schema import MIGRATIONS


def test_new_store_is_at_latest_version_with_every_table(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        assert store.schema_version == LATEST_VERSION
        versions = store.query("SELECT version FROM schema_version ORDER BY 1")["version"].tolist()
        assert versions == [m[0] for m in MIGRATIONS]
        tables = set(store.table_counts())
        assert {"incidents", "interactions", "log_events", "model_versions", "training_examples",
                "ingest_rejects", "incident_history", "replay_samples", "judgements"} <= tables
        assert len(store.salt) == 32


def test_store_created_at_version_1_upgrades_in_place_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path, migrate_to=1) as old:
        assert old.schema_version == 1
        salt = old.salt
        old.con.execute("INSERT INTO model_versions (name, source) VALUES ('m1', '/models/m1')")
        columns = old.query("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'model_versions'")["column_name"].tolist()
        assert "notes" not in columns  # added by migration 2
        assert "replay_samples" not in old.table_counts()

    with Store(path) as upgraded:
        assert upgraded.schema_version == LATEST_VERSION
        assert upgraded.salt == salt  # hashes stay comparable across the upgrade
        row = upgraded.query("SELECT name, source, notes FROM model_versions")
        assert row.to_dict("records") == [{"name": "m1", "source": "/models/m1", "notes": None}]
        assert "replay_samples" in upgraded.table_counts()


def test_reader_refuses_an_old_store_and_a_missing_one(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "missing.duckdb", read_only=True)
    Store(tmp_path / "old.duckdb", migrate_to=2).close()
    with pytest.raises(StoreError, match="schema version 2 < "):
        Store(tmp_path / "old.duckdb", read_only=True)


@contextmanager
def writer_in_another_process(path):
    """A second process that holds ``path`` open for writing until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from llmrca.store import Store
            s = Store({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_second_writer_gets_store_locked_error_naming_file_and_pid(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path).close()
    with writer_in_another_process(path) as holder:
        with pytest.raises(StoreLockedError) as info:
            Store(path)
        assert info.value.path == str(path)
        assert info.value.pid == holder.pid
        assert str(path) in str(info.value) and str(holder.pid) in str(info.value)
        assert isinstance(info.value, RuntimeError)  # also the built-in it fits
    # Once the holder is gone the file opens again.
    deadline = time.time() + 10
    while True:
        try:
            Store(path).close()
            break
        except StoreLockedError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def test_readers_share_a_file(tmp_path):
    path = tmp_path / "shared.duckdb"
    Store(path).close()
    with Store(path, read_only=True) as a, Store(path, read_only=True) as b:
        assert a.schema_version == b.schema_version == LATEST_VERSION


def test_transaction_rolls_back_everything_and_nests(store):
    with pytest.raises(RuntimeError), store.transaction() as con:
        con.execute("INSERT INTO model_versions (name, source) VALUES ('a', 'x')")
        with store.transaction() as inner:
            inner.execute("INSERT INTO model_versions (name, source) VALUES ('b', 'y')")
        raise RuntimeError("boom")
    assert store.count("model_versions") == 0
    with store.transaction() as con:
        con.execute("INSERT INTO model_versions (name, source) VALUES ('a', 'x')")
    assert store.count("model_versions") == 1


def test_a_reader_cannot_open_a_file_held_by_a_writer(tmp_path):
    # DuckDB: one writer or several readers, not both. The error says so (README, errors.py).
    path = tmp_path / "w.duckdb"
    Store(path).close()
    with writer_in_another_process(path), \
            pytest.raises(StoreLockedError, match="one writer or several readers"):
        Store(path, read_only=True)


def test_log_events_ingested_before_migration_5_still_dedupe(tmp_path):
    from llmrca.ingest import ingest_file

    path = tmp_path / "old.duckdb"
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"timestamp": "2026-10-13T10:00:00Z", "user_id": "u"}\n')
    with Store(path, migrate_to=3) as old:
        old.con.execute("INSERT INTO incidents (incident_id, title, content_hash) "
                        "VALUES ('INC-1', 't', 'h')")
        # The row as the writer of schema 3 stored it: the primary key held the 32-hex id.
        event_id = old.con.execute(
            "SELECT left(sha256('INC-1' || chr(31) || 'logs' || chr(31) || ?), 32)",
            [logs.read_text().rstrip("\n")]).fetchall()[0][0]
        old.con.execute("INSERT INTO log_events (event_id, incident_id, stream, ts) "
                        "VALUES (?, 'INC-1', 'logs', '2026-10-13 10:00:00')", [event_id])
    with Store(path) as upgraded:
        assert upgraded.count("log_events") == 1
        report = ingest_file(upgraded, logs, incident_id="INC-1", kind="logs")
        assert report.inserted == 0 and upgraded.count("log_events") == 1
