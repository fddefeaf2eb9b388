"""Replaying an incident: plan, generate what the cache lacks, judge, measure.

:func:`replay_incident` replays every interaction of an incident against several versions, with
sampled or greedy decoding, N samples per prompt and optional prompt variants, then judges the
outputs and reports reproduction rates with Wilson intervals, Fisher tests between versions and
McNemar tests of each variant against the original. :func:`compare_versions` adds the
teacher-forced log-probability of each interaction's offending output under each version.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd

from llmrca.errors import InvalidArgumentError, NotFoundError
from llmrca.replay.backends import BACKENDS, GeneratedSample, engine_of, model_fingerprint
from llmrca.replay.decoding import Decoding, content_hash, sample_key, sample_seed
from llmrca.replay.prompts import RenderedPrompt, Variant, context_window, render_prompt

__all__ = [
    "COMPARISON_COLUMNS",
    "PERTURBATION_COLUMNS",
    "RATE_COLUMNS",
    "SAMPLE_COLUMNS",
    "CompareResult",
    "ReplayResult",
    "compare_versions",
    "regenerate_sample",
    "replay_incident",
]

#: Columns of :attr:`ReplayResult.samples`.
SAMPLE_COLUMNS = (
    "run_id", "incident_id", "interaction_id", "variant", "model_version", "model_fingerprint",
    "sample_index", "seed", "sample_id", "engine", "prompt_hash", "prompt_tokens", "output",
    "token_ids", "token_logprobs", "total_logprob", "n_tokens", "finish_reason", "warnings",
    "decoding", "generated_by_run", "cached", "label", "reproduces")
#: Columns of :attr:`ReplayResult.rates`.
RATE_COLUMNS = ("level", "interaction_id", "model_version", "variant", "k", "n", "rate", "low",
                "high", "method")
#: Columns of :attr:`ReplayResult.comparisons` (version A vs version B, per variant).
COMPARISON_COLUMNS = (
    "variant", "version_a", "version_b", "k_a", "n_a", "rate_a", "k_b", "n_b", "rate_b",
    "difference", "difference_low", "difference_high", "odds_ratio", "odds_ratio_low",
    "odds_ratio_high", "p_value", "p_holm", "method")
#: Columns of :attr:`ReplayResult.perturbations` (variant vs original, per version, paired).
PERTURBATION_COLUMNS = (
    "model_version", "variant", "n_pairs", "rate_original", "rate_variant", "both",
    "original_only", "variant_only", "neither", "difference", "p_value", "p_holm", "method")


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced; every table has documented columns (see ``docs/replay.md``).

    Attributes
    ----------
    run_id : str
        Content hash of the run's parameters (incident, versions and fingerprints, decoding,
        samples, seed, variants, interactions, backend); the ``replay_runs`` row.
    incident_id : str
    samples : DataFrame
        One row per (interaction, variant, version, sample index): :data:`SAMPLE_COLUMNS`.
        ``label`` is the combined judge label, ``reproduces`` is ``label == "unsafe"``.
    judgements : DataFrame
        Every judge's label per sample: ``sample_id, judge, judge_config_hash, label, score,
        details``.
    rates : DataFrame
        :data:`RATE_COLUMNS`; ``level`` is ``interaction`` (per interaction x version x variant)
        or ``version`` (pooled over the incident's interactions, ``interaction_id`` None). With
        greedy decoding each (interaction, variant, version) counts once, whatever ``samples``.
    comparisons : DataFrame
        :data:`COMPARISON_COLUMNS`: each pair of versions per variant, Fisher's exact test and the
        rate difference with its Newcombe interval; ``p_holm`` is Holm-corrected over the table.
    perturbations : DataFrame
        :data:`PERTURBATION_COLUMNS`: per version, each variant paired with the original by
        (interaction, sample index), exact McNemar; ``p_holm`` over the table.
    info : dict
        Provenance: versions with fingerprints, parameters, seed, backend/engine, llmrca version,
        counts (planned, unique, cached, generated, forward passes), timing, judges, agreement;
        ``samples_counted`` (samples per (interaction, variant, version) in the statistics: 1
        when greedy) and ``samples_collapsed`` (greedy with ``samples > 1``).
    """

    run_id: str
    incident_id: str
    samples: pd.DataFrame
    judgements: pd.DataFrame
    rates: pd.DataFrame
    comparisons: pd.DataFrame
    perturbations: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def version_rates(self, variant: str | None = None) -> pd.DataFrame:
        """Rates pooled per version (optionally for one variant)."""
        rows = self.rates[self.rates["level"] == "version"]
        if variant is not None:
            rows = rows[rows["variant"] == variant]
        return rows.reset_index(drop=True)

    def rate(self, model_version: str, variant: str = "original",
             interaction_id: str | None = None):
        """One rate as a :class:`llmrca.stats.RateEstimate`.

        Raises
        ------
        NotFoundError
            No such rate (unknown version, variant or interaction, or no judge ran); it is a
            :class:`LookupError`.
        """
        from llmrca.stats import RateEstimate

        rows = self.rates[(self.rates["model_version"] == model_version)
                          & (self.rates["variant"] == variant)]
        if interaction_id is None:
            rows = rows[rows["level"] == "version"]
        else:
            rows = rows[rows["interaction_id"] == interaction_id]
        if rows.empty:
            raise NotFoundError(f"no rate for version {model_version!r}, variant {variant!r}"
                                + (f", interaction {interaction_id!r}" if interaction_id else ""))
        r = rows.iloc[0]
        return RateEstimate(k=int(r.k), n=int(r.n), rate=float(r.rate), low=float(r.low),
                            high=float(r.high))

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
        incident_output`` and for each version ``<v> rate`` (``k/n  rate [low, high]``),
        ``<v> output`` (most frequent output) and ``<v> logprob`` (of the incident output).
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


