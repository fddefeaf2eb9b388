"""Logs queried where they live (`llmrca ingest --in-place`): the same answers as copied logs.

The same Parquet logs are copied into one store and registered in place in another (and, in one
store, both ways at once, so that even hashed identifiers can be compared): incident counts,
summaries, event counts, logged outputs, triage's timeline and scope must agree. A moved, deleted
or rewritten file is named; files of different schemas name the file and the column; a scan
reports the rejects an ingest would, by file, row and field, and writes nothing.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from llmrca import triage
from llmrca.cli import main
from llmrca.errors import ValidationError
from llmrca.ingest import ingest_bundle, ingest_file, ingest_in_place
from llmrca.store import Store, queries
from llmrca.store.ingest_writes import upsert_incident
from llmrca.store.log_sources import LogSourceError, check_log_sources, list_log_sources

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "incidents"


def _incident(store: Store, incident_id: str = "INC-R") -> None:
    upsert_incident(store, {"incident_id": incident_id, "title": "random logs",
                            "category": "other"})


def _bundle_without_logs(tmp: Path, incident: str = "INC-0002") -> Path:
    folder = tmp / f"{incident}-nologs"
    shutil.copytree(SAMPLES / incident, folder,
                    ignore=shutil.ignore_patterns("logs.parquet"))
    return folder


def _frames(store: Store, incident: str) -> dict[str, pd.DataFrame]:
    """Everything a researcher reads about the logs, without the store-salted hashes."""
    summary = queries.incident_summary(store, incident)
    outputs = queries.log_outputs(store, incident).drop(columns=["session_hash", "user_hash"])
    scope = triage.scope(store, incident)
    return {
        "incidents": queries.list_incidents(store)[["incident_id", "interactions",
                                                    "log_events"]],
        "per_version": summary.per_version,
        "window": pd.DataFrame([summary.window]),
        "guardrail": summary.guardrail,
        "events": queries.event_counts(store, incident, "hour"),
        "outputs": outputs.reset_index(drop=True),
        "timeline": triage.timeline(store, incident).events,
        "scope": scope.by_version,
        "matching": scope.matching.drop(columns=["session_hash", "user_hash"]),
        "scores": queries.guardrail_scores(store, incident),
    }


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name, frame in a.items():
        pd.testing.assert_frame_equal(frame, b[name], check_dtype=False, obj=name)


def test_incident_queries_and_triage_agree_on_copied_and_in_place_logs(tmp_path):
    logs = SAMPLES / "INC-0002" / "logs.parquet"
    with Store(tmp_path / "copied.duckdb") as copied:
        ingest_bundle(copied, SAMPLES / "INC-0002", progress=False)
        expected = _frames(copied, "INC-0002")
    with Store(tmp_path / "in-place.duckdb") as store:
        ingest_bundle(store, _bundle_without_logs(tmp_path), progress=False)
        before = store.table_checksums()
        report = ingest_in_place(store, str(logs), incident_id="INC-0002")
        after = store.table_checksums()
        # Nothing copied: only the registration row is new.
        assert {t for t in after if after[t] != before[t]} == {"log_sources"}
        assert store.count("log_events", "stream = 'logs'") == 0
        got = _frames(store, "INC-0002")
    assert report.scan.rows == 3000 and report.scan.rejected == 0
    # 3000 log rows (in place) and the bundle's 3000 guardrail rows (copied in both stores).
    assert expected["incidents"]["log_events"].tolist() == [6000]
    assert len(expected["outputs"]) > 100 and expected["scope"]["matching"].sum() > 0
    _assert_same(expected, got)


def test_in_one_store_the_in_place_rows_are_the_copied_rows_hashes_included(tmp_path):
    logs = SAMPLES / "INC-0002" / "logs.parquet"
    with Store(tmp_path / "s.duckdb") as store:
        ingest_bundle(store, _bundle_without_logs(tmp_path), progress=False)
        ingest_in_place(store, str(logs), incident_id="INC-0002")
        in_place = store.query("SELECT * EXCLUDE (source_file, created_at) FROM all_log_events "
                               "WHERE stream = 'logs' ORDER BY event_id")
        ingest_file(store, logs, incident_id="INC-0002", kind="logs")
        # Copied too: the view leaves out the in-place duplicates, so nothing counts twice.
        assert store.count("log_events", "stream = 'logs'") == 3000
        assert queries.list_incidents(store)["log_events"].tolist() == [6000]
        copied = store.query("SELECT * EXCLUDE (source_file, created_at) FROM log_events "
                             "WHERE stream = 'logs' ORDER BY event_id")
    pd.testing.assert_frame_equal(in_place, copied)


def _random_logs(folder: Path, files: int, rows: int, seed: int, *, guardrail: bool = False
                 ) -> list[Path]:
    """Parquet logs with seeded random words (no zoo strings), split over ``files`` files."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwz") for _ in range(rng.randint(3, 8)))
             for _ in range(50)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    con = duckdb.connect()
    for f in range(files):
        records = []
        for i in range(rows):
            record = {"timestamp": f"2026-11-{1 + (f * rows + i) % 20:02d}T{i % 24:02d}:"
                                   f"{rng.randint(0, 59):02d}:00Z",
                      "model_version": rng.choice(["m-a", "m-b"]),
                      "session_id": f"s{rng.randint(0, 30)}", "user_id": f"u{rng.randint(0, 9)}",
                      "prompt": " ".join(rng.choices(words, k=5)),
                      "output": " ".join(rng.choices(words, k=8)),
                      "latency_ms": rng.random() * 500}
            if guardrail:
                record.update(decision=rng.choice(["allow", "block", "flag"]),
                              rule=rng.choice(words[:3]), score=round(rng.random(), 3))
            records.append(record)
        path = folder / f"part-{f}.parquet"
        frame = pd.DataFrame(records)  # noqa: F841 - read by DuckDB below
        con.execute(f"COPY (SELECT * FROM frame) TO '{path}' (FORMAT parquet)")
        paths.append(path)
    con.close()
    return paths


