"""Reproducibility statistics: rates with intervals, tests between versions and paired variants.

LLM failures are stochastic, so every claim is a rate with an interval. The numbers come from
scipy; the results are frozen dataclasses that carry the numbers and name the method used.

- :func:`rate` / :func:`wilson_interval` — a proportion with its Wilson score interval.
- :func:`compare_rates` — two independent proportions (two versions): Fisher's exact test
  (two-sided), the sample odds ratio with its conditional-MLE interval, and the rate difference
  with Newcombe's hybrid score interval (built from the two Wilson intervals).
- :func:`mcnemar` / :func:`paired_table` — paired binary outcomes (the same prompt and seed with
  and without a perturbation): exact McNemar test, a two-sided binomial test on the discordant pairs.
- :func:`permutation_test` — a two-sample permutation test on the difference of means.
- :func:`holm` — Holm's step-down correction of several p-values, in their original order.
- :func:`rogan_gladen` — a rate corrected for judge error (sensitivity and specificity measured
  against human labels), with the Lang-Reiczigel interval that carries the uncertainty of all
  three binomials.

``import llmrca.stats`` loads scipy when a function is first called, not at import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from llmrca.errors import InvalidArgumentError

__all__ = [
    "CorrectedRate",
    "McNemarResult",
    "PermutationResult",
    "RateComparison",
    "RateEstimate",
    "compare_rates",
    "holm",
    "mcnemar",
    "paired_table",
    "permutation_test",
    "rate",
    "rogan_gladen",
    "wilson_interval",
]


def _check_counts(k: int, n: int) -> tuple[int, int]:
    if int(n) != n or int(k) != k or n < 0 or k < 0 or k > n:
        raise InvalidArgumentError(f"counts must be integers with 0 <= k <= n; got k={k}, n={n}")
    return int(k), int(n)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InvalidArgumentError(f"confidence must be in (0, 1); got {confidence}")
    return float(confidence)


@dataclass(frozen=True)
class RateEstimate:
    """A proportion ``k / n`` with a confidence interval.

    Attributes
    ----------
    k, n : int
        Successes (samples that reproduce the incident) and trials.
    rate : float
        ``k / n``; NaN when ``n == 0``.
    low, high : float
        Interval bounds; ``(0, 1)`` when ``n == 0`` (nothing is known).
    confidence : float
        Confidence level of the interval.
    method : str
        How the interval was computed.
    """

    k: int
    n: int
    rate: float
    low: float
    high: float
    confidence: float = 0.95
    method: str = "wilson score interval (scipy.stats.binomtest.proportion_ci)"


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes out of ``n``.

    Returns ``(0.0, 1.0)`` when ``n == 0``.
    """
    k, n = _check_counts(k, n)
    confidence = _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def rate(k: int, n: int, confidence: float = 0.95) -> RateEstimate:
    """``k / n`` with its Wilson interval."""
    k, n = _check_counts(k, n)
    low, high = wilson_interval(k, n, confidence)
    return RateEstimate(k=k, n=n, rate=(k / n) if n else math.nan, low=low, high=high,
                        confidence=confidence)


@dataclass(frozen=True)
class RateComparison:
    """Two independent proportions compared (version A vs version B).

    Attributes
    ----------
    a, b : RateEstimate
        The two rates with their Wilson intervals.
    difference : float
        ``a.rate - b.rate``.
    difference_low, difference_high : float
        Newcombe's hybrid score interval of the difference (method 10 of Newcombe 1998).
    odds_ratio : float
        Sample odds ratio ``(k1 (n2-k2)) / ((n1-k1) k2)``; may be 0, inf or NaN.
    odds_ratio_low, odds_ratio_high : float
        Conditional maximum-likelihood interval of the odds ratio (scipy).
    p_value : float
        Two-sided Fisher's exact test.
    method : str
        The methods, named.
    """

    a: RateEstimate
    b: RateEstimate
    difference: float
    difference_low: float
    difference_high: float
    odds_ratio: float
    odds_ratio_low: float
    odds_ratio_high: float
    p_value: float
    confidence: float = 0.95
    method: str = ("fisher_exact two-sided (scipy); odds ratio interval: conditional MLE "
                   "(scipy.stats.contingency.odds_ratio); difference interval: Newcombe hybrid "
                   "score from Wilson intervals")

    @property
    def table(self) -> list[list[int]]:
        """The 2x2 table ``[[k1, n1-k1], [k2, n2-k2]]`` that was tested."""
        return [[self.a.k, self.a.n - self.a.k], [self.b.k, self.b.n - self.b.k]]