# -- planning ---------------------------------------------------------------------------------------

@dataclass
class _Planned:
    interaction_id: str
    variant: str
    model_index: int
    sample_index: int
    seed: int
    sample_id: str
    prompt: RenderedPrompt
    warnings: list[str]


def _resolve_models(store, versions, device, dtype) -> list[Any]:
    if isinstance(versions, (str, bytes)) or not versions:
        raise InvalidArgumentError("versions must be a non-empty list of version names (or loaded models)")
    models = []
    for version in versions:
        if isinstance(version, str):
            from llmrca.models import load_version

            models.append(load_version(store, version, device=device, dtype=dtype))
        else:
            models.append(version)
    names = [str(m.name) for m in models]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"versions must be distinct; got {names}")
    return models


def _last_user_text(messages) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _parse_variants(variants) -> list[Variant]:
    if isinstance(variants, (str, Variant)):
        variants = [variants]
    parsed = [Variant.parse(v) for v in variants]
    if not any(v.kind == "original" for v in parsed):
        # Every variant is paired with the original for McNemar; replay it too.
        parsed.insert(0, Variant("original"))
    seen, unique = set(), []
    for v in parsed:
        if v.name not in seen:
            seen.add(v.name)
            unique.append(v)
    return unique


# -- judging ----------------------------------------------------------------------------------------

def _resolve_judges(judges, category):
    if judges is not None and len(judges) == 0:
        return []
    from llmrca import judges as judges_module

    names = list(judges) if judges is not None else list(judges_module.default_judges(category))
    return [judges_module.get_judge(j) if isinstance(j, str) else j for j in names]


def _combine(frame: pd.DataFrame) -> pd.Series:
    """Combined label per sample_id (``llmrca.judges.combine``: unsafe if any judge says so)."""
    if frame.empty:
        return pd.Series(dtype=object)
    from llmrca.judges import combine

    combined = combine(frame)
    if isinstance(combined, pd.Series):
        return combined
    return combined.set_index("sample_id")["label"]


def _judge_samples(store, samples: pd.DataFrame, judges: list, context: pd.DataFrame):
    """Judge each distinct sample once; write the judgements; return (judgements, labels, info)."""
    if not judges or samples.empty:
        return (pd.DataFrame(columns=["sample_id", "judge", "judge_config_hash", "label", "score",
                                      "details"]), pd.Series(dtype=object), {})
    inputs = (samples.merge(context, on=["interaction_id", "variant"], how="left")
              .drop_duplicates("sample_id")[["sample_id", "output", "prompt", "incident_output",
                                             "category"]])
    frames = [judge.judge(inputs) for judge in judges]
    judgements = pd.concat(frames, ignore_index=True)
    from llmrca.store.judgements import write_judgements

    write_judgements(store, judgements)
    names = [str(getattr(j, "name", type(j).__name__)) for j in judges]
    labels = _combine(judgements)
    info: dict[str, Any] = {"judges": names,
                            "judge_config_hashes": dict(zip(names, (f["judge_config_hash"].iloc[0]
                                                                    if len(f) else None
                                                                    for f in frames)))}
    if len(judges) > 1:
        try:
            from llmrca.judges import agreement

            found = agreement(judgements)
            info["agreement"] = found.to_dict("records") if hasattr(found, "to_dict") else found
        except Exception as exc:  # noqa: BLE001 - agreement is a report, not a reason to fail
            info["agreement"] = f"unavailable: {exc}"
    return judgements, labels, info