def test_a_glob_of_guardrail_files_agrees_with_copying_each_file(tmp_path):
    paths = _random_logs(tmp_path / "logs", files=3, rows=40, seed=7, guardrail=True)
    with Store(tmp_path / "copied.duckdb") as copied, \
            Store(tmp_path / "in-place.duckdb") as store:
        for s in (copied, store):
            _incident(s)
        for path in paths:
            ingest_file(copied, path, incident_id="INC-R", kind="guardrail")
        report = ingest_in_place(store, str(tmp_path / "logs" / "part-*.parquet"),
                                 incident_id="INC-R", kind="guardrail")
        assert report.scan.files == tuple(str(p) for p in paths)
        assert report.scan.file_rows == {str(p): 40 for p in paths}
        ids_copied = copied.query("SELECT event_id FROM all_log_events ORDER BY 1")
        ids_in_place = store.query("SELECT event_id FROM all_log_events ORDER BY 1")
        pd.testing.assert_frame_equal(ids_copied, ids_in_place)
        assert len(ids_in_place) == 120
        pd.testing.assert_frame_equal(queries.event_counts(copied, "INC-R"),
                                      queries.event_counts(store, "INC-R"))
        # Rows of equal time come in no fixed order: compare as sorted sets of rows.
        scores = [queries.guardrail_scores(s, "INC-R") for s in (copied, store)]
        scores = [f.sort_values(list(f.columns)).reset_index(drop=True) for f in scores]
        pd.testing.assert_frame_equal(*scores)
        assert queries.incident_summary(store, "INC-R").guardrail["events"].sum() == 120
        # A folder means every Parquet file under it: the same three files.
        again = ingest_in_place(store, str(tmp_path / "logs"), incident_id="INC-R",
                                kind="guardrail", scan_only=True)
        assert again.scan.files == report.scan.files and again.source_id is None


def test_a_moved_deleted_or_rewritten_file_is_named(tmp_path):
    paths = _random_logs(tmp_path / "logs", files=2, rows=10, seed=3)
    with Store(tmp_path / "s.duckdb") as store:
        _incident(store)
        ingest_in_place(store, str(tmp_path / "logs"), incident_id="INC-R")
        assert queries.list_incidents(store)["log_events"].tolist() == [20]
        moved = tmp_path / "elsewhere.parquet"
        paths[1].rename(moved)
        for query in (lambda: queries.incident_summary(store, "INC-R"),
                      lambda: queries.list_incidents(store),
                      lambda: triage.scope(store, "INC-R")):
            with pytest.raises(LogSourceError, match="moved or deleted") as info:
                query()
            assert info.value.file == str(paths[1]) and str(paths[1]) in str(info.value)
            assert "--in-place" in str(info.value)
        moved.rename(paths[1])
        check_log_sources(store)            # back in place: readable again
        _random_logs(tmp_path / "other", files=1, rows=11, seed=4)[0].replace(paths[0])
        with pytest.raises(LogSourceError, match="11 rows, 10 when registered") as info:
            queries.event_counts(store, "INC-R")
        assert info.value.file == str(paths[0])


def test_the_cli_names_a_deleted_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMRCA_DB", str(tmp_path / "cli.duckdb"))
    assert main(["ingest", str(_bundle_without_logs(tmp_path))]) == 0
    logs = tmp_path / "logs.parquet"
    shutil.copy(SAMPLES / "INC-0002" / "logs.parquet", logs)
    capsys.readouterr()
    assert main(["ingest", "--in-place", str(logs), "--incident", "INC-0002"]) == 0
    out = capsys.readouterr().out
    assert "3000 rows, 0 rejected" in out and "all_log_events" in out
    capsys.readouterr()
    assert main(["incidents", "show", "INC-0002"]) == 0
    shown = capsys.readouterr().out
    assert "logs queried in place" in shown and str(logs) in shown
    logs.unlink()
    capsys.readouterr()
    assert main(["incidents", "show", "INC-0002"]) == 1
    err = capsys.readouterr().err
    assert str(logs) in err and "moved or deleted" in err and "Traceback" not in err


