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


def test_a_foreign_duckdb_file_is_refused_unless_adopted(tmp_path):
    import duckdb

    from llmrca.errors import StoreError

    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (x INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="not an llmrca store \\(tables: sales\\); add llmrca's"):
        Store(path)
    con = duckdb.connect(str(path))
    assert [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
            .fetchall()] == ["sales"]                   # nothing was added
    con.close()
    with Store(path, adopt=True) as store:
        assert store.schema_version == LATEST_VERSION and store.count("sales") == 0


def test_a_foreign_file_with_llmrca_table_names_cannot_be_adopted(tmp_path):
    import duckdb

    from llmrca.errors import StoreError

    path = tmp_path / "clash.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE incidents (x INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="incidents have llmrca's names"):
        Store(path, adopt=True)
    con = duckdb.connect(str(path))
    assert [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
            .fetchall()] == ["incidents"]
    con.close()


def test_store_folder_that_cannot_be_made_is_a_store_error(tmp_path):
    from llmrca.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store's folder"):
        Store(blocker / "sub" / "store.duckdb")


def test_a_file_that_is_not_duckdb_is_a_store_error(tmp_path):
    from llmrca.errors import StoreError

    path = tmp_path / "garbage.duckdb"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(path)


class _CommitThenInterrupt:
    """A connection whose COMMIT goes through and is then hit by Ctrl-C."""

    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        result = self._con.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_ctrl_c_inside_a_transaction_rolls_back_and_says_so(tmp_path):
    from llmrca.errors import StoreInterruptedError

    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(StoreInterruptedError) as info, store.transaction() as con:
            con.execute("INSERT INTO store_meta VALUES ('k', 'v')")
            raise KeyboardInterrupt
        assert info.value.committed is False and "nothing of this command" in str(info.value)
        assert store.count("store_meta", "key = 'k'") == 0


def test_ctrl_c_during_commit_says_the_work_was_committed(tmp_path):
    from llmrca.errors import StoreInterruptedError

    with Store(tmp_path / "s.duckdb") as store:
        real = store.con
        store.con = _CommitThenInterrupt(real)
        try:
            with pytest.raises(StoreInterruptedError) as info, store.transaction() as con:
                con.execute("INSERT INTO store_meta VALUES ('k', 'v')")
        finally:
            store.con = real
        assert info.value.committed is True and "all of it is in" in str(info.value)
        assert store.count("store_meta", "key = 'k'") == 1


@pytest.mark.slow
def _has_open(pid: int, path: str) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux: /proc/<pid>/fd)."""
    import os

    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def test_sigint_during_an_ingest_leaves_the_store_as_it_was(tmp_path):
    import signal

    from llmrca.samples import log_rows, write_log_rows

    bundle = tmp_path / "INC-BIG"
    bundle.mkdir()
    (bundle / "incident.yaml").write_text("id: INC-BIG\ntitle: t\ncategory: other\n"
                                          "detected_at: 2026-10-14T09:12:00Z\n")
    from datetime import datetime
    write_log_rows(bundle / "logs.jsonl", log_rows(
        400_000, start=datetime(2026, 10, 1), end=datetime(2026, 10, 9),
        switch_at=datetime(2026, 10, 5), old_version="a", new_version="b", seed=1))
    db = tmp_path / "s.duckdb"
    Store(db).close()
    proc = subprocess.Popen([sys.executable, "-m", "llmrca.cli", "--db", str(db), "ingest",
                             str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # Interrupt while the log is being read: wait until the child has the log file open (a
    # fixed sleep raced with a fast machine, which finished the ingest first).
    log = str((bundle / "logs.jsonl").resolve())
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not _has_open(proc.pid, log):
        time.sleep(0.005)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"the ingest was not interrupted (exit {proc.returncode}): {err}"
    assert "Traceback" not in err
    with Store(db, read_only=True) as store:
        counts = store.table_counts()
    if "all of it is in" in err:
        assert counts["log_events"] == 400_000
    else:
        assert "nothing of this command was written" in err, err
        assert counts["log_events"] == 0 and counts["incidents"] == 0


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


def test_log_event_id_scheme_is_md5_in_new_stores_and_sha256_where_logs_were(tmp_path):
    from llmrca.ingest import ingest_file
    from llmrca.store.ingest_writes import log_event_id_scheme

    line = '{"timestamp": "2026-10-13T10:00:00Z", "user_id": "u"}'
    logs = tmp_path / "logs.jsonl"
    logs.write_text(line + "\n")
    with Store(tmp_path / "new.duckdb") as new:
        assert log_event_id_scheme(new) == "md5"
        new.con.execute("INSERT INTO incidents (incident_id, title, content_hash) "
                        "VALUES ('INC-1', 't', 'h')")
        ingest_file(new, logs, incident_id="INC-1", kind="logs")
        expected = new.con.execute("SELECT md5('INC-1' || chr(31) || 'logs' || chr(31) || ?)",
                                   [line]).fetchall()[0][0]
        assert new.query("SELECT event_id FROM log_events")["event_id"].tolist() == [expected]
        assert ingest_file(new, logs, incident_id="INC-1", kind="logs").inserted == 0
    # A store at schema 5 without log rows takes the new scheme; one with log rows keeps sha256
    # (test_log_events_ingested_before_migration_5_still_dedupe re-ingests into such a store).
    Store(tmp_path / "empty5.duckdb", migrate_to=5).close()
    with Store(tmp_path / "empty5.duckdb") as empty:
        assert log_event_id_scheme(empty) == "md5"
    with Store(tmp_path / "logs5.duckdb", migrate_to=5) as old:
        old.con.execute("INSERT INTO log_events (event_id, incident_id, stream, ts) "
                        "VALUES ('x', 'INC-1', 'logs', '2026-10-13 10:00:00')")
    with Store(tmp_path / "logs5.duckdb") as upgraded:
        assert log_event_id_scheme(upgraded) == "sha256"


def test_training_data_digest_changes_with_the_data(store):
    """What an investigation's test ids hash for a version's training data: any added, removed
    or edited example changes it; another version's data does not."""
    from llmrca.store.model_versions import training_data_digest

    def add(version, example_id, completion):
        store.con.execute("INSERT INTO training_examples (model_version, example_id, messages, "
                          "completion) VALUES (?, ?, '[]', ?)", [version, example_id, completion])

    empty = training_data_digest(store, "v2")
    assert empty["examples"] == 0
    add("v2", "e1", "fine")
    one = training_data_digest(store, "v2")
    assert one["examples"] == 1 and one["digest"] != empty["digest"]
    add("other", "e9", "x")
    assert training_data_digest(store, "v2") == one
    store.con.execute("UPDATE training_examples SET completion = 'changed' WHERE example_id = 'e1'")
    assert training_data_digest(store, "v2")["digest"] != one["digest"]