# -- statistics -------------------------------------------------------------------------------------

def _one_per_prompt(samples: pd.DataFrame) -> pd.DataFrame:
    """The first sample of each (interaction, variant, version): what greedy decoding counts."""
    return (samples.sort_values("sample_index", kind="stable")
            .drop_duplicates(["interaction_id", "variant", "model_version"])
            .sort_index())


def _rates(samples: pd.DataFrame) -> pd.DataFrame:
    from llmrca import stats

    rows = []
    judged = samples[samples["reproduces"].notna()]
    for level, keys in (("version", ["model_version", "variant"]),
                        ("interaction", ["interaction_id", "model_version", "variant"])):
        for key, group in judged.groupby(keys, sort=False):
            where = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
            est = stats.rate(int(group["reproduces"].astype(bool).sum()), len(group))
            rows.append({"level": level, "interaction_id": where.get("interaction_id"),
                         "model_version": where["model_version"], "variant": where["variant"],
                         "k": est.k, "n": est.n, "rate": est.rate, "low": est.low,
                         "high": est.high, "method": est.method})
    return _frame(rows, RATE_COLUMNS)


def _comparisons(rates: pd.DataFrame, version_names: list[str], variants: list[str]):
    from llmrca import stats

    # Any: pandas-stubs type every itertuples field as any scalar; k and n are counts here.
    by: dict[tuple[str, str], Any] = {
        (r.model_version, r.variant): r for r in rates[rates["level"] == "version"].itertuples()}
    rows = []
    for variant in variants:
        for i, a in enumerate(version_names):
            for b in version_names[i + 1:]:
                ra, rb = by.get((a, variant)), by.get((b, variant))
                if ra is None or rb is None:
                    continue
                cmp = stats.compare_rates(int(ra.k), int(ra.n), int(rb.k), int(rb.n))
                rows.append({"variant": variant, "version_a": a, "version_b": b,
                             "k_a": int(ra.k), "n_a": int(ra.n), "rate_a": cmp.a.rate,
                             "k_b": int(rb.k), "n_b": int(rb.n), "rate_b": cmp.b.rate,
                             "difference": cmp.difference, "difference_low": cmp.difference_low,
                             "difference_high": cmp.difference_high,
                             "odds_ratio": cmp.odds_ratio, "odds_ratio_low": cmp.odds_ratio_low,
                             "odds_ratio_high": cmp.odds_ratio_high, "p_value": cmp.p_value,
                             "p_holm": None, "method": cmp.method})
    frame = _frame(rows, COMPARISON_COLUMNS)
    if len(frame):
        frame["p_holm"] = stats.holm(frame["p_value"].tolist())
    return frame


def _perturbations(samples: pd.DataFrame, version_names: list[str], variants: list[str]):
    from llmrca import stats

    rows = []
    judged = samples[samples["reproduces"].notna()]
    keys = ["interaction_id", "sample_index"]
    for version in version_names:
        mine = judged[judged["model_version"] == version]
        base = mine[mine["variant"] == "original"][keys + ["reproduces"]]
        for variant in variants:
            if variant == "original":
                continue
            other = mine[mine["variant"] == variant][keys + ["reproduces"]]
            pairs = base.merge(other, on=keys, suffixes=("_original", "_variant"))
            if pairs.empty:
                continue
            res = stats.paired_table(pairs["reproduces_original"].astype(bool).tolist(),
                                     pairs["reproduces_variant"].astype(bool).tolist())
            n = res.n_pairs
            rows.append({"model_version": version, "variant": variant, "n_pairs": n,
                         "rate_original": (res.table[0][0] + res.table[0][1]) / n,
                         "rate_variant": (res.table[0][0] + res.table[1][0]) / n,
                         "both": res.table[0][0], "original_only": res.b,
                         "variant_only": res.c, "neither": res.table[1][1],
                         "difference": res.difference, "p_value": res.p_value, "p_holm": None,
                         "method": res.method})
    frame = _frame(rows, PERTURBATION_COLUMNS)
    if len(frame):
        frame["p_holm"] = stats.holm(frame["p_value"].tolist())
    return frame


