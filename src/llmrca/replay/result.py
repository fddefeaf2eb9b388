"""Replay results: :class:`ReplayResult`, :class:`CompareResult`, and the read path
(:func:`load_replay`) that rebuilds a result from the store, read-only, without a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmrca.errors import NotFoundError
from llmrca.replay import measure
from llmrca.replay.config import ReplayConfig

__all__ = ["SAMPLE_COLUMNS", "CompareResult", "ReplayResult", "assemble_result", "load_replay"]

#: Columns of :attr:`ReplayResult.samples`.
SAMPLE_COLUMNS = (
    "run_id", "incident_id", "interaction_id", "variant", "model_version", "model_fingerprint",
    "sample_index", "seed", "sample_id", "engine", "prompt_hash", "prompt_tokens", "output",
    "token_ids", "token_logprobs", "total_logprob", "n_tokens", "finish_reason", "warnings",
    "decoding", "generated_by_run", "cached", "label", "reproduces")


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced; every table has documented columns (see ``docs/replay.md``).

    Attributes
    ----------
    run_id : str
        Content id of the run (incident, versions with fingerprints and engines, the
        :class:`~llmrca.replay.ReplayConfig` with its resolved judges, interactions); the
        ``replay_runs`` row.
    incident_id : str
    samples : DataFrame
        One row per (interaction, variant, version, sample index): :data:`SAMPLE_COLUMNS`.
        ``label`` is the combined judge label, ``reproduces`` is ``label == "unsafe"``.
    judgements : DataFrame
        Every judge's label per sample: ``sample_id, judge, judge_config_hash, label, score,
        details``.
    rates : DataFrame
        :func:`llmrca.replay.measure.rate_table`: per version (pooled over interactions) and
        per interaction; ``cluster_low``/``cluster_high`` (the prompt as the unit) are the
        headline interval, ``low``/``high`` the pooled Wilson one. With greedy decoding each
        (interaction, variant, version) counts once, whatever ``samples``.
    comparisons : DataFrame
        :func:`llmrca.replay.measure.comparison_table`: each pair of versions per variant;
        ``cluster_p_value`` (sign-flip over prompts) is the headline test, ``p_value`` Fisher's.
    perturbations : DataFrame
        :func:`llmrca.replay.measure.perturbation_table`: per version, each variant against
        the original (McNemar on paired samples; sign-flip over prompts).
    info : dict
        Provenance: versions with fingerprints, config, parameters, seed, backend/engine, llmrca
        version, counts (planned, unique, cached, generated, forward passes), timing, judges,
        agreement, ``samples_counted``, ``samples_collapsed``, ``models_loaded``.
    """

    run_id: str
    incident_id: str
    samples: pd.DataFrame
    judgements: pd.DataFrame
    rates: pd.DataFrame
    comparisons: pd.DataFrame
    perturbations: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, store, run_id: str) -> ReplayResult:
        """The stored run ``run_id`` (see :func:`load_replay`)."""
        return load_replay(store, run_id)

    @property
    def config(self) -> ReplayConfig:
        """The :class:`ReplayConfig` of this run (judges by name)."""
        return ReplayConfig.from_parameters(self.info["parameters"], self.info["seed"])

    def version_rates(self, variant: str | None = None) -> pd.DataFrame:
        """Rates pooled per version (optionally for one variant)."""
        rows = self.rates[self.rates["level"] == "version"]
        if variant is not None:
            rows = rows[rows["variant"] == variant]
        return rows.reset_index(drop=True)

    def rate(self, model_version: str, variant: str = "original",
             interaction_id: str | None = None):
        """One rate as a :class:`llmrca.stats.RateEstimate` (Wilson interval; the clustered
        one is :meth:`clustered_rate`).

        Raises
        ------
        NotFoundError
            No such rate (unknown version, variant or interaction, or no judge ran); it is a
            :class:`LookupError`.
        """
        from llmrca.stats import RateEstimate

        r = self._rate_row(model_version, variant, interaction_id)
        return RateEstimate(k=int(r.k), n=int(r.n), rate=float(r.rate), low=float(r.low),
                            high=float(r.high))

    def clustered_rate(self, model_version: str, variant: str = "original"):
        """The pooled rate of a version with its interval over prompts, as a
        :class:`llmrca.stats.ClusteredRate`."""
        from llmrca.stats import ClusteredRate

        r = self._rate_row(model_version, variant, None)
        return ClusteredRate(k=int(r.k), n=int(r.n), n_clusters=int(r.n_prompts),
                             rate=float(r.rate), low=float(r.cluster_low),
                             high=float(r.cluster_high), design_effect=float(r.design_effect),
                             effective_n=(float(r.n) / float(r.design_effect)
                                          if r.design_effect == r.design_effect else float(r.n)),
                             method=str(r.cluster_method))

    def _rate_row(self, model_version: str, variant: str, interaction_id: str | None):
        rows = self.rates[(self.rates["model_version"] == model_version)
                          & (self.rates["variant"] == variant)]
        if interaction_id is None:
            rows = rows[rows["level"] == "version"]
        else:
            rows = rows[rows["interaction_id"] == interaction_id]
        if rows.empty:
            raise NotFoundError(f"no rate for version {model_version!r}, variant {variant!r}"
                                + (f", interaction {interaction_id!r}" if interaction_id else ""))
        return rows.iloc[0]

    def with_judge_error(self, judge_error: Mapping[str, tuple[Any, Any]],
                         correct: Any = None) -> ReplayResult:
        """A copy whose ``rates`` add ``corrected_rate, corrected_low, corrected_high``:
        the rates corrected for judge error (``judge_error``: judge name, or ``combined``, ->
        ``(sensitivity, specificity)``, each a known number or ``(successes, trials)`` from a
        validation, whose uncertainty the interval then carries; ``correct`` defaults to
        ``llmrca.stats.rogan_gladen``), at the effective sample size of the clustered rate."""
        judges = self.info.get("judges") or []
        judge = "combined" if "combined" in judge_error or len(judges) != 1 else judges[0]
        counted = measure.counted_samples(self.samples, bool(self.info.get("samples_collapsed")
                                                             or self._greedy()))
        rates = measure.rate_table(counted, judge_error=judge_error, judge=judge,
                                   correct=correct)
        return dataclasses.replace(self, rates=rates)

    def _greedy(self) -> bool:
        decoding = self.info.get("parameters", {}).get("decoding", {})
        return float(decoding.get("temperature", 1.0)) == 0.0

    def __repr__(self) -> str:
        c = self.info.get("counts", {})
        return (f"ReplayResult(run_id={self.run_id!r}, incident_id={self.incident_id!r}, "
                f"samples={len(self.samples)}, generated={c.get('generated')}, "
                f"cached={c.get('cached')})")


