"""The statistics every hypothesis kind shares: a prompt-level paired test and the verdict rule.

The prompt is the unit. A kind reduces its evidence to one number per prompt (a difference of
two rates on that prompt, oriented so that a positive value supports the hypothesis), and
:func:`paired_prompt_test` tests their mean:

- effect: the mean per-prompt difference;
- standard error: the larger of the between-prompt one (``sd / sqrt(m)``) and the one that
  sampling alone gives (the binomial variance of each prompt's two rates, smoothed by half a
  sample, so a prompt at 0/20 vs 20/20 still has some); the second keeps a handful of prompts
  that agree perfectly from giving an infinite t statistic;
- interval and p-value from Student's t with ``m - 1`` degrees of freedom (normal with one
  prompt); the p-value is one-sided (``effect > 0``), since every hypothesis names a direction.

With 6 prompts the exact sign-flip test cannot go below ``1/64`` one-sided, so after Holm over a
handful of hypotheses nothing would ever be supported; the t test on prompt means can, and its
false-positive rate under prompt-clustered nulls is checked by simulation in
``tests/test_hypotheses.py`` (it must stay within alpha plus sampling error).

The verdict rule (:func:`decide_verdict`):

- ``supported``: Holm-adjusted ``p < alpha`` **and** ``effect >= min_effect``;
- ``refuted``: the interval's upper bound is below ``min_effect`` (the data exclude an effect as
  large as the minimum that matters);
- ``inconclusive``: anything else, and every hypothesis that is not applicable or has no test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from llmrca.errors import InvalidArgumentError

__all__ = ["VERDICTS", "PromptTest", "decide_verdict", "paired_prompt_test", "rates_test"]

VERDICTS = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class PromptTest:
    """A one-sided test of the mean of per-prompt differences.

    Attributes
    ----------
    effect : float
        Mean per-prompt difference (NaN without prompts).
    low, high : float
        Two-sided ``confidence`` interval of the mean.
    p_value : float
        One-sided p-value of ``effect > 0``.
    n_prompts : int
    standard_error : float
    method : str
    """

    effect: float
    low: float
    high: float
    p_value: float
    n_prompts: int
    standard_error: float
    method: str


def _t_quantile(q: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(t.ppf(q, df)) if math.isfinite(df) else float(norm.ppf(q))


def _t_sf(x: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(t.sf(x, df)) if math.isfinite(df) else float(norm.sf(x))


def paired_prompt_test(differences: Sequence[float], *,
                       within_variances: Sequence[float] | None = None,
                       confidence: float = 0.95) -> PromptTest:
    """Test ``mean(differences) > 0`` with the prompt as the unit (see the module docstring).

    Parameters
    ----------
    differences : sequence of float
        One value per prompt.
    within_variances : sequence of float, optional
        The sampling variance of each prompt's difference (e.g. ``pa(1-pa)/na + pb(1-pb)/nb``);
        floors the standard error. Without it only the between-prompt variance is used.
    confidence : float
        Level of the two-sided interval.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidArgumentError(f"confidence must be in (0, 1); got {confidence}")
    d = [float(x) for x in differences]
    if within_variances is not None and len(within_variances) != len(d):
        raise InvalidArgumentError("one within-prompt variance per difference")
    keep = [i for i, x in enumerate(d) if not math.isnan(x)]
    d = [d[i] for i in keep]
    m = len(d)
    if m == 0:
        return PromptTest(math.nan, math.nan, math.nan, math.nan, 0, math.nan, "no prompt")
    mean = sum(d) / m
    within = math.nan
    if within_variances is not None:
        w = [float(within_variances[i]) for i in keep]
        within = math.sqrt(sum(w)) / m
    between = math.sqrt(sum((x - mean) ** 2 for x in d) / (m - 1) / m) if m > 1 else math.nan
    candidates = [s for s in (between, within) if not math.isnan(s)]
    if not candidates:
        return PromptTest(mean, -math.inf, math.inf, math.nan, m, math.nan,
                          "one prompt and no sampling variance: no test")
    se = max(candidates)
    df = float(m - 1) if m > 1 else math.inf
    if se == 0.0:
        p_value = 0.5 if mean == 0 else (0.0 if mean > 0 else 1.0)
        low = high = mean
    else:
        p_value = _t_sf(mean / se, df)
        half = _t_quantile(0.5 + confidence / 2.0, df) * se
        low, high = mean - half, mean + half
    name = f"t({m - 1})" if m > 1 else "normal (one prompt)"
    return PromptTest(effect=mean, low=low, high=high, p_value=min(1.0, max(0.0, p_value)),
                      n_prompts=m, standard_error=se,
                      method=f"one-sided test of the mean per-prompt difference over {m} "
                             f"prompt(s), {name}; standard error the larger of the "
                             f"between-prompt and the within-prompt sampling one")


def _smoothed_variance(k: int, n: int) -> float:
    p = (k + 0.5) / (n + 1.0)
    return p * (1.0 - p) / n if n else math.nan


def rates_test(first: Sequence[tuple[int, int]], second: Sequence[tuple[int, int]], *,
               confidence: float = 0.95) -> PromptTest:
    """:func:`paired_prompt_test` of ``rate(first) - rate(second)`` per prompt.

    ``first[i]`` and ``second[i]`` are ``(k, n)`` of prompt ``i`` under two conditions
    (versions, variants); prompts without samples on either side are left out.
    """
    if len(first) != len(second):
        raise InvalidArgumentError("one (k, n) per prompt for each condition, aligned by prompt")
    diffs, variances = [], []
    for (ka, na), (kb, nb) in zip(first, second):
        if not na or not nb:
            continue
        diffs.append(ka / na - kb / nb)
        variances.append(_smoothed_variance(ka, na) + _smoothed_variance(kb, nb))
    return paired_prompt_test(diffs, within_variances=variances, confidence=confidence)


def decide_verdict(effect: float, high: float, adjusted_p: float, *, alpha: float,
                   min_effect: float, applicable: bool = True) -> str:
    """The verdict rule (module docstring): ``supported`` / ``refuted`` / ``inconclusive``."""
    if not 0.0 < alpha < 1.0:
        raise InvalidArgumentError(f"alpha must be in (0, 1); got {alpha}")
    if not applicable or effect is None or math.isnan(effect):
        return "inconclusive"
    if adjusted_p is not None and not math.isnan(adjusted_p) and adjusted_p < alpha \
            and effect >= min_effect:
        return "supported"
    if high is not None and not math.isnan(high) and high < min_effect:
        return "refuted"
    return "inconclusive"