# -- the replay -------------------------------------------------------------------------------------

def replay_incident(store, incident_id: str, versions: Sequence[Any], *, samples: int = 20,
                    temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 32,
                    seed: int = 0, variants: Sequence[Any] = ("original",),
                    judges: Sequence[Any] | None = None, batch_size: int = 16,
                    progress: bool = True, no_truncate: bool = False,
                    backend: str = "transformers", backend_options: dict | None = None,
                    interaction_ids: Sequence[str] | None = None, chunk_size: int | None = None,
                    device: Any = None, dtype: Any = None) -> ReplayResult:
    """Replay an incident's interactions against model versions and measure reproduction.

    Parameters
    ----------
    store : Store
        Holds the incident, its interactions and the registered versions; receives the samples,
        judgements and the run record.
    incident_id : str
    versions : sequence
        Registered version names (loaded with :func:`llmrca.models.load_version`) or already
        loaded models (objects with ``name``, ``fingerprint``, ``model``, ``tokenizer``).
    samples : int
        Samples per (interaction, variant, version). With ``temperature=0`` they are identical
        and share one generation, and statistics count each (interaction, variant, version)
        once: ``n`` is the number of interactions, McNemar pairs are one per interaction
        (``info["samples_collapsed"]`` is True when ``samples > 1`` were collapsed).
    temperature, top_p, max_new_tokens
        Decoding (see :class:`~llmrca.replay.decoding.Decoding`); 0 is greedy.
    seed : int
        Run seed; each sample's seed is derived from it (see
        :func:`~llmrca.replay.decoding.sample_seed`).
    variants : sequence of str or Variant
        Prompt perturbations (``original``, ``drop-system``, ``drop-prefix:TEXT``,
        ``swap-prefix:OLD=>NEW``, ``replace-request:TEXT``); ``original`` is always included.
    judges : sequence, optional
        Judge names (``llmrca.judges.get_judge``) or judge objects; default: the incident
        category's default judges. An empty list skips judging (no rates).
    batch_size : int
        Largest generation batch; the backend lowers it for memory.
    progress : bool
        Show a tqdm bar (samples/s).
    no_truncate : bool
        Refuse prompts longer than the context window instead of truncating them.
    backend : str
        A name in :data:`~llmrca.replay.backends.BACKENDS`.
    interaction_ids : sequence of str, optional
        Replay only these interactions.
    chunk_size : int, optional
        Samples generated between two store writes (default ``4 * batch_size``); a killed run
        loses at most one chunk.

    Returns
    -------
    ReplayResult
    """
    from llmrca import __version__
    from llmrca.store import replay as replay_store

    if int(samples) < 1:
        raise InvalidArgumentError(f"samples must be >= 1; got {samples}")
    decoding = Decoding(temperature=float(temperature), top_p=float(top_p),
                        max_new_tokens=int(max_new_tokens))
    incident = replay_store.incident_record(store, incident_id)
    interactions = replay_store.incident_interactions(store, incident_id, interaction_ids)
    if interactions.empty:
        raise NotFoundError(f"incident '{incident_id}' has no interactions to replay")
    variant_list = _parse_variants(variants)
    models = _resolve_models(store, versions, device, dtype)
    judge_objects = _resolve_judges(judges, incident.get("category"))
    backend_cls = BACKENDS.get(backend)
    backends = [backend_cls(m, batch_size=batch_size, **(backend_options or {})) for m in models]
    version_names = [str(m.name) for m in models]
    chunk = int(chunk_size or max(4 * batch_size, 1))

    versions_info = [{"name": n, "fingerprint": model_fingerprint(m), "engine": b.engine,
                      "source": str(getattr(m, "source", ""))}
                     for n, m, b in zip(version_names, models, backends)]
    parameters = {"samples": int(samples), "decoding": decoding.to_dict(),
                  "variants": [v.name for v in variant_list],
                  "interaction_ids": interactions["interaction_id"].tolist(),
                  "no_truncate": bool(no_truncate), "backend": backend}
    run_id = "run-" + content_hash({"incident_id": incident_id, "seed": int(seed),
                                    "versions": [(v["name"], v["fingerprint"], v["engine"])
                                                 for v in versions_info],
                                    "parameters": parameters}, 24)
    resumed = not replay_store.start_run(
        store, run_id=run_id, incident_id=incident_id, versions=versions_info,
        parameters=parameters, seed=int(seed), backend=backend, package_version=__version__)

    # Plan every sample; render (and truncate, or refuse) before generating anything.
    plan: list[_Planned] = []
    context_rows = []
    for m_index, (model, back) in enumerate(zip(models, backends)):
        window = context_window(model.model)
        budget = None if window is None else window - decoding.max_new_tokens
        fingerprint = versions_info[m_index]["fingerprint"]
        for row in interactions.itertuples(index=False):
            # pandas-stubs type itertuples fields as any scalar; these are the interactions
            # table's columns (a str id, an optional system prompt, a list of messages).
            interaction_id = cast(str, row.interaction_id)
            row_messages = cast("list[dict[str, Any]]", row.messages)
            for variant in variant_list:
                system_prompt, messages, warning = variant.apply(
                    cast("str | None", row.system_prompt), row_messages)
                if m_index == 0:
                    context_rows.append({"interaction_id": interaction_id,
                                         "variant": variant.name,
                                         "prompt": _last_user_text(messages),
                                         "incident_output": row.output,
                                         "category": incident.get("category")})
                prompt = render_prompt(model.tokenizer, system_prompt, messages,
                                       max_prompt_tokens=budget, no_truncate=no_truncate,
                                       interaction_id=interaction_id, context=window,
                                       max_new_tokens=decoding.max_new_tokens)
                warnings = ([warning] if warning else []) + list(prompt.warnings)
                for index in range(int(samples)):
                    s = sample_seed(seed, interaction_id, version_names[m_index], index)
                    plan.append(_Planned(interaction_id, variant.name, m_index, index, s,
                                         sample_key(fingerprint, back.engine, prompt.prompt_id,
                                                    decoding, s), prompt, warnings))

    existing = replay_store.existing_sample_ids(store, (p.sample_id for p in plan))
    todo: dict[str, _Planned] = {}
    for p in plan:
        if p.sample_id not in existing and p.sample_id not in todo:
            todo[p.sample_id] = p
    generated = 0
    started = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="sample", desc=f"replay {incident_id}")
    try:
        for m_index, back in enumerate(backends):
            mine = sorted((p for p in todo.values() if p.model_index == m_index),
                          key=lambda p: (-len(p.prompt.token_ids), p.sample_id))
            for start in range(0, len(mine), chunk):
                part = mine[start:start + chunk]
                outs: list[GeneratedSample] = back.generate(
                    [p.prompt.token_ids for p in part], decoding, [p.seed for p in part],
                    on_batch=bar.update if bar is not None else None)
                rows = [{"sample_id": p.sample_id, "model_version": version_names[m_index],
                         "model_fingerprint": versions_info[m_index]["fingerprint"],
                         "engine": back.engine, "prompt_hash": p.prompt.prompt_id,
                         "prompt_text": p.prompt.text, "prompt_tokens": len(p.prompt.token_ids),
                         "decoding": decoding.key(), "seed": 0 if decoding.greedy else p.seed,
                         "output": g.text, "token_ids": list(g.token_ids),
                         "token_logprobs": list(g.token_logprobs),
                         "total_logprob": float(sum(g.token_logprobs)),
                         "finish_reason": g.finish_reason, "warnings": list(p.prompt.warnings),
                         "run_id": run_id} for p, g in zip(part, outs)]
                # One transaction per chunk: a killed run keeps every finished chunk, whole.
                replay_store.write_samples(store, rows)
                generated += len(rows)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started

    replay_store.write_run_samples(store, [
        {"run_id": run_id, "incident_id": incident_id, "interaction_id": p.interaction_id,
         "variant": p.variant, "model_version": version_names[p.model_index],
         "sample_index": p.sample_index, "seed": p.seed, "sample_id": p.sample_id,
         "warnings": p.warnings} for p in plan])

    frame = replay_store.run_samples(store, run_id)
    # Order as asked: versions, then interactions, then variants as given, then sample index.
    order = {"model_version": {n: i for i, n in enumerate(version_names)},
             "interaction_id": {n: i for i, n in enumerate(interactions["interaction_id"])},
             "variant": {v.name: i for i, v in enumerate(variant_list)}}
    frame = frame.sort_values(["model_version", "interaction_id", "variant", "sample_index"],
                              key=lambda col: col.map(order[col.name]) if col.name in order
                              else col, kind="stable").reset_index(drop=True)
    frame["cached"] = frame["sample_id"].isin(existing)
    context = pd.DataFrame(context_rows)
    judgements, labels, judge_info = _judge_samples(store, frame, judge_objects, context)
    frame["label"] = frame["sample_id"].map(labels) if len(labels) else None
    frame["reproduces"] = (frame["label"] == "unsafe").astype(object)
    frame.loc[frame["label"].isna(), "reproduces"] = None
    frame = frame[list(SAMPLE_COLUMNS)]

    variant_names = [v.name for v in variant_list]
    # Greedy decoding: the N samples of a prompt are one deterministic generation (one sample_id)
    # N times over, not N independent draws. Each (interaction, variant, version) counts once, or
    # one output would pass for N/N with a tight interval and a tiny p-value.
    counted = _one_per_prompt(frame) if decoding.greedy else frame
    rates = _rates(counted)
    comparisons = _comparisons(rates, version_names, variant_names)
    perturbations = _perturbations(counted, version_names, variant_names)

    counts = {"planned": len(plan), "unique": len({p.sample_id for p in plan}),
              "cached": len({p.sample_id for p in plan} & existing), "generated": generated,
              "forward_passes": sum(b.forward_passes for b in backends),
              "truncated_prompts": len({(p.interaction_id, p.variant, p.model_index)
                                        for p in plan if p.prompt.truncated})}
    replay_store.finish_run(store, run_id, counts)
    info = {"run_id": run_id, "incident_id": incident_id, "category": incident.get("category"),
            "versions": versions_info, "parameters": parameters, "seed": int(seed),
            "backend": backend, "package_version": __version__, "resumed": resumed,
            "counts": counts, "generation_seconds": elapsed,
            "samples_per_second": (generated / elapsed) if generated and elapsed > 0 else None,
            "batch_sizes": [b.batch_size for b in backends],
            "samples_collapsed": bool(decoding.greedy and int(samples) > 1),
            "samples_counted": 1 if decoding.greedy else int(samples),
            "reproduces": "combined judge label == 'unsafe'", **judge_info}
    return ReplayResult(run_id=run_id, incident_id=incident_id, samples=frame,
                        judgements=judgements, rates=rates, comparisons=comparisons,
                        perturbations=perturbations, info=info)


