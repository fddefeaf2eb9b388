"""``attribute_incident``: attribute an incident's offending outputs to their prompts' segments
(or tokens) on one version, cache per interaction in the store, check faithfulness by replay."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from llmrca import ids
from llmrca.attribution.methods import (
    WeightedTarget,
    segment_attribution,
    token_attribution,
)
from llmrca.attribution.result import AttributionResult, Faithfulness
from llmrca.attribution.segments import (
    Segment,
    analyst_segments,
    auto_segments,
    locate,
    segment_template,
)
from llmrca.errors import InvalidArgumentError, NotFoundError

__all__ = ["BASELINES", "METHODS", "TARGETS", "attribute_incident", "check_faithfulness",
           "compare_attributions", "control_spans", "default_refusal", "list_attributions",
           "paired_drops", "paired_verdict"]

METHODS = ("ablation", "shapley", "ig")
BASELINES = ("removal", "pad")
TARGETS = ("output", "contrastive")


def _records(frame: pd.DataFrame) -> list[Any]:
    """Rows as attribute objects (typed ``Any``: the columns are documented, not typed)."""
    from types import SimpleNamespace

    return [SimpleNamespace(**{str(k): v for k, v in r.items()})
            for r in frame.to_dict(orient="records")]


def _choice(name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(valid)}; got {value!r}")
    return value


def _messages(value: Any) -> list[dict[str, Any]]:
    return json.loads(value) if isinstance(value, str) else list(value)


def default_refusal(store, incident_id: str, safe_version: str, *, samples: int = 10,
                    seed: int = 0, judges: Sequence[str] | None = None,
                    max_new_tokens: int = 32,
                    interaction_ids: Sequence[str] | None = None) -> tuple[str, str]:
    """The most common output a judge labelled ``refusal`` among the incident's replayed samples
    on ``safe_version``. Returns ``(text, replay run id)``.

    Raises
    ------
    NotFoundError
        No sample was judged a refusal (give the refusal text instead).
    """
    from llmrca.replay import replay_incident

    result = replay_incident(store, incident_id, [safe_version], samples=samples, seed=seed,
                             judges=judges, max_new_tokens=max_new_tokens, progress=False,
                             interaction_ids=interaction_ids)
    refused = set(result.judgements.loc[result.judgements["label"] == "refusal", "sample_id"])
    outputs = result.samples.loc[result.samples["sample_id"].isin(refused), "output"]
    if outputs.empty:
        raise NotFoundError(f"no replayed sample of {incident_id} on {safe_version} was judged a "
                            f"refusal (run {result.run_id}); pass the refusal text")
    counts = outputs.astype(str).value_counts()
    top = counts[counts == counts.max()].index
    return str(min(top)), result.run_id


def _segments_of(system_prompt, messages, segments) -> list[Segment]:
    if segments is None or (isinstance(segments, str) and segments == "auto"):
        return auto_segments(system_prompt, messages)
    if isinstance(segments, str):
        raise InvalidArgumentError("segments must be 'auto' or a list of strings / spans")
    return analyst_segments(system_prompt, messages, segments)


def _pad_text(tokenizer, text: str) -> str:
    pad = getattr(tokenizer, "pad_token", None) or getattr(tokenizer, "unk_token", None) \
        or getattr(tokenizer, "eos_token", None)
    if not pad:
        raise InvalidArgumentError("the pad baseline needs a pad, unk or eos token")
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return str(pad) * max(n, 1)


def _compute_one(loaded, item: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    from llmrca import __version__
    from llmrca.models.forward import pad_id_of

    targets = [WeightedTarget(tuple(item["target_ids"]))]
    if item["contrast_ids"]:
        targets.append(WeightedTarget(tuple(item["contrast_ids"]), -1.0))
    method, baseline = parameters["method"], parameters["baseline"]
    segs: list[Segment] = item["segments"]
    details: dict[str, Any]
    if method == "ig":
        scores = token_attribution(loaded.model, loaded.tokenizer, item["text"], targets,
                                   baseline_id=pad_id_of(loaded.tokenizer, loaded.model),
                                   n_steps=int(parameters["ig_steps"]))
        values = list(scores.scores)
        full, empty = scores.full_score, scores.baseline_score
        details = {"tokens": list(scores.tokens), "positions": list(scores.positions),
                   "per_target": [list(r) for r in scores.per_target],
                   "completeness_gap": scores.completeness_gap}
    else:
        spans = locate(item["text"], item["system_prompt"], item["messages"], segs)
        template, texts = segment_template(item["text"], spans)
        base = ([""] * len(texts) if baseline == "removal"
                else [_pad_text(loaded.tokenizer, t) for t in texts])
        result = segment_attribution(
            loaded.model, loaded.tokenizer, template, texts, base, targets, method=method,
            perturbations_per_eval=int(item["perturbations_per_eval"]),
            shapley_samples=int(parameters["shapley_samples"] or 1), seed=int(parameters["seed"]))
        values, full, empty = list(result.scores), result.full_score, result.empty_score
        details = {"baselines": base, "forward_passes": result.forward_passes}
    return {"attribution_id": item["key"], "incident_id": item["incident_id"],
            "interaction_id": item["interaction_id"], "model_version": item["version"],
            "model_fingerprint": item["fingerprint"], "engine": item["engine"],
            "method": method, "baseline": baseline, "target": parameters["target"],
            "prompt_hash": item["prompt_id"], "target_text": item["target_text"],
            "contrast_text": item["contrast_text"], "parameters": parameters,
            "segments": [s.to_dict() for s in segs], "scores": values, "full_score": full,
            "empty_score": empty, "details": details, "package_version": __version__}


def _word_spans(text: str, lo: int, hi: int, length: int) -> list[tuple[int, int, int]]:
    """Word-aligned spans inside ``text[lo:hi]`` of about ``length`` characters: from each word
    start, the shortest run of words reaching ``length`` (or the region's end). Returns
    ``(|span length - length|, start, end)``."""
    words = [(lo + m.start(), lo + m.end()) for m in re.finditer(r"\S+\s*", text[lo:hi])]
    out = []
    for i in range(len(words)):
        for j in range(i, len(words)):
            begin, stop = words[i][0], words[j][1]
            if stop - begin >= length or j == len(words) - 1:
                out.append((abs(stop - begin - length), begin, stop))
                break
    return out


def _free_regions(size: int, forbidden: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[0, size)`` outside every ``forbidden`` span."""
    regions, at = [], 0
    for lo, hi in sorted(forbidden):
        if lo > at:
            regions.append((at, lo))
        at = max(at, hi)
    if at < size:
        regions.append((at, size))
    return regions


def control_spans(texts: dict[int, str], segments: Sequence[Segment], scores: Sequence[float],
                  count: int, rng: random.Random, *,
                  deletable: Any = None) -> tuple[list[tuple[int, str]], str]:
    """The random control spans of the faithfulness check for one prompt.

    ``count`` word-aligned spans (drawn with ``rng``, with replacement) of about the top
    segment's length, from the messages in ``texts`` (message index -> text; -1 is the system
    prompt), that overlap **no segment in the upper half of the attribution ranking** (score
    at least the median of the prompt's scores; the top segment always): the control is
    deleting text the attribution ranks low, so an attribution no better than chance cannot
    pass (its top segment would be no more harmful to delete than its bottom half). Spans of
    the closest available length are kept (within ``max(4, length // 4)`` characters of the
    best). ``deletable(message, start, span)`` (optional) rejects spans a deletion variant
    could not delete at that place.

    Returns the spans as ``(message, text)`` and the control used: ``low-ranked`` when such
    text exists, else ``not-top`` (spans avoiding only the top segment; they may overlap other
    high-ranked segments, which weakens the control) or ``none``.
    """
    import statistics

    values = [float(x) for x in scores]
    top = max(range(len(values)), key=lambda i: values[i])
    length = len(segments[top].text)
    median = statistics.median(values)
    high = [s for i, s in enumerate(segments) if values[i] >= median or i == top]
    for control, forbid in (("low-ranked", high), ("not-top", [segments[top]])):
        pool = []
        for message, text in texts.items():
            spans = [(s.start, s.end) for s in forbid if s.message == message]
            for lo, hi in _free_regions(len(text), spans):
                for diff, begin, stop in _word_spans(text, lo, hi, length):
                    if deletable is None or deletable(message, begin, text[begin:stop]):
                        pool.append((diff, message, begin, stop))
        if pool:
            best = min(c[0] for c in pool)
            pool = [c for c in pool if c[0] <= best + max(4, length // 4)]
            picks = [rng.choice(pool) for _ in range(count)]
            return [(m, texts[m][b:e]) for _, m, b, e in picks], control
    return [], "none"


def check_faithfulness(store, result: AttributionResult, *, samples: int = 20,
                       random_spans: int = 3, seed: int = 0, judges: Sequence[str] | None = None,
                       temperature: float = 1.0, max_new_tokens: int = 32) -> Faithfulness:
    """Replay the incident on the result's version with each interaction's top segment deleted,
    and with ``random_spans`` control spans of similar length deleted (a ``drop_span`` variant
    each), and give a paired, prompt-level verdict (:func:`paired_verdict`): per prompt, the
    drop in the failure rate from deleting the top segment minus the mean drop from deleting
    the control spans.

    The control spans (:func:`control_spans`) are drawn from the text ``drop_span`` can delete
    (the last user turn, the system prompt) that overlaps no segment in the upper half of that
    prompt's attribution ranking; only where no such text exists do they avoid just the top
    segment (``spans["control"]`` says which, per prompt).
    """
    from llmrca.replay import drop_span, replay_incident
    from llmrca.replay.measure import counted_samples, rate_table

    if result.method == "ig":
        raise InvalidArgumentError("faithfulness is checked on segment attributions (ablation "
                                   "or shapley), not on ig token scores")
    rng = random.Random(seed)
    frames, run_ids, spans = [], [], []
    for row in _records(result.rows):
        scores = [float(x) for x in row.scores]
        segs = [Segment.from_dict(d) for d in row.segments]
        top = max(range(len(scores)), key=lambda i: scores[i])
        seg = segs[top]
        texts, user_text = _deletable_texts(store, row.interaction_id)

        def deletable(message: int, start: int, span: str, user_text: str = user_text) -> bool:
            # drop_span deletes the first occurrence in the last user turn, else in the
            # system prompt: keep spans it deletes at the place they were drawn from.
            if message == -1:
                return span not in user_text
            return user_text.find(span) == start

        drawn, control = control_spans(texts, segs, scores, random_spans, rng,
                                       deletable=deletable)
        randoms = [text for _, text in drawn]
        roles = {drop_span(seg.text).name: "drop top"}
        spans.append({"interaction_id": row.interaction_id, "role": "drop top",
                      "text": seg.text, "message": seg.message, "n_chars": len(seg.text),
                      "control": control})
        for message, text in drawn:
            roles.setdefault(drop_span(text).name, "drop random")
            spans.append({"interaction_id": row.interaction_id, "role": "drop random",
                          "text": text, "message": message, "n_chars": len(text),
                          "control": control})
        replay = replay_incident(store, result.incident_id, [result.model_version],
                                 samples=samples, seed=seed, temperature=temperature,
                                 max_new_tokens=max_new_tokens, judges=judges,
                                 variants=[drop_span(seg.text)] + [drop_span(t) for t in randoms],
                                 interaction_ids=[row.interaction_id], progress=False)
        run_ids.append(replay.run_id)
        frame = replay.samples.copy()
        frame["variant"] = frame["variant"].map(lambda v, r=roles: r.get(v, "original"))
        frames.append(frame)
    samples_frame = pd.concat(frames, ignore_index=True)
    # Random spans are pooled per prompt: several draws of the same size, so their pooled rate
    # is the mean over the spans; the prompt stays the unit.
    samples_frame["sample_index"] = samples_frame.groupby(
        ["interaction_id", "variant"]).cumcount()
    greedy = float(temperature) == 0.0
    table = rate_table(counted_samples(samples_frame, greedy))
    rates = table[table["level"] == "version"][["variant", "k", "n", "rate", "cluster_low",
                                               "cluster_high"]].reset_index(drop=True)
    by = rates.set_index("variant")
    original = float(by.loc["original", "rate"])
    change_top = float(by.loc["drop top", "rate"]) - original
    change_random = (float(by.loc["drop random", "rate"]) - original
                     if "drop random" in by.index else 0.0)
    per_prompt = paired_drops(table)
    test = paired_verdict(per_prompt["difference"].tolist(), seed=seed)
    return Faithfulness(table=rates, change_top=change_top, change_random=change_random,
                        verdict=test["verdict"], spans=pd.DataFrame(spans),
                        run_ids=tuple(run_ids), samples=int(samples), seed=int(seed),
                        per_prompt=per_prompt, difference=test["difference"],
                        difference_low=test["low"], difference_high=test["high"],
                        p_value=test["p_value"], method=test["method"])


def paired_drops(table: pd.DataFrame) -> pd.DataFrame:
    """Per prompt, from a :func:`~llmrca.replay.measure.rate_table` of the faithfulness replays:
    ``interaction_id, original, drop_top, drop_random`` (rates), ``top_drop`` and
    ``random_drop`` (original minus each) and ``difference`` (``top_drop - random_drop``).
    Prompts without all three variants are left out."""
    per = table[table["level"] == "interaction"].pivot_table(
        index="interaction_id", columns="variant", values="rate", sort=False)
    needed = ["original", "drop top", "drop random"]
    per = per.dropna(subset=[c for c in needed if c in per.columns])
    if any(c not in per.columns for c in needed):
        return pd.DataFrame(columns=["interaction_id", "original", "drop_top", "drop_random",
                                     "top_drop", "random_drop", "difference"])
    out = pd.DataFrame({"interaction_id": per.index.astype(str),
                        "original": per["original"].to_numpy(float),
                        "drop_top": per["drop top"].to_numpy(float),
                        "drop_random": per["drop random"].to_numpy(float)})
    out["top_drop"] = out["original"] - out["drop_top"]
    out["random_drop"] = out["original"] - out["drop_random"]
    out["difference"] = out["top_drop"] - out["random_drop"]
    return out.reset_index(drop=True)


def paired_verdict(differences: Sequence[float], *, alpha: float = 0.05, seed: int = 0,
                   confidence: float = 0.95) -> dict[str, Any]:
    """The faithfulness rule on per-prompt differences (top drop minus random drop).

    ``faithful``: mean > 0 and the two-sided sign-flip test over prompts
    (:func:`llmrca.stats.sign_flip_test`, exact up to 16 prompts) gives ``p < alpha``;
    ``weak``: mean > 0, not significant; ``unfaithful``: mean <= 0 (or no prompt). The interval
    is the mean +- ``t(m-1)`` standard errors over prompts. With 6 prompts all positive,
    ``p = 2 / 2^6 = 1/32``; with 5 or fewer prompts ``p >= 1/16`` and ``faithful`` is
    unreachable.
    """
    import math

    from llmrca import stats

    d = [float(x) for x in differences if not math.isnan(float(x))]
    if not d:
        return {"verdict": "unfaithful", "difference": math.nan, "low": math.nan,
                "high": math.nan, "p_value": 1.0, "method": "no prompt with every variant"}
    m = len(d)
    mean = sum(d) / m
    test = stats.sign_flip_test(d, seed=seed)
    if m > 1:
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (m - 1))
        half = stats._t_critical(confidence, m - 1) * sd / math.sqrt(m)
    else:
        half = math.inf
    if mean > 0:
        verdict = "faithful" if test.p_value < alpha else "weak"
    else:
        verdict = "unfaithful"
    return {"verdict": verdict, "difference": mean, "low": mean - half, "high": mean + half,
            "p_value": float(test.p_value),
            "method": f"paired by prompt: {test.method}; interval mean +- t({m - 1}) SE"}


def _deletable_texts(store, interaction_id: str) -> tuple[dict[int, str], str]:
    """The texts a ``drop_span`` variant can delete from (message index -> text: the system
    prompt as -1, the last user turn), and the last user turn's text."""
    from llmrca.store.replay import interaction_prompt

    system_prompt, messages = interaction_prompt(store, interaction_id)
    texts: dict[int, str] = {}
    if system_prompt:
        texts[-1] = system_prompt
    user_text = ""
    for index in range(len(messages) - 1, -1, -1):
        content = messages[index].get("content")
        if messages[index].get("role") == "user" and isinstance(content, str):
            texts[index], user_text = content, content
            break
    return texts, user_text


def attribute_incident(store, incident_id: str, version: str, *, method: str = "ablation",
                       baseline: str = "removal", target: str = "output",
                       refusal: str | None = None, against: str | None = None,
                       segments: Any = "auto", interaction_ids: Sequence[str] | None = None,
                       samples: int = 0, random_spans: int = 3, seed: int = 0,
                       perturbations_per_eval: int = 16, shapley_samples: int = 25,
                       ig_steps: int = 64, judges: Sequence[str] | None = None,
                       temperature: float = 1.0, max_new_tokens: int = 32,
                       device: Any = None, dtype: Any = None) -> AttributionResult:
    """Attribute each offending interaction's logged output to its prompt on ``version``.

    Parameters
    ----------
    method : ``ablation``, ``shapley`` or ``ig``
        captum FeatureAblation / ShapleyValueSampling over segments, or layer integrated
        gradients over tokens (embedding layer; pad-token baseline).
    baseline : ``removal`` or ``pad``
        A segment is deleted, or its tokens replaced by as many pad tokens.
    target : ``output`` or ``contrastive``
        ``log p(offending output)``, or ``log p(offending) - log p(refusal)``.
    refusal : str, optional
        The refusal text of the contrastive target. Default: the most common output judged a
        refusal among the incident's replayed samples on ``against`` (:func:`default_refusal`).
    against : str, optional
        The safe version (needed for the default refusal).
    segments : ``"auto"`` or list
        Automatic segments (:func:`~llmrca.attribution.segments.auto_segments`), or an
        analyst's (strings or spans; :func:`~llmrca.attribution.segments.analyst_segments`).
    samples : int
        Samples per variant of the faithfulness replay (0: no faithfulness check).
    random_spans, seed
        Random spans deleted as the faithfulness control, and the seed of every random draw
        (Shapley permutations, spans, replay samples).
    perturbations_per_eval : int
        Perturbed prompts per forward batch (not part of the result's identity).
    """
    from llmrca import __version__
    from llmrca.models import load_version
    from llmrca.models.forward import engine_of, model_fingerprint
    from llmrca.replay.plan import resolve_versions
    from llmrca.replay.prompts import render_prompt
    from llmrca.store import replay as replay_store
    from llmrca.store.attributions import (
        ATTRIBUTIONS,
        attribution_row_order,
        write_attribution_run,
    )
    from llmrca.store.cache import compute_missing

    _choice("method", method, METHODS)
    _choice("baseline", baseline, BASELINES)
    _choice("target", target, TARGETS)
    if method == "ig" and baseline != "pad":
        raise InvalidArgumentError("ig uses the pad-token baseline: pass baseline='pad'")
    for name, value, low in (("samples", samples, 0), ("random_spans", random_spans, 1),
                             ("perturbations_per_eval", perturbations_per_eval, 1),
                             ("shapley_samples", shapley_samples, 1), ("ig_steps", ig_steps, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidArgumentError(f"{name} must be an integer >= {low}; got {value!r}")
    incident = replay_store.incident_record(store, incident_id)
    interactions = replay_store.incident_interactions(store, incident_id, interaction_ids)
    if interactions.empty:
        raise NotFoundError(f"incident '{incident_id}' has no interactions to attribute")
    refusal_source = "given" if refusal else None
    if target == "contrastive" and not refusal:
        if not against:
            raise InvalidArgumentError("the contrastive target needs a refusal text: pass "
                                       "refusal=... or against=<safe version>")
        refusal, run = default_refusal(store, incident_id, against, seed=seed, judges=judges,
                                       max_new_tokens=max_new_tokens,
                                       interaction_ids=interaction_ids)
        refusal_source = f"most common refusal on {against} (replay {run})"
    contrast = refusal if target == "contrastive" else None
    parameters = {"method": method, "baseline": baseline, "target": target, "seed": int(seed),
                  "shapley_samples": int(shapley_samples) if method == "shapley" else None,
                  "ig_steps": int(ig_steps) if method == "ig" else None,
                  "segments": segments if not isinstance(segments, str) else "auto"}

    def plan(tok, fingerprint: str, engine: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
        items: dict[str, dict[str, Any]] = {}
        order = []
        for row in _records(interactions):
            output = row.output
            if not isinstance(output, str) or not output:
                continue  # nothing offending to attribute
            system_prompt = row.system_prompt if isinstance(row.system_prompt, str) else None
            messages = _messages(row.messages)
            prompt = render_prompt(tok, system_prompt, messages)
            segs = _segments_of(system_prompt, messages, segments)
            target_ids = list(tok(output, add_special_tokens=False)["input_ids"])
            contrast_ids = (list(tok(contrast, add_special_tokens=False)["input_ids"])
                            if contrast else [])
            key = ids.content_id({"kind": "attribution", "model": fingerprint, "engine": engine,
                                  "prompt": prompt.prompt_id,
                                  "segments": [s.to_dict() for s in segs],
                                  "target": target_ids, "contrast": contrast_ids,
                                  "parameters": parameters})
            items[key] = {"key": key, "incident_id": incident_id, "interaction_id":
                          row.interaction_id, "version": version, "fingerprint": fingerprint,
                          "engine": engine, "prompt_id": prompt.prompt_id, "text": prompt.text,
                          "system_prompt": system_prompt, "messages": messages,
                          "segments": segs, "target_ids": target_ids,
                          "contrast_ids": contrast_ids, "target_text": output,
                          "contrast_text": contrast,
                          "perturbations_per_eval": perturbations_per_eval}
            order.append(key)
        return items, order

    # Keys first, from the version's registered fingerprint and its tokenizer files (no weights,
    # no torch): a warm call, every attribution stored, returns without loading the model. A
    # miss loads it and keys again with the real tokenizer and engine (as replay does).
    handle = resolve_versions(store, [version], backend="transformers", batch_size=1,
                              device=device, dtype=dtype, light=True)[0]
    loaded = handle.loaded
    items, order = plan(handle.tokenizer, handle.fingerprint, handle.engine)
    if handle.light and set(order) - ATTRIBUTIONS.existing(store, order):
        loaded = load_version(store, version, device=device, dtype=dtype)
        items, order = plan(loaded.tokenizer, model_fingerprint(loaded), engine_of(loaded))
    if not items:
        raise NotFoundError(f"incident '{incident_id}': no offending interaction has an output")
    fingerprint, engine = items[order[0]]["fingerprint"], items[order[0]]["engine"]
    report = compute_missing(store, ATTRIBUTIONS, items,
                             lambda chunk: [_compute_one(loaded, it, parameters) for it in chunk],
                             chunk_size=1)
    rows = attribution_row_order(store, order)
    run_parameters = {**parameters, "refusal": contrast, "refusal_source": refusal_source,
                      "against": against, "samples": int(samples),
                      "random_spans": int(random_spans), "judges": list(judges or []) or None,
                      "temperature": float(temperature), "max_new_tokens": int(max_new_tokens)}
    run_id = "attr-" + ids.content_id({"incident_id": incident_id, "version": version,
                                       "fingerprint": fingerprint, "engine": engine,
                                       "parameters": run_parameters, "attributions": order},
                                      digits=24)
    info = {"model_fingerprint": fingerprint, "engine": engine, "parameters": run_parameters,
            "category": incident.get("category"), "package_version": __version__,
            "counts": {"interactions": len(order), "cached": len(report.cached),
                       "computed": report.computed},
            "model_loaded": loaded is not None}
    result = AttributionResult(run_id=run_id, incident_id=incident_id, model_version=version,
                               method=method, baseline=baseline, target=target, rows=rows,
                               info=info)
    faithfulness = None
    if samples:
        faithfulness = check_faithfulness(store, result, samples=samples,
                                          random_spans=random_spans, seed=seed, judges=judges,
                                          temperature=temperature,
                                          max_new_tokens=max_new_tokens)
    if not store.read_only:
        write_attribution_run(store, {
            "run_id": run_id, "incident_id": incident_id, "model_version": version,
            "parameters": run_parameters, "attribution_ids": order,
            "faithfulness": faithfulness.to_dict() if faithfulness else None, "info": info})
    return AttributionResult(run_id=run_id, incident_id=incident_id, model_version=version,
                             method=method, baseline=baseline, target=target, rows=rows,
                             faithfulness=faithfulness, info=info)


def compare_attributions(store, incident_id: str, safe: str, failing: str,
                         **options: Any) -> tuple[AttributionResult, AttributionResult,
                                                  pd.DataFrame]:
    """Attribute the incident on both versions with the same options; returns both results and
    :func:`~llmrca.attribution.result.attribution_diff` (prime suspect first). A contrastive
    target takes its refusal from ``safe`` unless one is given."""
    from llmrca.attribution.result import attribution_diff

    if options.get("target") == "contrastive" and not options.get("refusal"):
        options.setdefault("against", safe)
    faithfulness_samples = options.pop("samples", 0)
    a = attribute_incident(store, incident_id, safe, **options)
    b = attribute_incident(store, incident_id, failing, samples=faithfulness_samples, **options)
    return a, b, attribution_diff(a, b)


def list_attributions(store, incident_id: str | None = None) -> pd.DataFrame:
    """The stored attribution runs, newest first (read-only is fine, no model).

    Returns
    -------
    DataFrame
        ``run_id, incident_id, model_version, method, baseline, target, interactions,
        faithfulness`` (the verdict, or empty when not checked), ``difference, p_value`` (the
        paired faithfulness effect and its p-value), ``created_at``.
    """
    from llmrca.store.attributions import list_attribution_runs

    frame = list_attribution_runs(store, incident_id, details=True)
    rows = []
    for r in _records(frame):
        parameters, faith = r.parameters or {}, r.faithfulness or {}
        rows.append({"run_id": r.run_id, "incident_id": r.incident_id,
                     "model_version": r.model_version, "method": parameters.get("method"),
                     "baseline": parameters.get("baseline"), "target": parameters.get("target"),
                     "interactions": len(r.attribution_ids or []),
                     "faithfulness": faith.get("verdict", ""),
                     "difference": faith.get("difference"), "p_value": faith.get("p_value"),
                     "created_at": r.created_at})
    return pd.DataFrame(rows, columns=["run_id", "incident_id", "model_version", "method",
                                       "baseline", "target", "interactions", "faithfulness",
                                       "difference", "p_value", "created_at"])
