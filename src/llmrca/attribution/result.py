"""Attribution results: typed, with provenance, a long ``to_frame()``, and a read path from a
store opened read-only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["FRAME_COLUMNS", "TOKEN_COLUMNS", "AttributionResult", "Faithfulness",
           "attribution_diff", "load_attribution"]

#: Columns of :meth:`AttributionResult.to_frame` for segment methods.
FRAME_COLUMNS = ("interaction_id", "segment", "kind", "text", "n_chars", "attribution", "rank",
                 "full_score", "empty_score", "method", "baseline", "target", "model_version")
#: Columns of :meth:`AttributionResult.to_frame` for ``ig`` (one row per prompt token).
TOKEN_COLUMNS = ("interaction_id", "position", "token", "attribution", "full_score",
                 "baseline_score", "completeness_gap", "method", "baseline", "target",
                 "model_version")


def _records(frame: pd.DataFrame) -> list[Any]:
    """Rows as attribute objects (typed ``Any``: the columns are documented, not typed)."""
    from types import SimpleNamespace

    return [SimpleNamespace(**{str(k): v for k, v in r.items()})
            for r in frame.to_dict(orient="records")]


@dataclass(frozen=True)
class Faithfulness:
    """Does deleting the top segment lower the failure rate more than deleting random spans?

    Paired by prompt (the prompt is the unit): per interaction, the drop in the failure rate
    when its top segment is deleted minus the mean drop when ``random_spans`` random
    word-aligned spans of similar length are deleted (drawn with ``seed`` from text that
    overlaps no upper-half segment: :func:`llmrca.attribution.api.control_spans`; ``spans``
    records which control each prompt got); the verdict tests
    the mean of those differences over prompts with an exact sign-flip test
    (:func:`llmrca.attribution.api.paired_verdict`).

    Attributes
    ----------
    table : DataFrame
        Pooled rates: ``variant`` (``original``, ``drop top``, ``drop random``), ``k, n, rate,
        cluster_low, cluster_high``.
    change_top, change_random : float
        Pooled rate with the deletion minus the original rate.
    verdict : str
        ``faithful`` (mean paired difference > 0 and sign-flip ``p < 0.05``), ``weak`` (> 0,
        not significant), ``unfaithful`` (<= 0).
    spans : DataFrame
        What was deleted: ``interaction_id, role, text``.
    run_ids : tuple of str
        The replay runs.
    per_prompt : DataFrame
        ``interaction_id, original, drop_top, drop_random, top_drop, random_drop, difference``.
    difference, difference_low, difference_high, p_value : float
        Mean paired difference, its t interval over prompts, the sign-flip p-value.
    """

    table: pd.DataFrame
    change_top: float
    change_random: float
    verdict: str
    spans: pd.DataFrame
    run_ids: tuple[str, ...]
    samples: int
    seed: int
    per_prompt: pd.DataFrame = field(default_factory=pd.DataFrame)
    difference: float = float("nan")
    difference_low: float = float("nan")
    difference_high: float = float("nan")
    p_value: float = float("nan")
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table.to_dict(orient="records"), "change_top": self.change_top,
                "change_random": self.change_random, "verdict": self.verdict,
                "spans": self.spans.to_dict(orient="records"), "run_ids": list(self.run_ids),
                "samples": self.samples, "seed": self.seed,
                "per_prompt": self.per_prompt.to_dict(orient="records"),
                "difference": self.difference, "difference_low": self.difference_low,
                "difference_high": self.difference_high, "p_value": self.p_value,
                "method": self.method}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faithfulness:
        nan = float("nan")

        def number(key: str) -> float:
            value = data.get(key)
            return nan if value is None else float(value)
        return cls(table=pd.DataFrame(data["table"]), change_top=float(data["change_top"]),
                   change_random=float(data["change_random"]), verdict=str(data["verdict"]),
                   spans=pd.DataFrame(data["spans"]), run_ids=tuple(data["run_ids"]),
                   samples=int(data["samples"]), seed=int(data["seed"]),
                   per_prompt=pd.DataFrame(data.get("per_prompt") or []),
                   difference=number("difference"), difference_low=number("difference_low"),
                   difference_high=number("difference_high"), p_value=number("p_value"),
                   method=str(data.get("method") or ""))

    def __str__(self) -> str:
        rows = {r["variant"]: r for r in self.table.to_dict(orient="records")}

        def fmt(name: str) -> str:
            r = rows.get(name)
            return "n/a" if r is None else (f"{r['rate']:.2f} [{r['cluster_low']:.2f}, "
                                            f"{r['cluster_high']:.2f}] ({r['k']}/{r['n']})")
        return (f"original {fmt('original')}; drop top {fmt('drop top')} "
                f"(change {self.change_top:+.2f}); drop random {fmt('drop random')} (change "
                f"{self.change_random:+.2f}); paired over {len(self.per_prompt)} prompts: "
                f"top drop - random drop {self.difference:+.2f} [{self.difference_low:+.2f}, "
                f"{self.difference_high:+.2f}], sign-flip p = {self.p_value:.3g}: "
                f"{self.verdict}")


@dataclass(frozen=True)
class AttributionResult:
    """One incident attributed on one version.

    Attributes
    ----------
    run_id : str
        Content id of the run (incident, version fingerprint and engine, parameters,
        interactions).
    incident_id, model_version, method, baseline, target : str
    rows : DataFrame
        The stored attribution rows (one per interaction; ``segments`` and ``scores`` lists).
    faithfulness : Faithfulness or None
        None when not asked for (``samples=0``).
    info : dict
        Provenance: fingerprint, engine, parameters (refusal text and where it came from,
        seeds), counts (computed, cached), llmrca version.
    """

    run_id: str
    incident_id: str
    model_version: str
    method: str
    baseline: str
    target: str
    rows: pd.DataFrame
    faithfulness: Faithfulness | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (interaction, segment) (:data:`FRAME_COLUMNS`), or per
        (interaction, token) for ``ig`` (:data:`TOKEN_COLUMNS`)."""
        out = []
        common = {"method": self.method, "baseline": self.baseline, "target": self.target,
                  "model_version": self.model_version}
        for row in _records(self.rows):
            if self.method == "ig":
                details = row.details or {}
                for position, token, score in zip(details.get("positions", []),
                                                  details.get("tokens", []), row.scores):
                    out.append({"interaction_id": row.interaction_id, "position": position,
                                "token": token, "attribution": float(score),
                                "full_score": row.full_score,
                                "baseline_score": row.empty_score,
                                "completeness_gap": details.get("completeness_gap"), **common})
                continue
            scores = [float(x) for x in row.scores]
            ranks = pd.Series(scores).rank(ascending=False, method="min").astype(int).tolist()
            for seg, score, rank in zip(row.segments, scores, ranks):
                out.append({"interaction_id": row.interaction_id, "segment": seg["name"],
                            "kind": seg["kind"], "text": seg["text"], "n_chars": len(seg["text"]),
                            "attribution": score, "rank": rank, "full_score": row.full_score,
                            "empty_score": row.empty_score, **common})
        columns = TOKEN_COLUMNS if self.method == "ig" else FRAME_COLUMNS
        return pd.DataFrame(out, columns=list(columns))

    def summary(self) -> pd.DataFrame:
        """Per segment name, over interactions: ``segment, mean, min, max, top_in`` (how many
        interactions it ranks first in), sorted by mean, largest first."""
        frame = self.to_frame()
        if self.method == "ig" or frame.empty:
            return pd.DataFrame(columns=["segment", "mean", "min", "max", "top_in"])
        grouped = frame.groupby("segment", sort=False)
        out = pd.DataFrame({"mean": grouped["attribution"].mean(),
                            "min": grouped["attribution"].min(),
                            "max": grouped["attribution"].max(),
                            "top_in": grouped["rank"].apply(lambda r: int((r == 1).sum()))})
        return out.sort_values("mean", ascending=False).reset_index()

    def top_segments(self) -> pd.DataFrame:
        """Each interaction's top segment (largest attribution toward the target)."""
        frame = self.to_frame()
        if self.method == "ig" or frame.empty:
            return frame
        return frame[frame["rank"] == 1].drop_duplicates("interaction_id").reset_index(drop=True)

    @classmethod
    def load(cls, store, run_id: str) -> AttributionResult:
        """A stored run (see :func:`load_attribution`)."""
        return load_attribution(store, run_id)

    def __repr__(self) -> str:
        return (f"AttributionResult(run_id={self.run_id!r}, incident_id={self.incident_id!r}, "
                f"version={self.model_version!r}, method={self.method!r}, baseline="
                f"{self.baseline!r}, target={self.target!r}, interactions={len(self.rows)})")


