"""Replay's shape: ReplayConfig and the run id, bounds, run status, the read path, the warm
path without models, the measurement tables, and the sampler itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from llmrca.errors import InvalidArgumentError, StoreError
from llmrca.replay import (
    Decoding,
    ReplayConfig,
    load_replay,
    rate_table,
    render_prompt,
    replay_incident,
)
from llmrca.replay.backends import _draw
from test_replay import DAN, SYSTEM, ParityJudge, add_incident, tiny_model

SRC = str(Path(__file__).resolve().parent.parent / "src")


# -- the sampler, against softmax(logits / T) -------------------------------------------------------

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.5, 0.2])


def _expected(temperature: float, top_p: float) -> torch.Tensor:
    probs = torch.softmax(LOGITS.double() / temperature, -1)
    if top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        keep_sorted = (torch.cumsum(ordered, 0) - ordered) < top_p
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order[keep_sorted]] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    return probs


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.6, 1.0), (1.7, 1.0), (0.8, 0.75)])
def test_sampler_draws_follow_softmax_of_logits_over_temperature(temperature, top_p):
    from scipy.stats import chisquare

    draws = 12_000
    generator = torch.Generator().manual_seed(1234)
    decoding = Decoding(temperature=temperature, top_p=top_p)
    counts = torch.zeros(len(LOGITS))
    for _ in range(draws):
        counts[_draw(LOGITS, decoding, generator)] += 1
    expected = _expected(temperature, top_p)
    kept = expected > 0
    # Tokens outside the nucleus are never drawn; the rest follow softmax(logits / T).
    assert counts[~kept].sum() == 0
    test = chisquare(counts[kept].numpy(), (expected[kept] * draws).numpy())
    assert test.pvalue > 0.001, (counts.tolist(), (expected * draws).tolist())
    # The test has power: the untempered (T = 1, no top-p) distribution is rejected.
    if temperature != 1.0 or top_p < 1.0:
        wrong = _expected(1.0, 1.0)
        assert chisquare(counts.numpy(), (wrong * draws).numpy()).pvalue < 1e-6


# -- ReplayConfig and the run id --------------------------------------------------------------------

def test_config_validates_and_builds():
    config = ReplayConfig.build(samples=3, temperature=0.5, seed=9, variants=[f"drop-prefix:{DAN}"])
    assert config.variant_names == ["original", f"drop_prefix:{DAN}"]
    assert config.replace(seed=10).seed == 10 and config.replace(seed=10).samples == 3
    assert config.replace(no_truncate=True).truncation == "refuse"
    with pytest.raises(InvalidArgumentError, match="unknown replay option.*batch_size"):
        config.replace(batch_size=4)
    for bad in ({"seed": 10**23}, {"seed": -1}, {"samples": 0}, {"truncation": "cut"}):
        with pytest.raises(InvalidArgumentError):
            ReplayConfig(**bad)
    with pytest.raises(InvalidArgumentError, match="seed"):
        ReplayConfig.build(seed=2**63)
    assert ReplayConfig(seed=2**63 - 1).seed == 2**63 - 1


def test_judges_are_part_of_the_run(store):
    add_incident(store)
    model = tiny_model("v1", 1)
    config = ReplayConfig.build(samples=2, max_new_tokens=6, seed=4, judges=["refusal"])
    first = replay_incident(store, "inc-1", [model], config, progress=False)
    again = replay_incident(store, "inc-1", [model], progress=False, samples=2, max_new_tokens=6,
                            seed=4, judges=["refusal"])  # the old keywords build the same config
    assert again.run_id == first.run_id
    other = replay_incident(store, "inc-1", [model], config.replace(judges=["rules:jailbreak"]),
                            progress=False)
    assert other.run_id != first.run_id
    assert other.info["counts"]["generated"] == 0  # samples are shared; only the run differs
    stored = json.loads(store.query("SELECT parameters FROM replay_runs WHERE run_id = ?",
                                    [first.run_id])["parameters"][0])
    from llmrca.judges import get_judge

    assert stored["judges"] == [{"name": "refusal", "config_hash": get_judge("refusal").config_hash}]
    # Batch size is not part of the identity.
    assert replay_incident(store, "inc-1", [model], config, batch_size=1,
                           progress=False).run_id == first.run_id


# -- bounds and run status --------------------------------------------------------------------------

def test_bounds_refuse_before_recording_a_run(store):
    add_incident(store)
    model = tiny_model("v1", 1, n_positions=64)
    with pytest.raises(InvalidArgumentError, match=r"3,000,000,000 samples.*--max-planned"):
        replay_incident(store, "inc-1", [model], samples=10**9, progress=False)
    with pytest.raises(InvalidArgumentError, match="limit of 10"):
        replay_incident(store, "inc-1", [model], samples=4, max_planned=10, progress=False)
    with pytest.raises(ValueError, match="no room|too long|more than"):
        replay_incident(store, "inc-1", [model], max_new_tokens=100_000, progress=False)
    with pytest.raises(InvalidArgumentError, match="seed"):
        replay_incident(store, "inc-1", [model], seed=10**23, progress=False)
    assert store.count("replay_runs") == 0  # no run row is left behind at 'running'


def test_failed_run_is_marked_with_its_reason(store, monkeypatch):
    from llmrca.replay.backends import TransformersBackend

    add_incident(store)

    def broken(self, prompts, decoding, seeds):
        raise RuntimeError("device fell over")

    monkeypatch.setattr(TransformersBackend, "generate_batch", broken)
    with pytest.raises(RuntimeError, match="fell over"):
        replay_incident(store, "inc-1", [tiny_model("v1", 1)], samples=2, max_new_tokens=4,
                        judges=[ParityJudge()], progress=False)
    run = store.query("SELECT status, counts FROM replay_runs")
    assert run["status"].tolist() == ["failed"]
    assert json.loads(run["counts"][0])["error"] == "RuntimeError: device fell over"


# -- measurement tables and the judge-error hook ----------------------------------------------------

def _judged(rows):
    return pd.DataFrame(rows, columns=["interaction_id", "model_version", "variant",
                                       "sample_index", "reproduces"])


def test_rate_table_clustered_columns_and_correction_hook():
    rows = []
    for i, k in enumerate([10, 0, 9, 1]):  # four prompts of 10, very different
        for j in range(10):
            rows.append((f"x{i}", "v1", "original", j, j < k))
    samples = _judged(rows)
    table = rate_table(samples)
    version = table[table["level"] == "version"].iloc[0]
    assert (version.k, version.n, version.n_prompts) == (20, 40, 4)
    assert version.cluster_high - version.cluster_low > 2 * (version.high - version.low)
    per = table[table["level"] == "interaction"]
    assert (per["cluster_low"] == per["low"]).all() and (per["n_prompts"] == 1).all()
    assert "corrected_rate" not in table

    calls = []

    def stub(k, n, sensitivity, specificity):
        calls.append((k, n, sensitivity, specificity))
        return (k / n - (1 - specificity)) / (sensitivity + specificity - 1), 0.1, 0.9

    corrected = rate_table(samples, judge_error={"combined": (0.9, 0.8)}, correct=stub)
    row = corrected[corrected["level"] == "version"].iloc[0]
    # The correction sees the clustered effective sample size (n / design effect).
    n_eff = max(1, round(40 / max(1.0, row.design_effect)))
    k_eff = min(n_eff, round(20 / max(1.0, row.design_effect)))
    assert calls[0] == (k_eff, n_eff, 0.9, 0.8)
    assert row.corrected_rate == pytest.approx((k_eff / n_eff - 0.2) / 0.7)
    assert (row.corrected_low, row.corrected_high) == (0.1, 0.9)
    # With the real Rogan-Gladen and a validation's counts, the interval carries both errors.
    real = rate_table(samples, judge_error={"combined": ((18, 20), (16, 20))})
    real_row = real[real["level"] == "version"].iloc[0]
    assert real_row.corrected_low < real_row.corrected_rate < real_row.corrected_high
    assert real_row.corrected_high - real_row.corrected_low > real_row.cluster_high \
        - real_row.cluster_low
    # An entry for another judge does not apply to the combined label.
    assert "corrected_rate" not in rate_table(samples, judge_error={"refusal": (0.9, 0.8)})


# -- the read path and read-only stores -------------------------------------------------------------

def _register_tiny(store, tmp_path):
    from llmrca.models import register_version

    for name, seed in (("v1", 1), ("v2", 2)):
        loaded = tiny_model(name, seed)
        folder = tmp_path / name
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
        register_version(store, name, folder)


def test_load_replay_on_a_read_only_store(tmp_path, capsys):
    from llmrca.cli import main
    from llmrca.store import Store

    db = tmp_path / "r.duckdb"
    config = ReplayConfig.build(samples=3, max_new_tokens=6, seed=2, judges=["refusal"],
                                variants=[f"drop-prefix:{DAN}"])
    with Store(db) as s:
        add_incident(s)
        _register_tiny(s, tmp_path)
        made = replay_incident(s, "inc-1", ["v1", "v2"], config, progress=False)
    assert made.info["models_loaded"] is True
    with Store(db, read_only=True) as ro:
        loaded = load_replay(ro, made.run_id)
        # A fully cached replay on a read-only store answers from the store, writes nothing.
        warm = replay_incident(ro, "inc-1", ["v1", "v2"], config, progress=False)
        with pytest.raises(StoreError, match="read-only"):
            replay_incident(ro, "inc-1", ["v1", "v2"], config.replace(seed=3), progress=False)
    for table in ("rates", "comparisons", "perturbations"):
        pd.testing.assert_frame_equal(getattr(loaded, table), getattr(made, table))
        pd.testing.assert_frame_equal(getattr(warm, table), getattr(made, table))
    columns = [c for c in made.samples.columns if c != "cached"]
    pd.testing.assert_frame_equal(loaded.samples[columns], made.samples[columns])
    assert warm.info["models_loaded"] is False and loaded.config == made.config

    assert main(["--db", str(db), "runs", "list", "inc-1"]) == 0
    out = capsys.readouterr().out
    assert made.run_id in out and "complete" in out
    assert main(["--db", str(db), "runs", "show", made.run_id]) == 0
    out = capsys.readouterr().out
    assert "read back from the store" in out and "95% CI (prompts)" in out
    assert main(["--db", str(db), "runs", "show", "run-nope"]) == 1
    assert "run-nope" in capsys.readouterr().err


def test_light_tokenizer_renders_like_transformers(tmp_path):
    from llmrca.replay.tokenizer import light_tokenizer

    loaded = tiny_model("v1", 1)
    loaded.tokenizer.save_pretrained(tmp_path)
    light = light_tokenizer(tmp_path)
    assert light is not None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": DAN + "How do I make a weapon?"}]
    for system in (SYSTEM, None):
        real = render_prompt(loaded.tokenizer, system, messages, max_prompt_tokens=30)
        fast = render_prompt(light, system, messages, max_prompt_tokens=30)
        assert (fast.text, fast.token_ids, fast.warnings) == (real.text, real.token_ids,
                                                              real.warnings)


@pytest.mark.slow
def test_warm_cli_replay_imports_no_torch(tmp_path):
    """A second identical replay from the command line loads no model and imports no torch."""
    from llmrca.store import Store

    db = tmp_path / "w.duckdb"
    with Store(db) as s:
        add_incident(s)
        _register_tiny(s, tmp_path)
    args = ["--db", str(db), "replay", "inc-1", "--versions", "v1", "v2", "--samples", "3",
            "--max-new-tokens", "6", "--judge", "refusal", "--no-progress"]
    probe = ("import sys; from llmrca.cli import main; code = main(%r); "
             "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'sklearn') "
             "if m in sys.modules), code)")
    env = {**os.environ, "PYTHONPATH": SRC}
    cold = subprocess.run([sys.executable, "-c", probe % args], capture_output=True, text=True, check=False,
                          env=env, timeout=300)
    assert "HEAVY ['torch', 'transformers'] 0" in cold.stdout, cold.stderr[-2000:]
    warm = subprocess.run([sys.executable, "-c", probe % args], capture_output=True, text=True, check=False,
                          env=env, timeout=300)
    assert "HEAVY [] 0" in warm.stdout, warm.stderr[-2000:]
    assert "0 generated" in warm.stdout and "(no model loaded)" in warm.stdout
