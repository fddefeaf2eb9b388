"""Replaying an incident: plan, generate what the cache lacks, judge, measure.

The steps live in their own modules — :mod:`~llmrca.replay.plan` (versions, prompts, keys),
:mod:`~llmrca.replay.generate`, :mod:`~llmrca.replay.judging`, :mod:`~llmrca.replay.measure`
(rates, comparisons, perturbations) and :mod:`~llmrca.replay.result` (results and the read
path); this module runs them in order, records the run, and compares versions.

A replay whose samples are all in the store loads no model weights (nor torch): versions are
resolved from their registered fingerprint and their tokenizer files, and weights are loaded
only when something must be generated or scored.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from llmrca import ids
from llmrca.errors import InvalidArgumentError, NotFoundError, StoreError, StoreInterruptedError
from llmrca.replay.config import ReplayConfig
from llmrca.replay.decoding import Decoding
from llmrca.replay.measure import COMPARISON_COLUMNS, PERTURBATION_COLUMNS, RATE_COLUMNS
from llmrca.replay.plan import (
    VersionHandle,
    check_plan_size,
    last_user_text,
    load_handles,
    plan_samples,
    resolve_versions,
)
from llmrca.replay.prompts import render_prompt
from llmrca.replay.result import (
    SAMPLE_COLUMNS,
    CompareResult,
    ReplayResult,
    assemble_result,
    load_replay,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "PERTURBATION_COLUMNS",
    "RATE_COLUMNS",
    "SAMPLE_COLUMNS",
    "CompareResult",
    "ReplayResult",
    "compare_versions",
    "load_replay",
    "regenerate_sample",
    "replay_incident",
]


def _config(config: ReplayConfig | None, options: dict[str, Any]) -> ReplayConfig:
    """The call's config: ``config``, changed by any flat keyword options (the old arguments)."""
    if config is not None and not isinstance(config, ReplayConfig):
        raise InvalidArgumentError(f"config must be a ReplayConfig; got {type(config).__name__}")
    return (config or ReplayConfig()).replace(**options) if options else (config or ReplayConfig())


def _run_identity(incident_id: str, config: ReplayConfig, handles: list[VersionHandle],
                  interaction_ids: list[str], judges: list[dict[str, Any]]):
    parameters = config.parameters(interaction_ids, judges)
    run_id = ids.run_id({"incident_id": incident_id, "seed": int(config.seed),
                         "versions": [(h.name, h.fingerprint, h.engine) for h in handles],
                         "parameters": parameters})
    return run_id, parameters