def regenerate_sample(store, sample_id: str, *, model: Any = None, device: Any = None,
                      dtype: Any = None, backend: str = "transformers"):
    """Generate one stored sample again, alone, and check it against the store.

    Reads the sample's rendered prompt, decoding parameters and seed from ``replay_samples``,
    loads its version (or uses ``model``), generates a batch of one and compares tokens.

    Returns
    -------
    (GeneratedSample, bool)
        The fresh sample and whether its tokens equal the stored ones.
    """
    import json

    from llmrca.store import replay as replay_store

    row = replay_store.sample_record(store, sample_id)
    loaded = model if model is not None else _resolve_models(
        store, [row["model_version"]], device, dtype)[0]
    decoding_key = json.loads(row["decoding"])
    decoding = Decoding(temperature=decoding_key["temperature"], top_p=decoding_key["top_p"],
                        max_new_tokens=decoding_key["max_new_tokens"])
    prompt_ids = list(loaded.tokenizer(row["prompt_text"], add_special_tokens=False)["input_ids"])
    from llmrca.replay.decoding import prompt_hash

    if prompt_hash(row["prompt_text"], prompt_ids) != row["prompt_hash"]:
        raise InvalidArgumentError(f"sample {sample_id}: the tokenizer encodes the stored prompt differently "
                         f"than when it was generated")
    fresh = BACKENDS.get(backend)(loaded, batch_size=1).generate(
        [prompt_ids], decoding, [int(row["seed"])])[0]
    return fresh, list(fresh.token_ids) == json.loads(row["token_ids"])


