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


# -- the prompt as the unit: cluster-robust rates and prompt-level tests ------------------------
#
# Samples of one prompt share its rate, so over several prompts a pooled k/n is a clustered
# proportion: treating its samples as independent (Wilson, Fisher) gives intervals too narrow
# and p-values too small when prompts differ. The functions below make the prompt the unit.

__all__ += [
    "ClusteredComparison",
    "ClusteredRate",
    "cluster_bootstrap_rate",
    "clustered_difference",
    "clustered_rate",
    "sign_flip_test",
    "wilson_bounds",
]


def wilson_bounds(k: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson score interval for real-valued ``k`` of ``n`` (effective counts) at critical
    value ``z``; ``(0, 1)`` when ``n <= 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, k / n))
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


_CRITICAL: dict[tuple[float, int], float] = {}


def _z_critical(confidence: float) -> float:
    return _t_critical(confidence, 0)


def _t_critical(confidence: float, df: int) -> float:
    """Two-sided critical value of Student's t on ``df`` degrees of freedom (0: the normal)."""
    key = (float(confidence), int(df))
    if key not in _CRITICAL:
        from scipy.stats import norm
        from scipy.stats import t as student_t

        q = 0.5 + confidence / 2.0
        _CRITICAL[key] = float(norm.ppf(q) if df == 0 else student_t.ppf(q, df))
    return _CRITICAL[key]