def load_attribution(store, run_id: str) -> AttributionResult:
    """Rebuild a stored attribution run from the store alone (no model; read-only is fine).

    Raises
    ------
    NotFoundError
        No such run.
    """
    from llmrca.store.attributions import attribution_row_order, attribution_run

    record = attribution_run(store, run_id)
    rows = attribution_row_order(store, list(record["attribution_ids"]))
    parameters = record["parameters"]
    faithfulness = (Faithfulness.from_dict(record["faithfulness"])
                    if record.get("faithfulness") else None)
    return AttributionResult(run_id=run_id, incident_id=str(record["incident_id"]),
                             model_version=str(record["model_version"]),
                             method=str(parameters["method"]),
                             baseline=str(parameters["baseline"]),
                             target=str(parameters["target"]), rows=rows,
                             faithfulness=faithfulness,
                             info={**(record.get("info") or {}), "loaded": True})


def attribution_diff(safe: AttributionResult, failing: AttributionResult) -> pd.DataFrame:
    """The same incident attributed on two versions, side by side, sorted by change.

    Segments are matched by (interaction, segment name): automatic segments are named by
    position, so the same prompt gives the same names on every version. The first row (the
    largest increase toward the target on the failing version) is the prime suspect.

    Returns
    -------
    DataFrame
        ``segment, text, <safe>, <failing>, change, abs_change, interactions`` averaged over
        interactions (``text`` from the first interaction), sorted by ``change`` descending.
    """
    a, b = safe.to_frame(), failing.to_frame()
    keys = ["interaction_id", "segment"]
    merged = a[keys + ["text", "attribution"]].merge(
        b[keys + ["attribution"]], on=keys, suffixes=("_safe", "_failing"))
    grouped = merged.groupby("segment", sort=False)
    out = pd.DataFrame({
        "text": grouped["text"].first(),
        safe.model_version: grouped["attribution_safe"].mean(),
        failing.model_version: grouped["attribution_failing"].mean(),
        "interactions": grouped.size()})
    out["change"] = out[failing.model_version] - out[safe.model_version]
    out["abs_change"] = out["change"].abs()
    out = out.reset_index()[["segment", "text", safe.model_version, failing.model_version,
                             "change", "abs_change", "interactions"]]
    return out.sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
