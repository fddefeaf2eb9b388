"""Edges of ingestion: text that cannot be stored, files of no known format, garak's intent and
hitlog, and the one rule for multi-part message text."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import llmrca.ingest.adapters  # noqa: F401  (registers the formats)
from llmrca.errors import ValidationError
from llmrca.ingest import ingest_file, read_interactions
from llmrca.ingest.records import InteractionRecord, unencodable_field
from llmrca.store.ingest_writes import upsert_incident
from llmrca.textcheck import UNENCODABLE_EXPECTED

FIXTURES = Path(__file__).parent / "fixtures"
OPENAI = FIXTURES / "openai" / "chat_completions.jsonl"
OTEL = FIXTURES / "otel" / "genai_traces.jsonl"
GARAK = FIXTURES / "garak" / "report.jsonl"
SPAN1 = "resourceSpans.0.scopeSpans.0.spans.1"
#: Half of an emoji's surrogate pair (U+1F600 is \ud83d\ude00), as scraped chat exports cut it.
LONE = "\ud83d"
NATIVE = {"messages": [{"role": "user", "content": "hi"}], "output": "hello",
          "model_version": "assistant-v2", "user_id": "user-00042"}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    # json.dumps writes a lone surrogate as the escape \ud83d, as the exports that carry one do
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def incident(store):
    upsert_incident(store, {"incident_id": "INC-E", "title": "edges", "category": "jailbreak",
                            "severity": "high", "personal_fields": ["user_id", "email"]})
    return "INC-E"


def rejects(store) -> list[tuple]:
    return store.con.execute("SELECT line, field, reason, raw FROM ingest_rejects "
                             "ORDER BY line").fetchall()


# --- 5. text that cannot be stored ------------------------------------------------------------

def _native(tmp_path):
    good, bad = dict(NATIVE), dict(NATIVE)
    bad["messages"] = [{"role": "user", "content": f"look {LONE} here"}]
    return write_jsonl(tmp_path / "native.jsonl", [good, bad]), 2, "messages.0.content"


def _openai(tmp_path):
    records = lines(OPENAI)
    records[1]["request"]["messages"][1]["content"] = f"cut emoji {LONE}"
    return write_jsonl(tmp_path / "openai.jsonl", records), 2, "request.messages.1.content"


def _otel(tmp_path):
    records = lines(OTEL)
    span = records[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    attribute = next(a for a in span["attributes"] if a["key"] == "gen_ai.input.messages")
    # the messages are JSON text inside the attribute: the surrogate's escape is escaped twice
    attribute["value"]["stringValue"] = json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": f"hi {LONE}"}]}])
    return (write_jsonl(tmp_path / "otel.jsonl", records), 1,
            f"{SPAN1}.attributes.gen_ai.input.messages.0.parts.0.content")


def _garak(tmp_path):
    records = lines(GARAK)
    assert records[3]["status"] == 2    # line 4: the first completed attempt
    records[3]["outputs"][1]["text"] = f"partial {LONE}"
    return write_jsonl(tmp_path / "report.jsonl", records), 4, "outputs.1.text"


@pytest.mark.parametrize("make", [_native, _openai, _otel, _garak],
                         ids=["llmrca", "openai-chat", "otel-genai", "garak"])
def test_a_lone_surrogate_is_refused_with_file_line_and_field(store, incident, tmp_path, make):
    path, line, field = make(tmp_path)
    # the interactions of the other lines, which --skip-invalid keeps
    kept = sum(1 for r in read_interactions(path)
               if isinstance(r, InteractionRecord) and r.source_line != line)
    assert kept >= 1
    # The reader names it before any adapter runs ...
    errors = [r for r in read_interactions(path) if isinstance(r, ValidationError)]
    assert [(e.file, e.line, e.field, e.expected) for e in errors] == [
        (str(path), line, field, UNENCODABLE_EXPECTED)]
    assert LONE in errors[0].got
    # ... ingest stops on it, leaving the store as it was ...
    before = store.table_counts()
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), line, field)
    assert f"line {line}: field '{field}': expected text that is valid Unicode" in str(info.value)
    assert store.table_counts() == before
    # ... and --skip-invalid keeps the other interactions and the line as a reject.
    report = ingest_file(store, path, incident_id=incident, skip_invalid=True)
    assert (report.inserted, report.rejected) == (kept, 1)
    assert store.count("interactions") == kept
    assert rejects(store) == [(line, field, UNENCODABLE_EXPECTED, None)]


def test_a_surrogate_on_the_only_line_is_named_not_taken_for_an_empty_file(store, incident,
                                                                            tmp_path):
    bad = dict(NATIVE, messages=[{"role": "user", "content": f"hi {LONE}"}])
    path = write_jsonl(tmp_path / "one.jsonl", [bad])
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident)
    assert (info.value.line, info.value.field) == (1, "messages.0.content")
    report = ingest_file(store, path, incident_id=incident, skip_invalid=True)
    assert (report.files[0].rows, report.rejected) == (1, 1)
    assert rejects(store) == [(1, "messages.0.content", UNENCODABLE_EXPECTED, None)]


def test_bytes_that_are_not_utf8_are_refused_like_a_surrogate(store, incident, tmp_path):
    path = tmp_path / "native.jsonl"
    good = json.dumps(NATIVE).encode()
    bad = json.dumps({**NATIVE, "output": "XX"}).encode().replace(b"XX", b"\xed\xa0\xbd")
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident)
    assert (info.value.line, info.value.field) == (2, "output")


def test_what_an_adapter_decodes_is_checked_too_named_by_the_record_field(tmp_path):
    # The reader's check sees the input; the backstop after the adapter names a record field.
    path = write_jsonl(tmp_path / "n.jsonl", [NATIVE])
    (record,) = read_interactions(path)
    assert unencodable_field(record) is None
    broken = replace(record, metadata={"note": f"x{LONE}"})
    assert unencodable_field(broken) == ("metadata.note", f"x{LONE}")


def test_a_lone_surrogate_in_a_log_line(store, incident, tmp_path):
    log = tmp_path / "logs.jsonl"
    rows = [{"timestamp": "2026-10-13T10:00:00Z", "prompt": "fine \ud83d\ude00"},   # a whole pair
            {"timestamp": "2026-10-13T10:01:00Z", "prompt": f"cut {LONE}", "user_id": "u1"},
            {"timestamp": "2026-10-13T10:02:00Z", "prompt": "ok", "extra": {"note": LONE}},
            {"timestamp": "2026-10-13T10:03:00Z", "prompt": "ok too"}]
    write_jsonl(log, rows)
    before = store.table_counts()
    with pytest.raises(ValidationError) as info:
        ingest_file(store, log, incident_id=incident, kind="logs")
    assert (info.value.file, info.value.line, info.value.field) == (str(log), 2, "prompt")
    assert info.value.expected == UNENCODABLE_EXPECTED
    assert store.table_counts() == before
    report = ingest_file(store, log, incident_id=incident, kind="logs", skip_invalid=True)
    assert (report.files[0].rows, report.inserted, report.rejected) == (4, 2, 2)
    assert rejects(store) == [(2, "prompt", UNENCODABLE_EXPECTED, None),
                              (3, "extra.note", UNENCODABLE_EXPECTED, None)]
    prompts = store.con.execute("SELECT prompt FROM log_events ORDER BY source_line").fetchall()
    assert prompts == [("fine \U0001f600",), ("ok too",)]
    # Again, in a fresh transaction after the failed one, the check still works.
    with pytest.raises(ValidationError):
        ingest_file(store, log, incident_id=incident, kind="logs")


# --- 8. multi-part messages ---------------------------------------------------------------------

PARTS_OPENAI = [{"type": "text", "text": "first"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "second"}]
PARTS_OTEL = [{"type": "text", "content": "first"},
              {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
              {"type": "text", "content": "second"}]


def _otel_export(attributes: dict[str, str]) -> dict:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b9c7c989f97918e1",
        "startTimeUnixNano": "1718380800000000000",
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
    }]}]}]}


def test_multi_part_messages_are_joined_by_one_rule_in_every_format(tmp_path):
    native = {"messages": [{"role": "user", "content": PARTS_OPENAI}], "output": "o",
              "model_version": "m"}
    openai = {"request": {"model": "m", "messages": [{"role": "user", "content": PARTS_OPENAI}]},
              "response": {"id": "chatcmpl-1", "model": "m", "choices": [
                  {"index": 0, "message": {"role": "assistant", "content": "o"}}]}}
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": "o"}], "finish_reason": "stop"}])}
    otel_parts = _otel_export({**base, "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": PARTS_OTEL}])})
    otel_content = _otel_export({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                 "gen_ai.prompt": json.dumps([{"role": "user",
                                                               "content": PARTS_OPENAI}]),
                                 "gen_ai.completion": "o"})
    contents = {}
    for name, record in [("llmrca", native), ("openai-chat", openai),
                         ("otel-genai", otel_parts), ("otel-genai-content", otel_content)]:
        path = write_jsonl(tmp_path / f"{name}.jsonl", [record])
        (rec,) = read_interactions(path, name.replace("-content", ""))
        assert isinstance(rec, InteractionRecord), rec
        contents[name] = rec.messages[0]["content"]
    assert contents == dict.fromkeys(contents, "first\nsecond")


def test_a_text_part_without_text_is_an_error_named_by_its_place(tmp_path):
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}],
              "output": "o", "model_version": "m"}
    (error,) = read_interactions(write_jsonl(tmp_path / "n.jsonl", [record]), "llmrca")
    assert (error.line, error.field) == (1, "messages.0.content.0.text")


# --- 6. a file of no known format -----------------------------------------------------------------

def test_a_file_of_no_known_format_under_skip_invalid_keeps_every_line(store, incident, tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text(
        json.dumps({"conversation": "c1", "user_id": "user-00042", "text": "hello"}) + "\n"
        + json.dumps({"conversation": "c1", "who": {"email": "someone@example.com"}}) + "\n"
        + "\n"                                                   # blank: not a line of data
        + "garbage user-00042\n"
        + json.dumps({"conversation": "c2", "text": "bye"}) + "\n"
        + json.dumps([1, 2]) + "\n", encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident)
    assert (info.value.line, info.value.field) == (1, None)
    assert info.value.expected.startswith("a record of a known format (")
    report = ingest_file(store, path, incident_id=incident, skip_invalid=True)
    (result,) = report.files
    assert (result.rows, result.inserted, result.rejected) == (5, 0, 5)
    assert "5 read, 0 new, 0 unchanged, 5 rejected" in report.summary()
    assert "the format could not be detected (a record of a known format (" in report.summary()
    kept = rejects(store)
    assert [(line, field) for line, field, _, _ in kept] == [
        (1, None), (2, None), (4, None), (5, None), (6, None)]
    assert kept[2][2].startswith("one JSON object per line")
    assert all(reason.startswith("a record of a known format (")
               for i, (_, _, reason, _) in enumerate(kept) if i != 2)
    raws = [raw for *_, raw in kept]
    assert raws[2] is None                               # not JSON: kept without its text
    assert json.loads(raws[4]) == [1, 2] and json.loads(raws[3])["text"] == "bye"
    first, second = json.loads(raws[0]), json.loads(raws[1])
    assert first["text"] == "hello" and len(first["user_id"]) == 64     # hashed, as elsewhere
    assert len(second["who"]["email"]) == 64
    assert not any("user-00042" in (raw or "") or "someone@" in (raw or "") for raw in raws)
    assert store.count("interactions") == 0


# --- 7. garak 0.17: intent, detector hits as flags, the hitlog ----------------------------------

GARAK_RUN = "3f6d9a2e-8b1c-4e7f-a5d2-0c9b8e7f6a51"
REPORT_017 = FIXTURES / "garak" / f"garak.{GARAK_RUN}.report.jsonl"
HITLOG_017 = FIXTURES / "garak" / f"garak.{GARAK_RUN}.hitlog.jsonl"
ATTEMPT_A = "5b2f0c8e-1d7a-4c3b-9e6f-8a1d2c3b4e5f"
ATTEMPT_B = "c7e1a9d3-4f2b-4a6c-8d0e-1b2c3d4e5f60"


def test_garak_017_report_keeps_intent_flags_hits_and_says_what_it_skipped(store, incident):
    items = list(read_interactions(REPORT_017))
    records = [r for r in items if isinstance(r, InteractionRecord)]
    assert [r.source_id for r in records] == [
        f"{ATTEMPT_A}#0", f"{ATTEMPT_A}#1", f"{ATTEMPT_B}#0", f"{ATTEMPT_B}#1"]
    assert [r.metadata["intent"] for r in records] == ["T009ignore"] * 2 + ["T008"] * 2
    # a score at or over run.eval_threshold (0.5) is a hit, as garak counts it
    assert [r.flags for r in records] == [
        {"garak:dan.DAN": "detector hit (score 1)",
         "garak:mitigation.MitigationBypass": "detector hit (score 1)"},
        {},
        {"garak:promptinject.AttackRogueString": "detector hit (score 1)"},
        {"garak:promptinject.AttackRogueString": "detector hit (score 0.5)"}]
    assert records[0].model_version == "acme/assistant-v3"
    report = ingest_file(store, REPORT_017, incident_id=incident)
    (result,) = report.files
    assert (result.format, result.rows, result.inserted, result.rejected) == ("garak", 13, 4, 0)
    assert dict(result.skipped) == {
        "status-1 garak attempts (not yet scored)": 2,
        "garak 'eval' entries (run summaries, not interactions)": 3,
        "garak 'probe_summary' entries (run summaries, not interactions)": 2,
        "garak 'plugin_cache' entries (run summaries, not interactions)": 1,
        "garak 'completion' entries (run summaries, not interactions)": 1}
    assert "2 status-1 garak attempts (not yet scored)" in report.summary()
    stored = store.query("SELECT metadata FROM interactions ORDER BY source_line")
    assert {json.loads(m)["intent"] for m in stored["metadata"]} == {"T009ignore", "T008"}


def test_garak_hitlog_merges_onto_the_attempts_of_its_report(store, incident):
    ingest_file(store, REPORT_017, incident_id=incident)
    before = store.query("SELECT interaction_id, flags FROM interactions ORDER BY 1")
    report = ingest_file(store, HITLOG_017, incident_id=incident)
    (result,) = report.files
    # 4 hit lines: two detectors on A#0, one on B#0, one on B#1; nothing new, nothing in conflict
    assert (result.format, result.rows, result.inserted, result.merged, result.conflicts,
            result.rejected) == ("garak", 4, 0, 4, 0, 0)
    after = store.query(
        "SELECT interaction_id, source_line, metadata->>'output_index' AS i, flags, sources "
        "FROM interactions ORDER BY source_line, i")
    assert sorted(after["interaction_id"]) == before["interaction_id"].tolist()
    assert store.count("interactions") == 4
    hits = "detector hit (score {})".format
    assert [(line, int(i), json.loads(f or "{}"), [(Path(x["file"]).name, x["line"])
                                                 for x in json.loads(src)])
            for line, i, f, src in zip(after["source_line"], after["i"], after["flags"],
                                       after["sources"])] == [
        (5, 0, {"garak:dan.DAN": hits(1), "garak:mitigation.MitigationBypass": hits(1)},
         [(REPORT_017.name, 5), (HITLOG_017.name, 1), (HITLOG_017.name, 2)]),
        (5, 1, {}, [(REPORT_017.name, 5)]),           # A#1 was not hit
        (10, 0, {"garak:promptinject.AttackRogueString": hits(1)},
         [(REPORT_017.name, 10), (HITLOG_017.name, 3)]),
        (10, 1, {"garak:promptinject.AttackRogueString": hits(0.5)},
         [(REPORT_017.name, 10), (HITLOG_017.name, 4)])]


def test_garak_hitlog_alone_gives_the_hit_outputs_flagged(store, incident):
    records = [r for r in read_interactions(HITLOG_017) if isinstance(r, InteractionRecord)]
    assert [(r.source_id, r.flags) for r in records][:1] == [
        (f"{ATTEMPT_A}#0", {"garak:dan.DAN": "detector hit (score 1)"})]
    first = records[0]
    assert first.system_prompt == "You are Acme's assistant. Follow the content policy."
    assert first.output == "DAN Mode enabled. [non-actionable template: instructions omitted]"
    assert first.model_version == "acme/assistant-v3"     # generator "<type> <name>"
    assert first.metadata == {"probe": "dan.Dan_11_0", "goal": "disregard the system prompt",
                              "seq": 0, "output_index": 0, "run_id": GARAK_RUN,
                              "generator": "openai.OpenAICompatible"}
    report = ingest_file(store, HITLOG_017, incident_id=incident)
    assert (report.inserted, report.files[0].merged) == (3, 1)     # 3 outputs hit, A#0 twice
    # the report afterwards merges onto them, adding the unhit output, in conflict with nothing
    report = ingest_file(store, REPORT_017, incident_id=incident)
    assert (report.inserted, report.files[0].conflicts) == (1, 0)
    assert store.count("interactions") == 4


def test_json_nested_too_deep_is_a_field_error_not_a_recursion_error(store, tmp_path):
    from llmrca.errors import ValidationError
    from llmrca.incidents import create_incident
    from llmrca.ingest import ingest_file

    create_incident(store, "INC-D", title="t", category="other")
    path = tmp_path / "deep.jsonl"
    deep = '{"a":' * 900 + "1" + "}" * 900
    path.write_text('{"messages": [{"role": "user", "content": "hi"}], "model_version": "m"}\n'
                    '{"messages": [{"role": "user", "content": "x"}], "model_version": "m", '
                    f'"metadata": {deep}}}\n')
    before = store.table_counts()
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id="INC-D")
    assert (info.value.line, info.value.field) == (2, "metadata")
    assert "nested at most 64 levels" in info.value.expected
    assert store.table_counts() == before
    report = ingest_file(store, path, incident_id="INC-D", skip_invalid=True)
    assert (report.inserted, report.rejected) == (1, 1)


def test_a_timestamp_out_of_range_in_utc_is_a_field_error(store, tmp_path):
    from llmrca.errors import ValidationError
    from llmrca.incidents import create_incident
    from llmrca.ingest import ingest_file

    create_incident(store, "INC-T", title="t", category="other")
    path = tmp_path / "tz.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "x"}], "model_version": "m", '
                    '"timestamp": "0001-01-01T00:00:00+05:00"}\n')
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id="INC-T")
    assert (info.value.line, info.value.field) == (1, "timestamp")


@pytest.mark.parametrize("name", ["logs.jsonl", "incident.yaml", "training_data/v.jsonl"])
def test_a_bundle_file_that_links_outside_the_bundle_is_refused(store, tmp_path, name):
    from llmrca.errors import ValidationError
    from llmrca.ingest import ingest_bundle

    outside = tmp_path / "elsewhere.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    bundle = tmp_path / "bundle"
    (bundle / "training_data").mkdir(parents=True)
    (bundle / "incident.yaml").write_text("id: INC-L\ntitle: t\ncategory: other\n"
                                          "detected_at: 2026-10-14T09:12:00Z\n")
    link = bundle / name
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    before = store.table_counts()
    with pytest.raises(ValidationError, match="not a link to one outside it") as info:
        ingest_bundle(store, bundle)
    assert info.value.file == str(link)
    assert "root:x" not in str(info.value)            # nothing of the target is quoted
    assert store.table_counts() == before


# --- Step 5: paths, times, scores, unreadable lines, CSV lines -----------------------------------

T0 = "2026-10-13T10:00:00Z"


def _write_log(path: Path, prompts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"timestamp": T0, "prompt": p} for p in prompts]
    if path.suffix == ".jsonl":
        write_jsonl(path, rows)
    elif path.suffix == ".csv":
        path.write_text("timestamp,prompt\n" + "".join(f'{T0},"{p}"\n' for p in prompts))
    else:
        import duckdb

        con = duckdb.connect()
        values = ", ".join(f"('{T0}', '{p}')" for p in prompts)
        quoted = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM (VALUES {values}) v(timestamp, prompt)) "
                    f"TO '{quoted}' (FORMAT parquet)")
        con.close()
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_paths_with_glob_characters_read_only_their_own_file(store, tmp_path, suffix):
    # DuckDB globs * ? [...] {a,b} **: inc[A] matches incA, inc? matches incA and inc?.
    from llmrca.ingest import ingest_bundle

    folders = ["incA", "inc[A]", "inc?", "inc{A,B}", "inc*"]
    for i, name in enumerate(folders):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "incident.yaml").write_text(
            f"id: INC-G{i}\ntitle: t\ncategory: other\ndetected_at: {T0}\n")
        _write_log(folder / f"logs{suffix}", [f"{name} row {j}" for j in range(i + 1)])
    for i, name in enumerate(folders):
        ingest_bundle(store, tmp_path / name)
        got = store.con.execute("SELECT prompt FROM log_events WHERE incident_id = ? "
                                "ORDER BY prompt", [f"INC-G{i}"]).fetchall()
        assert got == [(f"{name} row {j}",) for j in range(i + 1)], name
    assert store.count("log_events") == sum(range(1, len(folders) + 1))
    leftovers = [p for p in Path(__import__("tempfile").gettempdir()).glob("llmrca-read-*")]
    assert leftovers == []                     # the private link folders are removed


def _log_lines(path: Path, timestamps: list[str], **extra) -> Path:
    write_jsonl(path, [{"timestamp": t, "prompt": f"p{i}", **extra} for i, t in
                       enumerate(timestamps)])
    return path


@pytest.mark.parametrize("value", ["infinity", "-infinity", "epoch", "290000-01-01T00:00:00Z",
                                   "1899-12-31T23:59:59Z", "2201-01-01T00:00:00Z"])
def test_log_timestamps_outside_1900_to_2200_are_refused(store, incident, tmp_path, value):
    path = _log_lines(tmp_path / "logs.jsonl", [T0, value, "2026-10-13T11:00:00+01:00"])
    before = store.table_counts()
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    assert (info.value.line, info.value.field, info.value.got) == (2, "timestamp", value)
    assert "between 1900-01-01 and 2200-12-31" in info.value.expected
    assert store.table_counts() == before
    report = ingest_file(store, path, incident_id=incident, kind="logs", skip_invalid=True)
    assert (report.inserted, report.rejected) == (2, 1)
    window = store.con.execute("SELECT min(ts), max(ts) FROM log_events").fetchall()[0]
    assert [t.isoformat() for t in window] == ["2026-10-13T10:00:00", "2026-10-13T10:00:00"]


def test_the_edges_of_the_timestamp_range_are_accepted(store, incident, tmp_path):
    path = _log_lines(tmp_path / "logs.jsonl", ["1900-01-01T00:00:00Z",
                                                "2200-12-31T23:59:59.999999Z"])
    assert ingest_file(store, path, incident_id=incident, kind="logs").inserted == 2


@pytest.mark.parametrize("text", ["NaN", "inf", "-Infinity", "1e400"])
def test_a_score_that_is_not_finite_is_refused(store, incident, tmp_path, text):
    path = tmp_path / "guardrail.jsonl"
    path.write_text(json.dumps({"timestamp": T0, "decision": "block", "score": 0.5}) + "\n"
                    + f'{{"timestamp": "{T0}", "decision": "block", "score": "{text}"}}\n')
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="guardrail")
    assert (info.value.line, info.value.field, info.value.expected) == (
        2, "score", "a finite number")


def test_invalid_utf8_and_long_lines_are_named_and_skipped_one_by_one(store, incident,
                                                                      tmp_path):
    good = [json.dumps({"timestamp": T0, "prompt": f"p{i}"}).encode() for i in range(4)]
    bad_bytes = json.dumps({"timestamp": T0, "prompt": "XX"}).encode().replace(b"XX", b"caf\xe9")
    long = json.dumps({"timestamp": T0, "prompt": "x" * (5 << 20)}).encode()
    path = tmp_path / "logs.jsonl"
    path.write_bytes(b"\n".join([good[0], b"", bad_bytes, good[1], long, good[2], bad_bytes,
                                 good[3]]) + b"\n")
    before = store.table_counts()
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    assert (info.value.line, info.value.field) == (3, "prompt")
    assert info.value.expected == UNENCODABLE_EXPECTED
    assert "ignore_errors" not in str(info.value) and "\n" not in str(info.value)
    assert store.table_counts() == before
    report = ingest_file(store, path, incident_id=incident, kind="logs", skip_invalid=True)
    assert (report.files[0].rows, report.inserted, report.rejected) == (7, 4, 3)
    assert store.con.execute("SELECT source_line, prompt FROM log_events ORDER BY 1"
                             ).fetchall() == [(1, "p0"), (4, "p1"), (6, "p2"), (8, "p3")]
    assert rejects(store) == [(3, "prompt", UNENCODABLE_EXPECTED, None),
                              (5, None, "a line under 4 MiB", None),
                              (7, "prompt", UNENCODABLE_EXPECTED, None)]


def test_a_line_over_4_mib_is_an_error_at_its_line(store, incident, tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps({"timestamp": T0}) + "\n"
                    + json.dumps({"timestamp": T0, "prompt": "x" * (4 << 20)}) + "\n")
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    assert (info.value.line, info.value.expected) == (2, "a line under 4 MiB")


def test_csv_lines_are_physical_lines_and_a_quote_left_open_is_named(store, incident, tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text(f'timestamp,prompt\n{T0},"one\ntwo\nthree"\n{T0},plain\nlater,x\n')
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    # header, a record on lines 2-4, line 5, then the bad one: line 6, not 4 (the record count)
    assert (info.value.line, info.value.field) == (6, "timestamp")
    report = ingest_file(store, path, incident_id=incident, kind="logs", skip_invalid=True)
    assert (report.inserted, report.rejected) == (2, 1)
    assert store.con.execute("SELECT source_line FROM log_events ORDER BY 1").fetchall() == [
        (2,), (5,)]
    # An unterminated quote was sniffed as a '|'-delimited file and reported as a bad time.
    path = tmp_path / "open.csv"
    path.write_text(f'timestamp,prompt\n{T0},a\n{T0},"b\n{T0},c\n')
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    assert info.value.line == 3 and "quoted field is closed" in info.value.expected


def test_csv_rows_after_skipped_records_keep_their_physical_lines(store, incident, tmp_path):
    path = tmp_path / "logs.csv"
    path.write_bytes(f'timestamp,prompt\n{T0},"a\nb"\n{T0},x\n{T0},caf'.encode() + b"\xe9\n"
                     + f"{T0},y\n{T0},too,many\n{T0},z\n".encode())
    with pytest.raises(ValidationError) as info:
        ingest_file(store, path, incident_id=incident, kind="logs")
    assert (info.value.line, info.value.field) == (5, "prompt")
    report = ingest_file(store, path, incident_id=incident, kind="logs", skip_invalid=True)
    assert (report.inserted, report.rejected) == (4, 2)
    assert store.con.execute("SELECT source_line, prompt FROM log_events ORDER BY 1"
                             ).fetchall() == [(2, "a\nb"), (4, "x"), (6, "y"), (8, "z")]
    assert [(line, field) for line, field, _, _ in rejects(store)] == [(5, "prompt"), (7, None)]