def _replay(store, incident_id: str, versions: Sequence[Any], config: ReplayConfig, *,
            interaction_ids, batch_size, progress, chunk_size, device, dtype, backend_options,
            max_planned) -> tuple[ReplayResult, list[VersionHandle]]:
    from llmrca import __version__
    from llmrca.replay.generate import generate_missing
    from llmrca.replay.judging import judge_identity, judge_samples, resolve_judges
    from llmrca.store import replay as replay_store

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    incident = replay_store.incident_record(store, incident_id)
    category = incident.get("category")
    interactions = replay_store.incident_interactions(store, incident_id, interaction_ids)
    if interactions.empty:
        raise NotFoundError(f"incident '{incident_id}' has no interactions to replay")
    if isinstance(versions, (str, bytes)) or not versions:
        raise InvalidArgumentError("versions must be a non-empty list of version names (or "
                                   "loaded models)")
    # Bounds first: nothing is loaded, rendered or recorded for a plan that is refused.
    planned_count = check_plan_size(config, len(interactions), len(versions), max_planned)
    judges = resolve_judges(config.judges, category)
    judges_recorded = judge_identity(judges)
    load_options = {"backend": config.backend, "batch_size": batch_size,
                    "backend_options": backend_options, "device": device, "dtype": dtype}
    handles = resolve_versions(store, versions, light=True, **load_options)
    plan, context_rows = plan_samples(config, handles, interactions, category)
    keys = {p.sample_id for p in plan}
    existing = replay_store.existing_sample_ids(store, keys)
    if keys - existing and any(h.light for h in handles):
        # Something must be generated: load the weights, and plan again with the real
        # tokenizers and engines (the light ones only ever serve cache lookups).
        handles = load_handles(store, handles, **load_options)
        plan, context_rows = plan_samples(config, handles, interactions, category)
        keys = {p.sample_id for p in plan}
        existing = replay_store.existing_sample_ids(store, keys)
    interaction_order = interactions["interaction_id"].tolist()
    run_id, parameters = _run_identity(incident_id, config, handles, interaction_order,
                                       judges_recorded)
    versions_info = [h.info() for h in handles]
    version_names = [h.name for h in handles]
    counts: dict[str, Any] = {
        "planned": planned_count, "unique": len(keys), "cached": len(keys & existing),
        "generated": 0, "forward_passes": 0,
        "truncated_prompts": len({(p.interaction_id, p.variant, p.model_index)
                                  for p in plan if p.prompt.truncated})}
    base_info = {"run_id": run_id, "incident_id": incident_id, "category": category,
                 "versions": versions_info, "config": config.to_dict(),
                 "parameters": parameters, "seed": int(config.seed), "backend": config.backend,
                 "package_version": __version__, "counts": counts,
                 "models_loaded": not all(h.light for h in handles)}

    if store.read_only:
        status = replay_store.run_status(store, run_id)
        if status == "complete" and not keys - existing:
            stored = load_replay(store, run_id)
            info = {**stored.info, **base_info, "resumed": True, "generation_seconds": 0.0,
                    "samples_per_second": None, "batch_sizes": [batch_size] * len(handles)}
            return ReplayResult(run_id=run_id, incident_id=incident_id, samples=stored.samples,
                                judgements=stored.judgements, rates=stored.rates,
                                comparisons=stored.comparisons,
                                perturbations=stored.perturbations, info=info), handles
        raise StoreError(
            f"store {store.path} is open read-only and replay run {run_id} is "
            + (f"{status}" if status else "not in it")
            + f" ({len(keys - existing)} of {len(keys)} samples missing): open it for writing "
              f"to run the replay, or read a stored run with load_replay / `llmrca runs show`")

    # A finished run's agreement report is reused when nothing about its judgements can have
    # changed (every sample was cached: same samples, same judges by run id).
    status_before = replay_store.run_status(store, run_id)
    known_agreement = None
    if status_before == "complete" and not keys - existing:
        known_agreement = (replay_store.run_record(store, run_id).get("counts") or {}).get(
            "agreement")
    resumed = not replay_store.start_run(
        store, run_id=run_id, incident_id=incident_id, versions=versions_info,
        parameters=parameters, seed=int(config.seed), backend=config.backend,
        package_version=__version__)
    started = time.perf_counter()
    bar = None
    try:
        missing = len(keys - existing)
        if progress and missing:
            from tqdm.auto import tqdm

            bar = tqdm(total=missing, unit="sample", desc=f"replay {incident_id}")
        report = generate_missing(store, plan, handles, config.decoding, run_id,
                                  existing=existing,
                                  chunk_size=int(chunk_size or max(4 * batch_size, 1)),
                                  on_batch=bar.update if bar is not None else None)
        counts["generated"] = report.computed
        counts["forward_passes"] = sum(h.backend.forward_passes for h in handles
                                       if h.backend is not None)
        elapsed = time.perf_counter() - started
        replay_store.write_run_samples(store, [
            {"run_id": run_id, "incident_id": incident_id, "interaction_id": p.interaction_id,
             "variant": p.variant, "model_version": version_names[p.model_index],
             "sample_index": p.sample_index, "seed": p.seed, "sample_id": p.sample_id,
             "warnings": p.warnings} for p in plan])
        frame = replay_store.run_samples(store, run_id)
        judgements, labels, judge_info = judge_samples(store, frame, judges,
                                                       pd.DataFrame(context_rows),
                                                       known_agreement)
        if "agreement" in judge_info:
            counts["agreement"] = judge_info["agreement"]
        replay_store.finish_run(store, run_id, counts)
    except BaseException as exc:
        _mark_unfinished(store, run_id, counts, exc)
        raise
    finally:
        if bar is not None:
            bar.close()
    info = {**base_info, "resumed": resumed, "generation_seconds": elapsed,
            "samples_per_second": (counts["generated"] / elapsed)
            if counts["generated"] and elapsed > 0 else None,
            "batch_sizes": [h.backend.batch_size if h.backend is not None else batch_size
                            for h in handles], **judge_info}
    result = assemble_result(run_id=run_id, incident_id=incident_id, frame=frame,
                             judgements=judgements, labels=labels, config=config,
                             versions=version_names, interactions=interaction_order,
                             cached=existing, info=info)
    return result, handles


