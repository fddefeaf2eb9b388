"""The prompt as the unit: clustered intervals and prompt-level tests, checked by simulation.

Prompts of one incident differ in how often they reproduce; the samples of one prompt share its
rate. These simulations draw each prompt's rate from a beta distribution (a new set of prompts
per replicate, the target being the mean rate over prompts), so an interval that treats the
samples as independent must under-cover and a test that does must reject too often; the
clustered ones must not. Numbers of the simulations are in docs/replay.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrca import stats

REPLICATES = 400
#: 3 standard errors of a simulated proportion near 0.95 (or 0.05) over REPLICATES replicates.
SLACK = 3 * math.sqrt(0.05 * 0.95 / REPLICATES)


def _coverage(prompts, samples, a, b, seed):
    rng = np.random.default_rng(seed)
    mean = a / (a + b)
    clustered = wilson = 0
    for _ in range(REPLICATES):
        k = rng.binomial(samples, rng.beta(a, b, prompts))
        n = [samples] * prompts
        c = stats.clustered_rate(k.tolist(), n)
        clustered += c.low <= mean <= c.high
        low, high = stats.wilson_bounds(int(k.sum()), samples * prompts, 1.959964)
        wilson += low <= mean <= high
    return clustered / REPLICATES, wilson / REPLICATES


@pytest.mark.parametrize("a,b", [(1.5, 3.5), (0.5, 0.5)])
def test_clustered_interval_covers_and_pooled_wilson_does_not(a, b):
    clustered, wilson = _coverage(prompts=10, samples=20, a=a, b=b, seed=7)
    assert 0.95 - SLACK <= clustered <= 0.99, clustered
    assert wilson < 0.80, wilson  # 120-ish samples passed off as independent


def test_type_one_error_under_prompt_level_null():
    """Two versions with the same distribution of prompt rates, paired by prompt."""
    from scipy.stats import fisher_exact

    rng = np.random.default_rng(11)
    prompts, samples, alpha = 10, 20, 0.05
    fisher = flips = 0
    for _ in range(REPLICATES):
        ka = rng.binomial(samples, rng.beta(1.0, 2.0, prompts))
        kb = rng.binomial(samples, rng.beta(1.0, 2.0, prompts))
        n = [samples] * prompts
        total = samples * prompts
        fisher += fisher_exact([[ka.sum(), total - ka.sum()],
                                [kb.sum(), total - kb.sum()]]).pvalue < alpha
        flips += stats.clustered_difference(ka.tolist(), n, kb.tolist(), n).p_value < alpha
    fisher, flips = fisher / REPLICATES, flips / REPLICATES
    assert flips <= alpha + SLACK, flips
    assert flips >= 0.01, flips  # a test that never rejects would pass the line above
    assert fisher > 0.30, fisher


def test_clustered_difference_interval_covers_a_real_difference():
    rng = np.random.default_rng(3)
    prompts, samples = 10, 20
    covered = 0
    for _ in range(REPLICATES):
        base = rng.beta(2.0, 2.0, prompts)
        pa = np.clip(base + 0.2 + rng.normal(0, 0.1, prompts), 0, 1)
        pb = base
        truth = float(np.mean(pa - pb))  # the mean difference over these prompts' population
        ka, kb = rng.binomial(samples, pa), rng.binomial(samples, pb)
        n = [samples] * prompts
        c = stats.clustered_difference(ka.tolist(), n, kb.tolist(), n)
        covered += c.difference_low <= truth <= c.difference_high
    assert covered / REPLICATES >= 0.95 - SLACK


def test_clustered_rate_edge_cases():
    one = stats.clustered_rate([7], [20])
    assert (one.low, one.high) == pytest.approx(stats.wilson_interval(7, 20))
    assert one.n_clusters == 1 and "one prompt" in one.method
    zeros = stats.clustered_rate([0, 0, 0, 0], [20, 20, 20, 20])
    assert zeros.design_effect == 1.0
    assert (zeros.low, zeros.high) == pytest.approx(stats.wilson_bounds(0, 80, zeros_t(4)))
    assert zeros.high > 0.04  # never the [0, 0] a bootstrap gives
    assert stats.cluster_bootstrap_rate([0, 0, 0, 0], [20] * 4) == (0.0, 0.0)
    # Heterogeneous prompts: much wider than Wilson on the pooled counts.
    spread = stats.clustered_rate([20, 0, 19, 1, 18, 0], [20] * 6)
    low, high = stats.wilson_interval(58, 120)
    assert spread.design_effect > 10 and spread.high - spread.low > 3 * (high - low)
    # A prompt without samples does not count as a cluster.
    assert stats.clustered_rate([3, 0], [10, 0]).n_clusters == 1
    assert stats.clustered_rate([], []).n_clusters == 0


def zeros_t(prompts):
    from scipy.stats import t

    return float(t.ppf(0.975, prompts - 1))


def test_sign_flip_test_exact_and_seeded():
    exact = stats.sign_flip_test([0.5, 0.4, 0.6, 0.3])
    assert exact.p_value == pytest.approx(2 / 16) and exact.n_resamples == 16
    assert stats.sign_flip_test([0.0, 0.0]).p_value == 1.0
    many = [0.1 * (i % 3) + 0.05 for i in range(20)]
    first = stats.sign_flip_test(many, seed=5)
    assert first.p_value == stats.sign_flip_test(many, seed=5).p_value
    assert 0 < first.p_value < 0.001
    with pytest.raises(ValueError):
        stats.sign_flip_test([])
