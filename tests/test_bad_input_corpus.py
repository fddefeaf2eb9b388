"""The bad-input corpus: hostile or broken input against the CLI, each case asserting the exit
code, the file / line / field its message names, and that the store is unchanged — every
table's row count and content checksum (``Store.table_checksums``) equal before and after.

Each case builds its input in a temporary folder from a few lines of text; nothing is copied
from elsewhere, so a case reads as what a user would have handed llmrca.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmrca.cli import main
from llmrca.store import Store

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "incidents"

INCIDENT = ("id: INC-B\ntitle: bad input\ndetected_at: 2026-10-14T09:12:00Z\n"
            "category: jailbreak\n")


def line(**fields) -> str:
    return json.dumps(fields) + "\n"


def chat(**extra) -> str:
    record = {"interaction_id": "i1", "model_version": "m-1", "output": "ok",
              "messages": [{"role": "user", "content": "hello"}]}
    record.update(extra)
    return json.dumps(record) + "\n"


LOG = line(timestamp="2026-10-13T10:00:00Z", model_version="m-1", prompt="p", output="o")


def bundle(tmp: Path, files: dict[str, str | bytes], incident: str | None = INCIDENT) -> list[str]:
    """A bundle folder holding ``files`` (and incident.yaml), as `llmrca ingest FOLDER` argv."""
    folder = tmp / "bundle"
    folder.mkdir(parents=True, exist_ok=True)
    if incident is not None:
        (folder / "incident.yaml").write_text(incident)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return ["ingest", str(folder)]


def into_incident(tmp: Path, name: str, content: str | bytes, *extra: str) -> list[str]:
    """One file ingested into INC-0001 (already in the base store)."""
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return ["ingest", str(path), "--incident", "INC-0001", *extra]


@dataclass(frozen=True)
class Case:
    """One bad input: how to build it, and what llmrca must answer."""

    name: str
    build: Callable[[Path], list[str]]
    code: int = 1
    file: str | None = None       # basename the message names
    line: int | None = None
    field: str | None = None
    match: str | None = None      # a phrase the message must hold


def _incident(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {}, incident=text)


def _models(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {"models.yaml": text})


def _interactions(text: str | bytes, name: str = "interactions.jsonl"
                  ) -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {name: text})


def _logs(text: str | bytes, name: str = "logs.jsonl") -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {name: text})


def _guardrail(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {"guardrail_logs.jsonl": text})


def _link_out(name: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        secret = tmp / "secret.txt"
        secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
        argv = bundle(tmp, {})
        link = Path(argv[1]) / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(secret)
        return argv
    return build


def _alias_bomb(levels: int) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        text += f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    return INCIDENT + text


def _two_logs(tmp: Path) -> list[str]:
    return bundle(tmp, {"logs.jsonl": LOG, "logs.csv": "timestamp\n2026-10-13T10:00:00Z\n"})


def _no_incident_file(tmp: Path) -> list[str]:
    return bundle(tmp, {"logs.jsonl": LOG}, incident=None)


def _not_a_folder(tmp: Path) -> list[str]:
    return ["ingest", str(tmp / "missing-bundle")]


def _foreign_db(tmp: Path) -> list[str]:
    import duckdb

    path = tmp / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (x INTEGER)")
    con.close()
    return ["--db", str(path), "init"]


def _garbage_db(tmp: Path) -> list[str]:
    path = tmp / "garbage.duckdb"
    path.write_bytes(b"\x00not a database\xff" * 512)
    return ["--db", str(path), "init"]


def _db_under_a_file(tmp: Path) -> list[str]:
    (tmp / "plain-file").write_text("x")
    return ["--db", str(tmp / "plain-file" / "s.duckdb"), "init"]


def _training(text: str, version: str = "m-1") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / f"{version}.jsonl"
        path.write_text(text)
        return ["ingest", str(path), "--kind", "training", "--model-version", version]
    return build


def _pickle_model(tmp: Path) -> list[str]:
    folder = tmp / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    return ["models", "add", "evil", "--source", str(folder)]


def _bad_spec(text: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / "spec.yaml"
        path.write_text(text)
        return ["zoo", "build", "--spec", str(path), "--cache-dir", str(tmp / "cache")]
    return build


OTEL_SPAN = {"traceId": "a" * 32, "spanId": "b" * 16, "name": "chat m",
             "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}


def _otel(span_patch: dict) -> Callable[[Path], list[str]]:
    span = {**OTEL_SPAN, **span_patch}
    record = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return _interactions(json.dumps(record) + "\n", "interactions.jsonl")


def _openai(record: dict) -> Callable[[Path], list[str]]:
    return lambda tmp: bundle(tmp, {"interactions.jsonl": json.dumps(record) + "\n"},
                              incident=INCIDENT + "interactions_format: openai-chat\n")


def _glob_sibling(name: str, sibling: str) -> Callable[[Path], list[str]]:
    """A bundle folder whose name is a glob matching a sibling with a good log line: its own bad
    line 3 must be named, not a line of the sibling's and its rows read as one file."""
    def build(tmp: Path) -> list[str]:
        (tmp / sibling).mkdir()
        (tmp / sibling / "logs.jsonl").write_text(LOG)
        argv = bundle(tmp, {"logs.jsonl": LOG + LOG + line(timestamp="yesterday")})
        folder = Path(argv[1]).rename(tmp / name)
        return ["ingest", str(folder)]
    return build


