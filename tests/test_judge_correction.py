"""Rates corrected for judge error: Rogan-Gladen with the Lang-Reiczigel interval, by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrca.errors import InvalidArgumentError
from llmrca.stats import rogan_gladen


def test_rogan_gladen_point_estimate_and_clipping():
    r = rogan_gladen(40, 100, 0.8, 0.9)            # q = 0.4 -> (0.4 + 0.9 - 1) / 0.7
    assert r.prevalence == pytest.approx(0.3 / 0.7)
    assert r.youden == pytest.approx(0.7)
    assert r.raw.rate == 0.4 and r.sensitivity_counts is None
    assert rogan_gladen(2, 100, 0.8, 0.9).prevalence == 0.0      # below the false-positive floor
    assert rogan_gladen(100, 100, 0.8, 0.9).prevalence == 1.0
    assert 0.0 <= rogan_gladen(0, 100, (40, 50), (45, 50)).low
    perfect = rogan_gladen(30, 100, 1.0, 1.0)                    # a perfect judge: Wilson-like
    assert perfect.prevalence == pytest.approx(0.3)
    assert perfect.low == pytest.approx(perfect.raw.low, abs=0.02)
    measured = rogan_gladen(40, 100, (80, 100), (90, 100))
    assert measured.sensitivity == 0.8 and measured.specificity_counts == (90, 100)
    # Measured accuracies widen the interval compared with the same accuracies taken as known.
    known = rogan_gladen(40, 100, 0.8, 0.9)
    assert measured.high - measured.low > known.high - known.low
    assert math.isnan(rogan_gladen(0, 0, 0.9, 0.9).prevalence)


@pytest.mark.parametrize("se, sp", [(0.5, 0.5), (0.4, 0.3), ((10, 20), (10, 20))])
def test_rogan_gladen_refuses_a_judge_no_better_than_chance(se, sp):
    with pytest.raises(InvalidArgumentError, match="Youden"):
        rogan_gladen(10, 100, se, sp)


@pytest.mark.parametrize("bad", [1.2, -0.1, (5, 3), (1, 0), "high", (1, 2, 3)])
def test_rogan_gladen_checks_accuracies(bad):
    with pytest.raises(InvalidArgumentError):
        rogan_gladen(10, 100, bad, 0.9)


# True rate p, a judge with sensitivity se and specificity sp, n judged samples, validation sets of
# m human-labelled positives and m negatives. Chosen so that the judge's bias (q - p) is several
# raw standard errors: the naive interval must miss, the corrected one must not.
SCENARIOS = [(0.3, 0.8, 0.85, 500, 150), (0.1, 0.9, 0.95, 400, 100), (0.5, 0.7, 0.9, 300, 60)]


@pytest.mark.parametrize("p, se, sp, n, m", SCENARIOS)
def test_corrected_interval_covers_at_the_nominal_level_and_the_naive_one_does_not(p, se, sp, n,
                                                                                   m):
    rng = np.random.default_rng(20240607)
    simulations = 600
    q = p * se + (1 - p) * (1 - sp)
    covered = covered_naive = 0
    for _ in range(simulations):
        k = int(rng.binomial(n, q))
        k_se, k_sp = int(rng.binomial(m, se)), int(rng.binomial(m, sp))
        result = rogan_gladen(k, n, (k_se, m), (k_sp, m))
        covered += result.low <= p <= result.high
        covered_naive += result.raw.low <= p <= result.raw.high
    coverage, naive = covered / simulations, covered_naive / simulations
    # 3 binomial standard errors of a 600-run coverage estimate at 0.95 is 0.027.
    assert abs(coverage - 0.95) <= 0.03, coverage
    assert naive <= 0.5, naive
