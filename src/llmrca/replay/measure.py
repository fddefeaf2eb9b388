"""Measurement: rates, version comparisons and perturbation tests from judged samples.

Public so that hypotheses (and notebooks) can measure any judged samples table, not only a
replay's. Each function takes a DataFrame with at least ``interaction_id, model_version,
variant, sample_index, reproduces`` (``reproduces`` True/False, None when not judged) and returns
a table with documented columns.

The prompt (interaction) is the unit over several prompts: the ``cluster_*`` columns are the
headline (cluster-robust Wilson interval, sign-flip test on per-prompt differences); the Wilson
and Fisher/McNemar columns that treat samples as independent are kept beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from llmrca.errors import InvalidArgumentError

__all__ = [
    "COMPARISON_COLUMNS",
    "CORRECTED_COLUMNS",
    "PERTURBATION_COLUMNS",
    "RATE_COLUMNS",
    "comparison_table",
    "counted_samples",
    "perturbation_table",
    "rate_table",
]

#: Columns of :func:`rate_table`. ``low, high``: Wilson on the pooled samples (independent);
#: ``cluster_low, cluster_high``: the prompt as the unit (:func:`llmrca.stats.clustered_rate`).
RATE_COLUMNS = ("level", "interaction_id", "model_version", "variant", "k", "n", "rate", "low",
                "high", "method", "n_prompts", "cluster_low", "cluster_high", "design_effect",
                "cluster_method")
#: Added to :func:`rate_table` when a judge's sensitivity and specificity are given.
CORRECTED_COLUMNS = ("corrected_rate", "corrected_low", "corrected_high")
#: Columns of :func:`comparison_table` (version A vs B per variant). ``p_value``: Fisher on pooled
#: samples; ``cluster_p_value``: sign-flip test on per-prompt rate differences (the headline).
COMPARISON_COLUMNS = (
    "variant", "version_a", "version_b", "k_a", "n_a", "rate_a", "k_b", "n_b", "rate_b",
    "difference", "difference_low", "difference_high", "odds_ratio", "odds_ratio_low",
    "odds_ratio_high", "p_value", "p_holm", "method", "n_prompts", "cluster_difference_low",
    "cluster_difference_high", "cluster_p_value", "cluster_p_holm", "cluster_method")
#: Columns of :func:`perturbation_table` (each variant vs the original, per version).
PERTURBATION_COLUMNS = (
    "model_version", "variant", "n_pairs", "rate_original", "rate_variant", "both",
    "original_only", "variant_only", "neither", "difference", "p_value", "p_holm", "method",
    "n_prompts", "cluster_p_value", "cluster_p_holm", "cluster_method")

_NEEDED = ("interaction_id", "model_version", "variant", "sample_index", "reproduces")

#: ``correct(k, n, sensitivity, specificity)`` -> ``(rate, low, high)`` or an object with
#: ``rate``, ``low``, ``high`` (``llmrca.stats.rogan_gladen`` when it exists).
Correction = Callable[[int, int, float, float], Any]


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


def _judged(samples: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _NEEDED if c not in samples.columns]
    if missing:
        raise InvalidArgumentError(f"samples lack column(s) {', '.join(missing)}; measurement "
                                   f"needs {', '.join(_NEEDED)}")
    judged = samples[samples["reproduces"].notna()].copy()
    judged["reproduces"] = judged["reproduces"].astype(bool)
    return judged


def counted_samples(samples: pd.DataFrame, greedy: bool) -> pd.DataFrame:
    """The samples the statistics count: all of them, or with greedy decoding the first of each
    (interaction, variant, version) — N greedy samples are one generation, not N draws."""
    if not greedy:
        return samples
    return (samples.sort_values("sample_index", kind="stable")
            .drop_duplicates(["interaction_id", "variant", "model_version"])
            .sort_index())


def _per_prompt(group: pd.DataFrame) -> pd.DataFrame:
    """k and n per interaction, in first-seen order."""
    counts = group.groupby("interaction_id", sort=False)["reproduces"].agg(["sum", "size"])
    return counts.rename(columns={"sum": "k", "size": "n"}).astype(int)


def _correction(correct: Correction | None) -> Correction:
    if correct is not None:
        return correct
    from llmrca import stats

    found = getattr(stats, "rogan_gladen", None)
    if found is None:
        raise InvalidArgumentError("judge-error correction asked for, but no correction "
                                   "function: pass correct=... (llmrca.stats.rogan_gladen is "
                                   "not available in this version)")
    return found


def _corrected(result: Any) -> tuple[float, float, float]:
    if isinstance(result, (tuple, list)):
        return float(result[0]), float(result[1]), float(result[2])
    rate: Any = next((getattr(result, name) for name in ("prevalence", "rate", "estimate")
                      if getattr(result, name, None) is not None), None)
    return float(rate), float(result.low), float(result.high)


def rate_table(samples: pd.DataFrame, *, confidence: float = 0.95,
               judge_error: Mapping[str, tuple[Any, Any]] | None = None,
               judge: str = "combined", correct: Correction | None = None) -> pd.DataFrame:
    """Reproduction rates per version (pooled over interactions) and per interaction.

    Parameters
    ----------
    samples : DataFrame
        Judged samples (see the module docstring); unjudged rows are ignored.
    judge_error : mapping, optional
        Judge name -> ``(sensitivity, specificity)`` measured against labels. When the entry for
        ``judge`` is present, the table gains :data:`CORRECTED_COLUMNS`: the rate corrected for
        judge error by ``correct`` (default ``llmrca.stats.rogan_gladen``), from pooled k and n.
    judge : str
        Which judge's label ``reproduces`` is (``combined`` for the combined label).
    correct : callable, optional
        ``correct(k, n, sensitivity, specificity)`` -> ``(rate, low, high)`` or an object with
        ``rate``, ``low``, ``high``.

    Returns
    -------
    DataFrame
        :data:`RATE_COLUMNS` (+ :data:`CORRECTED_COLUMNS`). ``level`` is ``version`` (pooled;
        ``interaction_id`` None) or ``interaction``. At interaction level the cluster interval
        is that prompt's Wilson interval.
    """
    from llmrca import stats

    judged = _judged(samples)
    error = (judge_error or {}).get(judge)
    fix = _correction(correct) if error is not None else None
    rows = []
    for level, keys in (("version", ["model_version", "variant"]),
                        ("interaction", ["interaction_id", "model_version", "variant"])):
        for key, group in judged.groupby(keys, sort=False):
            where = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
            per = _per_prompt(group)
            est = stats.rate(int(per["k"].sum()), int(per["n"].sum()), confidence)
            clustered = stats.clustered_rate(per["k"].tolist(), per["n"].tolist(), confidence)
            row = {"level": level, "interaction_id": where.get("interaction_id"),
                   "model_version": where["model_version"], "variant": where["variant"],
                   "k": est.k, "n": est.n, "rate": est.rate, "low": est.low, "high": est.high,
                   "method": est.method, "n_prompts": clustered.n_clusters,
                   "cluster_low": clustered.low, "cluster_high": clustered.high,
                   "design_effect": clustered.design_effect,
                   "cluster_method": clustered.method}
            if fix is not None and error is not None:
                # Judge error and clustering together: the correction sees the effective
                # sample size n / design effect (prompts, not samples, are the unit).
                deff = max(1.0, float(clustered.design_effect or 1.0))
                n_eff = max(1, round(est.n / deff))
                k_eff = min(n_eff, round(est.k / deff))
                row.update(zip(CORRECTED_COLUMNS,
                               _corrected(fix(k_eff, n_eff, error[0], error[1]))))
            rows.append(row)
    return _frame(rows, RATE_COLUMNS + (CORRECTED_COLUMNS if fix is not None else ()))


def _ordered(values: Sequence[str] | None, present: pd.Series) -> list[str]:
    return list(values) if values is not None else list(dict.fromkeys(present))


def comparison_table(samples: pd.DataFrame, *, versions: Sequence[str] | None = None,
                     variants: Sequence[str] | None = None, confidence: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Each pair of versions (in the order given), per variant.

    Fisher's exact test and Newcombe's interval on pooled samples (``p_value``,
    ``difference_low/high``) and, with the prompt as the unit, paired by interaction: the
    sign-flip test of per-prompt rate differences and a cluster-robust difference interval
    (``cluster_*``; :func:`llmrca.stats.clustered_difference`, seeded by ``seed`` above 16
    prompts). Holm within the table for each p-value column.
    """
    from llmrca import stats

    judged = _judged(samples)
    version_names = _ordered(versions, judged["model_version"])
    variant_names = _ordered(variants, judged["variant"])
    rows = []
    for variant in variant_names:
        mine = judged[judged["variant"] == variant]
        per = {v: _per_prompt(mine[mine["model_version"] == v]) for v in version_names}
        for i, a in enumerate(version_names):
            for b in version_names[i + 1:]:
                pa, pb = per[a], per[b]
                if pa.empty or pb.empty:
                    continue
                cmp = stats.compare_rates(int(pa["k"].sum()), int(pa["n"].sum()),
                                          int(pb["k"].sum()), int(pb["n"].sum()), confidence)
                both = [x for x in pa.index if x in pb.index]
                clustered = stats.clustered_difference(
                    pa.loc[both, "k"].tolist(), pa.loc[both, "n"].tolist(),
                    pb.loc[both, "k"].tolist(), pb.loc[both, "n"].tolist(),
                    confidence=confidence, seed=seed)
                rows.append({"variant": variant, "version_a": a, "version_b": b,
                             "k_a": cmp.a.k, "n_a": cmp.a.n, "rate_a": cmp.a.rate,
                             "k_b": cmp.b.k, "n_b": cmp.b.n, "rate_b": cmp.b.rate,
                             "difference": cmp.difference, "difference_low": cmp.difference_low,
                             "difference_high": cmp.difference_high,
                             "odds_ratio": cmp.odds_ratio, "odds_ratio_low": cmp.odds_ratio_low,
                             "odds_ratio_high": cmp.odds_ratio_high, "p_value": cmp.p_value,
                             "p_holm": None, "method": cmp.method,
                             "n_prompts": clustered.n_clusters,
                             "cluster_difference_low": clustered.difference_low,
                             "cluster_difference_high": clustered.difference_high,
                             "cluster_p_value": clustered.p_value, "cluster_p_holm": None,
                             "cluster_method": clustered.method})
    frame = _frame(rows, COMPARISON_COLUMNS)
    if len(frame):
        frame["p_holm"] = stats.holm(frame["p_value"].tolist())
        frame["cluster_p_holm"] = stats.holm(frame["cluster_p_value"].tolist())
    return frame