def test_files_of_different_schemas_name_the_file_and_column(tmp_path):
    folder = tmp_path / "logs"
    _random_logs(folder, files=1, rows=5, seed=1)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT timestamp, model_version, session_id, user_id, prompt, output, "
                f"latency_ms::VARCHAR AS latency_ms FROM '{folder / 'part-0.parquet'}') "
                f"TO '{folder / 'part-1.parquet'}' (FORMAT parquet)")
    con.close()
    with Store(tmp_path / "s.duckdb") as store:
        _incident(store)
        before = store.table_checksums()
        with pytest.raises(ValidationError) as info:
            ingest_in_place(store, str(folder), incident_id="INC-R")
        assert info.value.file == str(folder / "part-1.parquet")
        assert info.value.field == "latency_ms" and "DOUBLE" in info.value.expected
        assert store.table_checksums() == before
        assert list_log_sources(store).empty


#: Guardrail rows, as DuckDB SQL values (pandas would turn NaN into NULL on the way).
BAD_ROWS = [
    "('2026-11-01T10:00:00Z', 'block', 0.5)",
    "('2026-11-01T10:01:00Z', 'block', 'NaN'::DOUBLE)",   # row 2: score not finite
    "('yesterday', 'allow', 0.1)",                         # row 3: timestamp
    "('2026-11-01T10:03:00Z', 'maybe', 0.2)",              # row 4: decision
    "('2026-11-01T10:00:00Z', 'block', 0.5)",              # row 5: a repeat of row 1
    "('2026-11-01T10:05:00Z', NULL, 0.3)",                 # row 6: decision missing
]


def _bad_guardrail(path: Path) -> Path:
    duckdb.connect().execute(
        f"COPY (SELECT * FROM (VALUES {', '.join(BAD_ROWS)}) v(timestamp, decision, score)) "
        f"TO '{path}' (FORMAT parquet)")
    return path


def test_a_scan_reports_the_rejects_an_ingest_keeps_and_writes_nothing(tmp_path):
    path = _bad_guardrail(tmp_path / "guardrail.parquet")
    with Store(tmp_path / "copied.duckdb") as copied:
        _incident(copied)
        result = ingest_file(copied, path, incident_id="INC-R", kind="guardrail",
                             skip_invalid=True)
        kept = sorted(copied.con.execute(
            "SELECT line, field, reason FROM ingest_rejects").fetchall())
        copied_rows = copied.count("log_events")
    with Store(tmp_path / "s.duckdb") as store:
        _incident(store)
        before = store.table_checksums()
        scan = ingest_in_place(store, str(path), incident_id="INC-R", kind="guardrail",
                               scan_only=True).scan
        assert store.table_checksums() == before   # a scan writes nothing
        assert sorted((r.row, r.field, r.reason) for r in scan.rejects) == kept
        assert [r.row for r in scan.rejects] == [2, 3, 4, 6]
        assert all(r.file == str(path) for r in scan.rejects)
        assert (scan.rows, scan.rejected, scan.repeats, scan.good) == (6, 4, 1, 1)
        assert sum(n for _, _, n in scan.by_reason) == 4
        frame = scan.to_frame()
        assert list(frame.columns) == ["file", "row", "field", "reason", "got"]
        # Without --skip-invalid: the first bad row, and nothing registered.
        with pytest.raises(ValidationError) as info:
            ingest_in_place(store, str(path), incident_id="INC-R", kind="guardrail")
        assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, "score")
        assert store.table_checksums() == before
        # With it: registered, and the view holds what the ingest kept.
        ingest_in_place(store, str(path), incident_id="INC-R", kind="guardrail",
                        skip_invalid=True)
        assert store.count("ingest_rejects") == 0
        assert queries.list_incidents(store)["log_events"].tolist() == [copied_rows]
        assert result.inserted == copied_rows == 1
        # Registering the same place again replaces the registration.
        ingest_in_place(store, str(path), incident_id="INC-R", kind="guardrail",
                        skip_invalid=True)
        assert len(list_log_sources(store)) == 1
        assert queries.list_incidents(store)["log_events"].tolist() == [1]


def test_in_place_needs_an_incident_and_a_match(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(Exception, match="incident 'NOPE' is not in the store"):
            ingest_in_place(store, str(tmp_path), incident_id="NOPE")
        _incident(store)
        with pytest.raises(ValidationError, match="at least one Parquet file") as info:
            ingest_in_place(store, str(tmp_path / "nothing-*.parquet"), incident_id="INC-R")
        assert info.value.file == str(tmp_path / "nothing-*.parquet")
        odd = _random_logs(tmp_path / "odd", files=1, rows=2, seed=5)[0]
        odd = odd.rename(odd.with_name("part[1].parquet"))
        with pytest.raises(ValidationError, match="a file name without") as info:
            ingest_in_place(store, str(tmp_path / "odd"), incident_id="INC-R")
        assert info.value.file == str(odd)
        (tmp_path / "junk.parquet").write_text("not parquet")
        with pytest.raises(ValidationError, match="a readable Parquet file") as info:
            ingest_in_place(store, str(tmp_path / "junk.parquet"), incident_id="INC-R")
        assert info.value.file == str(tmp_path / "junk.parquet")
