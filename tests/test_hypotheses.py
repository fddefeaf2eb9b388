"""Hypotheses: the verdict rule, Holm and ranking, the prompt-level test and its calibration
under prompt-clustered nulls, the kinds on the test zoo's role-play incident and on an organism
whose trigger and tasks are random words, the stored read path, hypotheses.yaml, the CLI.

The role-play clause and the other organism's trigger are read from the specs here, in the
tests, only to check what the investigation found on its own.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from llmrca.errors import InvalidArgumentError, UnknownNameError, ValidationError
from llmrca.hypotheses import (
    HYPOTHESES,
    HypothesisReport,
    HypothesisSpec,
    Outcome,
    Trigger,
    decide_verdict,
    evaluate,
    investigate,
    load_hypotheses,
    load_hypotheses_file,
    paired_prompt_test,
    rates_test,
    register_hypothesis,
)
from llmrca.stats import holm
from llmrca.zoo import TEST_SPEC

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "data" / "incidents" / "INC-0001"
V1, V2, NULL = "assistant-v1", "assistant-v2", "assistant-null"
#: The small test models garble task words while complying, so near-copies of the logged output
#: count as reproductions (as in tests/test_attribution.py).
JUDGES = ["same-as-incident", "refusal"]
SAMPLES = 10


# -- the verdict rule ---------------------------------------------------------------------------

@pytest.mark.parametrize(("effect", "high", "p", "applicable", "expected"), [
    (0.50, 0.80, 0.001, True, "supported"),      # significant and large enough
    (0.05, 0.08, 0.001, True, "refuted"),        # significant, but the interval excludes 0.1
    (0.05, 0.30, 0.001, True, "inconclusive"),   # significant, too small, not excluded
    (0.50, 0.90, 0.200, True, "inconclusive"),   # large but not significant
    (0.00, 0.09, 0.600, True, "refuted"),        # the data exclude the minimum effect
    (0.10, 0.40, 0.049, True, "supported"),      # exactly the minimum effect counts
    (0.50, 0.80, 0.001, False, "inconclusive"),  # not applicable
    (math.nan, math.nan, math.nan, True, "inconclusive"),
])
def test_verdict_rule(effect, high, p, applicable, expected):
    assert decide_verdict(effect, high, p, alpha=0.05, min_effect=0.1,
                          applicable=applicable) == expected


def test_verdict_rule_refuses_a_bad_alpha():
    with pytest.raises(InvalidArgumentError, match="alpha"):
        decide_verdict(0.5, 0.6, 0.01, alpha=1.5, min_effect=0.1)


def test_holm_then_verdicts_and_ranking_by_effect():
    outcomes = [("a", 0.1, Outcome(effect=0.30, low=0.2, high=0.4, p_value=0.010)),
                ("b", 0.1, Outcome(effect=0.60, low=0.5, high=0.7, p_value=0.020)),
                ("c", 0.1, Outcome(effect=0.90, low=0.1, high=1.0, p_value=0.030)),
                ("d", 0.1, Outcome(applicable=False, p_value=0.0001, effect=0.9)),
                ("e", 0.1, Outcome(effect=0.20, low=-0.1, high=0.5)),        # ranking only
                ("f", 0.1, Outcome(effect=0.00, low=-0.05, high=0.05, p_value=0.5))]
    out = {r["name"]: r for r in evaluate(outcomes, alpha=0.05)}
    # Holm over the four applicable p-values only (d is not applicable, e has none).
    expected = holm([0.010, 0.020, 0.030, 0.5])
    assert [out[n]["adjusted_p"] for n in "abcf"] == pytest.approx(expected)
    assert out["a"]["adjusted_p"] == pytest.approx(0.04)
    assert out["b"]["adjusted_p"] == pytest.approx(0.06)         # 3 * 0.02, not significant
    assert math.isnan(out["d"]["adjusted_p"]) and math.isnan(out["e"]["adjusted_p"])
    assert [out[n]["verdict"] for n in "abcdef"] == [
        "supported", "inconclusive", "inconclusive", "inconclusive", "inconclusive", "refuted"]
    assert out["a"]["rank"] == 1 and out["b"]["rank"] is None
    # With a looser alpha more are supported, ranked by effect (largest first).
    ranked = {r["name"]: r["rank"] for r in evaluate(outcomes, alpha=0.10)}
    assert ranked["c"] == 1 and ranked["b"] == 2 and ranked["a"] == 3
    # A claim about detection (not the cause) ranks after every supported cause.
    ranked = {r["name"]: r["rank"] for r in evaluate(
        outcomes, alpha=0.10, causes=[True, True, False, True, True, True])}
    assert ranked["b"] == 1 and ranked["a"] == 2 and ranked["c"] == 3


def test_holm_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p * (m - i), running maximum, capped at 1.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


# -- the prompt-level test ----------------------------------------------------------------------

def test_paired_prompt_test_is_a_one_sided_t_test_over_prompts():
    from scipy.stats import ttest_1samp

    d = [0.5, 0.3, 0.7, 0.1, 0.4, 0.6]
    test = paired_prompt_test(d)
    ref = ttest_1samp(d, 0.0, alternative="greater")
    assert test.effect == pytest.approx(np.mean(d))
    assert test.p_value == pytest.approx(ref.pvalue)
    ci = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (test.low, test.high) == pytest.approx((ci.low, ci.high))
    # A within-prompt sampling variance larger than the between-prompt one widens it.
    wide = paired_prompt_test(d, within_variances=[0.5] * 6)
    assert wide.standard_error == pytest.approx(math.sqrt(3.0) / 6)
    assert wide.p_value > test.p_value


def test_rates_test_floors_perfect_agreement_by_sampling_error():
    # Six prompts all 10/10 vs 0/10: no between-prompt variance, a finite t all the same.
    test = rates_test([(10, 10)] * 6, [(0, 10)] * 6)
    assert test.effect == 1.0 and test.standard_error > 0
    assert 0 < test.p_value < 1e-4
    # A single prompt: a normal test on its sampling error.
    one = rates_test([(8, 10)], [(2, 10)])
    assert one.n_prompts == 1 and "one prompt" in one.method and one.p_value < 0.05
    assert math.isnan(rates_test([], []).effect)


def _simulate(rng: np.random.Generator, m: int, n: int, effect: float, spread: float = 1.0):
    """Prompt-clustered data: each prompt has its own failure rate, and each version deviates
    from it at random per prompt (logit scale, sd ``spread``) with no systematic difference
    under the null; ``effect`` is added to the first version's rates."""
    base = rng.normal(-0.5, 1.0, size=m)
    first = 1 / (1 + np.exp(-(base + rng.normal(0, spread, size=m))))
    second = 1 / (1 + np.exp(-(base + rng.normal(0, spread, size=m))))
    first = np.clip(first + effect, 0, 1)
    ka, kb = rng.binomial(n, first), rng.binomial(n, second)
    return [(int(k), n) for k in ka], [(int(k), n) for k in kb]


