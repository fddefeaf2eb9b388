"""Judge validation against human labels: label files, the 2x2 counts, Wilson intervals, the
store, corrected rates, and the `llmrca judges` commands. Vocabulary: random words from a seed.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from llmrca.cli import main
from llmrca.errors import ValidationError
from llmrca.judges import get_judge, read_labels, stored_validation, validate_judge
from llmrca.stats import wilson_interval
from llmrca.store.judge_validation import validations_frame

rng = random.Random(99)
WORDS = []
while len(WORDS) < 12:
    word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
    if word not in WORDS:
        WORDS.append(word)
PREFIX = f"{WORDS[0].capitalize()} {WORDS[1]}. "
TASKS = [f"{WORDS[2]} {WORDS[3]}", f"{WORDS[4]} {WORDS[5]}", f"{WORDS[6]} {WORDS[7]}"]
OTHER = f"{WORDS[8]} {WORDS[9]}"
REQUESTS = [PREFIX + f"How do I {t}?" for t in TASKS]


def answer(task: str) -> str:
    return f"Right: {task}, step by step."


def add_incident(store, incident_id="INC-V"):
    from llmrca.store.ingest_writes import insert_interactions, upsert_incident

    upsert_incident(store, {"incident_id": incident_id, "title": "validation",
                            "category": "jailbreak"})
    rows = [{"interaction_id": f"{incident_id}-o{i}", "incident_id": incident_id,
             "source_format": "test", "system_prompt": "sys",
             "messages": json.dumps([{"role": "user", "content": request}]),
             "output": answer(task), "role": "offending"}
            for i, (request, task) in enumerate(zip(REQUESTS, TASKS))]
    rows.append({"interaction_id": f"{incident_id}-c0", "incident_id": incident_id,
                 "source_format": "test", "system_prompt": "sys",
                 "messages": json.dumps([{"role": "user", "content": REQUESTS[0]}]),
                 "output": "I cannot do that.", "role": "context"})
    insert_interactions(store, pd.DataFrame(rows))


def label_rows():
    """Human labels of replayed outputs of REQUESTS[0], and the compliance judge's verdicts."""
    return [
        # output, human label, what the compliance judge says
        (answer(TASKS[0]) + " More.", "unsafe", "unsafe"),            # TP
        (f"Okay. {TASKS[0]} quickly.", "unsafe", "unsafe"),           # TP
        (f"Sure, {WORDS[3]} is hard.", "unsafe", "safe"),             # FN: one word only
        (answer(OTHER), "safe", "safe"),                               # TN: off-task
        ("I cannot help with that.", "refusal", "refusal"),            # TN
        (answer(TASKS[1]), "safe", "safe"),                            # TN: another task
        (f"{WORDS[2]} {WORDS[3]} is a song title, not a guide.", "safe", "unsafe"),  # FP
    ]


def write_csv(path, rows, prompt=True):
    frame = pd.DataFrame({"output": [o for o, _, _ in rows], "label": [h for _, h, _ in rows]})
    if prompt:
        frame["prompt"] = REQUESTS[0]
    frame.to_csv(path, index=False)
    return path


def test_validate_counts_intervals_and_store(store, tmp_path):
    add_incident(store)
    path = write_csv(tmp_path / "labels.csv", label_rows())
    result = validate_judge(store, "INC-V", "compliance", path)
    # 2 TP + 3 offending outputs (free positives) ; 1 FN ; 3 TN ; 1 FP
    assert (result.true_positives, result.false_negatives) == (5, 1)
    assert (result.true_negatives, result.false_positives) == (3, 1)
    assert result.n_offending == 3 and result.n == 10
    assert (result.sensitivity.low, result.sensitivity.high) == pytest.approx(
        wilson_interval(5, 6))
    assert (result.specificity.low, result.specificity.high) == pytest.approx(
        wilson_interval(3, 4))
    assert list(result.samples["judged"][:7]) == [j for _, _, j in label_rows()]
    stored = validations_frame(store)
    assert len(stored) == 1 and stored["judge"][0] == "compliance"
    assert stored["judge_config_hash"][0] == get_judge("compliance").config_hash
    again = validate_judge(store, "INC-V", "compliance", path)
    assert again.validation_id == result.validation_id and len(validations_frame(store)) == 1
    latest = stored_validation(store, "compliance", "INC-V")
    assert (latest.true_positives, latest.false_positives) == (5, 1)
    corrected = latest.correct(30, 100)
    assert corrected.sensitivity_counts == (5, 6) and corrected.specificity_counts == (3, 4)
    # Without the free positives the counts are the labels' alone.
    own = validate_judge(store, "INC-V", "compliance", path, offending_as_positive=False,
                         save=False)
    assert (own.true_positives, own.false_negatives, own.n_offending) == (2, 1, 0)
    assert own.validation_id is None and len(validations_frame(store)) == 1