# -- comparing versions -----------------------------------------------------------------------------

def _score_interactions(store, incident_id, model, interactions, batch_size, counter,
                        no_truncate=False):
    """Teacher-forced scores of each interaction's logged output, through the score cache.

    With ``no_truncate`` a prompt + output longer than the context window raises
    :class:`~llmrca.replay.prompts.PromptTooLongError` instead of being truncated.
    """
    from llmrca.replay.scoring import OutputScore, encode_output, score_id, score_outputs
    from llmrca.store import replay as replay_store

    items = [{"interaction_id": r.interaction_id, "messages": r.messages,
              "system_prompt": r.system_prompt, "output": r.output}
             for r in interactions.itertuples(index=False) if r.output]
    if not items:
        return {}
    engine = engine_of(model)
    window = context_window(model.model)
    keyed = []
    for item in items:
        out_ids = encode_output(model.tokenizer, item["output"])
        prompt = render_prompt(model.tokenizer, item["system_prompt"], item["messages"],
                               max_prompt_tokens=None if window is None else window - len(out_ids),
                               no_truncate=no_truncate, interaction_id=item["interaction_id"],
                               context=window, max_new_tokens=len(out_ids))
        keyed.append((item, prompt, score_id(model, prompt, out_ids, engine)))
    stored = replay_store.existing_scores(store, [k for _, _, k in keyed]).set_index("score_id")
    missing = [(item, key) for item, _, key in keyed if key not in stored.index]
    fresh = score_outputs(model, [item for item, _ in missing], batch_size=batch_size,
                          no_truncate=no_truncate, counter=counter) if missing else []
    replay_store.write_scores(store, [
        {"score_id": key, "incident_id": incident_id, "interaction_id": item["interaction_id"],
         "model_version": s.model_version, "model_fingerprint": model_fingerprint(model),
         "engine": engine, "prompt_hash": s.prompt.prompt_id,
         "prompt_tokens": len(s.prompt.token_ids), "output": item["output"],
         "token_ids": list(s.token_ids), "token_logprobs": list(s.token_logprobs),
         "argmax_ids": list(s.argmax_ids), "total_logprob": s.total_logprob,
         "warnings": list(s.prompt.warnings)} for (item, key), s in zip(missing, fresh)])
    fresh_by_key = {key: s for (_, key), s in zip(missing, fresh)}
    scores = {}
    for item, prompt, key in keyed:
        if key in fresh_by_key:
            scores[item["interaction_id"]] = fresh_by_key[key]
        else:
            row = stored.loc[key]
            ids = tuple(int(t) for t in row["token_ids"])
            scores[item["interaction_id"]] = OutputScore(
                model_version=str(model.name), model_fingerprint=model_fingerprint(model),
                prompt=prompt, token_ids=ids,
                tokens=tuple(model.tokenizer.decode([t]) for t in ids),
                token_logprobs=tuple(float(x) for x in row["token_logprobs"]),
                argmax_ids=tuple(int(x) for x in row["argmax_ids"]))
    return scores


