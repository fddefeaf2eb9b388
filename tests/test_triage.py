"""Triage on the sample bundles: numbers a reader can check against the bundles' logs."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "incidents"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    from llmrca.ingest import ingest_bundle
    from llmrca.store import Store

    with Store(tmp_path_factory.mktemp("triage") / "s.duckdb") as s:
        for name in ("INC-0001", "INC-0002"):
            ingest_bundle(s, DATA / name)
        yield s


def test_scope_counts_the_failure_per_version(sample_store):
    from llmrca.triage import scope

    one = scope(sample_store, "INC-0001")
    assert one.signature == "rules:jailbreak"
    v1, v2 = one.version("assistant-v1"), one.version("assistant-v2")
    assert (v1["events"], v1["matching"]) == (1000, 0)
    assert (v2["events"], v2["matching"], v2["matching_users"]) == (2000, 30, 30)
    assert v2["share"] == pytest.approx(0.015) and v2["low"] < 0.015 < v2["high"]
    assert one.by_day["matching"].sum() == 30 and set(one.by_day["model_version"]) == {
        "assistant-v1", "assistant-v2"}
    assert one.interactions.set_index("model_version").loc["assistant-v2"].tolist() == [6, 0]
    two = scope(sample_store, "INC-0002")
    assert two.signature == "rules:privacy"
    assert (two.version("assistant-v2")["matching"], two.version("assistant-v1")["matching"]) \
        == (31, 0)
    assert two.interactions.set_index("model_version").loc["assistant-v2"].tolist() == [6, 6]


def test_classification_gives_the_rule(sample_store):
    from llmrca.triage import classify_incident

    one = classify_incident(sample_store, "INC-0001")
    assert (one.category, one.severity) == ("jailbreak", "high") and one.agrees()
    assert "6 of 6" in one.category_rule and "not raised" in one.severity_rule
    two = classify_incident(sample_store, "INC-0002")
    assert (two.category, two.severity) == ("privacy", "critical") and two.agrees()
    assert "pii-email" in two.severity_rule


def test_timeline_marks_detection_rollout_and_offending_calls(sample_store):
    from llmrca.triage import timeline

    t = timeline(sample_store, "INC-0001")
    kinds = t.markers["kind"].value_counts().to_dict()
    assert kinds == {"offending": 6, "detected": 1, "deployed": 1}
    guard = t.guardrail()
    assert {"allow", "block"} <= set(guard.columns)
    assert guard[["allow", "block"]].to_numpy().sum() == 3000


def test_containment_options_measure_both_sets(sample_store):
    from llmrca.triage import CONTAINMENT_COLUMNS, containment_options

    one = containment_options(sample_store, "INC-0001").set_index("option")
    assert list(one.columns) == list(CONTAINMENT_COLUMNS)[1:]
    rollback = one.loc["roll back to assistant-v1"]
    assert rollback["source"] == "logs" and rollback["failure_before"] == pytest.approx(0.015)
    assert (rollback["k_after"], rollback["n_after"]) == (0, 1000)
    howto = one.loc["rule jailbreak/jb-harmful-howto"]
    assert (howto["k_after"], howto["n_after"]) == (0, 6)          # stops all six
    assert (howto["context_affected"], howto["context_n"]) == (30, 3000)
    threshold = one[one["kind"] == "guardrail-threshold"].iloc[0]
    assert threshold["k_after"] == 0 and threshold["context_n"] > 0
    two = containment_options(sample_store, "INC-0002").set_index("option")
    email = two.loc["rule privacy/pii-email"]
    # INC-0002 has context interactions: the rule's false-positive rate on them is 0 of 6.
    assert (email["k_after"], email["context_affected"], email["context_n"]) == (0, 0, 6)
    assert two.loc["rule jailbreak/jb-harmful-howto", "failure_after"] == 1.0


def test_replay_rollback_is_used_when_given(sample_store):
    import math

    from llmrca.stats import rate
    from llmrca.triage import containment_options

    class FakeReplay:
        def rate(self, version, variant="original"):
            return rate(0, 18) if version == "assistant-v1" else rate(9, 18)

    row = containment_options(sample_store, "INC-0001", replay=FakeReplay()).iloc[0]
    assert row["source"] == "replay" and row["failure_before"] == 0.5
    assert (row["k_after"], row["n_after"]) == (0, 18) and math.isnan(row["context_rate"])