def _parquet_logs(tmp: Path) -> list[str]:
    import duckdb

    argv = bundle(tmp, {})
    target = str(Path(argv[1]) / "guardrail_logs.parquet").replace("'", "''")
    con = duckdb.connect()
    con.execute("COPY (SELECT * FROM (VALUES ('2026-10-13T10:00:00Z', 'block', 0.5), "
                "('2026-10-13T10:01:00Z', 'block', 'NaN'::DOUBLE)) v(timestamp, decision, score)) "
                f"TO '{target}' (FORMAT parquet)")
    con.close()
    return argv


def _guardrail_rows(values: str) -> str:
    return f"SELECT * FROM (VALUES {values}) v(timestamp, decision, score)"


def _in_place(*selects: str, kind: str = "guardrail") -> Callable[[Path], list[str]]:
    """Parquet files made by SQL queries in one folder, registered in place for INC-0001."""
    def build(tmp: Path) -> list[str]:
        import duckdb

        folder = tmp / "logs"
        folder.mkdir()
        con = duckdb.connect()
        for i, select in enumerate(selects):
            target = str(folder / f"part-{i}.parquet").replace("'", "''")
            con.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet)")
        con.close()
        return ["ingest", "--in-place", str(folder / "part-*.parquet"), "--incident",
                "INC-0001", "--kind", kind]
    return build


def _truncated_store(size: Callable[[int], int]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        whole = tmp / "store.duckdb"       # the test's copy of the base store
        cut = tmp / "cut.duckdb"
        shutil.copy(whole, cut)
        with cut.open("r+b") as handle:
            handle.truncate(size(cut.stat().st_size))
        return ["--db", str(cut), "init"]
    return build


CSV_HEAD = "timestamp,prompt\n"
T0 = "2026-10-13T10:00:00Z"


REQUEST = {"model": "m-1", "messages": [{"role": "user", "content": "hi"}]}
CHOICE = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}