def _rate_text(k: int, n: int, r: float, low: float, high: float) -> str:
    return f"{int(k)}/{int(n)}  {r:.2f} [{low:.2f}, {high:.2f}]"


def compare_versions(store, incident_id: str, versions: Sequence[Any], *, samples: int = 20,
                     temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 32,
                     seed: int = 0, judges: Sequence[Any] | None = None, batch_size: int = 16,
                     progress: bool = True, no_truncate: bool = False,
                     backend: str = "transformers", interaction_ids: Sequence[str] | None = None,
                     device: Any = None, dtype: Any = None) -> CompareResult:
    """Replay an incident on several versions and lay the results side by side.

    Runs :func:`replay_incident` (original prompts only; same parameters), then scores each
    interaction's logged output under each version by teacher forcing and finds where consecutive
    versions first diverge on it. ``no_truncate`` holds for both: a prompt that does not fit
    with ``max_new_tokens`` (generation) or with the logged output (scoring) raises
    :class:`~llmrca.replay.prompts.PromptTooLongError`. Returns a :class:`CompareResult`.
    """
    from llmrca.replay.scoring import first_divergence
    from llmrca.store import replay as replay_store

    models = _resolve_models(store, versions, device, dtype)
    result = replay_incident(store, incident_id, models, samples=samples, temperature=temperature,
                             top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                             judges=judges, batch_size=batch_size, progress=progress,
                             no_truncate=no_truncate, backend=backend,
                             interaction_ids=interaction_ids)
    interactions = replay_store.incident_interactions(store, incident_id, interaction_ids)
    counter = [0]
    scores = {str(m.name): _score_interactions(store, incident_id, m, interactions, batch_size,
                                               counter, no_truncate=no_truncate)
              for m in models}
    names = [str(m.name) for m in models]
    original = result.samples[result.samples["variant"] == "original"]
    rates = result.rates[(result.rates["variant"] == "original")]
    rows = []
    for inter in interactions.itertuples(index=False):
        for name in names:
            outs = original[(original["interaction_id"] == inter.interaction_id)
                            & (original["model_version"] == name)]["output"]
            counts = outs.value_counts()
            r = rates[(rates["level"] == "interaction") & (rates["model_version"] == name)
                      & (rates["interaction_id"] == inter.interaction_id)]
            score = scores[name].get(inter.interaction_id)
            rows.append({
                "interaction_id": inter.interaction_id, "model_version": name,
                "k": int(r["k"].iloc[0]) if len(r) else None,
                "n": int(r["n"].iloc[0]) if len(r) else len(outs),
                "rate": float(r["rate"].iloc[0]) if len(r) else None,
                "low": float(r["low"].iloc[0]) if len(r) else None,
                "high": float(r["high"].iloc[0]) if len(r) else None,
                "top_output": counts.index[0] if len(counts) else None,
                "top_output_share": float(counts.iloc[0] / len(outs)) if len(counts) else None,
                "incident_output": inter.output,
                "incident_logprob": score.total_logprob if score else None,
                "incident_mean_logprob": score.mean_logprob if score else None,
                "incident_tokens": score.n_tokens if score else None})
    table = pd.DataFrame(rows)

    wide_rows: list[dict[str, Any]] = []
    for inter in interactions.itertuples(index=False):
        wide: dict[str, Any] = {"interaction_id": inter.interaction_id,
                "request": _last_user_text(inter.messages), "incident_output": inter.output}
        for name in names:
            t = table[(table["interaction_id"] == inter.interaction_id)
                      & (table["model_version"] == name)].iloc[0]
            wide[f"{name} rate"] = (_rate_text(t.k, t.n, t.rate, t.low, t.high)
                                    if pd.notna(t.k) else "")
            wide[f"{name} output"] = t.top_output
            wide[f"{name} logprob"] = t.incident_logprob
        wide_rows.append(wide)
    overall: dict[str, Any] = {"interaction_id": "(all)", "request": "", "incident_output": ""}
    for name in names:
        v = rates[(rates["level"] == "version") & (rates["model_version"] == name)]
        overall[f"{name} rate"] = (_rate_text(int(v.k.iloc[0]), int(v.n.iloc[0]),
                                              float(v.rate.iloc[0]), float(v.low.iloc[0]),
                                              float(v.high.iloc[0])) if len(v) else "")
        overall[f"{name} output"] = ""
        lps = [s.total_logprob for s in scores[name].values()]
        overall[f"{name} logprob"] = sum(lps) / len(lps) if lps else None
    wide_rows.append(overall)
    side_by_side = pd.DataFrame(wide_rows)

    div_rows = []
    for inter in interactions.itertuples(index=False):
        for a, b in itertools.pairwise(names):
            sa, sb = scores[a].get(inter.interaction_id), scores[b].get(inter.interaction_id)
            if sa is None or sb is None or sa.token_ids != sb.token_ids:
                continue
            tokenizer = models[names.index(a)].tokenizer
            d = first_divergence(sa, sb, tokenizer=tokenizer)
            if d is not None:
                div_rows.append({"interaction_id": inter.interaction_id, "version_a": a,
                                 "version_b": b, "position": d.position, "token": d.token,
                                 "argmax_a": d.argmax_a, "argmax_b": d.argmax_b,
                                 "logprob_a": d.logprob_a, "logprob_b": d.logprob_b,
                                 "reason": d.reason})
    divergence = pd.DataFrame(div_rows, columns=[
        "interaction_id", "version_a", "version_b", "position", "token", "argmax_a", "argmax_b",
        "logprob_a", "logprob_b", "reason"])
    info = dict(result.info)
    info["scoring_forward_passes"] = counter[0]
    return CompareResult(replay=result, table=table, side_by_side=side_by_side,
                         divergence=divergence, info=info)
