"""Turn analysis results into what a notebook shows and saves for the report.

Each ``*_results`` function returns ``(data, tables)`` for
:meth:`~llmrca.reports.notebook.NotebookContext.save`; the table helpers read result columns
defensively by name, so a replay result that gains columns (cluster-aware intervals,
judge-corrected rates) shows them without a change here.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import pandas as pd

__all__ = [
    "RATE_COLUMNS",
    "comparison_results",
    "default_variants",
    "logprob_summary",
    "outputs_side_by_side",
    "rate_table",
    "reproduces_on",
    "reproduction_results",
    "triage_results",
]

#: Rate columns shown, in order, when the replay result has them.
RATE_COLUMNS = ("model_version", "variant", "k", "n", "rate", "low", "high", "method",
                "cluster_low", "cluster_high", "cluster_method", "corrected_rate",
                "corrected_low", "corrected_high", "corrected_method")
#: "Reproduces on a version": the lower end of its 95% interval is at least this.
REPRODUCES_AT = 0.05


def triage_results(record: dict[str, Any], timeline: Any, scope: Any, classification: Any,
                   containment: pd.DataFrame) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The triage notebook's results."""
    deployed = record.get("deployed_model_version")
    totals = {
        "events": int(scope.by_version["events"].sum()) if len(scope.by_version) else 0,
        "matching": int(scope.by_version["matching"].sum()) if len(scope.by_version) else 0,
        "matching_sessions": int(scope.matching["session_hash"].nunique()),
        "matching_users": int(scope.matching["user_hash"].nunique()),
        "offending": int(scope.interactions["offending"].sum()) if len(scope.interactions) else 0,
        "context": int(scope.interactions["context"].sum()) if len(scope.interactions) else 0,
    }
    data = {"record": {k: v for k, v in record.items() if k != "content_hash"},
            "classification": asdict(classification), "signature": scope.signature,
            "bucket": timeline.bucket, "scope_totals": totals,
            "deployed_scope": scope.version(str(deployed)) if deployed else {}}
    tables = {"timeline_events": timeline.events, "timeline_markers": timeline.markers,
              "scope_by_day": scope.by_day, "scope_by_version": scope.by_version,
              "scope_interactions": scope.interactions, "containment": containment}
    return data, tables


def default_variants(store: Any, incident_id: str) -> list[str]:
    """Perturbations worth replaying: dropping the prefix that every offending request shares
    (a role-play or jailbreak preamble), when there is one."""
    from llmrca.store.replay import incident_interactions

    frame = incident_interactions(store, incident_id)
    requests: list[str] = []
    for messages in frame["messages"]:
        users = [str(m["content"]) for m in messages if isinstance(m, dict)
                 and m.get("role") == "user" and isinstance(m.get("content"), str)]
        if users:
            requests.append(users[-1])
    if len(requests) < 2:
        return []
    prefix = os.path.commonprefix(requests)
    cut = max(prefix.rfind(". "), prefix.rfind("! "), prefix.rfind("? "), prefix.rfind(": "))
    prefix = prefix[:cut + 2] if cut >= 0 else ""
    if len(prefix.strip()) < 8 or any(len(r) <= len(prefix) for r in requests):
        return []
    return [f"drop-prefix:{prefix}"]


def rate_table(result: Any) -> pd.DataFrame:
    """Pooled rates per version and variant, with whatever interval columns the result has."""
    rates = result.version_rates() if hasattr(result, "version_rates") else result.rates
    return rates[[c for c in RATE_COLUMNS if c in rates.columns]].reset_index(drop=True)


def reproduces_on(rates: pd.DataFrame, variant: str = "original") -> tuple[list[str], list[str]]:
    """Versions whose rate's lower bound (cluster-aware when offered) is at least
    :data:`REPRODUCES_AT`, and the others."""
    rows = rates[rates["variant"] == variant] if "variant" in rates.columns else rates
    low = "cluster_low" if "cluster_low" in rows.columns else "low"
    on = [str(v) for v, lo in zip(rows["model_version"], rows[low]) if float(lo) >= REPRODUCES_AT]
    off = [str(v) for v in rows["model_version"] if str(v) not in on]
    return on, off


def outputs_side_by_side(result: Any, max_chars: int = 90) -> pd.DataFrame:
    """Per offending interaction and version, the most frequent replayed output and its share."""
    samples = result.samples
    if samples.empty:
        return pd.DataFrame(columns=["interaction", "model_version", "top_output", "share"])
    original = samples[samples["variant"] == "original"]
    order = {i: n + 1 for n, i in enumerate(dict.fromkeys(original["interaction_id"]))}
    rows = []
    for (interaction, version), group in original.groupby(["interaction_id", "model_version"],
                                                          sort=False):
        counts = group["output"].value_counts()
        rows.append({"interaction": order[interaction], "model_version": version,
                     "top_output": str(counts.index[0])[:max_chars],
                     "share": float(counts.iloc[0]) / len(group)})
    return pd.DataFrame(rows)


def reproduction_results(result: Any) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The reproduction notebook's results."""
    rates = rate_table(result)
    on, off = reproduces_on(rates)
    info = result.info
    data = {"run_id": result.run_id, "samples": info.get("parameters", {}).get("samples"),
            "seed": info.get("seed"), "judges": list(info.get("judges") or []),
            "versions": [v["name"] for v in info.get("versions", [])],
            "fingerprints": {v["name"]: v.get("fingerprint") for v in info.get("versions", [])},
            "counts": info.get("counts", {}), "reproduces_on": on, "not_on": off,
            "package_version": info.get("package_version")}
    tables = {"version_rates": rates, "comparisons": result.comparisons,
              "perturbations": result.perturbations,
              "outputs": outputs_side_by_side(result)}
    return data, tables


def logprob_summary(comparison: Any) -> pd.DataFrame:
    """Mean teacher-forced log-probability (total and per token) of the offending outputs, per
    version."""
    table = comparison.table
    if table.empty or "incident_logprob" not in table.columns:
        return pd.DataFrame(columns=["model_version", "mean_logprob", "mean_token_logprob",
                                     "interactions"])
    grouped = table.groupby("model_version", sort=False)
    out = grouped.agg(mean_logprob=("incident_logprob", "mean"),
                      interactions=("interaction_id", "nunique"))
    if "incident_mean_logprob" in table.columns:
        out["mean_token_logprob"] = grouped["incident_mean_logprob"].mean()
    return out.reset_index()


def comparison_results(comparison: Any) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The version-comparison notebook's results."""
    info = comparison.replay.info
    divergence = comparison.divergence.copy()
    if len(divergence):
        order = {i: n + 1 for n, i in enumerate(dict.fromkeys(comparison.table["interaction_id"]))}
        divergence.insert(0, "interaction", divergence["interaction_id"].map(order))
        divergence = divergence.drop(columns=["interaction_id"])
    table = comparison.table.drop(columns=[c for c in ("incident_output",)
                                           if c in comparison.table.columns])
    data = {"run_id": comparison.replay.run_id,
            "versions": [v["name"] for v in info.get("versions", [])],
            "fingerprints": {v["name"]: v.get("fingerprint") for v in info.get("versions", [])}}
    return data, {"table": table, "divergence": divergence,
                  "logprob_summary": logprob_summary(comparison)}