def perturbation_table(samples: pd.DataFrame, *, versions: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Each variant against the original, per version.

    Exact McNemar on pairs matched by (interaction, sample index) — common random numbers make
    them sharp, but they treat pairs of one prompt as independent — and, with the prompt as the
    unit, a sign-flip test of the per-prompt rate differences (original minus variant).
    """
    from llmrca import stats

    judged = _judged(samples)
    version_names = _ordered(versions, judged["model_version"])
    variant_names = _ordered(variants, judged["variant"])
    rows = []
    keys = ["interaction_id", "sample_index"]
    for version in version_names:
        mine = judged[judged["model_version"] == version]
        base = mine[mine["variant"] == "original"][keys + ["reproduces"]]
        for variant in variant_names:
            if variant == "original":
                continue
            other = mine[mine["variant"] == variant][keys + ["reproduces"]]
            pairs = base.merge(other, on=keys, suffixes=("_original", "_variant"))
            if pairs.empty:
                continue
            res = stats.paired_table(pairs["reproduces_original"].tolist(),
                                     pairs["reproduces_variant"].tolist())
            n = res.n_pairs
            per = pairs.groupby("interaction_id", sort=False)[
                ["reproduces_original", "reproduces_variant"]].mean()
            flip = stats.sign_flip_test(
                (per["reproduces_original"] - per["reproduces_variant"]).tolist(), seed=seed)
            rows.append({"model_version": version, "variant": variant, "n_pairs": n,
                         "rate_original": (res.table[0][0] + res.table[0][1]) / n,
                         "rate_variant": (res.table[0][0] + res.table[1][0]) / n,
                         "both": res.table[0][0], "original_only": res.b,
                         "variant_only": res.c, "neither": res.table[1][1],
                         "difference": res.difference, "p_value": res.p_value, "p_holm": None,
                         "method": res.method, "n_prompts": len(per),
                         "cluster_p_value": flip.p_value, "cluster_p_holm": None,
                         "cluster_method": flip.method})
    frame = _frame(rows, PERTURBATION_COLUMNS)
    if len(frame):
        frame["p_holm"] = stats.holm(frame["p_value"].tolist())
        frame["cluster_p_holm"] = stats.holm(frame["cluster_p_value"].tolist())
    return frame