def _mark_unfinished(store, run_id: str, counts: dict[str, Any], exc: BaseException) -> None:
    """Record why a run stopped; never hide the original error."""
    from llmrca.store import replay as replay_store

    interrupted = isinstance(exc, (KeyboardInterrupt, StoreInterruptedError))
    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    try:
        replay_store.finish_run(store, run_id, counts,
                                status="interrupted" if interrupted else "failed", reason=reason)
    except BaseException:  # noqa: BLE001, S110 - the store may be what failed
        pass


def replay_incident(store, incident_id: str, versions: Sequence[Any],
                    config: ReplayConfig | None = None, *,
                    interaction_ids: Sequence[str] | None = None, batch_size: int = 16,
                    progress: bool = True, chunk_size: int | None = None, device: Any = None,
                    dtype: Any = None, backend_options: dict | None = None,
                    max_planned: int | None = None, **options: Any) -> ReplayResult:
    """Replay an incident's interactions against model versions and measure reproduction.

    Parameters
    ----------
    store : Store
        Holds the incident, its interactions and the registered versions; receives the samples,
        judgements and the run record. A read-only store can answer a run that is complete and
        fully cached (nothing is written), and refuses anything else with a ``StoreError``.
    incident_id : str
    versions : sequence
        Registered version names or already loaded models (objects with ``name``,
        ``fingerprint``, ``model``, ``tokenizer``). Names are resolved without loading weights
        while every sample is in the store.
    config : ReplayConfig, optional
        What to replay: samples, decoding, seed, variants, judges, backend, truncation (see
        :class:`~llmrca.replay.ReplayConfig`). Default ``ReplayConfig()``.
    **options
        The flat keyword arguments replay has always taken (``samples``, ``temperature``,
        ``top_p``, ``max_new_tokens``, ``seed``, ``variants``, ``judges``, ``backend``,
        ``no_truncate``): they build, or change, the config.
    interaction_ids : sequence of str, optional
        Replay only these interactions (default: the incident's offending ones).
    batch_size : int
        Largest generation batch; the backend lowers it for memory. Not part of the run's
        identity (samples are batch-invariant).
    progress : bool
        Show a tqdm bar (samples/s).
    chunk_size : int, optional
        Samples generated between two store writes (default ``4 * batch_size``); a killed run
        loses at most one chunk.
    device, dtype, backend_options
        Where and how the models run (device and dtype are part of the engine in every key).
    max_planned : int, optional
        Bound on samples x interactions x variants x versions (default
        :data:`~llmrca.replay.config.MAX_PLANNED_SAMPLES`).

    Returns
    -------
    ReplayResult
    """
    result, _ = _replay(store, incident_id, versions, _config(config, options),
                        interaction_ids=interaction_ids, batch_size=batch_size,
                        progress=progress, chunk_size=chunk_size, device=device, dtype=dtype,
                        backend_options=backend_options, max_planned=max_planned)
    return result


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

    from llmrca.replay.backends import BACKENDS
    from llmrca.replay.decoding import prompt_hash
    from llmrca.store import replay as replay_store

    row = replay_store.sample_record(store, sample_id)
    if model is None:
        from llmrca.models import load_version

        model = load_version(store, row["model_version"], device=device, dtype=dtype)
    decoding_key = json.loads(row["decoding"])
    decoding = Decoding(temperature=decoding_key["temperature"], top_p=decoding_key["top_p"],
                        max_new_tokens=decoding_key["max_new_tokens"])
    prompt_ids = list(model.tokenizer(row["prompt_text"], add_special_tokens=False)["input_ids"])
    if prompt_hash(row["prompt_text"], prompt_ids) != row["prompt_hash"]:
        raise InvalidArgumentError(f"sample {sample_id}: the tokenizer encodes the stored prompt "
                                   f"differently than when it was generated")
    fresh = BACKENDS.get(backend)(model, batch_size=1).generate(
        [prompt_ids], decoding, [int(row["seed"])])[0]
    return fresh, list(fresh.token_ids) == json.loads(row["token_ids"])