@dataclass(frozen=True)
class CompareResult:
    """Versions side by side for one incident.

    Attributes
    ----------
    replay : ReplayResult
        The replay the rates come from.
    table : DataFrame
        Long form, one row per (interaction, version): ``interaction_id, model_version, k, n,
        rate, low, high, top_output, top_output_share, incident_output, incident_logprob,
        incident_mean_logprob, incident_tokens``. ``incident_*`` are the teacher-forced
        log-probability of the interaction's logged (offending) output under that version.
    side_by_side : DataFrame
        Wide form, one row per interaction plus an ``(all)`` row: ``interaction_id, request,
        incident_output`` and for each version ``<v> rate`` (``k/n  rate [low, high]``; on the
        ``(all)`` row the interval is over prompts), ``<v> output`` (most frequent output) and
        ``<v> logprob`` (of the incident output).
    divergence : DataFrame
        For each interaction and consecutive pair of versions, the first token of the incident
        output where their argmax differs: ``interaction_id, version_a, version_b, position,
        token, argmax_a, argmax_b, logprob_a, logprob_b, reason`` (no row if they never differ).
    """

    replay: ReplayResult
    table: pd.DataFrame
    side_by_side: pd.DataFrame
    divergence: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def _order(frame: pd.DataFrame, versions: Sequence[str], interactions: Sequence[str],
           variants: Sequence[str]) -> pd.DataFrame:
    """Versions, then interactions, then variants as given, then sample index."""
    order = {"model_version": {n: i for i, n in enumerate(versions)},
             "interaction_id": {n: i for i, n in enumerate(interactions)},
             "variant": {v: i for i, v in enumerate(variants)}}
    return frame.sort_values(["model_version", "interaction_id", "variant", "sample_index"],
                             key=lambda col: col.map(order[col.name]) if col.name in order
                             else col, kind="stable").reset_index(drop=True)