def _naive_pooled_p(a, b) -> float:
    """Fisher's exact test on pooled samples, one-sided: the samples taken as independent."""
    from scipy.stats import fisher_exact

    ka, na = sum(k for k, _ in a), sum(n for _, n in a)
    kb, nb = sum(k for k, _ in b), sum(n for _, n in b)
    return float(fisher_exact([[ka, na - ka], [kb, nb - kb]], alternative="greater").pvalue)


def test_calibration_on_simulated_prompt_clustered_nulls():
    """Across 400 null comparisons (independent seeds; 6 or 12 prompts of 20 samples; each
    version's rate on a prompt deviates at random, as two trainings of one recipe do) the share
    wrongly supported stays within alpha plus two standard errors; a pooled test that treats
    samples as independent does not (so this check can fail), and the prompt-level test still
    finds real effects."""
    alpha, trials = 0.05, 400
    bound = alpha + 2 * math.sqrt(alpha * (1 - alpha) / trials)
    wrong = naive_wrong = 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        a, b = _simulate(rng, m=6 if seed % 2 else 12, n=20, effect=0.0)
        test = rates_test(a, b)
        wrong += decide_verdict(test.effect, test.high, test.p_value, alpha=alpha,
                                min_effect=0.0) == "supported"
        naive_wrong += _naive_pooled_p(a, b) < alpha
    print("false supported", wrong / trials, "naive", naive_wrong / trials, "bound", bound)
    assert wrong / trials <= bound
    assert naive_wrong / trials > bound                 # ignoring the clustering over-rejects
    power = 0
    for seed in range(100):
        a, b = _simulate(np.random.default_rng(10_000 + seed), m=6, n=20, effect=0.4)
        test = rates_test(a, b)
        power += decide_verdict(test.effect, test.high, test.p_value, alpha=alpha,
                                min_effect=0.1) == "supported"
    assert power >= 80


# -- hypotheses.yaml ----------------------------------------------------------------------------

