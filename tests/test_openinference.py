"""The openinference adapter, on exports made by the real openinference-instrumentation-openai.

The fixtures come from tests/fixtures/openinference/generate.py (run by hand; see its header for
the package versions): the OTLP/JSON export (``traces.jsonl``), the fake provider's request log of
the same chat calls (``provider_log.jsonl``, format openai-chat), and ``sent.json``, what the client
sent and got. Every expectation below is derived from ``sent.json``, not typed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import llmrca.ingest.adapters  # noqa: F401  (registers the formats)
from llmrca.errors import ValidationError
from llmrca.ingest import ingest_bundle, ingest_file
from llmrca.ingest.formats import FORMATS, detect_format, read_interactions
from llmrca.ingest.openinference import OpenInferenceFormat
from llmrca.ingest.records import InteractionRecord, Skipped, Where
from llmrca.store import interactions as table

HERE = Path(__file__).parent / "fixtures" / "openinference"
TRACES = HERE / "traces.jsonl"
HIDDEN = HERE / "traces_hidden_inputs.jsonl"
PROVIDER_LOG = HERE / "provider_log.jsonl"
SENT = json.loads((HERE / "sent.json").read_text(encoding="utf-8"))
CALLS = SENT["calls"]
INCIDENT = """\
id: INC-OI
title: OpenInference traces
detected_at: 2026-10-14T09:12:00Z
category: privacy
severity: medium
"""


def read(path: Path) -> tuple[list[InteractionRecord], list[Skipped]]:
    items = list(read_interactions(path))
    assert [i for i in items if isinstance(i, ValidationError)] == []
    return ([i for i in items if isinstance(i, InteractionRecord)],
            [i for i in items if isinstance(i, Skipped)])


def by_response(records: list[InteractionRecord]) -> dict[str, InteractionRecord]:
    return {r.response_id: r for r in records}


def spans(path: Path) -> dict[str, tuple[int, dict]]:
    """span id -> (export line, span), with attributes as a plain dict."""
    out = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for rs in json.loads(text)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
                    out[span["spanId"]] = (line, {**span, "attributes": attrs})
    return out


def expected_message(message: dict) -> dict:
    """A message the client sent, as llmrca's chat shape has it."""
    content = message.get("content")
    if isinstance(content, list):   # the one rule for multi-part content: newline-joined text
        content = "\n".join(part["text"] for part in content if part.get("type") == "text")
    out = {"role": message["role"], "content": content}
    if message.get("tool_calls"):
        out["tool_calls"] = [{"id": c["id"], "type": c["type"], "function": c["function"]}
                             for c in message["tool_calls"]]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def salted(store, value: str) -> str:
    return hashlib.sha256((store.salt + value).encode("utf-8")).hexdigest()


def make_incident(tmp_path: Path, store, interactions: Path | None = None):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "incident.yaml").write_text(INCIDENT)
    if interactions is not None:
        shutil.copy(interactions, bundle / "interactions.jsonl")
    return ingest_bundle(store, bundle)


def stored(store) -> list[dict]:
    frame = store.query("SELECT * FROM interactions WHERE incident_id = 'INC-OI' "
                        "ORDER BY response_id")
    rows = [{k: (None if not isinstance(v, (list, dict, str)) and pd.isna(v) else v)
             for k, v in row.items()} for row in frame.to_dict("records")]
    for row in rows:
        for name in table.JSON_COLUMNS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return rows


# --- detection ------------------------------------------------------------------------------------

def test_detection_picks_openinference_not_otel_genai():
    assert detect_format(TRACES) == "openinference"
    assert detect_format(HIDDEN) == "openinference"
    assert detect_format(PROVIDER_LOG) == "openai-chat"
    assert detect_format(Path(__file__).parent / "fixtures" / "otel" / "genai_traces.jsonl") == (
        "otel-genai")
    lines = TRACES.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    for text in lines:    # every export line, not only the first, is claimed by one format
        record = json.loads(text)
        assert [n for n in FORMATS.available() if FORMATS.get(n).sniff(record)] == [
            "openinference"]


# --- fields against what the client sent ----------------------------------------------------------

