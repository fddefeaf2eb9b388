"""llmrca.stats against published reference values and a simulated null."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrca import stats


def test_wilson_reference_values():
    # Wilson 95% interval of 8/10 (Newcombe 1998, Table I style reference).
    low, high = stats.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0/10: the upper bound is z^2 / (n + z^2).
    low, high = stats.wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_rate_fields_and_empty():
    est = stats.rate(15, 20)
    assert (est.k, est.n, est.rate) == (15, 20, 0.75)
    assert est.low < 0.75 < est.high
    assert "wilson" in est.method
    empty = stats.rate(0, 0)
    assert math.isnan(empty.rate) and (empty.low, empty.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        stats.rate(3, 2)
    with pytest.raises(ValueError):
        stats.wilson_interval(1, 2, confidence=1.5)


def test_fisher_reference():
    cmp = stats.compare_rates(8, 10, 1, 10)
    # Fisher's exact test on [[8, 2], [1, 9]], two-sided.
    assert cmp.p_value == pytest.approx(0.005477, abs=1e-6)
    assert cmp.odds_ratio == pytest.approx(36.0)
    assert cmp.table == [[8, 2], [1, 9]]
    assert cmp.difference == pytest.approx(0.7)
    assert cmp.difference_low < 0.7 < cmp.difference_high
    assert 1.0 < cmp.odds_ratio_low < cmp.odds_ratio_high
    assert "fisher" in cmp.method


def test_newcombe_reference():
    # Newcombe (1998) example (a): 56/70 vs 48/80, method 10 interval 0.0524 to 0.3339.
    cmp = stats.compare_rates(56, 70, 48, 80)
    assert cmp.difference == pytest.approx(0.2)
    assert cmp.difference_low == pytest.approx(0.0524, abs=1e-4)
    assert cmp.difference_high == pytest.approx(0.3339, abs=1e-4)


def test_degenerate_tables():
    cmp = stats.compare_rates(0, 20, 0, 20)
    assert cmp.p_value == 1.0 and cmp.difference == 0.0
    cmp = stats.compare_rates(20, 20, 0, 20)
    assert cmp.p_value < 1e-10 and math.isinf(cmp.odds_ratio)
    cmp = stats.compare_rates(0, 0, 3, 5)
    assert cmp.p_value == 1.0 and math.isnan(cmp.difference)


def test_mcnemar_exact_reference():
    res = stats.mcnemar(10, 2)
    # Two-sided exact binomial: 2 * P(X <= 2 | n=12, p=1/2) = 158 / 4096.
    assert res.p_value == pytest.approx(158 / 4096)
    assert res.table == ((0, 10), (2, 0))
    assert stats.mcnemar(0, 0).p_value == 1.0
    paired = stats.paired_table([1, 1, 1, 0, 0], [1, 0, 0, 0, 1])
    assert paired.table == ((1, 2), (1, 1))
    assert paired.difference == pytest.approx((2 - 1) / 5)
    with pytest.raises(ValueError):
        stats.paired_table([1], [1, 0])


def test_holm_order_preserving():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06.
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]) == []
    out = stats.holm([0.5, float("nan"), 0.7])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)  # max(0.5*2, 0.7)


def test_permutation_test_seeded():
    x = [1] * 15 + [0] * 5
    y = [1] * 3 + [0] * 17
    res = stats.permutation_test(x, y, n_resamples=2000, seed=3)
    assert res.statistic == pytest.approx(0.6)
    assert res.p_value < 0.01
    assert stats.permutation_test(x, y, n_resamples=2000, seed=3).p_value == res.p_value


def test_fisher_rejects_at_nominal_rate_under_null():
    rng = np.random.default_rng(20240605)
    n, p, trials = 40, 0.3, 500
    rejections = 0
    for _ in range(trials):
        k1, k2 = rng.binomial(n, p, size=2)
        rejections += stats.compare_rates(int(k1), n, int(k2), n).p_value < 0.05
    assert rejections / trials <= 0.08


def test_wilson_covers_at_nominal_rate():
    rng = np.random.default_rng(7)
    n, p, trials = 30, 0.2, 500
    covered = sum(lo <= p <= hi for lo, hi in
                  (stats.wilson_interval(int(k), n) for k in rng.binomial(n, p, size=trials)))
    assert covered / trials >= 0.92