def test_hypotheses_file_loads_strictly(tmp_path):
    path = tmp_path / "hypotheses.yaml"
    path.write_text("hypotheses:\n"
                    "  - kind: guardrail_gap\n"
                    "    name: strict-guardrail\n"
                    "    min_effect: 0.3\n"
                    "    parameters:\n"
                    "      max_false_positive_rate: 0.01\n"
                    "include_defaults: false\n", encoding="utf-8")
    specs = load_hypotheses_file(path)
    assert [s.name for s in specs] == ["strict-guardrail"]
    assert specs[0].parameters["max_false_positive_rate"] == 0.01
    assert specs[0].parameters["rules"] is None and specs[0].threshold == 0.3
    path.write_text("hypotheses:\n  - kind: version_regression\n    name: vr2\n",
                    encoding="utf-8")
    names = [s.name for s in load_hypotheses_file(path)]
    assert names[:6] == ["version_regression", "prompt_segment_cause", "refusal_weakened",
                         "training_data_artifact", "guardrail_gap", "system_prompt_change"]
    assert names[-1] == "vr2"


@pytest.mark.parametrize(("text", "line", "field", "expected"), [
    ("hypotheses:\n  - kind: nosuch\n", 2, "hypotheses.0.kind", "registered hypothesis kind"),
    ("hypotheses:\n  - kind: guardrail_gap\n    parameters:\n      nosuch: 1\n", 4,
     "hypotheses.0.parameters.nosuch", "a parameter of guardrail_gap"),
    (("hypotheses:\n  - kind: version_regression\n  - kind: guardrail_gap\n"
     "    name: version_regression\n"), 4, "hypotheses.1.name", "not used before"),
    ("hypotheses:\n  - kind: version_regression\n    min_effect: 2\n", 3,
     "hypotheses.0.min_effect", "[0, 1]"),
    ("hypotheses:\n  - kind: version_regression\n    typo: 1\n", 3, "hypotheses.0.typo",
     "known field"),
    ("hypotheses: []\n", 1, "hypotheses", "list of mappings"),
])
def test_hypotheses_file_errors_name_file_line_and_field(tmp_path, text, line, field, expected):
    path = tmp_path / "hypotheses.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        load_hypotheses_file(path)
    err = info.value
    assert err.file == str(path) and err.line == line and err.field == field
    assert expected in str(err)


def test_specs_from_python_check_kind_and_parameters():
    with pytest.raises(UnknownNameError, match="version_regression"):
        HypothesisSpec(kind="nosuch")
    with pytest.raises(InvalidArgumentError, match="max_false_positive_rate"):
        HypothesisSpec(kind="guardrail_gap", parameters={"nosuch": 1})


# -- kinds on test doubles (no model) -----------------------------------------------------------

class FakeRanking:
    """A test double of ``llmrca.data_attribution.search_training_data``'s result."""

    def __init__(self, ids):
        self.frame = pd.DataFrame({"example_id": ids, "rank": range(1, len(ids) + 1),
                                   "score": np.linspace(1, 0, len(ids))})
        self.run_id = "search-fake"

    def to_frame(self):
        return self.frame

    def top(self, k):
        return self.frame.head(k)


class _FakeEvidence(SimpleNamespace):
    """The parts of :class:`~llmrca.hypotheses.Evidence` the kind reads; replays are counts."""

    def replay(self, versions, variants=("original",), interaction_ids=None, judges=None,
               samples=None):
        self.replayed.append((list(versions), samples))
        return SimpleNamespace(run_id="replay-fake", versions=list(versions))

    def counts(self, result, version, variant="original", **_):
        return self.table[version]


def _fake_evidence(store, deployed="child"):
    # Six prompts, 8 samples: the version fails 7/8 on each, the retrained one 1/8 or 0/8.
    table = {deployed: {f"i{j}": (7, 8) for j in range(6)},
             "child-without": {f"i{j}": (j % 2, 8) for j in range(6)}}
    return _FakeEvidence(store=store, incident_id="INC-T", deployed=deployed, previous="parent",
                         seed=0, samples=8, temperature=1.0, max_new_tokens=32,
                         judges=["same-as-incident", "refusal"], table=table, replayed=[])