def test_every_field_matches_what_the_client_sent():
    records, _ = read(TRACES)
    assert len(records) == len(CALLS) == 4
    found = by_response(records)
    for call in CALLS:
        kwargs, response = call["kwargs"], call["response"]
        record = found[response["id"]]
        sent = [expected_message(m) for m in kwargs["messages"]]
        system = [m["content"] for m in sent if m["role"] == "system"]
        assert record.system_prompt == (system[0] if system else None)
        assert record.messages == [m for m in sent if m["role"] != "system"]
        message = response["choices"][0]["message"]
        if message.get("tool_calls"):
            calls = [{"id": c["id"], "type": c["type"], "function": {
                "name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                for c in message["tool_calls"]]
            assert record.output == json.dumps(calls)
            assert record.metadata["output_tool_calls"] == calls
        else:
            assert record.output == message["content"]
        assert record.model_version == response["model"]
        assert record.metadata["finish_reason"] == response["choices"][0]["finish_reason"]
        # Tool definitions are the record's tools, as every adapter keeps them, not a parameter.
        params = {k: v for k, v in kwargs.items() if k not in ("model", "messages", "tools")}
        assert record.metadata["request_params"] == params
        assert record.tools == kwargs.get("tools")
        usage = response["usage"]
        assert record.metadata["token_counts"] == {
            "prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"],
            "total": usage["total_tokens"]}
        assert record.metadata["provider"] == "openai"
        assert record.trace_id and record.span_id and record.parent_span_id
    # sampling parameters, multi-turn and the system prompt, spelled out once
    first_two = [found[c["response"]["id"]] for c in CALLS[:2]]
    assert [r.metadata["request_params"] for r in first_two] == [
        {"temperature": 0.2, "top_p": 0.9, "max_tokens": 256}] * 2
    assert [len(r.messages) for r in first_two] == [1, 3]
    # two text parts, joined by the one rule (a newline)
    assert first_two[0].messages[0]["content"] == "Plan a weekend \nin Oslo."
    assert first_two[0].system_prompt.startswith("You are a concise travel assistant")


def test_the_tool_round_trip_keeps_calls_ids_and_results():
    records, _ = read(TRACES)
    asked, answered = (by_response(records)[c["response"]["id"]] for c in CALLS[2:])
    call_id = CALLS[2]["response"]["choices"][0]["message"]["tool_calls"][0]["id"]
    assert json.loads(asked.output)[0]["id"] == call_id
    assert answered.messages[1]["tool_calls"][0]["id"] == call_id
    assert answered.messages[2] == {"role": "tool", "tool_call_id": call_id,
                                    "content": CALLS[3]["kwargs"]["messages"][2]["content"]}
    assert answered.output == CALLS[3]["response"]["choices"][0]["message"]["content"]


def test_input_and_output_value_are_not_counted_twice():
    records, _ = read(TRACES)
    for record in records:
        assert "input.value" not in record.metadata["attributes"]
        assert "output.value" not in record.metadata["attributes"]
        assert not any(k.startswith("llm.input_messages") for k in record.metadata["attributes"])


# --- sessions and users ---------------------------------------------------------------------------

def test_session_and_user_come_from_an_ancestor_on_another_export_line():
    records, _ = read(TRACES)
    found = by_response(records)
    all_spans = spans(TRACES)
    agent, chain = SENT["ids"]["agent"], SENT["ids"]["chain"]
    for call in CALLS[:2]:      # using_session/using_user put them on the LLM span itself
        record = found[call["response"]["id"]]
        assert (record.session_id, record.user_id) == (agent["session_id"], agent["user_id"])
        assert "session_from_span" not in record.metadata
    for call in CALLS[2:]:      # only the CHAIN span has them, on a later export line
        record = found[call["response"]["id"]]
        assert (record.session_id, record.user_id) == (chain["session_id"], chain["user_id"])
        ancestor = record.metadata["session_from_span"]
        assert ancestor == record.parent_span_id == record.metadata["user_from_span"]
        line, span = all_spans[ancestor]
        assert span["attributes"]["openinference.span.kind"] == "CHAIN"
        assert "session.id" not in all_spans[record.span_id][1]["attributes"]
        assert line != record.source_line
    # parsing one line alone cannot see the ancestor: the whole-file hook is what resolves it
    line = records[2].source_line
    alone = OpenInferenceFormat().parse(json.loads(TRACES.read_text().splitlines()[line - 1]),
                                        Where(str(TRACES), line))
    assert [r.session_id for r in alone if isinstance(r, InteractionRecord)
            and r.response_id == CALLS[2]["response"]["id"]] == [None]


def test_session_and_user_hashes_are_salted_hashes_of_the_ids(store, tmp_path):
    make_incident(tmp_path, store, TRACES)
    rows = {r["response_id"]: r for r in stored(store)}
    assert len(rows) == 4
    for call, ids in zip(CALLS, ["agent", "agent", "chain", "chain"]):
        row = rows[call["response"]["id"]]
        assert row["session_hash"] == salted(store, SENT["ids"][ids]["session_id"])
        assert row["user_hash"] == salted(store, SENT["ids"][ids]["user_id"])
    text = store.query("SELECT * FROM interactions").astype(str).to_string()
    for ids in SENT["ids"].values():
        assert ids["session_id"] not in text and ids["user_id"] not in text


# --- TOOL and GUARDRAIL spans ---------------------------------------------------------------------

def test_tool_and_guardrail_spans_are_context_of_their_llm_call():
    records, _ = read(TRACES)
    first, flagged, asked, answered = (by_response(records)[c["response"]["id"]] for c in CALLS)
    assert first.context == [] and answered.context == []
    assert first.flags == {} and answered.flags == {} and asked.flags == {}
    # the output guardrail checked call 2's answer and flagged it
    [check] = flagged.context
    assert (check["kind"], check["name"], check["decision"]) == (
        "guardrail", "pii-output-filter", "flag")
    assert check["input"] == flagged.output
    assert flagged.flags == {"guardrail": "flag"}
    assert flagged.guardrail["decision"] == "flag"
    # the input guardrail ran before call 3, which asked for the tool the TOOL span ran
    assert [item["kind"] for item in asked.context] == ["guardrail", "tool"]
    guard, tool = asked.context
    assert (guard["name"], guard["decision"]) == ("prompt-injection-check", "allow")
    call = CALLS[2]["response"]["choices"][0]["message"]["tool_calls"][0]
    assert (tool["name"], tool["tool_call_id"], tool["input"]) == (
        call["function"]["name"], call["id"], call["function"]["arguments"])
    assert tool["output"] == CALLS[3]["kwargs"]["messages"][2]["content"]


def test_non_llm_spans_are_counted_in_skipped_reasons(store, tmp_path):
    records, skipped = read(TRACES)
    assert len(records) == 4
    assert Counter(s.reason for s in skipped) == {
        "AGENT spans (not an LLM call)": 1,
        "CHAIN spans (not an LLM call)": 1,
        "EMBEDDING spans (not an LLM call)": 1,
        "GUARDRAIL spans (kept as context of their LLM call)": 2,
        "TOOL spans (kept as context of their LLM call)": 1,
    }
    report = make_incident(tmp_path, store, TRACES)
    [result] = report.files
    assert (result.format, result.inserted) == ("openinference", 4)
    assert dict(result.skipped)["GUARDRAIL spans (kept as context of their LLM call)"] == 2
    assert "skipped: 1 AGENT spans (not an LLM call)" in report.summary()
    # the flagged call is the incident's offending one; the rest is context
    assert report.roles == {"context": 3, "offending": 1}


# --- one call, one interaction across sources -----------------------------------------------------

@pytest.mark.parametrize("spans_first", [True, False])
def test_spans_and_the_provider_log_give_one_interaction_per_call(store, tmp_path, spans_first):
    first, second = (TRACES, PROVIDER_LOG) if spans_first else (PROVIDER_LOG, TRACES)
    make_incident(tmp_path, store, first)
    report = ingest_file(store, second, incident_id="INC-OI")
    [result] = report.files
    assert result.format == ("openai-chat" if spans_first else "openinference")
    assert (result.inserted, result.merged, result.conflicts) == (0, 4, 0)
    rows = stored(store)
    assert len(rows) == len(CALLS) == 4
    assert [r["response_id"] for r in rows] == sorted(c["response"]["id"] for c in CALLS)
    for row, call in zip(rows, sorted(CALLS, key=lambda c: c["response"]["id"])):
        assert row["conflicts"] is None
        assert sorted(s["format"] for s in row["sources"]) == ["openai-chat", "openinference"]
        assert row["trace_id"] and row["span_id"]                 # only the spans have these
        assert row["session_hash"] is not None                   # only the spans have these
        assert row["tools"] == call["kwargs"].get("tools")
    flagged = [r for r in rows if r["flags"]]
    assert [r["response_id"] for r in flagged] == [CALLS[1]["response"]["id"]]
    # again: nothing new, nothing changed
    again = ingest_file(store, second, incident_id="INC-OI").files[0]
    assert (again.inserted, again.conflicts, again.unchanged) == (0, 0, 4)


# --- what is not there ----------------------------------------------------------------------------

def test_hidden_inputs_give_no_interaction_and_a_hint(store, tmp_path):
    records, skipped = read(HIDDEN)
    assert records == []
    assert [(s.reason, s.count) for s in skipped] == [("LLM spans whose input was not captured", 1)]
    make_incident(tmp_path, store)
    report = ingest_file(store, HIDDEN, incident_id="INC-OI")
    assert report.inserted == 0
    summary = report.summary()
    assert "1 LLM spans whose input was not captured" in summary
    assert "note: OpenInference left the prompts out" in summary
    assert "OPENINFERENCE_HIDE_INPUTS" in summary and "hide_inputs" in summary
    # the sent question is nowhere, the output the span still held is not ingested either
    assert SENT["hidden_calls"][0]["kwargs"]["messages"][0]["content"] not in json.dumps(
        [vars(s) for s in skipped])


def redacted(tmp_path: Path, keys: tuple[str, ...] = ()) -> Path:
    """The export with its input message texts (and the given keys) replaced as TraceConfig's
    hide_input_text (and hide_inputs) do."""
    lines = []
    for text in TRACES.read_text(encoding="utf-8").splitlines():
        document = json.loads(text)
        for rs in document["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    for attr in span["attributes"]:
                        key = attr["key"]
                        if key in keys or key.startswith("llm.input_messages") and key.endswith(
                                (".message.content", ".message_content.text")):
                            attr["value"] = {"stringValue": "__REDACTED__"}
        lines.append(json.dumps(document))
    path = tmp_path / "redacted.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_redacted_message_text_is_never_taken_for_the_prompt(tmp_path):
    # hide_input_text redacts the flattened texts but leaves input.value: the prompt comes from there
    records, _ = read(redacted(tmp_path))
    assert len(records) == 4
    assert [r.messages for r in records] == [r.messages for r in read(TRACES)[0]]
    # with input.value redacted too (hide_inputs), there is no prompt: skipped, never "__REDACTED__"
    records, skipped = read(redacted(tmp_path, ("input.value",)))
    assert records == []
    assert Counter(s.reason for s in skipped)["LLM spans whose input was not captured"] == 4


def test_base64_ids_as_protobuf_json_writes_them_are_read_as_hex(tmp_path):
    def to_base64(node):
        if isinstance(node, dict):
            return {k: (base64.b64encode(bytes.fromhex(v)).decode()
                        if k in ("traceId", "spanId", "parentSpanId") and v else to_base64(v))
                    for k, v in node.items()}
        return [to_base64(v) for v in node] if isinstance(node, list) else node
    path = tmp_path / "b64.jsonl"
    path.write_text("".join(json.dumps(to_base64(json.loads(line))) + "\n"
                            for line in TRACES.read_text(encoding="utf-8").splitlines()))
    hex_records, _ = read(TRACES)
    b64_records, _ = read(path)
    assert [(r.trace_id, r.span_id, r.parent_span_id, r.session_id) for r in b64_records] == [
        (r.trace_id, r.span_id, r.parent_span_id, r.session_id) for r in hex_records]