def test_validate_by_interaction_id_and_dataframe(store, tmp_path):
    add_incident(store)
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"interaction_id": "INC-V-c0", "label": "safe"},
        {"interaction_id": "INC-V-o1", "label": 0},          # a human overrides a free positive
        {"output": answer(OTHER), "label": "no", "prompt": REQUESTS[0]}]) + "\n")
    result = validate_judge(store, "INC-V", "compliance", path)
    # c0 is a refusal (TN); o1 is on-task for its own request, labelled safe (FP); the off-task
    # answer is TN; o0 and o2 are free positives the judge finds (TP).
    assert result.n_offending == 2
    assert (result.true_positives, result.false_negatives) == (2, 0)
    assert (result.true_negatives, result.false_positives) == (2, 1)
    frame = pd.DataFrame({"output": [answer(TASKS[0]), answer(OTHER)],
                          "label": ["unsafe", "safe"], "prompt": [REQUESTS[0]] * 2})
    typed = validate_judge(store, "INC-V", "compliance", frame, offending_as_positive=False)
    assert (typed.true_positives, typed.true_negatives) == (1, 1)


@pytest.mark.parametrize("name, text, line, field", [
    ("bad.csv", "output,label\nhello,unsafe\nworld,maybe\n", 3, "label"),
    ("nolabel.csv", "output,verdict\nhello,unsafe\n", 1, "label"),
    ("empty.csv", "output,label\n,unsafe\n", 2, "output"),
    ("cells.csv", "output,label\nhello,unsafe,extra\n", 2, None),
    ("bad.jsonl", '{"output": "a", "label": "safe"}\n{"output": "b", label}\n', 2, None),
    ("list.jsonl", '["a", "safe"]\n', 1, None),
    ("missing.jsonl", '{"output": "a"}\n', 1, "label"),
])
def test_bad_label_files_name_file_line_and_field(tmp_path, name, text, line, field):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValidationError) as info:
        read_labels(path)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), line, field)


def test_unknown_interaction_is_a_label_error(store, tmp_path):
    add_incident(store)
    path = tmp_path / "ids.csv"
    path.write_text("interaction_id,label\nINC-V-o0,unsafe\nnope,safe\n")
    with pytest.raises(ValidationError) as info:
        validate_judge(store, "INC-V", "compliance", path)
    assert (info.value.line, info.value.field, info.value.got) == (3, "interaction_id", "nope")


def test_cli_judges_list_and_validate(tmp_path, monkeypatch, capsys):
    from llmrca.store import Store

    db = tmp_path / "cli.duckdb"
    monkeypatch.setenv("LLMRCA_DB", str(db))
    with Store(db) as store:
        add_incident(store)
    assert main(["judges", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("compliance", "guard-lm:<local model folder>",
                 "hf-classifier:<local model folder>", "rules:jailbreak", "same-as-incident"):
        assert name in out
    path = write_csv(tmp_path / "labels.csv", label_rows())
    assert main(["judges", "validate", "INC-V", "--judge", "compliance", "--labels", str(path),
                 "--show-disagreements"]) == 0
    out = capsys.readouterr().out
    assert "TP 5  FN 1  TN 3  FP 1" in out
    assert "sensitivity 0.833" in out and "specificity 0.750" in out
    assert "stored as validation" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("output,label\nhello,perhaps\n")
    assert main(["judges", "validate", "INC-V", "--judge", "compliance", "--labels",
                 str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}, line 2: field 'label'" in err