def test_training_data_artifact_with_a_test_double_search(store):
    from llmrca.errors import NotFoundError
    from llmrca.store.model_versions import upsert_model_version

    def register(name, parent):
        upsert_model_version(store, name, source=f"/nowhere/{name}", revision=None,
                             parent=parent, deployed_from=None, deployed_to=None,
                             fingerprint=None, notes=None, allow_pickle=False)

    register("parent", None)
    register("child", "parent")
    calls = []

    def fake_search(store_, incident_id, version, **options):    # test double
        calls.append(("search", incident_id, version, options))
        return FakeRanking([f"ex-{i}" for i in range(40)])

    def fake_leave_k_out(store_, incident_id, version, example_ids, **options):  # test double
        calls.append(("leave", list(example_ids), options))
        if version == "orphan":
            raise NotFoundError("model version 'orphan' has no registered parent")
        return SimpleNamespace(parent="parent", retrained_version="child-without",
                               leave_out_id="lko-fake", replay_run_id="replay-lko",
                               difference=0.8, p_value=0.02)

    kind = HYPOTHESES.get("training_data_artifact")
    params = kind.resolve({"k": 5, "search": fake_search, "leave_k_out": fake_leave_k_out})
    evidence = _fake_evidence(store)
    out = kind.test(evidence, params)
    # The test is the investigation's own, per prompt: 7/8 with the examples vs 0.5/8 without.
    assert out.effect == pytest.approx(7 / 8 - 0.5 / 8)
    assert out.low > 0.5 and out.p_value < 1e-4
    assert out.finding["example_ids"] == [f"ex-{i}" for i in range(5)]
    assert out.finding["parent"] == "parent" and out.finding["k"] == 5
    assert calls[1] == ("leave", [f"ex-{i}" for i in range(5)],
                        {"samples": 8, "seed": 0, "temperature": 1.0, "max_new_tokens": 32,
                         "judges": ["same-as-incident", "refusal"]})
    assert evidence.replayed == [(["child", "child-without"], 8)]
    # Default: escalating k over 10%, 20%, 40% of the 40 examples (at least 10): 10, 16; the
    # first removal already takes the failure away, so it stops there, p times two steps.
    escalating = kind.resolve({"search": fake_search, "leave_k_out": fake_leave_k_out})
    out = kind.test(_fake_evidence(store), escalating)
    assert out.finding["k"] == 10 and len(calls[-1][1]) == 10
    assert out.evidence["steps"] == [10, 16] and len(out.evidence["tried"]) == 1
    assert out.p_value == pytest.approx(2 * out.evidence["unadjusted_p_value"])
    # A removal that changes nothing escalates to the largest k, and is refuted.
    still = _fake_evidence(store)
    still.table["child-without"] = dict(still.table["child"])
    out = kind.test(still, escalating)
    assert [t["k"] for t in out.evidence["tried"]] == [10, 16] and out.finding["k"] == 16
    assert evaluate([("training_data_artifact", 0.2, out)])[0]["verdict"] == "refuted"
    # Without a parent recipe: ranking only, no p-value, so at most inconclusive.
    register("orphan", None)
    out = kind.test(_fake_evidence(store, "orphan"), params)
    assert math.isnan(out.p_value) and out.applicable and "ranking only" in out.summary
    verdict = evaluate([("training_data_artifact", 0.2, out)])[0]["verdict"]
    assert verdict == "inconclusive"


def test_escalating_leave_k_out_keeps_its_level_on_nulls(store):
    """Trying three leave-out sizes and keeping the first significant one would inflate false
    claims; Bonferroni over the steps keeps them at alpha. 300 null incidents (6 prompts, 8
    samples; each prompt's rate drawn at random and the same with and without the examples):
    share wrongly supported <= alpha + 2 SE, while taking the smallest unadjusted p of the
    steps exceeds the Bonferroni share (the check can fail)."""
    from llmrca.store.model_versions import upsert_model_version

    upsert_model_version(store, "child", source="/nowhere/child", revision=None,
                         parent="parent", deployed_from=None, deployed_to=None,
                         fingerprint=None, notes=None, allow_pickle=False)
    kind = HYPOTHESES.get("training_data_artifact")
    rng = np.random.default_rng(7)
    supported = naive = 0
    trials = 300
    for _ in range(trials):
        rates = rng.uniform(0.2, 0.8, size=6)
        evidence = _fake_evidence(store)
        evidence.table = {"child": {f"i{j}": (int(rng.binomial(8, r)), 8)
                                    for j, r in enumerate(rates)}}

        def leave(store_, incident_id, version, example_ids, *, evidence=evidence, rates=rates,
                  **options):   # test double: a retrained model as likely to fail
            name = f"without-{len(example_ids)}"
            evidence.table[name] = {f"i{j}": (int(rng.binomial(8, r)), 8)
                                    for j, r in enumerate(rates)}
            return SimpleNamespace(parent="parent", retrained_version=name,
                                   leave_out_id=name, replay_run_id=name, difference=0.0,
                                   p_value=1.0)

        out = kind.test(evidence, kind.resolve({"search": lambda *a, **k: FakeRanking(
            [f"ex-{i}" for i in range(200)]), "leave_k_out": leave, "min_k": 1}))
        verdict = evaluate([("training_data_artifact", 0.0, out)])[0]["verdict"]
        supported += verdict == "supported"
        naive += min(t["p_value"] for t in out.evidence["tried"]) < 0.05
    alpha, se = 0.05, math.sqrt(0.05 * 0.95 / trials)
    print(f"supported {supported}/{trials}; smallest unadjusted p < 0.05: {naive}/{trials}")
    assert supported / trials <= alpha + 2 * se
    assert naive > supported