def _newcombe(ka: int, na: int, kb: int, nb: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``ka/na - kb/nb`` (method 10), closed form."""
    pa, pb = ka / na, kb / nb
    la, ha = wilson_bounds(ka, na, z)
    lb, hb = wilson_bounds(kb, nb, z)
    diff = pa - pb
    return (max(-1.0, diff - math.sqrt((pa - la) ** 2 + (hb - pb) ** 2)),
            min(1.0, diff + math.sqrt((ha - pa) ** 2 + (pb - lb) ** 2)))


def _cluster_counts(k: Sequence[int], n: Sequence[int]) -> tuple[list[int], list[int]]:
    if len(k) != len(n):
        raise InvalidArgumentError(f"one k and one n per prompt; got {len(k)} and {len(n)}")
    pairs = [_check_counts(a, b) for a, b in zip(k, n)]
    pairs = [(a, b) for a, b in pairs if b > 0]  # a prompt with no judged sample says nothing
    return [a for a, _ in pairs], [b for _, b in pairs]


@dataclass(frozen=True)
class ClusteredRate:
    """A rate pooled over prompts, with an interval that treats the prompt as the unit.

    Attributes
    ----------
    k, n : int
        Pooled successes and samples.
    n_clusters : int
        Prompts (interactions) with at least one sample.
    rate : float
        ``k / n`` (the ratio estimator; the mean of the prompts' rates when they have equal n).
    low, high : float
        The interval (see :func:`clustered_rate`).
    design_effect : float
        Cluster-robust variance over the binomial one, floored at 1; NaN with one prompt.
    effective_n : float
        ``n / design_effect``.
    method : str
        How the interval was computed.
    """

    k: int
    n: int
    n_clusters: int
    rate: float
    low: float
    high: float
    design_effect: float
    effective_n: float
    confidence: float = 0.95
    method: str = ""


def clustered_rate(k: Sequence[int], n: Sequence[int], confidence: float = 0.95) -> ClusteredRate:
    """A rate over prompts with a cluster-robust interval (the prompt is the unit).

    ``k[i]`` of ``n[i]`` samples of prompt ``i`` reproduce. The estimate is the pooled ``k / n``.
    Its variance is the cluster-robust (sandwich) variance of that ratio, the closed form of an
    intercept-only GEE with independence working correlation and the ``m / (m - 1)`` small-sample
    factor: ``m/(m-1) * sum((k_i - p n_i)^2) / n^2``. Divided by the binomial variance
    ``p(1-p)/n`` it gives the design effect (floored at 1: samples of one prompt are independent
    draws, so prompts can only add variance); the interval is Wilson's at the effective sample
    size ``n / deff`` with the ``t`` critical value on ``m - 1`` degrees of freedom.

    With one prompt this is the Wilson interval of that prompt. With all prompts at 0 (or at 1)
    the design effect cannot be estimated and is 1: the pooled Wilson interval.

    Simulated coverage (``docs/replay.md``): 0.91-0.97 for a nominal 0.95 with 6 to 30 prompts
    of 20 samples and beta-distributed prompt rates, where pooled Wilson covers 0.43-0.69.
    """
    confidence = _check_confidence(confidence)
    ks, ns = _cluster_counts(k, n)
    m, total_k, total_n = len(ks), sum(ks), sum(ns)
    if m == 0:
        return ClusteredRate(k=0, n=0, n_clusters=0, rate=math.nan, low=0.0, high=1.0,
                             design_effect=math.nan, effective_n=0.0, confidence=confidence,
                             method="no samples")
    if m == 1:
        low, high = wilson_interval(total_k, total_n, confidence)
        return ClusteredRate(k=total_k, n=total_n, n_clusters=1, rate=total_k / total_n,
                             low=low, high=high, design_effect=math.nan,
                             effective_n=float(total_n), confidence=confidence,
                             method="wilson score interval of the one prompt")
    p = total_k / total_n
    robust = m / (m - 1) * sum((a - p * b) ** 2 for a, b in zip(ks, ns)) / total_n ** 2
    binomial = p * (1.0 - p) / total_n
    deff = max(1.0, robust / binomial) if binomial > 0 else 1.0
    n_eff = total_n / deff
    low, high = wilson_bounds(p * n_eff, n_eff, _t_critical(confidence, m - 1))
    return ClusteredRate(k=total_k, n=total_n, n_clusters=m, rate=p, low=low, high=high,
                         design_effect=deff, effective_n=n_eff, confidence=confidence,
                         method=f"cluster-robust Wilson: design effect from the sandwich variance "
                                f"over {m} prompts, t({m - 1}) critical value")


def cluster_bootstrap_rate(k: Sequence[int], n: Sequence[int], *, confidence: float = 0.95,
                           n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the pooled rate from a bootstrap over prompts (seeded).

    Kept for comparison: with few prompts it under-covers (0.80-0.88 at 4-6 prompts in the
    simulation of ``docs/replay.md``) and with every prompt at 0 it collapses to ``[0, 0]``;
    :func:`clustered_rate` is the one the tables use.
    """
    import numpy as np

    confidence = _check_confidence(confidence)
    ks, ns = _cluster_counts(k, n)
    if not ks:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(ks), size=(int(n_resamples), len(ks)))
    kk, nn = np.asarray(ks, float)[index].sum(1), np.asarray(ns, float)[index].sum(1)
    alpha = 1.0 - confidence
    low, high = np.quantile(kk / nn, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


#: Up to this many prompts the sign-flip test enumerates every sign pattern (exact).
SIGN_FLIP_EXACT_MAX = 16


def sign_flip_test(differences: Sequence[float], *, n_resamples: int = 20000,
                   seed: int = 0) -> PermutationResult:
    """Two-sided sign-flip (paired permutation) test that the mean of ``differences`` is 0.

    Each prompt contributes one difference (version A's rate minus version B's on that prompt).
    Under the null the differences are symmetric about 0, so flipping any of their signs is as
    likely as the observed pattern. Up to :data:`SIGN_FLIP_EXACT_MAX` prompts every pattern is
    enumerated (exact); above, ``n_resamples`` random patterns drawn from ``seed`` (the p-value
    then counts the observed pattern, so it is never 0). With ``m`` prompts the smallest
    possible p-value is ``2 / 2^m``: 4 prompts can never reach 0.05.
    """
    import numpy as np

    d = np.asarray([float(x) for x in differences], dtype=float)
    if d.size == 0:
        raise InvalidArgumentError("sign_flip_test needs at least one difference")
    observed = abs(float(d.mean()))
    tolerance = 1e-12
    if d.size <= SIGN_FLIP_EXACT_MAX:
        patterns = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        means = np.abs((patterns * d).mean(axis=1))
        p_value = float(np.mean(means >= observed - tolerance))
        return PermutationResult(statistic=float(d.mean()), p_value=min(1.0, p_value),
                                 n_resamples=int(patterns.shape[0]), seed=seed,
                                 method=f"exact sign-flip test over {d.size} prompts "
                                        f"({patterns.shape[0]} sign patterns)")
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(int(n_resamples), d.size))
    means = np.abs((signs * d).mean(axis=1))
    p_value = (1.0 + float(np.sum(means >= observed - tolerance))) / (n_resamples + 1.0)
    return PermutationResult(statistic=float(d.mean()), p_value=min(1.0, p_value),
                             n_resamples=int(n_resamples), seed=seed,
                             method=f"sign-flip test over {d.size} prompts, {n_resamples} random "
                                    f"sign patterns (seed {seed})")


@dataclass(frozen=True)
class ClusteredComparison:
    """Two versions compared with the prompt as the unit, paired by prompt.

    Attributes
    ----------
    n_clusters : int
        Prompts both versions have samples of.
    rate_a, rate_b, difference : float
        Pooled rates over those prompts and ``rate_a - rate_b``.
    difference_low, difference_high : float
        Cluster-robust interval of the difference (sandwich variance of the paired per-prompt
        residuals, ``t(m - 1)``), never narrower than Newcombe's independent-samples interval.
    p_value : float
        Sign-flip test of the per-prompt rate differences (:func:`sign_flip_test`).
    """

    n_clusters: int
    rate_a: float
    rate_b: float
    difference: float
    difference_low: float
    difference_high: float
    p_value: float
    confidence: float = 0.95
    method: str = ""


def clustered_difference(k_a: Sequence[int], n_a: Sequence[int], k_b: Sequence[int],
                         n_b: Sequence[int], *, confidence: float = 0.95, seed: int = 0,
                         n_resamples: int = 20000) -> ClusteredComparison:
    """Compare two versions on the same prompts (entry ``i`` of each list is prompt ``i``)."""
    confidence = _check_confidence(confidence)
    if not len(k_a) == len(n_a) == len(k_b) == len(n_b):
        raise InvalidArgumentError("one k and n per prompt for each version, aligned by prompt")
    rows = [(*_check_counts(a, b), *_check_counts(c, d)) for a, b, c, d in zip(k_a, n_a, k_b, n_b)]
    rows = [r for r in rows if r[1] > 0 and r[3] > 0]
    m = len(rows)
    if m == 0:
        return ClusteredComparison(0, math.nan, math.nan, math.nan, -1.0, 1.0, 1.0, confidence,
                                   "no prompt with samples of both versions")
    ka, na = sum(r[0] for r in rows), sum(r[1] for r in rows)
    kb, nb = sum(r[2] for r in rows), sum(r[3] for r in rows)
    pa, pb = ka / na, kb / nb
    diff = pa - pb
    newcombe_low, newcombe_high = _newcombe(ka, na, kb, nb, _z_critical(confidence))
    test = sign_flip_test([r[0] / r[1] - r[2] / r[3] for r in rows], seed=seed,
                          n_resamples=n_resamples)
    if m == 1:
        return ClusteredComparison(1, pa, pb, diff, newcombe_low, newcombe_high, test.p_value,
                                   confidence,
                                   "one prompt: Newcombe interval; sign-flip p-value is 1")
    residuals = [(a - pa * b) / na - (c - pb * d) / nb for a, b, c, d in rows]
    se = math.sqrt(m / (m - 1) * sum(e * e for e in residuals))
    t = _t_critical(confidence, m - 1)
    low = min(newcombe_low, diff - t * se)
    high = max(newcombe_high, diff + t * se)
    return ClusteredComparison(m, pa, pb, diff, max(-1.0, low), min(1.0, high), test.p_value,
                               confidence,
                               f"paired by prompt ({m}): {test.method}; difference interval "
                               f"cluster-robust t({m - 1}), at least Newcombe's")