def compare_rates(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> RateComparison:
    """Compare two independent proportions with Fisher's exact test and a Newcombe interval.

    Parameters
    ----------
    k1, n1 : int
        Successes and trials of the first group (version A).
    k2, n2 : int
        Successes and trials of the second group (version B).
    confidence : float
        Level of the intervals.
    """
    k1, n1 = _check_counts(k1, n1)
    k2, n2 = _check_counts(k2, n2)
    confidence = _check_confidence(confidence)
    a, b = rate(k1, n1, confidence), rate(k2, n2, confidence)
    if n1 == 0 or n2 == 0:
        return RateComparison(a=a, b=b, difference=math.nan, difference_low=-1.0,
                              difference_high=1.0, odds_ratio=math.nan, odds_ratio_low=0.0,
                              odds_ratio_high=math.inf, p_value=1.0, confidence=confidence)
    from scipy.stats import fisher_exact
    from scipy.stats.contingency import odds_ratio as conditional_odds_ratio

    table = [[k1, n1 - k1], [k2, n2 - k2]]
    fisher = fisher_exact(table, alternative="two-sided")
    try:
        ci = conditional_odds_ratio(table, kind="conditional").confidence_interval(confidence)
        or_low, or_high = float(ci.low), float(ci.high)
    except (ValueError, ZeroDivisionError):  # a degenerate margin (all successes or none)
        or_low, or_high = 0.0, math.inf
    if math.isnan(or_low):
        or_low = 0.0
    if math.isnan(or_high):
        or_high = math.inf
    p1, p2 = a.rate, b.rate
    diff = p1 - p2
    # Newcombe (1998) method 10: combine each rate's distance to its own Wilson bounds.
    low = diff - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = diff + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    return RateComparison(a=a, b=b, difference=diff, difference_low=max(-1.0, low),
                          difference_high=min(1.0, high), odds_ratio=float(fisher.statistic),
                          odds_ratio_low=or_low, odds_ratio_high=or_high,
                          p_value=float(fisher.pvalue), confidence=confidence)


@dataclass(frozen=True)
class McNemarResult:
    """An exact McNemar test on paired binary outcomes.

    Attributes
    ----------
    table : tuple
        ``((both, b), (c, neither))``: rows are the first condition (1, 0), columns the second.
        ``b`` = first condition only, ``c`` = second condition only (the discordant pairs).
    b, c : int
        Discordant counts.
    p_value : float
        Two-sided exact binomial test of ``b`` out of ``b + c`` against 1/2 (1.0 when ``b + c = 0``).
    difference : float or None
        ``(b - c) / n_pairs`` — the paired rate difference, first minus second; None without the
        concordant counts.
    """

    b: int
    c: int
    table: tuple[tuple[int, int], tuple[int, int]]
    p_value: float
    difference: float | None
    method: str = "exact McNemar: two-sided binomial test on discordant pairs (scipy.stats.binomtest)"

    @property
    def n_pairs(self) -> int:
        return sum(self.table[0]) + sum(self.table[1])


def mcnemar(b: int, c: int, *, both: int | None = None, neither: int | None = None) -> McNemarResult:
    """Exact McNemar test from the discordant counts.

    Parameters
    ----------
    b : int
        Pairs where only the first condition succeeded (e.g. the original prompt reproduces and the
        perturbed one does not).
    c : int
        Pairs where only the second condition succeeded.
    both, neither : int, optional
        The concordant counts, used to fill the 2x2 table and the paired difference.
    """
    for name, value in (("b", b), ("c", c), ("both", both), ("neither", neither)):
        if value is not None and (int(value) != value or value < 0):
            raise InvalidArgumentError(f"{name} must be a non-negative integer; got {value}")
    b, c = int(b), int(c)
    if b + c == 0:
        p_value = 1.0
    else:
        from scipy.stats import binomtest

        p_value = float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    table = ((int(both or 0), b), (c, int(neither or 0)))
    difference = None
    if both is not None and neither is not None:
        n = both + b + c + neither
        difference = (b - c) / n if n else math.nan
    return McNemarResult(b=b, c=c, table=table, p_value=min(1.0, p_value), difference=difference)


def paired_table(first: Sequence[bool], second: Sequence[bool]) -> McNemarResult:
    """McNemar test of two aligned boolean sequences (pair ``i`` is ``first[i]``, ``second[i]``)."""
    if len(first) != len(second):
        raise InvalidArgumentError(f"paired outcomes must have the same length; got {len(first)} and "
                         f"{len(second)}")
    both = b = c = neither = 0
    for x, y in zip(first, second):
        x, y = bool(x), bool(y)
        both += x and y
        b += x and not y
        c += y and not x
        neither += not x and not y
    return mcnemar(b, c, both=both, neither=neither)


@dataclass(frozen=True)
class PermutationResult:
    """A two-sample permutation test on the difference of means (``mean(x) - mean(y)``)."""

    statistic: float
    p_value: float
    n_resamples: int
    seed: int
    method: str = "two-sided permutation test of mean difference (scipy.stats.permutation_test)"


def permutation_test(x: Sequence[float], y: Sequence[float], *, n_resamples: int = 9999,
                     seed: int = 0) -> PermutationResult:
    """Permutation test of ``mean(x) - mean(y)``; seeded, so it gives the same p-value each time."""
    if len(x) == 0 or len(y) == 0:
        raise InvalidArgumentError("permutation_test needs two non-empty samples")
    import numpy as np
    from scipy.stats import permutation_test as scipy_permutation_test

    def statistic(a, b, axis):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    res = scipy_permutation_test((np.asarray(x, float), np.asarray(y, float)), statistic,
                                 permutation_type="independent", vectorized=True,
                                 n_resamples=n_resamples, alternative="two-sided",
                                 rng=np.random.default_rng(seed))
    return PermutationResult(statistic=float(res.statistic), p_value=float(res.pvalue),
                             n_resamples=n_resamples, seed=seed)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, returned in the order given.

    scipy has no Holm correction (``false_discovery_control`` is Benjamini-Hochberg/Yekutieli), so
    it is written here: sort ascending, multiply the i-th smallest by ``m - i``, take running maxima,
    cap at 1. NaN p-values are passed through and not counted in ``m``.
    """
    values = [float(p) for p in pvalues]
    for p in values:
        if not math.isnan(p) and not 0.0 <= p <= 1.0:
            raise InvalidArgumentError(f"p-values must be in [0, 1]; got {p}")
    indexed = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    m = len(indexed)
    adjusted = list(values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# -- rates corrected for judge error -------------------------------------------------------------
@dataclass(frozen=True)
class CorrectedRate:
    """A rate corrected for judge error (Rogan-Gladen), with an interval that carries the error.

    Attributes
    ----------
    raw : RateEstimate
        What the judge counted: ``k / n`` with its Wilson interval (judge error ignored).
    prevalence : float
        Rogan-Gladen estimate ``(k/n + sp - 1) / (se + sp - 1)`` clipped to [0, 1].
    low, high : float
        Lang-Reiczigel interval (see :func:`rogan_gladen`), clipped to [0, 1].
    sensitivity, specificity : float
        The judge's sensitivity and specificity used (point values).
    sensitivity_counts, specificity_counts : (int, int) or None
        ``(successes, trials)`` they were measured from; None when given as known numbers.
    youden : float
        ``sensitivity + specificity - 1``.
    confidence : float
    method : str
    """

    raw: RateEstimate
    prevalence: float
    low: float
    high: float
    sensitivity: float
    specificity: float
    sensitivity_counts: tuple[int, int] | None
    specificity_counts: tuple[int, int] | None
    youden: float
    confidence: float = 0.95
    method: str = ("Rogan-Gladen point estimate; Lang-Reiczigel (2014) adjusted delta-method "
                   "interval over the rate, sensitivity and specificity binomials")


def _accuracy(value, name: str) -> tuple[float, tuple[int, int] | None]:
    """A judge accuracy given as a number in [0, 1] (known) or as ``(successes, trials)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InvalidArgumentError(f"{name} must be a number in [0, 1] or a pair (successes, "
                                       f"trials); got {value!r}")
        k, n = _check_counts(value[0], value[1])
        if n == 0:
            raise InvalidArgumentError(f"{name} was measured on 0 labelled samples; label some "
                                       f"(llmrca judges validate) before correcting a rate")
        return k / n, (k, n)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number in [0, 1] or a pair (successes, "
                                   f"trials); got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise InvalidArgumentError(f"{name} must be in [0, 1]; got {value!r}")
    return number, None


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def rogan_gladen(k: int, n: int, sensitivity, specificity, confidence: float = 0.95
                 ) -> CorrectedRate:
    """The true rate behind ``k`` judge-positive samples of ``n``, corrected for judge error.

    Point estimate (Rogan and Gladen 1978): ``p = (q + sp - 1) / (se + sp - 1)`` with
    ``q = k / n``, clipped to [0, 1].

    Interval (Lang and Reiczigel 2014, Prev. Vet. Med. 113:13-22): an adjusted delta-method
    interval over the three independent binomials. Add ``z**2 / 2`` successes and failures to the
    rate, and one success and one failure to each of sensitivity and specificity; recompute the
    estimate ``p~`` from the adjusted proportions; its standard error is
    ``sqrt(q~(1-q~)/n~ + p~**2 se~(1-se~)/n_se~ + (1-p~)**2 sp~(1-sp~)/n_sp~) / |se~ + sp~ - 1|``;
    the interval is centred on ``p~ + d`` where the shift
    ``d = 2 z**2 (p~ se~(1-se~)/n_se~ - (1-p~) sp~(1-sp~)/n_sp~)`` corrects the skew of the ratio.
    A sensitivity or specificity given as a plain number is taken as known (no adjustment, no
    variance term). The simulation in ``tests/test_judge_validation.py`` checks its coverage.

    Parameters
    ----------
    k, n : int
        Samples the judge labelled positive (unsafe), and samples judged.
    sensitivity, specificity : float or (int, int)
        The judge's accuracy: a known number in [0, 1], or ``(successes, trials)`` measured
        against human labels (``(true positives, labelled positives)`` and
        ``(true negatives, labelled negatives)``).
    confidence : float
        Level of the interval.

    Raises
    ------
    InvalidArgumentError
        Bad counts, or a Youden index ``se + sp - 1 <= 0``: such a judge is no better than a coin
        (or is inverted), and its labels say nothing about the true rate.
    """
    k, n = _check_counts(k, n)
    confidence = _check_confidence(confidence)
    se, se_counts = _accuracy(sensitivity, "sensitivity")
    sp, sp_counts = _accuracy(specificity, "specificity")
    youden = se + sp - 1.0
    if youden <= 0:
        raise InvalidArgumentError(
            f"judge Youden index se + sp - 1 = {se:.3f} + {sp:.3f} - 1 = {youden:.3f} <= 0: the "
            f"judge is no better than chance (or inverted), so its rate cannot be corrected; "
            f"fix or replace the judge")
    raw = rate(k, n, confidence)
    if n == 0:
        return CorrectedRate(raw=raw, prevalence=math.nan, low=0.0, high=1.0, sensitivity=se,
                             specificity=sp, sensitivity_counts=se_counts,
                             specificity_counts=sp_counts, youden=youden, confidence=confidence)
    from scipy.stats import norm

    z = float(norm.ppf((1.0 + confidence) / 2.0))
    prevalence = _clip((k / n + sp - 1.0) / youden)

    def adjusted(counts, point):
        if counts is None:   # known exactly: no pseudo-counts, no variance
            return point, math.inf
        successes, trials = counts
        return (successes + 1.0) / (trials + 2.0), trials + 2.0

    n_adj = n + z * z
    q_adj = (k + z * z / 2.0) / n_adj
    se_adj, n_se = adjusted(se_counts, se)
    sp_adj, n_sp = adjusted(sp_counts, sp)
    youden_adj = se_adj + sp_adj - 1.0
    if youden_adj <= 0:   # only reachable with tiny validation sets
        raise InvalidArgumentError(
            f"judge Youden index after the small-sample adjustment is {youden_adj:.3f} <= 0: "
            f"label more samples before correcting a rate")
    p_adj = (q_adj + sp_adj - 1.0) / youden_adj
    var_se = se_adj * (1 - se_adj) / n_se if math.isfinite(n_se) else 0.0
    var_sp = sp_adj * (1 - sp_adj) / n_sp if math.isfinite(n_sp) else 0.0
    std = math.sqrt(q_adj * (1 - q_adj) / n_adj + p_adj ** 2 * var_se
                    + (1 - p_adj) ** 2 * var_sp) / abs(youden_adj)
    shift = 2 * z * z * (p_adj * var_se - (1 - p_adj) * var_sp)
    low, high = _clip(p_adj + shift - z * std), _clip(p_adj + shift + z * std)
    return CorrectedRate(raw=raw, prevalence=prevalence, low=low, high=high, sensitivity=se,
                         specificity=sp, sensitivity_counts=se_counts,
                         specificity_counts=sp_counts, youden=youden, confidence=confidence)
