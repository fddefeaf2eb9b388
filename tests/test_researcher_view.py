"""The researcher's view: one call one interaction across sources, roles, focus, list and show."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from llmrca.cli import main
from llmrca.errors import InvalidArgumentError, NotFoundError
from llmrca.incidents import create_incident, focus, interaction, interactions
from llmrca.ingest import ingest_bundle, ingest_file
from llmrca.ingest.merge import write_interactions
from llmrca.ingest.records import InteractionRecord

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "incidents"


def _record(n: int, *, fmt: str = "openai-chat", response_id: str | None = None,
            trace: str | None = None, span: str | None = None, output: str | None = "fine",
            tools=None, session: str | None = None, ts: datetime | None = None,
            metadata: dict | None = None, line: int = 1, flags: dict | None = None
            ) -> InteractionRecord:
    return InteractionRecord(
        source_format=fmt, source_file=f"{fmt}.jsonl", source_line=line,
        messages=[{"role": "user", "content": f"question {n}"}], output=output,
        system_prompt="be kind", model_version="m-1", timestamp=ts or datetime(2026, 11, 1, 12, n),
        session_id=session, response_id=response_id, trace_id=trace, span_id=span, tools=tools,
        metadata=metadata or {}, flags=flags or {})


@pytest.fixture
def incident(store):
    create_incident(store, "INC-T", title="t", category="jailbreak")
    return "INC-T"


def test_two_sources_of_one_call_merge_into_one_interaction(store, incident):
    spans = [_record(i, fmt="otel-genai", response_id=f"chatcmpl-{i}", trace="t" * 32,
                     span=f"{i:016x}", session=f"conv-{i % 3}", line=i) for i in range(10)]
    first = write_interactions(store, spans, incident)
    assert (first.inserted, first.merged, first.conflicts) == (10, 0, 0)
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    # The provider's request log of the same calls: response ids, tool definitions, no session,
    # its own clock a few seconds later.
    log = [_record(i, response_id=f"chatcmpl-{i}", tools=tools, line=i + 1,
                   ts=datetime(2026, 11, 1, 12, i, 3)) for i in range(10)]
    second = write_interactions(store, log, incident)
    assert (second.inserted, second.merged, second.conflicts) == (0, 10, 0)
    assert store.count("interactions") == 10
    rows = store.query("SELECT * FROM interactions ORDER BY response_id")
    assert all(json.loads(t) == tools for t in rows["tools"])          # filled from the log
    assert all(len(json.loads(s)) == 2 for s in rows["sources"])
    assert rows["session_hash"].notna().all()                          # kept from the spans
    assert rows["conflicts"].isna().all()
    # Re-ingesting the same log changes nothing.
    again = write_interactions(store, log, incident)
    assert (again.inserted, again.merged, again.unchanged, again.conflicts) == (0, 10, 10, 0)


def test_a_disagreement_is_reported_not_overwritten(store, incident):
    write_interactions(store, [_record(1, response_id="chatcmpl-1", output="answer A")], incident)
    result = write_interactions(store, [_record(1, fmt="otel-genai", response_id="chatcmpl-1",
                                                output="answer B", line=7)], incident)
    assert result.conflicts == 1
    row = store.query("SELECT output, conflicts FROM interactions")
    assert row.loc[0, "output"] == "answer A"
    conflicts = json.loads(row.loc[0, "conflicts"])
    assert conflicts == [{"field": "output", "stored": "answer A", "other": "answer B",
                          "source": {"format": "otel-genai", "file": "otel-genai.jsonl",
                                     "line": 7}}]


def test_a_call_is_found_by_its_span_when_one_source_lacks_the_response_id(store, incident):
    write_interactions(store, [_record(1, fmt="otel-genai-logs", trace="a" * 32, span="b" * 16,
                                       output=None)], incident)
    result = write_interactions(store, [_record(1, fmt="otel-genai", trace="a" * 32,
                                                span="b" * 16, response_id="chatcmpl-9")],
                                incident)
    assert (result.inserted, result.merged, result.conflicts) == (0, 1, 0)
    row = store.query("SELECT output, response_id FROM interactions")
    assert row.to_dict("records") == [{"output": "fine", "response_id": "chatcmpl-9"}]
    # ... and now by the response id it gained.
    third = write_interactions(store, [_record(1, response_id="chatcmpl-9", line=3)], incident)
    assert (third.inserted, third.merged) == (0, 1) and store.count("interactions") == 1


def test_timestamps_far_apart_are_a_conflict(store, incident):
    write_interactions(store, [_record(1, response_id="r1")], incident)
    result = write_interactions(store, [_record(1, fmt="otel-genai", response_id="r1",
                                                ts=datetime(2026, 11, 2))], incident)
    assert result.conflicts == 1


def test_roles_by_format_flags_and_the_incident_selection(store, incident):
    write_interactions(store, [_record(1, response_id="r1"),
                               _record(2, response_id="r2", flags={"guardrail": "block"}),
                               _record(3, fmt="llmrca")], incident)
    roles = store.query("SELECT response_id, source_format, role FROM interactions "
                        "ORDER BY source_format, response_id").to_dict("records")
    assert [r["role"] for r in roles] == ["offending", "context", "offending"]
    # A stored selection decides for interactions ingested later.
    focus(store, incident, {"ids": ["r4"]})
    write_interactions(store, [_record(4, response_id="r4"), _record(5, fmt="llmrca")], incident)
    later = dict(store.query("SELECT coalesce(response_id, 'native') AS k, role FROM interactions "
                             "WHERE ts >= '2026-11-01 12:04'").values.tolist())
    assert later == {"r4": "offending", "native": "context"}


def test_focus_filters_list_and_show(store, incident):
    records = [_record(i, response_id=f"r{i}", session=f"conv-{i % 2}",
                       output="I can't help" if i < 3 else "Sure! Here is how") for i in range(6)]
    write_interactions(store, records, incident)
    assert focus(store, incident, {"text": ["sure! here"]}).roles == {"offending": 3,
                                                                      "context": 3}
    assert focus(store, incident, {"conversation": ["conv-0"]}, dry_run=True).matched \
        == tuple(sorted(store.query(
            "SELECT interaction_id FROM interactions WHERE response_id IN ('r0','r2','r4')"
        )["interaction_id"]))
    result = focus(store, incident, {"conversation": ["conv-0"], "text": ["can't"]})
    assert result.roles == {"offending": 2, "context": 4}          # r0 and r2
    focus(store, incident, {"ids": ["r5"]}, add=True)
    assert len(interactions(store, incident, role="offending")) == 3
    listing = interactions(store, incident)
    assert listing["last_user"].tolist() == [f"question {i}" for i in range(6)]
    shown = interaction(store, "r5")                                # by response id
    assert shown["role"] == "offending" and shown["messages"][0]["content"] == "question 5"
    assert shown["session_hash"] == hashlib.sha256(
        (store.salt + "conv-1").encode()).hexdigest()
    with pytest.raises(NotFoundError):
        interaction(store, "no-such-id")
    with pytest.raises(InvalidArgumentError, match="--where"):
        focus(store, incident, {"where": "true; DROP TABLE incidents"})
    # Parentheses cannot widen a filter past its incident.
    create_incident(store, "INC-OTHER", title="o", category="privacy")
    write_interactions(store, [_record(9, response_id="other")], "INC-OTHER")
    widened = focus(store, incident, {"where": "false) OR (true"}, dry_run=True)
    assert len(widened.matched) == 6
    assert len(interactions(store, incident, selection={"where": "false) OR (true"})) == 6
    assert store.count("incidents") == 2
    with pytest.raises(InvalidArgumentError, match="unknown selection filter 'colour'"):
        focus(store, incident, {"colour": "red"})


def test_focus_by_judge_label(store, incident):
    write_interactions(store, [_record(1, response_id="r1", output="I'm sorry, but I can't "
                                       "help with that request."),
                               _record(2, response_id="r2", output="Sure! Here is how.")],
                       incident)
    result = focus(store, incident, {}, judge="refusal", label="refusal")
    assert len(result.matched) == 1
    assert interactions(store, incident, role="offending")["output"].str.startswith(
        "I'm sorry").all()


def test_bundle_selection_and_cli_tour(tmp_path, capsys, monkeypatch):
    db = tmp_path / "s.duckdb"
    monkeypatch.setenv("LLMRCA_DB", str(db))
    assert main(["ingest", str(SAMPLES / "INC-0002")]) == 0
    out = capsys.readouterr().out
    assert "[openai-chat]: 12 read, 12 new, 0 merged, 0 unchanged, 0 rejected" in out
    assert "interactions: 6 offending, 6 context" in out
    assert main(["interactions", "list", "INC-0002", "--role", "offending", "--format",
                 "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 6 and {r["response_id"] for r in listed} == {
        f"chatcmpl-inc2-{i:03d}" for i in range(6)}
    assert main(["interactions", "show", "chatcmpl-inc2-000"]) == 0
    out = capsys.readouterr().out
    assert "(offending, incident INC-0002)" in out and "interactions.jsonl:" in out
    assert main(["incidents", "focus", "INC-0002", "--model-version", "assistant-v2",
                 "--dry-run"]) == 0
    assert "would mark 12 interaction(s)" in capsys.readouterr().out
    assert main(["incidents", "focus", "INC-0002"]) == 2       # no filter: bad usage
    assert main(["incidents", "create", "INC-NEW", "--title", "one export",
                 "--category", "privacy"]) == 0
    export = tmp_path / "export.jsonl"
    export.write_text((SAMPLES / "INC-0002" / "interactions.jsonl").read_text())
    capsys.readouterr()
    assert main(["ingest", str(export), "--incident", "INC-NEW"]) == 0
    out = capsys.readouterr().out
    assert "12 read, 12 new" in out and "interactions: 0 offending, 12 context" in out
    assert main(["incidents", "create", "INC-NEW", "--title", "again",
                 "--category", "privacy"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_ingest_file_into_unknown_incident_says_how_to_create_it(store, tmp_path):
    export = tmp_path / "export.jsonl"
    export.write_text((SAMPLES / "INC-0002" / "interactions.jsonl").read_text())
    with pytest.raises(NotFoundError, match="llmrca incidents create INC-X"):
        ingest_file(store, export, incident_id="INC-X")


def test_replay_takes_the_offending_set(store):
    from llmrca.store.replay import incident_interactions

    ingest_bundle(store, SAMPLES / "INC-0002")
    frame = incident_interactions(store, "INC-0002")
    assert len(frame) == 6 and (frame["role"] == "offending").all()
    assert len(incident_interactions(store, "INC-0002", role=None)) == 12
    focus(store, "INC-0002", {"text": ["no such text anywhere"]})
    with pytest.raises(NotFoundError, match="incidents focus INC-0002"):
        incident_interactions(store, "INC-0002")


@pytest.mark.parametrize("text, line, field", [
    ("offending: some\n", 4, "offending"),
    ("offending:\n  colour: red\n", 5, "offending.colour"),
    ("offending:\n  flagged: maybe\n", 5, "offending.flagged"),
    ("offending: []\n", 4, "offending"),
])
def test_a_bad_offending_selection_names_its_line_and_field(tmp_path, text, line, field):
    from llmrca.errors import ValidationError
    from llmrca.ingest.documents import parse_incident

    path = tmp_path / "incident.yaml"
    path.write_text("id: INC-9\ntitle: t\ncategory: jailbreak\n" + text
                    + "detected_at: 2026-10-14T09:12:00Z\n")
    with pytest.raises(ValidationError) as info:
        parse_incident(path)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), line, field)


def test_offending_selection_forms(tmp_path):
    from llmrca.ingest.documents import parse_incident

    head = "id: INC-9\ntitle: t\ncategory: jailbreak\ndetected_at: 2026-10-14T09:12:00Z\n"
    cases = {"offending: all\n": {"all": True},
             "offending: [chatcmpl-1, 0012]\n": {"ids": ["chatcmpl-1", "0012"]},
             "offending:\n  guardrail: block\n  flagged: true\n":
                 {"guardrail": ["block"], "flagged": True}}
    for text, expected in cases.items():
        path = tmp_path / "incident.yaml"
        path.write_text(head + text)
        assert parse_incident(path).offending == expected


def test_offending_ids_name_the_llmrca_formats_own_interaction_ids(tmp_path, store):
    """``offending: [ids]`` may list the ``interaction_id`` values of an llmrca-format file
    (the stored id is a hash of them, so they must be matched through it)."""
    lines = [{"interaction_id": f"call-{i}", "timestamp": f"2026-11-01T12:0{i}:00Z",
              "model_version": "m-1", "messages": [{"role": "user", "content": f"question {i}"}],
              "output": "fine"} for i in range(4)]
    (tmp_path / "interactions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "incident.yaml").write_text(
        "id: INC-IDS\ntitle: t\ncategory: jailbreak\ndetected_at: 2026-11-02T00:00:00Z\n"
        "offending: [call-1, call-3]\n")
    ingest_bundle(store, tmp_path)
    roles = interactions(store, "INC-IDS")
    assert len(roles) == 4
    offending = interactions(store, "INC-IDS", role="offending")
    assert sorted(offending["last_user"]) == ["question 1", "question 3"]
