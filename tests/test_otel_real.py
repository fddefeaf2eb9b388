"""otel-genai, otel-genai-logs and openai-chat on telemetry written by the real instrumentation.

The fixtures under tests/fixtures/otel/real/ come from tests/fixtures/otel/generate.py: the real
``openai`` client, driven through ``opentelemetry-instrumentation-openai-v2`` against a local fake
server, 10 calls in 4 conversations, in each content-capture mode. ``sidecar.json`` says exactly
what the client sent and got; every test compares against it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import llmrca.ingest.adapters  # noqa: F401  (registers the formats)
from llmrca.errors import ValidationError
from llmrca.ingest import ingest_bundle, ingest_file
from llmrca.ingest.formats import detect_format, read_interactions
from llmrca.ingest.records import InteractionRecord, Skipped

REAL = Path(__file__).parent / "fixtures" / "otel" / "real"
INCIDENT = "INC-OTEL"
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
PARAMS = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
          "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed"}


def sidecar(mode: str) -> list[dict]:
    return json.loads((REAL / mode / "sidecar.json").read_text(encoding="utf-8"))["calls"]


def read(path: Path) -> tuple[list[InteractionRecord], dict[str, Skipped]]:
    items = list(read_interactions(path))
    assert [i for i in items if isinstance(i, ValidationError)] == []
    return ([i for i in items if isinstance(i, InteractionRecord)],
            {i.reason: i for i in items if isinstance(i, Skipped)})


def expected_output(call: dict) -> str | None:
    if call["output_tool_calls"]:
        calls = json.dumps(call["output_tool_calls"], ensure_ascii=False)
        return f"{call['output']}\n{calls}" if call["output"] else calls
    return call["output"]


def expected_conversation(call: dict) -> tuple[str | None, list[dict]]:
    messages = [dict(m) for m in call["messages"]]
    system = messages.pop(0)["content"] if messages[0]["role"] == "system" else None
    return system, messages


def salted(store, value: str | None) -> str | None:
    return None if value is None else hashlib.sha256((store.salt + value).encode()).hexdigest()


@pytest.fixture
def incident(store, tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "incident.yaml").write_text(
        f"id: {INCIDENT}\ntitle: Support bot leaks\ndetected_at: 2026-12-03T09:00:00Z\n"
        "category: privacy\n", encoding="utf-8")
    ingest_bundle(store, folder)
    return store


def rows(store) -> list[dict]:
    cursor = store.con.execute(
        "SELECT response_id, trace_id, span_id, session_hash, user_hash, output, tools, "
        "sources, conflicts, context, messages FROM interactions WHERE incident_id = ? "
        "ORDER BY response_id", [INCIDENT])
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor.fetchall():
        row = dict(zip(names, values))
        for key in ("tools", "sources", "conflicts", "context", "messages"):
            row[key] = json.loads(row[key]) if isinstance(row[key], str) else None
        out.append(row)
    return out


# --- detection ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, name, fmt", [
    ("span_only", "traces.jsonl", "otel-genai"), ("event_only", "logs.jsonl", "otel-genai-logs"),
    ("legacy", "logs.jsonl", "otel-genai-logs"), ("span_and_event", "provider.jsonl", "openai-chat"),
])
def test_each_real_export_is_detected(mode, name, fmt):
    assert detect_format(REAL / mode / name) == fmt


# --- conversations through the span tree ----------------------------------------------------------

def test_the_fixture_puts_chat_spans_and_their_conversation_on_different_lines():
    line_of, parent_of, conversation_on, chats = {}, {}, set(), []
    for n, line in enumerate((REAL / "span_only" / "traces.jsonl").read_text().splitlines(), 1):
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    key = (span["traceId"], span["spanId"])
                    line_of[key], parent_of[key] = n, span.get("parentSpanId")
                    keys = {a["key"] for a in span.get("attributes", [])}
                    if "gen_ai.conversation.id" in keys:
                        conversation_on.add(key)
                    if span["name"].startswith("chat "):
                        chats.append(key)
                        assert "gen_ai.conversation.id" not in keys
    far, levels = 0, []
    for key in chats:
        ancestor, level = (key[0], parent_of[key]), 1
        while ancestor in line_of and ancestor not in conversation_on:
            ancestor, level = (key[0], parent_of[ancestor]), level + 1
        assert ancestor in conversation_on
        far += line_of[ancestor] != line_of[key]
        levels.append(level)
    assert len(chats) == 10
    assert far == 6                               # their conversation on another export line
    assert sorted(levels) == [1] * 7 + [2] * 3    # conversation C: invoke_agent > workflow > chat


def test_conversation_and_user_ids_resolve_through_two_level_span_trees(incident):
    calls = sidecar("span_only")
    records, skipped = read(REAL / "span_only" / "traces.jsonl")
    assert len(records) == 10
    by_response = {r.response_id: r for r in records}
    for call in calls:
        record = by_response[call["response_id"]]
        assert (record.session_id, record.user_id) == (call["conversation_id"], call["user_id"])
    assert {r: s.count for r, s in skipped.items()} == {
        "non-chat spans (invoke_agent)": 9, "non-chat spans (invoke_workflow)": 3}

    ingest_file(incident, REAL / "span_only" / "traces.jsonl", incident_id=INCIDENT)
    stored = {row["response_id"]: row for row in rows(incident)}
    assert len(stored) == 10
    assert len({row["session_hash"] for row in stored.values()}) == 4    # 4 conversations
    for call in calls:
        row = stored[call["response_id"]]
        assert row["session_hash"] == salted(incident, call["conversation_id"])
        assert row["user_hash"] == salted(incident, call["user_id"])


# --- every field against the sidecar --------------------------------------------------------------

@pytest.mark.parametrize("mode, name", [
    ("span_only", "traces.jsonl"), ("span_and_event", "traces.jsonl"),
    ("event_only", "logs.jsonl"), ("span_and_event", "logs.jsonl"), ("legacy", "logs.jsonl"),
    ("span_only", "provider.jsonl"),
])
def test_every_field_matches_what_the_client_sent_and_got(mode, name):
    calls = sidecar(mode)
    records, _ = read(REAL / mode / name)
    assert len(records) == len(calls) == 10
    fmt = records[0].source_format
    # The legacy per-message events carry no response id: their records are found by span.
    by_key = {(r.response_id or (r.trace_id, r.span_id)): r for r in records}
    for call in calls:
        key = call["response_id"] if mode != "legacy" else (call["trace_id"], call["span_id"])
        record = by_key[key]
        system, messages = expected_conversation(call)
        assert record.system_prompt == system
        assert record.messages == messages
        assert record.output == expected_output(call)
        assert record.metadata["finish_reason"] == call["finish_reason"]
        assert record.metadata.get("output_tool_calls") == call["output_tool_calls"]
        if fmt == "openai-chat":
            assert record.model_version == call["model"]
            assert record.metadata["request_params"] == call["params"]
            assert record.tools == call["tools"]
            assert record.response_id == call["response_id"]
            continue
        assert (record.trace_id, record.span_id) == (call["trace_id"], call["span_id"])
        if fmt == "otel-genai":
            attributes = record.metadata["attributes"]
            assert record.parent_span_id == call["parent_span_id"]
            assert (record.session_id, record.user_id) == (call["conversation_id"],
                                                           call["user_id"])
        elif mode != "legacy":
            attributes = record.metadata["otel_log"]["attributes"]
        if mode == "legacy":     # per-message events: no model, parameters or response id
            assert (record.model_version, record.response_id) == (None, None)
            continue
        assert record.model_version == call["model"]
        assert record.response_id == call["response_id"]
        assert {k: attributes[v] for k, v in PARAMS.items() if v in attributes} == call["params"]


# --- execute_tool spans ---------------------------------------------------------------------------

def test_execute_tool_spans_are_context_of_the_call_that_asked_for_them():
    calls = sidecar("span_only")
    (asked,) = [c for c in calls if c.get("tool_execution")]
    records, _ = read(REAL / "span_only" / "traces.jsonl")
    with_context = [r for r in records if r.context]
    assert [r.response_id for r in with_context] == [asked["response_id"]]
    (item,) = with_context[0].context
    expected = asked["tool_execution"]
    assert item["kind"] == "tool_execution"
    assert {k: item[k] for k in ("name", "call_id", "arguments", "result")} == expected
    assert item["type"] == "function"


def test_execute_tool_spans_of_calls_without_content_are_counted():
    _, skipped = read(REAL / "no_content" / "traces.jsonl")
    assert skipped["execute_tool spans with no model call to attach to"].count == 1


# --- one call, several sources --------------------------------------------------------------------

SOURCES = [("traces.jsonl", "otel-genai"), ("logs.jsonl", "otel-genai-logs"),
           ("provider.jsonl", "openai-chat")]


def test_spans_events_and_request_log_of_ten_calls_merge_into_ten_interactions(incident):
    calls = sidecar("span_and_event")
    reports = [ingest_file(incident, REAL / "span_and_event" / name, incident_id=INCIDENT)
               for name, _ in SOURCES]
    assert [r.files[0].format for r in reports] == [fmt for _, fmt in SOURCES]
    assert [(r.files[0].inserted, r.files[0].merged) for r in reports] == [
        (10, 0), (0, 10), (0, 10)]
    assert [r.files[0].conflicts for r in reports] == [0, 0, 0]
    assert all("disagree" not in r.summary() for r in reports)
    stored = {row["response_id"]: row for row in rows(incident)}
    assert len(stored) == 10
    for call in calls:
        row = stored[call["response_id"]]
        assert [s["format"] for s in row["sources"]] == [fmt for _, fmt in SOURCES]
        assert row["conflicts"] is None
        assert row["tools"] == call["tools"]                  # only the request log has them
        assert row["session_hash"] == salted(incident, call["conversation_id"])   # only spans
        assert (row["trace_id"], row["span_id"]) == (call["trace_id"], call["span_id"])
        assert row["output"] == expected_output(call)
        assert len(row["context"] or []) == (1 if call.get("tool_execution") else 0)


def test_one_altered_output_is_exactly_one_conflict(incident, tmp_path):
    calls = sidecar("span_and_event")
    lines = (REAL / "span_and_event" / "provider.jsonl").read_text().splitlines()
    altered = json.loads(lines[4])
    altered["response"]["choices"][0]["message"]["content"] = "Sure, here are the internal notes."
    lines[4] = json.dumps(altered)
    provider = tmp_path / "provider.jsonl"
    provider.write_text("\n".join(lines) + "\n")
    for path in (REAL / "span_and_event" / "traces.jsonl", REAL / "span_and_event" / "logs.jsonl",
                 provider):
        report = ingest_file(incident, path, incident_id=INCIDENT)
    assert report.files[0].conflicts == 1
    assert "1 field(s) on which sources disagree" in report.summary()
    stored = rows(incident)
    assert len(stored) == 10
    conflicted = [row for row in stored if row["conflicts"]]
    assert [row["response_id"] for row in conflicted] == [altered["response"]["id"]]
    (conflict,) = conflicted[0]["conflicts"]
    call = next(c for c in calls if c["response_id"] == altered["response"]["id"])
    assert (conflict["field"], conflict["stored"], conflict["other"]) == (
        "output", call["output"], "Sure, here are the internal notes.")
    assert conflict["source"]["format"] == "openai-chat"


def test_events_only_logs_with_the_request_log_merge_by_response_id(incident):
    for name in ("logs.jsonl", "provider.jsonl"):
        report = ingest_file(incident, REAL / "event_only" / name, incident_id=INCIDENT)
    assert report.files[0].conflicts == 0
    stored = rows(incident)
    assert len(stored) == 10
    assert all([s["format"] for s in row["sources"]] == ["otel-genai-logs", "openai-chat"]
               for row in stored)


# --- content not captured -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["no_content", "event_only"])
def test_spans_without_content_are_skipped_with_the_variable_to_set(incident, mode):
    report = ingest_file(incident, REAL / mode / "traces.jsonl", incident_id=INCIDENT)
    (result,) = report.files
    assert (result.format, result.inserted, result.merged) == ("otel-genai", 0, 0)
    assert dict(result.skipped)["model-call spans without captured content"] == 10
    summary = report.summary()
    assert "10 model-call spans without captured content" in summary
    assert CAPTURE_VARIABLE in summary and "span_only" in summary and "event_only" in summary
    assert rows(incident) == []
