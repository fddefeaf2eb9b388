"""Typed results of training-data search and of the leave-k-out check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["LEAVE_OUT_COLUMNS", "LeaveOutResult", "TrainingSearchResult", "precision_at_k"]


def precision_at_k(ranked_ids, planted_ids, k: int) -> float:
    """Share of the first ``k`` of ``ranked_ids`` that are in ``planted_ids`` (scoring helper:
    only tests and benchmarks know which examples were planted)."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    planted = set(planted_ids)
    return sum(1 for example_id in list(ranked_ids)[:k] if example_id in planted) / k


@dataclass(frozen=True)
class TrainingSearchResult:
    """A ranking of a version's training examples by how likely they caused an incident.

    Attributes
    ----------
    run_id : str
        The ``training_search_runs`` row.
    incident_id, version : str
    signals : tuple of str
        The signals combined, in :data:`~llmrca.data_attribution.SIGNALS` order.
    table : pandas.DataFrame
        :meth:`to_frame`.
    provenance : dict
        ``fingerprint`` (the version's), ``parameters`` (per signal and of the fusion),
        ``seed``, ``signal_ids``, ``queries`` (interaction ids), ``seconds`` and
        ``examples_per_second`` per signal, ``models_loaded``, ``cached`` (every signal read
        from the store), ``package_version``.
    """

    run_id: str
    incident_id: str
    version: str
    signals: tuple[str, ...]
    table: pd.DataFrame = field(repr=False)
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per training example, best first: ``example_id, rank, score``, then
        ``<signal>_score, <signal>_rank`` per signal, then ``prompt, completion`` (the example's
        last user turn and its answer, for reading)."""
        return self.table.copy()

    def top(self, k: int = 10) -> list[str]:
        """The ``k`` most suspect example ids."""
        return self.table["example_id"].head(int(k)).tolist()

    @property
    def fingerprint(self) -> str:
        return str(self.provenance.get("fingerprint"))

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.provenance.get("parameters", {}))

    @property
    def cached(self) -> bool:
        return bool(self.provenance.get("cached"))


#: Columns of :meth:`LeaveOutResult.to_frame`.
LEAVE_OUT_COLUMNS = (
    "incident_id", "version", "retrained_version", "parent", "removed", "samples", "n_prompts",
    "rate_with", "with_low", "with_high", "rate_without", "without_low", "without_high",
    "difference", "low", "high", "p_value", "method")


@dataclass(frozen=True)
class LeaveOutResult:
    """The incident replayed on the version and on its parent fine-tuned again without some
    examples (same recipe and seed).

    Rates are reproduction rates pooled over the offending interactions with the prompt as the
    unit (cluster-robust intervals); ``difference = rate_with - rate_without`` with the
    cluster-robust interval and the sign-flip p-value over prompts
    (:func:`llmrca.stats.clustered_difference`). A difference whose interval excludes 0 is
    causal evidence that the removed examples planted the behaviour.
    """

    leave_out_id: str
    incident_id: str
    version: str
    parent: str
    retrained_version: str
    removed: tuple[str, ...]
    recipe: dict[str, Any]
    replay_run_id: str
    samples: int
    n_prompts: int
    rate_with: float
    with_low: float
    with_high: float
    rate_without: float
    without_low: float
    without_high: float
    difference: float
    interval: tuple[float, float]
    p_value: float
    method: str
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row with :data:`LEAVE_OUT_COLUMNS`."""
        row = {"incident_id": self.incident_id, "version": self.version,
               "retrained_version": self.retrained_version, "parent": self.parent,
               "removed": len(self.removed), "samples": self.samples,
               "n_prompts": self.n_prompts, "rate_with": self.rate_with,
               "with_low": self.with_low, "with_high": self.with_high,
               "rate_without": self.rate_without, "without_low": self.without_low,
               "without_high": self.without_high, "difference": self.difference,
               "low": self.interval[0], "high": self.interval[1], "p_value": self.p_value,
               "method": self.method}
        return pd.DataFrame([row], columns=list(LEAVE_OUT_COLUMNS))

    @property
    def removes_failure(self) -> bool:
        """The rate dropped and the difference's interval excludes 0."""
        return self.interval[0] > 0