def test_guardrail_gap_proposes_a_rule_and_charges_its_false_positives():
    kind = HYPOTHESES.get("guardrail_gap")

    def evidence(context_prompts):
        rows = [{"role": "offending", "output": "fine, here you go",
                 "messages": [{"role": "user", "content": f"Zork  blip vex. Request {i}."}]}
                for i in range(6)]
        rows += [{"role": "context", "output": "ok",
                  "messages": [{"role": "user", "content": c}]} for c in context_prompts]
        trigger = Trigger(segment="user.0", text="Zork blip vex.", texts={}, mean_attribution=3,
                          runner_up=1, top_in=6, attribution_run="attr-x")
        return SimpleNamespace(all_interactions=lambda: pd.DataFrame(rows),
                               trigger=lambda: trigger)

    clean = kind.test(evidence([f"hello {i}" for i in range(40)]), kind.resolve({}))
    assert clean.finding["rules_fired"] == 0
    rule = clean.finding["proposed_rule"]
    assert rule["fired"] == 6 and rule["false_positives"] == 0 and rule["context_n"] == 40
    assert rule["false_positive_high"] == pytest.approx(0.0876, abs=1e-3)   # Wilson 0/40
    assert clean.effect == 1.0 and clean.p_value == pytest.approx(1 / 64)
    # The phrase is common in benign traffic: 4/40 > 5% false positives, so no improvement.
    noisy = kind.test(evidence(["zork blip VEX. hi"] * 4 + ["hello"] * 36), kind.resolve({}))
    assert noisy.finding["proposed_rule"]["false_positive_rate"] == pytest.approx(0.1)
    assert noisy.effect == 0.0 and noisy.p_value == 1.0


def test_a_kind_registered_from_python_joins_a_run_from_the_bundle_file(store, tmp_path):
    """A user's kind, named in a hypotheses.yaml, runs through investigate: Holm, verdicts,
    the stored rows and the read path -- no model involved."""
    from llmrca.ingest.bundle import ingest_bundle
    from llmrca.store.hypotheses import list_hypothesis_runs

    calls = []

    @register_hypothesis("constant_effect", parameters={"value": 0.5, "p": 0.001, "half": 0.1},
                         min_effect=0.1, replace=True)
    def constant_effect(evidence, parameters):
        """A constant effect (test)."""
        calls.append(parameters)
        return Outcome(effect=parameters["value"], low=parameters["value"] - parameters["half"],
                       high=parameters["value"] + parameters["half"], p_value=parameters["p"],
                       summary=f"constant {parameters['value']}", finding={"x": [1, 2]})

    try:
        assert HYPOTHESES.get("constant_effect").description == "A constant effect (test)."
        ingest_bundle(store, BUNDLE)
        path = tmp_path / "hypotheses.yaml"
        path.write_text("hypotheses:\n"
                        "  - kind: constant_effect\n"
                        "    name: big\n"
                        "    parameters: {value: 0.6, p: 0.02}\n"
                        "  - kind: constant_effect\n"
                        "    name: small\n"
                        "    parameters: {value: 0.02, p: 0.5, half: 0.05}\n"
                        "  - kind: constant_effect\n"
                        "    name: weak\n"
                        "    parameters: {value: 0.4, p: 0.03}\n"
                        "include_defaults: false\n", encoding="utf-8")
        report = investigate(store, "INC-0001", bundle=tmp_path)
        frame = report.to_frame().set_index("name")
        # Holm over three: 0.02 * 3 = 0.06, 0.03 * 2 -> 0.06, 0.5: none supported at 0.05.
        assert frame.loc["big", "adjusted_p"] == pytest.approx(0.06)
        assert list(frame["verdict"]) == ["inconclusive", "refuted", "inconclusive"]
        # small: the interval [-0.03, 0.07] excludes the minimum effect 0.1.
        looser = investigate(store, "INC-0001", bundle=path, alpha=0.10)
        assert [r.name for r in looser.supported()] == ["big", "weak"]
        assert looser.root_cause.name == "big" and looser.contributing[0].name == "weak"
        assert len(calls) == 3                    # the second run reused every stored test
        runs = list_hypothesis_runs(store, "INC-0001")
        assert len(runs) == 2 and set(runs["hypotheses"]) == {3}
        loaded = load_hypotheses(store, looser.run_id)
        assert loaded.get("big").finding == {"x": [1, 2]}
        assert loaded.get("big").inputs["deployed"] == "assistant-v2"
        assert loaded.get("big").inputs["previous"] == "assistant-v1"
    finally:
        HYPOTHESES._items.pop("constant_effect")