# -- comparing versions -----------------------------------------------------------------------------

def _score_keys(handle: VersionHandle, interactions: pd.DataFrame, no_truncate: bool):
    from llmrca.replay.scoring import encode_output

    keyed = []
    window = handle.context_window
    # Any: pandas-stubs type itertuples fields as any scalar; these are the interactions
    # table's columns (str id, optional system prompt, a list of messages, optional output).
    r: Any
    for r in interactions.itertuples(index=False):
        if not r.output:
            continue
        item: dict[str, Any] = {"interaction_id": r.interaction_id, "messages": r.messages,
                                "system_prompt": r.system_prompt, "output": r.output}
        out_ids = encode_output(handle.tokenizer, str(r.output))
        prompt = render_prompt(handle.tokenizer, item["system_prompt"], item["messages"],
                               max_prompt_tokens=None if window is None else window - len(out_ids),
                               no_truncate=no_truncate, interaction_id=item["interaction_id"],
                               context=window, max_new_tokens=len(out_ids))
        keyed.append((item, prompt, ids.score_id(handle.fingerprint, handle.engine,
                                                 prompt.prompt_id, out_ids)))
    return keyed


def _score_interactions(store, incident_id: str, handle: VersionHandle,
                        interactions: pd.DataFrame, batch_size: int, counter: list[int],
                        load, no_truncate: bool = False):
    """Teacher-forced scores of each interaction's logged output, through the score cache.

    Returns ``(scores by interaction id, handle)`` — the handle loaded if scoring had to run.
    With ``no_truncate`` a prompt + output longer than the context window raises
    :class:`~llmrca.replay.prompts.PromptTooLongError` instead of being truncated.
    """
    from llmrca.replay.scoring import OutputScore, score_outputs
    from llmrca.store import replay as replay_store
    from llmrca.store.cache import compute_missing

    keyed = _score_keys(handle, interactions, no_truncate)
    if not keyed:
        return {}, handle
    stored = replay_store.SCORES.existing(store, [k for _, _, k in keyed])
    if any(k not in stored for _, _, k in keyed) and handle.light:
        handle = load(handle)
        keyed = _score_keys(handle, interactions, no_truncate)
    items = {key: (item, key) for item, _, key in keyed}
    model = handle.loaded

    def compute(part):
        fresh = score_outputs(model, [item for item, _ in part], batch_size=batch_size,
                              no_truncate=no_truncate, counter=counter)
        return [{"score_id": key, "incident_id": incident_id, "interaction_id": item["interaction_id"],
                 "model_version": handle.name, "model_fingerprint": handle.fingerprint,
                 "engine": handle.engine, "prompt_hash": s.prompt.prompt_id,
                 "prompt_tokens": len(s.prompt.token_ids), "output": item["output"],
                 "token_ids": list(s.token_ids), "token_logprobs": list(s.token_logprobs),
                 "argmax_ids": list(s.argmax_ids), "total_logprob": s.total_logprob,
                 "warnings": list(s.prompt.warnings)} for (item, key), s in zip(part, fresh)]

    if store.read_only and any(k not in stored for k in items):
        raise StoreError(f"store {store.path} is open read-only and {handle.name} has scores "
                         f"to compute; open it for writing")
    compute_missing(store, replay_store.SCORES, items, compute,
                    existing=replay_store.SCORES.existing(store, items))
    rows = replay_store.existing_scores(store, list(items)).set_index("score_id")
    scores = {}
    for item, prompt, key in keyed:
        row = rows.loc[key]
        token_ids = tuple(int(t) for t in row["token_ids"])
        scores[item["interaction_id"]] = OutputScore(
            model_version=handle.name, model_fingerprint=handle.fingerprint, prompt=prompt,
            token_ids=token_ids, tokens=tuple(handle.tokenizer.decode([t]) for t in token_ids),
            token_logprobs=tuple(float(x) for x in row["token_logprobs"]),
            argmax_ids=tuple(int(x) for x in row["argmax_ids"]))
    return scores, handle


