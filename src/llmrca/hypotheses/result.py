"""Hypothesis results: one per tested hypothesis, and the report of one incident's run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["FRAME_COLUMNS", "HypothesisReport", "HypothesisResult", "load_hypotheses"]

#: Columns of :meth:`HypothesisReport.to_frame`.
FRAME_COLUMNS = ("rank", "name", "kind", "verdict", "effect", "effect_low", "effect_high",
                 "p_value", "adjusted_p", "min_effect", "applicable", "summary")


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


@dataclass(frozen=True)
class HypothesisResult:
    """One hypothesis tested, with its verdict.

    Attributes
    ----------
    name, kind : str
        The hypothesis (a kind may be tested under several names with other parameters).
    verdict : str
        ``supported``, ``refuted`` or ``inconclusive`` (rule: :mod:`llmrca.hypotheses.testing`).
    effect, effect_low, effect_high : float
        Effect size (positive supports the hypothesis) and its interval.
    p_value, adjusted_p : float
        One-sided p-value and its Holm adjustment over the run's hypotheses.
    min_effect, alpha : float
        The rule's thresholds.
    rank : int or None
        Position among the supported ones, by effect size (1 = proposed root cause).
    applicable : bool
    summary : str
    finding, evidence, inputs, parameters : dict
        What it points at; the run ids and numbers behind it; every input; the parameters.
    test_id : str
        Content id of the test (kind, parameters, inputs).
    method : str
    """

    name: str
    kind: str
    verdict: str
    effect: float
    effect_low: float
    effect_high: float
    p_value: float
    adjusted_p: float
    min_effect: float
    alpha: float
    rank: int | None
    applicable: bool
    summary: str
    finding: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    test_id: str = ""
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> HypothesisResult:
        rank = row.get("rank")
        return cls(name=str(row["name"]), kind=str(row["kind"]), verdict=str(row["verdict"]),
                   effect=_float(row.get("effect")), effect_low=_float(row.get("effect_low")),
                   effect_high=_float(row.get("effect_high")),
                   p_value=_float(row.get("p_value")), adjusted_p=_float(row.get("adjusted_p")),
                   min_effect=float(row["min_effect"]), alpha=float(row["alpha"]),
                   rank=None if rank is None or pd.isna(rank) else int(rank),
                   applicable=bool(row["applicable"]), summary=str(row["summary"]),
                   finding=dict(row.get("finding") or {}),
                   evidence=dict(row.get("evidence") or {}),
                   inputs=dict(row.get("inputs") or {}),
                   parameters=dict(row.get("parameters") or {}),
                   test_id=str(row.get("test_id") or ""), method=str(row.get("method") or ""))


@dataclass(frozen=True)
class HypothesisReport:
    """Every hypothesis of one incident's run, with Holm's correction and the ranking.

    Attributes
    ----------
    run_id, incident_id : str
    results : tuple of HypothesisResult
        In test order.
    alpha : float
    info : dict
        Provenance and counts (``computed``: tests run now; ``cached``: read back).
    """

    run_id: str
    incident_id: str
    results: tuple[HypothesisResult, ...]
    alpha: float = 0.05
    info: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per hypothesis (:data:`FRAME_COLUMNS`), ranked supported ones first."""
        rows = [{c: getattr(r, c) for c in FRAME_COLUMNS} for r in self.results]
        frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        frame["_order"] = [r if r is not None else 10 ** 6 for r in frame["rank"]]
        frame = frame.sort_values(["_order"], kind="stable").drop(columns="_order")
        frame["rank"] = frame["rank"].astype("Int64")
        return frame.reset_index(drop=True)

    def supported(self) -> list[HypothesisResult]:
        """The supported hypotheses by rank (largest effect first)."""
        return sorted((r for r in self.results if r.verdict == "supported"),
                      key=lambda r: r.rank or 0)

    @property
    def root_cause(self) -> HypothesisResult | None:
        """The supported hypothesis with the largest effect (None when none is supported)."""
        supported = self.supported()
        return supported[0] if supported else None

    @property
    def contributing(self) -> list[HypothesisResult]:
        """The other supported hypotheses, by effect."""
        return self.supported()[1:]

    def get(self, name: str) -> HypothesisResult:
        for r in self.results:
            if r.name == name:
                return r
        from llmrca.errors import NotFoundError

        raise NotFoundError(f"no hypothesis '{name}' in run {self.run_id}; tested: "
                            f"{', '.join(r.name for r in self.results)}")

    def conclusion(self) -> str:
        """The proposed root cause in plain words: which version, which trigger text, which
        training examples, how sure."""
        root = self.root_cause
        if root is None:
            tested = sum(r.applicable for r in self.results)
            return (f"{self.incident_id}: no hypothesis is supported at alpha {self.alpha} "
                    f"after Holm's correction over {tested} tested; see the verdict table")
        lines = [(f"{self.incident_id}: proposed root cause: {root.name} -- {root.summary} "
                  f"(effect {root.effect:+.2f} [{root.effect_low:+.2f}, "
                  f"{root.effect_high:+.2f}], Holm-adjusted p = {root.adjusted_p:.2g}).")]
        facts = []
        for r in self.supported():
            f = r.finding
            if r.kind == "version_regression":
                facts.append(f"version: the failure came with {f.get('version')} (absent or "
                             f"rarer on {f.get('previous')})")
            elif r.kind == "prompt_segment_cause":
                facts.append(f"trigger text: {f.get('trigger_text')!r}")
            elif r.kind == "training_data_artifact":
                ids = f.get("example_ids") or []
                facts.append(f"training examples: {', '.join(map(str, ids[:10]))}"
                             + (" ..." if len(ids) > 10 else ""))
            elif r.kind == "system_prompt_change":
                facts.append(f"system prompt: {f.get('current_system_prompt')!r} replaced "
                             f"{f.get('previous_system_prompt')!r}")
        if facts:
            lines.append("; ".join(facts) + ".")
        if self.contributing:
            lines.append("contributing factors: " + ", ".join(
                f"{r.name} (effect {r.effect:+.2f}, p_adj {r.adjusted_p:.2g})"
                for r in self.contributing) + ".")
        return " ".join(lines)

    @classmethod
    def load(cls, store, run_id: str) -> HypothesisReport:
        """A stored run (see :func:`load_hypotheses`)."""
        return load_hypotheses(store, run_id)

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{r.name}={r.verdict}" for r in self.results)
        return f"HypothesisReport(run_id={self.run_id!r}, {verdicts})"


def load_hypotheses(store, run_id: str) -> HypothesisReport:
    """A stored hypothesis run, from the store alone (read-only is fine; no model)."""
    from llmrca.store.hypotheses import hypothesis_run

    frame = hypothesis_run(store, run_id)
    rows = [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]
    order = [r.get("inputs", {}).get("order", i) for i, r in enumerate(rows)]
    rows = [r for _, r in sorted(zip(order, rows), key=lambda x: x[0])]
    results = tuple(HypothesisResult.from_row(r) for r in rows)
    return HypothesisReport(run_id=run_id, incident_id=str(rows[0]["incident_id"]),
                            results=results, alpha=float(rows[0]["alpha"]),
                            info={"loaded": True})
