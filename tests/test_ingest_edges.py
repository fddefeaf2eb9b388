"""Edges of ingestion: text that cannot be stored, files of no known format, garak's intent and
hitlog, and the one rule for multi-part message text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmrca.ingest.adapters  # noqa: F401  (registers the formats)
from llmrca.ingest import read_interactions
from llmrca.ingest.records import InteractionRecord
from llmrca.store.ingest_writes import upsert_incident

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