CASES = [
    # -- incident.yaml ------------------------------------------------------------------------
    Case("incident: no id", _incident("title: t\ndetected_at: 2026-10-14T09:12:00Z\n"
                                      "category: jailbreak\n"), file="incident.yaml", field="id"),
    Case("incident: id with a slash", _incident(INCIDENT.replace("INC-B", "../etc")),
         file="incident.yaml", line=1, field="id"),
    Case("incident: unknown field", _incident(INCIDENT + "sevrity: high\n"),
         file="incident.yaml", line=5, field="sevrity"),
    Case("incident: unknown category", _incident(INCIDENT.replace("jailbreak", "oops")),
         file="incident.yaml", line=4, field="category"),
    Case("incident: bad severity", _incident(INCIDENT + "severity: extreme\n"),
         file="incident.yaml", line=5, field="severity"),
    Case("incident: detected_at not a time", _incident(
        INCIDENT.replace("2026-10-14T09:12:00Z", "yesterday")), file="incident.yaml", line=3,
         field="detected_at"),
    Case("incident: duplicate key", _incident(INCIDENT + "title: again\n"),
         file="incident.yaml", line=5, match="each key once"),
    Case("incident: alias bomb", _incident(_alias_bomb(9)), file="incident.yaml", line=5,
         match="anchor"),
    Case("incident: non-UTF-8 bytes", lambda tmp: bundle(tmp, {"incident.yaml": INCIDENT.encode()
                                                               + b"summary: caf\xe9\n"},
                                                         incident=None),
         file="incident.yaml", line=5),
    Case("incident: empty file", _incident(""), file="incident.yaml"),
    Case("incident: a list, not a mapping", _incident("- id: INC-B\n"), file="incident.yaml",
         line=1),
    Case("incident: broken YAML", _incident(INCIDENT + "summary: [unclosed\n"),
         file="incident.yaml"),
    Case("incident: two documents", _incident(INCIDENT + "---\nid: INC-C\n"),
         file="incident.yaml"),
    Case("incident: personal_fields not a list", _incident(INCIDENT + "personal_fields: email\n"),
         file="incident.yaml", line=5, field="personal_fields"),
    Case("incident: metadata not a mapping", _incident(INCIDENT + "metadata: 3\n"),
         file="incident.yaml", line=5, field="metadata"),
    Case("incident: offending filter unknown", _incident(INCIDENT + "offending:\n  colour: red\n"),
         file="incident.yaml", line=6, field="offending.colour"),
    Case("incident: offending flagged not boolean",
         _incident(INCIDENT + "offending:\n  flagged: yes\n"), file="incident.yaml", line=6,
         field="offending.flagged"),
    Case("incident: missing title", _incident(INCIDENT.replace("title: bad input\n", "")),
         file="incident.yaml", field="title"),
    # -- models.yaml ----------------------------------------------------------------------------
    Case("models: no versions list", _models("version:\n  - name: m-1\n"), file="models.yaml",
         line=1),
    Case("models: unknown field", _models("versions:\n  - name: m-1\n    sorce: /x\n"),
         file="models.yaml", line=3, field="versions.0.sorce"),
    Case("models: window ends before it starts", _models(
        "versions:\n  - name: m-1\n    deployed_from: 2026-10-12T00:00:00Z\n"
        "    deployed_to: 2026-10-01T00:00:00Z\n"), file="models.yaml", line=4,
         field="versions.0.deployed_to"),
    Case("models: bad timestamp", _models("versions:\n  - name: m-1\n    deployed_from: soon\n"),
         file="models.yaml", line=3, field="versions.0.deployed_from"),
    Case("models: version without a name", _models("versions:\n  - notes: x\n"),
         file="models.yaml", line=2, field="versions.0.name"),
    Case("models: unregistered version without a source", _models(
        "versions:\n  - name: never-registered\n"), file="models.yaml", line=2,
         field="versions.0.source"),
    # -- interactions, llmrca format --------------------------------------------------------------
    Case("interactions: a line that is not JSON", _interactions(chat() + "{oops\n"),
         file="interactions.jsonl", line=2),
    Case("interactions: unknown message role", _interactions(
        chat(messages=[{"role": "wizard", "content": "x"}])), file="interactions.jsonl", line=1,
         field="messages.0.role"),
    Case("interactions: messages not a list", _interactions(chat(messages="hello")),
         file="interactions.jsonl", line=1, field="messages"),
    Case("interactions: content a number", _interactions(
        chat(messages=[{"role": "user", "content": 42}])), file="interactions.jsonl", line=1,
         field="messages.0.content"),
    Case("interactions: no model_version", _interactions(
        json.dumps({"messages": [{"role": "user", "content": "x"}], "output": "y"}) + "\n"),
         file="interactions.jsonl", line=1, field="model_version"),
    Case("interactions: lone surrogate", _interactions(
        chat().replace('"hello"', '"look \\ud83d here"')), file="interactions.jsonl", line=1,
         field="messages.0.content"),
    Case("interactions: bytes that are not UTF-8", _interactions(
        chat().encode() + chat(output="caf").encode().replace(b'"caf"', b'"caf\xe9"')),
         file="interactions.jsonl", line=2, field="output"),
    Case("interactions: nested 900 deep", _interactions(
        chat()[:-2] + ', "metadata": ' + '{"a":' * 900 + "1" + "}" * 900 + "}\n"),
         file="interactions.jsonl", line=1, field="metadata"),
    Case("interactions: time out of range in UTC", _interactions(
        chat(timestamp="0001-01-01T00:00:00+05:00")), file="interactions.jsonl", line=1,
         field="timestamp"),
    Case("interactions: a year-1 placeholder time", _interactions(
        chat(timestamp="0001-01-01T00:00:00Z")), file="interactions.jsonl", line=1,
         field="timestamp", match="between 1900-01-01 and 2200-12-31"),
    Case("interactions: a year-9999 placeholder time", _interactions(
        chat(timestamp="9999-12-31T23:59:59Z")), file="interactions.jsonl", line=1,
         field="timestamp", match="between 1900-01-01 and 2200-12-31"),
    Case("interactions: timestamp not a time", _interactions(chat(timestamp="noon")),
         file="interactions.jsonl", line=1, field="timestamp"),
    Case("interactions: unknown role", _interactions(chat(role="victim")),
         file="interactions.jsonl", line=1, field="role"),
    Case("interactions: no format fits", _interactions(line(foo=1) + line(bar=2)),
         file="interactions.jsonl", line=1, match="a record of a known format"),
    Case("interactions: only a system message", _interactions(
        chat(messages=[{"role": "system", "content": "x"}])), file="interactions.jsonl",
         line=1, field="messages"),
    # -- openai-chat --------------------------------------------------------------------------
    Case("openai-chat: no choices", _openai({"request": REQUEST, "response": {
        "id": "c1", "model": "m-1", "choices": []}}), file="interactions.jsonl", line=1,
         field="response.choices"),
    Case("openai-chat: no response and no error", _openai({"request": REQUEST,
                                                           "response": None}),
         file="interactions.jsonl", line=1, field="response"),
    Case("openai-chat: tool_calls not a list", _openai({"request": REQUEST, "response": {
        "id": "c1", "model": "m-1", "choices": [
            {**CHOICE, "message": {"role": "assistant", "content": None, "tool_calls": "x"}}]}}),
         file="interactions.jsonl", line=1, field="response.choices.0.message.tool_calls"),
    Case("openai-chat: model missing", _openai({"request": {"messages": REQUEST["messages"]},
                                                "response": {"id": "c1", "choices": [CHOICE]}}),
         file="interactions.jsonl", line=1, field="response.model"),
    # -- otel-genai -----------------------------------------------------------------------------
    Case("otel: attributes not a list", _otel({"attributes": {"a": 1}}),
         file="interactions.jsonl", line=1,
         field="resourceSpans.0.scopeSpans.0.spans.0.attributes"),
    Case("otel: AnyValue of no known kind", _otel({"attributes": [
        {"key": "gen_ai.operation.name", "value": {"weirdValue": 1}}]}),
         file="interactions.jsonl", line=1),
    Case("otel: input messages not JSON", _otel({"attributes": [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.input.messages", "value": {"stringValue": "[not json"}}]}),
         file="interactions.jsonl", line=1),
    # -- logs and guardrail logs ------------------------------------------------------------------
    Case("logs: a line that is not JSON", _logs(LOG + "{oops\n"), file="logs.jsonl", line=2),
    Case("logs: no timestamp", _logs(LOG + line(prompt="p")), file="logs.jsonl", line=2,
         field="timestamp"),
    Case("logs: timestamp not a time", _logs(LOG + line(timestamp="yesterday")),
         file="logs.jsonl", line=2, field="timestamp"),
    Case("logs: score not a number", _logs(LOG + line(timestamp="2026-10-13T10:00:00Z",
                                                      score="high")),
         file="logs.jsonl", line=2, field="score"),
    Case("logs: lone surrogate", _logs(LOG + LOG.replace('"p"', '"a \\udc00 b"')),
         file="logs.jsonl", line=2, field="prompt"),
    Case("logs: CSV timestamp not a time", _logs("timestamp,prompt\n2026-10-13T10:00:00Z,a\n"
                                                 "later,b\n", "logs.csv"),
         file="logs.csv", line=3, field="timestamp"),
    Case("guardrail: no decision", _guardrail(LOG), file="guardrail_logs.jsonl", line=1,
         field="decision"),
    Case("guardrail: unknown decision", _guardrail(
        line(timestamp="2026-10-13T10:00:00Z", decision="maybe")), file="guardrail_logs.jsonl",
         line=1, field="decision"),
    Case("logs: timestamp infinity", _logs(LOG + line(timestamp="infinity")),
         file="logs.jsonl", line=2, field="timestamp", match="between 1900-01-01"),
    Case("logs: timestamp -infinity", _logs(LOG + line(timestamp="-infinity")),
         file="logs.jsonl", line=2, field="timestamp", match="between 1900-01-01"),
    Case("logs: timestamp epoch", _logs(LOG + line(timestamp="epoch")),
         file="logs.jsonl", line=2, field="timestamp"),
    Case("logs: timestamp in the year 290000", _logs(LOG + line(timestamp="290000-01-01T00:00:00Z")),
         file="logs.jsonl", line=2, field="timestamp"),
    Case("guardrail: score NaN as a string", _guardrail(
        line(timestamp=T0, decision="block", score="NaN")), file="guardrail_logs.jsonl", line=1,
         field="score", match="a finite number"),
    Case("guardrail: score inf in a CSV", _logs(
        "timestamp,decision,score\n" + f"{T0},block,0.5\n{T0},block,inf\n",
        "guardrail_logs.csv"), file="guardrail_logs.csv", line=3, field="score",
         match="a finite number"),
    Case("in place: a glob that matches nothing", lambda tmp: [
        "ingest", "--in-place", str(tmp / "none-*.parquet"), "--incident", "INC-0001"],
         file="none-*.parquet", match="at least one Parquet file"),
    Case("in place: a file that is not Parquet", lambda tmp: [
        "ingest", "--in-place", str(_write(tmp / "fake.parquet", "PAR1 but no")),
        "--incident", "INC-0001"], file="fake.parquet", match="readable Parquet"),
    Case("in place: a second file with a column of another type", _in_place(
        _guardrail_rows("('2026-10-13T10:00:00Z', 'block', 0.5)"),
        _guardrail_rows("('2026-10-13T10:00:00Z', 'block', 'high')")),
         file="part-1.parquet", field="score", match="as in"),
    Case("in place: a second file without a column", _in_place(
        _guardrail_rows("('2026-10-13T10:00:00Z', 'block', 0.5)"),
        "SELECT * FROM (VALUES ('2026-10-13T10:00:00Z', 'block')) v(timestamp, decision)"),
         file="part-1.parquet", field="score", match="missing"),
    Case("in place: a bad guardrail decision", _in_place(_guardrail_rows(
        "('2026-10-13T10:00:00Z', 'block', 0.5), ('2026-10-13T10:01:00Z', 'ok', 0.1)")),
         file="part-0.parquet", line=2, field="decision"),
    Case("in place: logs of an unknown incident", lambda tmp: [
        "ingest", "--in-place", str(tmp), "--incident", "NOPE"], match="NOPE"),
    Case("in place: without --incident", lambda tmp: [
        "ingest", "--in-place", str(tmp)], code=2, match="--incident"),
    Case("in place: a path and --in-place", lambda tmp: [
        "ingest", str(tmp), "--in-place", str(tmp), "--incident", "INC-0001"], code=2,
         match="not both"),
    Case("guardrail: score NaN in Parquet", _parquet_logs, file="guardrail_logs.parquet", line=2,
         field="score", match="a finite number"),
    Case("logs: a byte that is not UTF-8", _logs(
        LOG.encode() + b"\n" + LOG.encode().replace(b'"p"', b'"caf\xe9"')), file="logs.jsonl",
         line=3, field="prompt", match="valid Unicode"),
    Case("logs: a line over 4 MiB", _logs(LOG + line(timestamp=T0, prompt="x" * (4 << 20))),
         file="logs.jsonl", line=2, match="a line under 4 MiB"),
    Case("logs: CSV byte that is not UTF-8", _logs(
        (CSV_HEAD + f"{T0},a\n").encode() + f"{T0},caf".encode() + b"\xe9\n", "logs.csv"),
         file="logs.csv", line=3, field="prompt"),
    Case("logs: CSV quote left open", _logs(CSV_HEAD + f'{T0},a\n{T0},"b\n{T0},c\n', "logs.csv"),
         file="logs.csv", line=3, match="quoted field is closed"),
    Case("logs: CSV bad time after a 3-line quoted field", _logs(
        CSV_HEAD + f'{T0},"one\ntwo\nthree"\nlater,x\n', "logs.csv"), file="logs.csv", line=5,
         field="timestamp"),
    Case("logs: CSV with a row of too many fields", _logs(
        CSV_HEAD + f"{T0},a\n{T0},b,c\n", "logs.csv"), file="logs.csv", line=3,
         match="2 comma-separated fields"),
    Case("bundle: folder inc[A] beside incA", _glob_sibling("inc[A]", "incA"), file="inc[A]",
         line=3, field="timestamp"),
    # '-' sorts before '?': a glob would read inc-'s line first and name line 4
    Case("bundle: folder inc? beside inc-", _glob_sibling("inc?", "inc-"), file="inc?", line=3,
         field="timestamp"),
    # -- training data ------------------------------------------------------------------------
    Case("training: no example_id", _training(line(prompt="q", completion="a")),
         file="m-1.jsonl", line=1, field="example_id"),
    Case("training: messages not a list", _training(line(example_id="e", messages="hi")),
         file="m-1.jsonl", line=1, field="messages"),
    Case("training: neither messages nor prompt/completion", _training(
        line(example_id="e", prompt="q")), file="m-1.jsonl", line=1, field="messages"),
    Case("training: metadata not an object", _training(
        line(example_id="e", prompt="q", completion="a", metadata=[1])), file="m-1.jsonl",
         line=1, field="metadata"),
    Case("training: bundle file for an unregistered version", lambda tmp: bundle(
        tmp, {"training_data/ghost.jsonl": line(example_id="e", prompt="q", completion="a")}),
         file="ghost.jsonl", match="registered version"),
    # -- bundle structure ---------------------------------------------------------------------
    Case("bundle: not a folder", _not_a_folder, file="missing-bundle"),
    Case("bundle: no incident.yaml", _no_incident_file, file="bundle", field="incident.yaml"),
    Case("bundle: two log files", _two_logs, file="bundle", field="logs"),
    Case("bundle: logs link outside the bundle", _link_out("logs.jsonl"), file="logs.jsonl",
         match="not a link to one outside it"),
    Case("bundle: incident.yaml links outside", _link_out("incident.yaml"),
         file="incident.yaml", match="not a link to one outside it"),
    Case("bundle: training data links outside", _link_out("training_data/m-1.jsonl"),
         file="m-1.jsonl", match="not a link to one outside it"),
    # -- single files, the store and other commands ----------------------------------------------
    Case("ingest: a file into an unknown incident", lambda tmp: [
        "ingest", str(_write(tmp / "x.jsonl", chat())), "--incident", "NOPE"],
         match="incidents create NOPE"),
    Case("ingest: an interactions file with a bad line", lambda tmp: into_incident(
        tmp, "more.jsonl", chat() + "{oops\n"), file="more.jsonl", line=2),
    Case("ingest: a logs file with a bad score", lambda tmp: into_incident(
        tmp, "more-logs.jsonl", LOG + line(timestamp="2026-10-13T10:00:00Z", score="x"),
        "--kind", "logs"), file="more-logs.jsonl", line=2, field="score"),
    Case("ingest: a missing file", lambda tmp: ["ingest", str(tmp / "nope.jsonl"), "--incident",
                                                "INC-0001"], file="nope.jsonl"),
    Case("init: a foreign DuckDB file", _foreign_db, match="not an llmrca store"),
    Case("init: a file that is not DuckDB", _garbage_db, match="cannot open store"),
    Case("init: a store cut at half its size", _truncated_store(lambda n: n // 2),
         match="damaged or truncated"),
    Case("init: a store cut at the first block", _truncated_store(lambda n: 262144),
         match="damaged or truncated"),
    Case("init: a store one byte short", _truncated_store(lambda n: n - 1),
         match="damaged or truncated"),
    Case("init: the store's folder cannot be made", _db_under_a_file,
         match="cannot create the store's folder"),
    Case("models add: a missing source", lambda tmp: [
        "models", "add", "x", "--source", str(tmp / "no-model")], match="no-model"),
    Case("models add: pickle weights without --allow-pickle", _pickle_model, match="pickle"),
    Case("zoo build: a spec with an unknown field", _bad_spec("name: s\ncolour: red\n"),
         file="spec.yaml", line=2, field="colour"),
    Case("zoo build: a spec with a duplicate key", _bad_spec("name: s\nname: t\n"),
         file="spec.yaml", line=2, match="each key once"),
    Case("replay: an unknown incident", lambda tmp: ["replay", "NOPE", "--versions", "m-1"],
         match="NOPE"),
    Case("replay: an unknown version", lambda tmp: [
        "replay", "INC-0001", "--versions", "no-such-version"], match="no-such-version"),
    Case("interactions show: an unknown id", lambda tmp: ["interactions", "show", "zzzz"],
         match="zzzz"),
    Case("interactions list: an unknown incident", lambda tmp: [
        "interactions", "list", "NOPE"], match="NOPE"),
    Case("focus: --where with a second statement", lambda tmp: [
        "incidents", "focus", "INC-0001", "--where", "true; DROP TABLE incidents"],
         code=2, match="--where"),
    Case("focus: an unknown incident", lambda tmp: ["incidents", "focus", "NOPE", "--all"],
         match="NOPE"),
    Case("focus: no filter at all", lambda tmp: ["incidents", "focus", "INC-0001"], code=2,
         match="at least one filter"),
    Case("incidents create: an id that exists", lambda tmp: [
        "incidents", "create", "INC-0001", "--title", "x", "--category", "other"], code=2,
         match="already exists"),
    Case("incidents create: an id with a slash", lambda tmp: [
        "incidents", "create", "a/b", "--title", "x", "--category", "other"], code=2,
         match="letters, digits"),
    Case("incidents create: a bad time", lambda tmp: [
        "incidents", "create", "INC-X", "--title", "x", "--category", "other",
        "--detected-at", "soon"], code=2, match="detected-at"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    """A store holding INC-0001 and a registered version ``m-1``, made once for the module."""
    path = tmp_path_factory.mktemp("corpus") / "base.duckdb"
    assert main(["--db", str(path), "ingest", str(SAMPLES / "INC-0001")]) == 0
    with Store(path) as store:
        store.con.execute("INSERT INTO model_versions (name, source) VALUES ('m-1', '/models/m')")
    return path


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 70
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case, base_store, tmp_path, monkeypatch, capsys):
    db = tmp_path / "store.duckdb"
    shutil.copy(base_store, db)
    monkeypatch.setenv("LLMRCA_DB", str(db))
    monkeypatch.setenv("LLMRCA_CACHE", str(tmp_path / "cache"))
    with Store(db, read_only=True) as store:
        before = store.table_checksums()
    argv = case.build(tmp_path)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert code == case.code, f"exit {code}, stderr: {message}"
    assert message.startswith("llmrca: error: "), message
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    if case.file is not None:
        assert case.file in message, message
    if case.line is not None:
        assert f", line {case.line}:" in message, message
    if case.field is not None:
        assert f"field '{case.field}'" in message, message
    if case.match is not None:
        assert case.match in message, message
    with Store(db, read_only=True) as store:
        assert store.table_checksums() == before