def assemble_result(*, run_id: str, incident_id: str, frame: pd.DataFrame,
                    judgements: pd.DataFrame, labels: pd.Series, config: ReplayConfig,
                    versions: Sequence[str], interactions: Sequence[str],
                    cached: set[str] | None, info: dict[str, Any]) -> ReplayResult:
    """Labels, order and the measurement tables on top of a run's samples."""
    frame = _order(frame, versions, interactions, config.variant_names)
    frame["cached"] = (frame["sample_id"].isin(cached) if cached is not None
                       else frame["generated_by_run"] != run_id)
    frame["label"] = frame["sample_id"].map(labels) if len(labels) else None
    frame["reproduces"] = (frame["label"] == "unsafe").astype(object)
    frame.loc[frame["label"].isna(), "reproduces"] = None
    frame = frame[list(SAMPLE_COLUMNS)]
    greedy = config.decoding.greedy
    # Greedy decoding: the N samples of a prompt are one deterministic generation (one
    # sample_id) N times over, not N independent draws. Each (interaction, variant, version)
    # counts once, or one output would pass for N/N with a tight interval and a tiny p-value.
    counted = measure.counted_samples(frame, greedy)
    rates = measure.rate_table(counted)
    comparisons = measure.comparison_table(counted, versions=list(versions),
                                           variants=config.variant_names, seed=config.seed)
    perturbations = measure.perturbation_table(counted, versions=list(versions),
                                               variants=config.variant_names, seed=config.seed)
    info = dict(info)
    info.update({"samples_collapsed": bool(greedy and config.samples > 1),
                 "samples_counted": 1 if greedy else config.samples,
                 "reproduces": "combined judge label == 'unsafe'",
                 "headline": "cluster_low/cluster_high and cluster_p_value: the prompt is the "
                             "unit"})
    return ReplayResult(run_id=run_id, incident_id=incident_id, samples=frame,
                        judgements=judgements, rates=rates, comparisons=comparisons,
                        perturbations=perturbations, info=info)


def load_replay(store, run_id: str) -> ReplayResult:
    """Rebuild a stored replay run from the store alone: no model, no writes (a read-only store
    is fine), no generation or judging.

    Samples come from ``replay_run_samples`` / ``replay_samples``, labels from the stored
    judgements of the judges the run recorded (runs recorded before judges were part of the run
    use every stored judgement of their samples), statistics are recomputed (deterministic
    given the run seed).

    Raises
    ------
    NotFoundError
        No such run, or a run that never finished (its status and reason are in the message).
    """
    from llmrca.replay.judging import labels_from, stored_judgements
    from llmrca.store import replay as replay_store

    record = replay_store.run_record(store, run_id)
    frame = replay_store.run_samples(store, run_id)
    status = str(record.get("status"))
    if frame.empty:
        reason = (record.get("counts") or {}).get("error") if isinstance(
            record.get("counts"), dict) else None
        raise NotFoundError(f"replay run '{run_id}' has no samples (status {status}"
                            + (f": {reason}" if reason else "") + "); run the replay again")
    parameters = record["parameters"]
    config = ReplayConfig.from_parameters(parameters, int(record["seed"]))
    judges = parameters.get("judges")
    judgements = stored_judgements(store, frame["sample_id"].unique().tolist(), judges)
    n_judges = len(judges) if judges is not None else judgements["judge"].nunique()
    stored_counts: dict[str, Any] = (record["counts"] if isinstance(record.get("counts"), dict)
                                     else {})
    labels, judge_info = labels_from(judgements, n_judges, stored_counts.get("agreement"))
    versions = [v["name"] for v in record["versions"]]
    interaction_ids = parameters.get("interaction_ids") or list(
        dict.fromkeys(frame["interaction_id"]))
    info = {"run_id": run_id, "incident_id": record["incident_id"], "versions": record["versions"],
            "parameters": parameters, "config": config.to_dict(), "seed": int(record["seed"]),
            "backend": record["backend"], "package_version": record["package_version"],
            "status": status, "counts": record.get("counts") or {}, "loaded": True,
            "models_loaded": False,
            "judges": ([j["name"] for j in judges] if judges is not None
                       else sorted(judgements["judge"].unique().tolist())),
            "judge_config_hashes": ({j["name"]: j.get("config_hash") for j in judges}
                                    if judges is not None else {}),
            **judge_info}
    return assemble_result(run_id=run_id, incident_id=str(record["incident_id"]), frame=frame,
                           judgements=judgements, labels=labels, config=config,
                           versions=versions, interactions=interaction_ids, cached=None,
                           info=info)
