"""The shared YAML/JSON loader: strings as written, duplicate keys, aliases, bad bytes, lines."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from llmrca.documents import Fields, line_of, load_document
from llmrca.errors import ValidationError
from llmrca.ingest.documents import parse_incident, parse_models
from llmrca.judges import load_rules
from llmrca.zoo import DEFAULT_SPEC, ZooSpec

INCIDENT = """\
id: INC-T1
title: Test incident
detected_at: 2026-10-14T09:12:00Z
category: jailbreak
"""


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def raised(call, *args) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args)
    return info.value


# -- scalars are strings as written ------------------------------------------------------------
def test_incident_id_keeps_its_leading_zeros(tmp_path):
    path = write(tmp_path, "incident.yaml", INCIDENT.replace("INC-T1", "0010"))
    assert parse_incident(path).record["incident_id"] == "0010"   # YAML 1.1 would say 8


@pytest.mark.parametrize("written", ["0x1F", "12:30:00", "0o17", "1_000", "yes", "2026-10-14"])
def test_yaml_1_1_implicit_types_stay_strings(tmp_path, written):
    path = write(tmp_path, "incident.yaml", INCIDENT + f"summary: {written}\n")
    assert parse_incident(path).record["summary"] == written


def test_string_fields_take_the_source_text_of_numbers(tmp_path):
    path = write(tmp_path, "models.yaml", """\
        versions:
          - name: 2024
            revision: 1.50
          - name: m2
            revision: 3
        """)
    first, second = parse_models(path)
    assert (first.name, first.revision, second.revision) == ("2024", "1.50", "3")
    assert (first.line, second.line) == (2, 4)


def test_integer_and_boolean_fields_are_strict(tmp_path):
    doc = load_document(write(tmp_path, "d.yaml", "a: 0010\nb: 10\nc: on\nd: true\n"))
    fields = Fields("d.yaml", doc)
    assert fields.integer("b") == 10
    error = raised(fields.integer, "a")
    assert (error.file, error.line, error.field, error.got) == ("d.yaml", 1, "a", "0010")
    error = raised(fields.boolean, "c")
    assert (error.line, error.field, error.expected) == (3, "c", "true or false")
    assert fields.boolean("d") is True


# -- duplicate keys ----------------------------------------------------------------------------
def test_duplicate_key_names_both_lines(tmp_path):
    path = write(tmp_path, "incident.yaml", INCIDENT + "title: Second title\n")
    error = raised(parse_incident, path)
    assert (error.file, error.line, error.field) == (str(path), 5, "title")
    assert "already on line 2" in error.expected


def test_nested_duplicate_key_has_the_dotted_path(tmp_path):
    path = write(tmp_path, "models.yaml", """\
        versions:
          - name: m1
            notes: a
          - name: m2
            notes: b
            notes: c
        """)
    error = raised(parse_models, path)
    assert (error.file, error.line, error.field) == (str(path), 6, "versions.1.notes")
    assert "already on line 5" in error.expected


def test_json_documents_refuse_duplicate_keys_and_keep_lines(tmp_path):
    text = '{\n  "id": "INC-J",\n  "metadata": {\n    "a": 1,\n    "a": 2\n  }\n}\n'
    path = write(tmp_path, "incident.json", text)
    error = raised(parse_incident, path)
    assert (error.file, error.line, error.field) == (str(path), 5, "metadata.a")
    assert "already on line 4" in error.expected
    doc = load_document(write(tmp_path, "ok.json", json.dumps(
        {"versions": [{"name": "m1", "revision": 10}]}, indent=2)))
    assert line_of(doc, "versions.0.revision") == 5
    assert Fields("ok.json", doc["versions"][0]).string("revision") == "10"


# -- anchors and aliases -----------------------------------------------------------------------
BILLION_LAUGHS = "\n".join(
    [f'{chr(97)}: &{chr(97)} ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]"
       for i in range(1, 9)]) + "\n"


def test_alias_bomb_fails_fast(tmp_path):
    assert len(BILLION_LAUGHS) < 500   # 9**9 lols once expanded
    path = write(tmp_path, "incident.yaml", BILLION_LAUGHS)
    start = time.perf_counter()
    error = raised(parse_incident, path)
    assert time.perf_counter() - start < 0.5
    assert (error.file, error.line, error.field) == (str(path), 1, None)
    assert "anchors" in error.expected


def test_alias_is_refused_at_its_line(tmp_path):
    path = write(tmp_path, "rules.yaml", """\
        rules:
          - id: a
            pattern: x
          - id: b
            pattern: *p
        """)
    error = raised(load_rules, path)
    assert (error.file, error.line, error.field) == (str(path), 5, None)
    assert "aliases" in error.expected


def test_tags_are_refused(tmp_path):
    path = write(tmp_path, "incident.yaml", INCIDENT + "summary: !!python/object:os.system x\n")
    error = raised(parse_incident, path)
    assert (error.file, error.line, error.field) == (str(path), 5, "summary")


# -- bytes and syntax --------------------------------------------------------------------------
def test_non_utf8_yaml_is_a_validation_error_with_its_line(tmp_path):
    path = write(tmp_path, "incident.yaml", INCIDENT.encode() + b"summary: caf\xe9\n")
    error = raised(parse_incident, path)
    assert (error.file, error.line, error.field) == (str(path), 5, None)
    assert error.expected == "UTF-8 text"


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path, "incident.yaml", b"\xef\xbb\xbf" + INCIDENT.encode())
    assert parse_incident(path).record["incident_id"] == "INC-T1"


def test_two_documents_in_one_file_are_an_error(tmp_path):
    path = write(tmp_path, "incident.yaml", INCIDENT + "---\nid: other\n")
    error = raised(parse_incident, path)
    assert (error.file, error.line, error.field) == (str(path), 5, None)


# -- rule files --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, field", [
    ("rules:\n  - id: a\n    pattern: x\n    ignore_case: yes\n", 4, "rules.0.ignore_case"),
    ("rules:\n  - id: a\n    pattern: x\n    pattern: y\n", 4, "rules.0.pattern"),
    ("rules:\n  - id: a\n    keywords: [ok, [nested]]\n", 3, "rules.0.keywords.1"),
    ("name: n\nrules:\n  - id: a\n    pattern: x\nrefusal_phrases: [fine, '']\n", 5,
     "refusal_phrases.1"),
])
def test_rule_file_errors_keep_their_lines(tmp_path, text, line, field):
    path = write(tmp_path, "rules.yaml", text)
    error = raised(load_rules, path)
    assert (error.file, error.line, error.field) == (str(path), line, field)


# -- zoo specs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, field", [
    ("name: x\nmodel:\n  n_layer: two\n", 3, "model.n_layer"),
    ("name: x\nmodel:\n  n_head: 5\n", 3, "model.n_head"),              # does not divide n_embd
    ("seed: 0010\n", 1, "seed"),
    ("temperature: yes\n", 1, "temperature"),
    ("refusals: [x]\n", 1, "refusals"),
    ("harmful_tasks: make a weapon\n", 1, "harmful_tasks"),
    ("train_templates:\n  - How do I {task}?\n  - no slot\n", 3, "train_templates.1"),
    (("versions:\n  - name: a\n    mix: [requests]\n    schedule: {steps: 1}\n    seed: 1\n"
     "  - name: b\n    mix: [requests, oops]\n    schedule: {steps: 1}\n    seed: 2\n"),
     7, "versions.1.mix.1"),
    ("versions:\n  - name: a\n    mix: [requests]\n    seed: 1\n", 2, "versions.0.schedule"),
    (("versions:\n  - name: a\n    mix: [requests]\n    schedule: {steps: 1}\n    seed: 1\n"
     "    parent: b\n"), 6, "versions.0.parent"),
    ("null_pairs:\n  - [assistant-v1, nobody]\n", 2, "null_pairs.0.1"),
    ("model: {n_layer: 2, n_layer: 3}\n", 1, "model.n_layer"),
])
def test_zoo_spec_errors_name_their_line(tmp_path, text, line, field):
    path = write(tmp_path, "spec.yaml", text)
    error = raised(ZooSpec.from_file, path)
    assert (error.file, error.line, error.field) == (str(path), line, field)


def test_zoo_spec_error_about_a_field_the_file_left_alone_still_has_a_line(tmp_path):
    # Renaming the versions leaves the default targets pointing at versions that are gone.
    path = write(tmp_path, "spec.yaml", "\n\nversions:\n  - name: a\n    mix: [requests]\n"
                                        "    schedule: {steps: 1}\n    seed: 1\n")
    error = raised(ZooSpec.from_file, path)
    assert (error.file, error.field) == (str(path), "targets.0.version")
    assert error.line == 3     # the document's first line, for want of a better one


def test_zoo_spec_round_trips_through_json_and_yaml_with_strings_as_written(tmp_path):
    path = write(tmp_path, "spec.json", json.dumps(DEFAULT_SPEC.to_dict(), indent=1))
    assert ZooSpec.from_file(path) == DEFAULT_SPEC
    path = write(tmp_path, "spec.yaml", "harmful_tasks: [0010, 0x1F, 12:30:00]\n")
    assert ZooSpec.from_file(path).harmful_tasks == ("0010", "0x1F", "12:30:00")