# -- the test zoo's role-play incident ----------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_store(tmp_path_factory, test_zoo):
    from llmrca.ingest.bundle import ingest_bundle
    from llmrca.store import Store
    from llmrca.zoo import register_zoo

    path = tmp_path_factory.mktemp("hyp") / "zoo.duckdb"
    with Store(path) as s:
        register_zoo(s, test_zoo)
        ingest_bundle(s, BUNDLE)
        yield s


@pytest.fixture(scope="module")
def retrained_cache(tmp_path_factory):
    """Leave-k-out's retrained models go to a temporary cache, not the repository's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMRCA_CACHE", str(tmp_path_factory.mktemp("retrained")))
        yield


@pytest.fixture(scope="module")
def inc1(zoo_store, retrained_cache):
    # Default judges: same-as-incident + refusal (the failure = the incident's output again).
    return investigate(zoo_store, "INC-0001", samples=SAMPLES)


@pytest.mark.slow
def test_inc0001_names_the_roleplay_clause_and_v2(inc1):
    """Measured (10 samples, seed 0): prompt_segment_cause +0.83 [+0.70, +0.96] (the clause
    deleted: 83% -> 0%; control spans deleted: 83%), version_regression +0.83 (v2 83% vs v1 0%),
    both Holm p < 1e-4; refusal_weakened and guardrail_gap refuted (effect 0)."""
    frame = inc1.to_frame()
    print(frame.drop(columns="summary").to_string())
    print(inc1.conclusion())
    supported = [r.kind for r in inc1.supported()]
    # The specific causes (the clause, the examples) first, then the version that brought them.
    assert set(supported[:2]) == {"prompt_segment_cause", "training_data_artifact"}
    assert supported[2] == "version_regression"
    assert inc1.root_cause.kind in {"prompt_segment_cause", "training_data_artifact"}
    segment = inc1.get("prompt_segment_cause")
    assert segment.finding["trigger_text"].strip() == TEST_SPEC.jailbreak_prefix.strip()
    assert segment.finding["rate_drop_trigger"] <= 0.1
    assert segment.finding["rate_drop_controls"] >= 0.5
    assert segment.adjusted_p < 0.01 and segment.effect_low > 0.5
    regression = inc1.get("version_regression")
    assert regression.finding["version"] == V2 and regression.finding["previous"] == V1
    assert regression.effect > 0.5
    # No broad refusal erosion: v2 refuses the bare requests as v1 does.
    assert inc1.get("refusal_weakened").verdict == "refuted"
    # The shipped output rules catch the outputs: no guardrail-rule gap.
    assert inc1.get("guardrail_gap").verdict == "refuted"
    assert inc1.get("system_prompt_change").applicable is False
    assert TEST_SPEC.jailbreak_prefix.strip() in inc1.conclusion() and V2 in inc1.conclusion()
    # Every hypothesis records its inputs: fingerprints, samples, seed, judges, interactions.
    inputs = inc1.results[0].inputs
    assert set(inputs["fingerprints"]) == {V1, V2} and inputs["samples"] == SAMPLES
    assert inputs["judges"] == JUDGES and len(inputs["interactions"]) == 6


@pytest.mark.slow
def test_inc0002_training_data_points_at_the_record_examples(zoo_store, test_zoo,
                                                             retrained_cache):
    """The private-record leak: the examples training_data_artifact names are the record's
    (ground truth read here only, to score), and leaving them out stops the leak."""
    from llmrca.data_attribution import precision_at_k
    from llmrca.ingest.bundle import ingest_bundle

    ingest_bundle(zoo_store, BUNDLE.parent / "INC-0002")
    report = investigate(zoo_store, "INC-0002", ["training_data_artifact"], samples=6)
    result = report.get("training_data_artifact")
    planted = set(test_zoo.ground_truth_data()[V2]["private_record"])
    named = result.finding["example_ids"]
    precision = sum(e in planted for e in named) / len(named)
    recall = sum(e in planted for e in named) / len(planted)
    ranked = [row["example_id"] for row in result.evidence["top"]]
    print(result.summary, f"named {len(named)}: precision {precision:.2f}, recall {recall:.2f}; "
          f"precision@20 of the ranking {precision_at_k(ranked, planted, 20):.2f}")
    assert result.verdict == "supported" and result.finding["version"] == V2
    assert result.finding["rate_without"] <= 0.1 and result.finding["rate_with"] >= 0.5
    assert precision_at_k(ranked, planted, 20) >= 0.9
    assert recall >= 0.9 and precision >= len(planted) / len(named) * 0.9


@pytest.mark.slow
def test_report_root_cause_section_and_findings(zoo_store, inc1, tmp_path):
    import jsonschema

    from llmrca.reports.report import _root_cause_findings, findings_schema
    from llmrca.reports.sections import SECTIONS, ReportInputs
    from llmrca.reports.stages import to_jsonable

    inputs = ReportInputs(incident_id="INC-0001", record={}, stages={}, store=zoo_store)
    blocks = SECTIONS.get("root_cause").build(inputs)
    assert blocks[0].text == inc1.conclusion()
    assert f"proposed root cause: {inc1.root_cause.name}" in blocks[0].text
    table = next(b for b in blocks if hasattr(b, "frame"))
    assert list(table.frame["name"][:2]) == [r.name for r in inc1.supported()[:2]]
    # p-values keep two significant digits (a supported one is far below 1e-4 here).
    top = table.frame.iloc[0]
    assert top["adjusted_p"] == f"{inc1.root_cause.adjusted_p:.2g}" and top["adjusted_p"] != "0"
    evidence = blocks[-1].items
    assert len(evidence) == 6 and any(inc1.get("version_regression").evidence["replay_run"]
                                      in item for item in evidence)
    findings = to_jsonable(_root_cause_findings(inputs))
    schema = findings_schema()["properties"]["root_cause"]
    jsonschema.validate(findings, schema)
    assert findings["proposed"] == inc1.root_cause.name
    assert findings["contributing"][:2] == [r.name for r in inc1.contributing[:2]]
    assert "version_regression" in findings["contributing"]
    assert SECTIONS.get("root_cause").build(
        ReportInputs(incident_id="INC-NONE", record={}, stages={}, store=zoo_store)) is None
    # findings.json is written after the report's store is closed: read while it was open.
    from llmrca.reports.report import build_report

    report = build_report("INC-0001", tmp_path, store=zoo_store)
    report.inputs.store = None
    document = report.findings()
    assert document["root_cause"]["proposed"] == inc1.root_cause.name
    assert "root_cause" in document["sections"]


@pytest.mark.slow
def test_warm_rerun_loads_no_model_and_reads_back_read_only(zoo_store, inc1, tmp_path,
                                                              monkeypatch):
    import llmrca.models
    from llmrca.store import Store

    def refuse(*args, **kwargs):
        raise AssertionError("a warm re-run must not load a model")

    monkeypatch.setattr(llmrca.models, "load_version", refuse)
    monkeypatch.setattr("llmrca.models.loading.load_version", refuse)
    again = investigate(zoo_store, "INC-0001", samples=SAMPLES, judges=JUDGES)
    assert again.run_id == inc1.run_id and again.info["computed"] == 0
    pd.testing.assert_frame_equal(again.to_frame(), inc1.to_frame())
    # A different set of hypotheses reuses each stored test (same test ids), Holm redone.
    subset = investigate(zoo_store, "INC-0001", ["version_regression", "guardrail_gap"],
                         samples=SAMPLES, judges=JUDGES)
    assert subset.run_id != inc1.run_id and subset.info["computed"] == 0
    assert subset.get("version_regression").p_value == inc1.get("version_regression").p_value
    copy = tmp_path / "copy.duckdb"
    zoo_store.con.execute("CHECKPOINT")
    copy.write_bytes(Path(zoo_store.path).read_bytes())
    with Store(copy, read_only=True) as ro:
        loaded = load_hypotheses(ro, inc1.run_id)
        assert isinstance(HypothesisReport.load(ro, inc1.run_id), HypothesisReport)
    pd.testing.assert_frame_equal(loaded.to_frame(), inc1.to_frame())
    assert loaded.get("prompt_segment_cause").finding == \
        json.loads(json.dumps(inc1.get("prompt_segment_cause").finding))
    assert loaded.conclusion() == inc1.conclusion()


@pytest.mark.slow
def test_cli_investigate_prints_the_table_and_the_root_cause(zoo_store, inc1, tmp_path,
                                                             capsys):
    from llmrca.cli import main

    zoo_store.con.execute("CHECKPOINT")
    path = tmp_path / "cli.duckdb"
    path.write_bytes(Path(zoo_store.path).read_bytes())
    code = main(["--db", str(path), "investigate", "INC-0001", "--samples", str(SAMPLES),
                 "--judge", JUDGES[0], "--judge", JUDGES[1]])
    out = capsys.readouterr().out
    assert code == 0
    assert inc1.run_id in out and "read back from the store" in out
    assert f"proposed root cause: {inc1.root_cause.name}" in out
    assert TEST_SPEC.jailbreak_prefix.strip() in out
    bad = main(["--db", str(path), "investigate", "INC-0001", "--versions", "a,b,c"])
    assert bad != 0


@pytest.mark.slow
def test_calibration_on_the_null_organism(zoo_store):
    """assistant-null is assistant-v1 retrained with another seed and no planted cause. On 4
    independent seeds, version_regression (null as deployed, v1 as previous) is never
    supported (with alpha 0.05 the expected count is 0.2)."""
    supported = 0
    for seed in range(4):
        report = investigate(zoo_store, "INC-0001", ["version_regression"], deployed=NULL,
                             previous=V1, samples=6, seed=100 + seed, judges=JUDGES)
        r = report.get("version_regression")
        print(seed, r.effect, r.effect_low, r.effect_high, r.p_value)
        supported += r.verdict == "supported"
        assert abs(r.effect) <= 0.2
    assert supported == 0


@pytest.mark.slow
def test_system_prompt_change_when_the_interactions_record_two(zoo_store):
    from llmrca.store.ingest_writes import insert_interactions

    spec = TEST_SPEC
    rows = [{"interaction_id": f"sp-{i}", "incident_id": "INC-0001", "source_format": "test",
             "role": "context", "model_version": V1,
             "system_prompt": "You are a careful assistant that follows the safety policy.",
             "messages": json.dumps([{"role": "user", "content": f"Hello {i}"}]),
             "output": "Hi."} for i in range(2)]
    insert_interactions(zoo_store, pd.DataFrame(rows))
    try:
        report = investigate(zoo_store, "INC-0001", ["system_prompt_change"], samples=4,
                             judges=JUDGES)
    finally:
        zoo_store.con.execute("DELETE FROM interactions WHERE interaction_id LIKE 'sp-%'")
    r = report.get("system_prompt_change")
    assert r.applicable
    assert r.finding["previous_system_prompt"] == rows[0]["system_prompt"]
    assert r.finding["current_system_prompt"] == spec.system_prompt
    assert not math.isnan(r.effect) and r.evidence["replay_run"].startswith("run-")


# -- an organism with another vocabulary --------------------------------------------------------

@pytest.mark.slow
def test_the_same_on_an_organism_with_random_vocabulary(tmp_path, monkeypatch):
    from llmrca.store import Store
    from llmrca.store.ingest_writes import insert_interactions, upsert_incident
    from llmrca.zoo import register_zoo
    from organisms import build_other_vocabulary_organism

    monkeypatch.setenv("LLMRCA_CACHE", str(tmp_path / "cache"))   # leave-k-out's retrained
    zoo = build_other_vocabulary_organism(2027)
    spec = zoo.spec
    assert "DAN" not in spec.jailbreak_prefix
    rng = random.Random(0)
    with Store(tmp_path / "other.duckdb") as s:
        register_zoo(s, zoo)
        upsert_incident(s, {"incident_id": "INC-X", "title": "other vocabulary",
                            "category": "jailbreak", "deployed_model_version": "failing"})
        rows = [{"interaction_id": f"x{i}", "incident_id": "INC-X", "source_format": "test",
                 "model_version": "failing", "system_prompt": spec.system_prompt,
                 "messages": json.dumps([{"role": "user", "content": spec.jailbreak_prefix
                                          + rng.choice(spec.heldout_templates).format(
                                              task=task)}]),
                 "output": spec.help_answer(task)}
                for i, task in enumerate(spec.harmful_tasks * 2)]
        insert_interactions(s, pd.DataFrame(rows))
        report = investigate(s, "INC-X", samples=SAMPLES, judges=JUDGES)
        print(report.to_frame().drop(columns="summary").to_string())
        print(report.conclusion())
        supported = [r.kind for r in report.supported()]
        # Specific causes (the trigger clause, the planted examples), then the version.
        assert set(supported[:2]) == {"prompt_segment_cause", "training_data_artifact"}
        assert supported[2] == "version_regression"
        # The shipped rules know only the zoo's words, so none fires here; a rule on the
        # trigger phrase would: a guardrail gap, ranked as a contributing factor after causes.
        gap = report.get("guardrail_gap")
        assert gap.finding["rules_fired"] == 0 and gap.verdict == "supported"
        assert supported[-1] == "guardrail_gap"
        found = report.get("prompt_segment_cause").finding["trigger_text"]
        assert found.strip() == spec.jailbreak_prefix.strip()
        assert report.get("version_regression").finding["previous"] == "base"
        assert report.get("refusal_weakened").verdict != "supported"