def _rate_text(k: int, n: int, r: float, low: float, high: float) -> str:
    return f"{int(k)}/{int(n)}  {r:.2f} [{low:.2f}, {high:.2f}]"


def compare_versions(store, incident_id: str, versions: Sequence[Any],
                     config: ReplayConfig | None = None, *,
                     interaction_ids: Sequence[str] | None = None, batch_size: int = 16,
                     progress: bool = True, device: Any = None, dtype: Any = None,
                     backend_options: dict | None = None, max_planned: int | None = None,
                     **options: Any) -> CompareResult:
    """Replay an incident on several versions and lay the results side by side.

    Runs the replay (original prompts only: the config's variants are ignored; same config
    and options as :func:`replay_incident`), then scores each interaction's logged output under
    each version by teacher forcing and finds where consecutive versions first diverge on it.
    The config's truncation holds for both: a prompt that does not fit with
    ``max_new_tokens`` (generation) or with the logged output (scoring) raises
    :class:`~llmrca.replay.prompts.PromptTooLongError` under ``refuse``. Scores are cached like
    samples; a fully cached comparison loads no model. Returns a :class:`CompareResult`.
    """
    from llmrca.replay.scoring import first_divergence
    from llmrca.store import replay as replay_store

    config = _config(config, options).replace(variants=("original",))
    result, handles = _replay(store, incident_id, versions, config,
                              interaction_ids=interaction_ids, batch_size=batch_size,
                              progress=progress, chunk_size=None, device=device, dtype=dtype,
                              backend_options=backend_options, max_planned=max_planned)
    interactions = replay_store.incident_interactions(store, incident_id, interaction_ids)
    counter = [0]

    def load(handle: VersionHandle) -> VersionHandle:
        return load_handles(store, [handle], backend=config.backend, batch_size=batch_size,
                            backend_options=backend_options, device=device, dtype=dtype)[0]

    scores: dict[str, dict[str, Any]] = {}
    for i, handle in enumerate(handles):
        scores[handle.name], handles[i] = _score_interactions(
            store, incident_id, handle, interactions, batch_size, counter, load,
            no_truncate=config.no_truncate)
    names = [h.name for h in handles]
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
            score = scores[name].get(str(inter.interaction_id))
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
                                "request": last_user_text(inter.messages),
                                "incident_output": inter.output}
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
        # Pooled over prompts: the interval is the clustered one (the prompt is the unit).
        overall[f"{name} rate"] = (_rate_text(int(v.k.iloc[0]), int(v.n.iloc[0]),
                                              float(v.rate.iloc[0]),
                                              float(v.cluster_low.iloc[0]),
                                              float(v.cluster_high.iloc[0])) if len(v) else "")
        overall[f"{name} output"] = ""
        lps = [s.total_logprob for s in scores[name].values()]
        overall[f"{name} logprob"] = sum(lps) / len(lps) if lps else None
    wide_rows.append(overall)
    side_by_side = pd.DataFrame(wide_rows)

    div_rows = []
    for inter in interactions.itertuples(index=False):
        for a, b in itertools.pairwise(names):
            sa = scores[a].get(str(inter.interaction_id))
            sb = scores[b].get(str(inter.interaction_id))
            if sa is None or sb is None or sa.token_ids != sb.token_ids:
                continue
            d = first_divergence(sa, sb, tokenizer=handles[names.index(a)].tokenizer)
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
    info["models_loaded"] = not all(h.light for h in handles)
    return CompareResult(replay=result, table=table, side_by_side=side_by_side,
                         divergence=divergence, info=info)

