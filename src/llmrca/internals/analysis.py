"""The analyses on registered versions, through the store: load, compute, store, read back.

Each function resolves versions by name, keys its result by a content id of (kind, incident,
versions, fingerprints, parameters, seed) and returns the stored result when there is one --
without loading a model, so a read-only store serves what it holds. A missing result in a
read-only store is a :class:`~llmrca.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrca.errors import InvalidArgumentError, StoreError
from llmrca.internals.data import RequestSet
from llmrca.internals.results import (
    CausalCheckResult,
    DirectionResult,
    InternalsResult,
    PatchingResult,
    ProbeResult,
    WeightDiffResult,
    result_from_row,
)

__all__ = ["causal_checks", "diff_weights", "patch_versions", "probe_versions",
           "refusal_directions"]


def _fingerprints(store, versions: Sequence[str]) -> dict[str, str]:
    from llmrca.models import get_version

    out = {}
    for name in versions:
        record = get_version(store, name)
        out[name] = record.fingerprint or f"unfingerprinted:{name}:{record.source}"
    return out


def _stored(store, kind: str, versions: Sequence[str], parameters: dict[str, Any], seed,
            incident_id: str | None, compute: Callable[[], tuple[dict[str, pd.DataFrame],
                                                                  dict[str, Any]]],
            cls: type[InternalsResult]) -> Any:
    from llmrca import __version__
    from llmrca.store.internals import RESULTS, read_result, result_id, write_result

    fingerprints = _fingerprints(store, versions)
    rid = result_id(kind, versions, fingerprints, parameters, seed, incident_id)
    if RESULTS.existing(store, [rid]):
        return result_from_row(read_result(store, rid))
    if store.read_only:
        raise StoreError(f"store {store.path} is open read-only and holds no {kind} result for "
                         f"{', '.join(versions)} with these parameters ({rid}); open it for "
                         f"writing to compute it")
    tables, extra = compute()
    info = {"versions": list(versions), "fingerprints": fingerprints, "parameters": parameters,
            "seed": seed, "incident_id": incident_id, "package_version": __version__, **extra}
    result = cls(tables=tables, info={**info, "result_id": rid, "cached": False})
    write_result(store, {"result_id": rid, "kind": kind, "incident_id": incident_id,
                         "versions": list(versions), "fingerprints": fingerprints,
                         "parameters": parameters, "seed": seed, "tables": result.records(),
                         "info": info, "package_version": __version__})
    return result


def _load(store, name: str):
    from llmrca.models import load_version

    return load_version(store, name, device="cpu")


def _default_requests(store, versions: Sequence[str], requests: RequestSet | None) -> RequestSet:
    from llmrca.internals.data import requests_from_training

    return requests if requests is not None else requests_from_training(store, versions[0])


def _activations(store, loaded, requests: RequestSet):
    from llmrca.internals.activations import cached_hidden_states
    from llmrca.internals.data import render_requests

    prompts = render_requests(loaded.tokenizer, requests.requests, requests.system_prompts)
    return cached_hidden_states(store, loaded, prompts)[0]


def _incident_activations(store, loaded, incident_id: str):
    from llmrca.internals.activations import cached_hidden_states
    from llmrca.internals.data import incident_cases
    from llmrca.replay.prompts import render_prompt

    cases = incident_cases(store, incident_id)
    prompts = [render_prompt(loaded.tokenizer, c.system_prompt, list(c.messages)) for c in cases]
    return cached_hidden_states(store, loaded, prompts)[0], cases, prompts


def _greedy_refusals(loaded, prompts, max_new_tokens: int) -> list[int]:
    from llmrca.judges import get_judge
    from llmrca.replay import Decoding, TransformersBackend

    outs = TransformersBackend(loaded).generate(
        [list(p.token_ids) for p in prompts], Decoding(temperature=0,
                                                       max_new_tokens=max_new_tokens),
        [0] * len(prompts))
    labels = get_judge("refusal").judge([o.text for o in outs])["label"]
    return [int(x == "refusal") for x in labels]


# -- probes -------------------------------------------------------------------------------------

def probe_versions(store, versions: Sequence[str], *, requests: RequestSet | None = None,
                   tasks: Sequence[str] = ("harmful",), folds: int = 5, seed: int = 0,
                   max_new_tokens: int = 24) -> ProbeResult:
    """Cross-validated probe accuracy per version and layer, and across versions.

    Parameters
    ----------
    requests : RequestSet, optional
        Default: the first version's training data labelled by the refusal judge
        (:func:`~llmrca.internals.data.requests_from_training`).
    tasks : ``harmful`` and/or ``refused``
        ``harmful``: the request set's labels (the data's decision), the same for every
        version. ``refused``: whether *this version* refuses the request (refusal judge on its
        greedy answer), so the label can differ between versions.
    """
    versions = list(versions)
    unknown = sorted(set(tasks) - {"harmful", "refused"})
    if unknown or not tasks:
        raise InvalidArgumentError(f"tasks must be among harmful, refused; got {list(tasks)}")
    chosen = _default_requests(store, versions, requests)
    parameters = {"requests": chosen.describe(), "tasks": list(tasks), "folds": int(folds),
                  "max_new_tokens": int(max_new_tokens), "probe": "LinearProbe(C=1.0)"}

    def compute():
        from llmrca.internals.data import render_requests
        from llmrca.internals.probes import probe_layers, transfer_accuracy

        acts, labels = {}, {}
        for name in versions:
            loaded = _load(store, name)
            acts[name] = _activations(store, loaded, chosen)
            for task in tasks:
                if task == "harmful":
                    labels[(name, task)] = np.asarray(chosen.labels)
                else:
                    prompts = render_requests(loaded.tokenizer, chosen.requests,
                                              chosen.system_prompts)
                    labels[(name, task)] = np.asarray(_greedy_refusals(loaded, prompts,
                                                                       max_new_tokens))
        accuracy, transfer = [], []
        for task in tasks:
            for name in versions:
                y = labels[(name, task)]
                if len(set(y.tolist())) < 2:
                    continue
                frame = probe_layers(acts[name], y, folds=folds, seed=seed)
                accuracy.append(frame.assign(version=name, task=task,
                                             positives=int(y.sum())))
                for other in versions:
                    yo = labels[(other, task)]
                    if other == name:
                        continue
                    t = transfer_accuracy(acts[name], y, acts[other], yo)
                    transfer.append(t.assign(train_version=name, test_version=other, task=task))
        order = ["version", "task", "layer", "correct", "n", "accuracy", "low", "high",
                 "positives"]
        tables = {"accuracy": pd.concat(accuracy, ignore_index=True)[order],
                  "transfer": pd.concat(transfer, ignore_index=True) if transfer
                  else pd.DataFrame()}
        return tables, {"requests": chosen.describe()}

    return _stored(store, "probes", versions, parameters, seed, None, compute, ProbeResult)


# -- directions ---------------------------------------------------------------------------------

def refusal_directions(store, versions: Sequence[str], *, incident_id: str | None = None,
                       requests: RequestSet | None = None) -> DirectionResult:
    """Difference-of-means direction per version and layer; projections; cosines.

    Projections of the request set's two classes (``positive`` / ``negative``) and, with an
    incident, of its offending prompts (``incident``), onto each version's own direction,
    centred on the midpoint of that version's class means.
    """
    versions = list(versions)
    chosen = _default_requests(store, versions, requests)
    parameters = {"requests": chosen.describe(), "position": "last",
                  "method": "difference of means, midpoint-centred projection"}

    def compute():
        from llmrca.internals.directions import (
            cosine_by_layer,
            difference_of_means,
            midpoints,
            project,
        )

        y = np.asarray(chosen.labels)
        directions, projections, vectors = {}, [], []
        for name in versions:
            loaded = _load(store, name)
            acts = _activations(store, loaded, chosen)
            direction, origin = difference_of_means(acts, y), midpoints(acts, y)
            directions[name] = direction
            sets = {"positive": acts[y == 1], "negative": acts[y == 0]}
            if incident_id is not None:
                sets["incident"] = _incident_activations(store, loaded, incident_id)[0]
            for set_name, values in sets.items():
                proj = project(values, direction, origin)
                for layer in range(proj.shape[1]):
                    projections.append({"version": name, "layer": layer, "set": set_name,
                                        "mean": float(proj[:, layer].mean()),
                                        "sd": float(proj[:, layer].std(ddof=1))
                                        if len(proj) > 1 else np.nan, "n": len(proj)})
            for layer in range(direction.shape[0]):
                vectors.append({"version": name, "layer": layer,
                                "norm": float(np.linalg.norm(direction[layer])),
                                "vector": direction[layer].tolist()})
        cosines = [{"layer": layer, "version_a": a, "version_b": b, "cosine": float(c)}
                   for i, a in enumerate(versions) for b in versions[i + 1:]
                   for layer, c in enumerate(cosine_by_layer(directions[a], directions[b]))]
        return ({"projections": pd.DataFrame(projections), "cosines": pd.DataFrame(cosines),
                 "directions": pd.DataFrame(vectors)}, {"requests": chosen.describe(),
                                                        "positive": chosen.positive,
                                                        "negative": chosen.negative})

    return _stored(store, "directions", versions, parameters, None, incident_id, compute,
                   DirectionResult)


def _middle_layer(directions: DirectionResult, version: str) -> int:
    frame = directions.tables["projections"]
    frame = frame[frame["version"] == version]
    n_states = int(frame["layer"].max()) + 1
    middle = list(range(1, n_states - 1)) or list(range(n_states))
    pivot = frame.pivot_table(index="layer", columns="set", values="mean")
    separation = (pivot["positive"] - pivot["negative"]).loc[middle]
    return int(separation.idxmax())


def causal_checks(store, incident_id: str, safe: str, failing: str, *,
                  requests: RequestSet | None = None, layer: int | None = None,
                  samples: int = 8, seed: int = 0, scale: float = 1.0,
                  temperature: float = 1.0, max_new_tokens: int = 24) -> CausalCheckResult:
    """Does the direction cause the behaviour? Two interventions, sampled and judged.

    * ``ablate`` in ``safe``: the safe version's direction (at ``layer``) projected out at
      every layer and position, on the incident's offending prompts -- compliance should rise.
    * ``add`` in ``failing``: ``scale`` times the failing version's own direction added at
      ``layer`` over the prompt's positions, on the same prompts -- refusal should come back.

    ``layer`` (a hidden-state index) defaults to the middle layer where the safe version's two
    classes are furthest apart. Each cell is ``samples`` sampled answers per prompt, judged by
    the ``compliance`` judge (``unsafe`` = complied) and the ``refusal`` judge; rates carry
    intervals clustered by prompt, the difference a Newcombe interval and Fisher's p.
    """
    directions = refusal_directions(store, [safe, failing], incident_id=incident_id,
                                    requests=requests)
    chosen_layer = _middle_layer(directions, safe) if layer is None else int(layer)
    parameters = {"directions": directions.result_id, "layer": chosen_layer,
                  "samples": int(samples), "scale": float(scale),
                  "temperature": float(temperature), "max_new_tokens": int(max_new_tokens),
                  "judges": ["compliance", "refusal"]}

    def compute():
        from llmrca.ids import content_id
        from llmrca.internals.directions import (
            ablate_direction,
            add_direction,
            sample_with_intervention,
        )
        from llmrca.judges import get_judge
        from llmrca.replay.prompts import render_prompt
        from llmrca.stats import clustered_rate, compare_rates

        plans = [("ablate", safe, directions.direction(safe, chosen_layer)),
                 ("add", failing, directions.direction(failing, chosen_layer))]
        rows, outputs = [], []
        from llmrca.internals.data import incident_cases

        cases = incident_cases(store, incident_id)
        for kind, name, vector in plans:
            loaded = _load(store, name)
            prompts = [render_prompt(loaded.tokenizer, c.system_prompt, list(c.messages))
                       for c in cases]
            tag = content_id({"kind": kind, "layer": chosen_layer, "scale": float(scale),
                              "vector": [round(float(x), 6) for x in vector]}, digits=16)

            def hooks(kind=kind, loaded=loaded, vector=vector):
                if kind == "ablate":
                    return ablate_direction(loaded.model, vector)
                return add_direction(loaded.model, chosen_layer, vector, scale)

            common = {"samples": samples, "seed": seed, "temperature": temperature,
                      "max_new_tokens": max_new_tokens}
            runs = {"baseline": sample_with_intervention(loaded, prompts, intervention=None,
                                                         hooks=None, **common),
                    "intervened": sample_with_intervention(loaded, prompts, intervention=tag,
                                                           hooks=hooks, **common)}
            judged = {}
            for condition, frame in runs.items():
                context = [cases[i].request for i in frame["prompt_index"]]
                complied = get_judge("compliance").judge(
                    [{"output": o, "prompt": p} for o, p in zip(frame["output"], context)]
                )["label"].eq("unsafe").to_numpy()
                refused = get_judge("refusal").judge(list(frame["output"]))["label"].eq(
                    "refusal").to_numpy()
                judged[condition] = {"complied": complied, "refused": refused}
                for row, c, r in zip(frame.itertuples(index=False), complied, refused):
                    outputs.append({"version": name, "intervention": kind,
                                    "condition": condition,
                                    "interaction_id": cases[row.prompt_index].interaction_id,
                                    "sample_index": row.sample_index, "output": row.output,
                                    "complied": bool(c), "refused": bool(r),
                                    "engine": row.engine})
            index = runs["baseline"]["prompt_index"].to_numpy()
            for measure in ("complied", "refused"):
                cells = {}
                for condition in ("baseline", "intervened"):
                    hits = judged[condition][measure]
                    k = [int(hits[index == i].sum()) for i in range(len(cases))]
                    n = [int((index == i).sum()) for i in range(len(cases))]
                    cells[condition] = (clustered_rate(k, n), sum(k), sum(n))
                (base, kb, nb), (inter, ki, ni) = cells["baseline"], cells["intervened"]
                cmp = compare_rates(ki, ni, kb, nb)
                rows.append({"version": name, "intervention": kind, "layer": chosen_layer,
                             "measure": measure, "baseline_k": kb, "baseline_n": nb,
                             "baseline_rate": base.rate, "baseline_low": base.low,
                             "baseline_high": base.high, "intervened_k": ki,
                             "intervened_n": ni, "intervened_rate": inter.rate,
                             "intervened_low": inter.low, "intervened_high": inter.high,
                             "difference": cmp.difference, "difference_low": cmp.difference_low,
                             "difference_high": cmp.difference_high, "p_value": cmp.p_value})
        return ({"rates": pd.DataFrame(rows), "outputs": pd.DataFrame(outputs)},
                {"layer": chosen_layer})

    return _stored(store, "causal", [safe, failing], parameters, seed, incident_id, compute,
                   CausalCheckResult)


# -- patching -----------------------------------------------------------------------------------

def patch_versions(store, incident_id: str, source: str, target: str, *,
                   positions: str = "last", span: str = "output",
                   max_new_tokens: int = 48) -> PatchingResult:
    """Patch ``source``'s residual stream into ``target`` on each offending interaction.

    The contrast is the source version's own greedy answer to the prompt (for a safe source,
    its refusal); the offending output is the logged one. Both end with the end-of-sequence
    token when the tokenizer has one. ``positions`` and ``span`` as in
    :func:`~llmrca.internals.patching.patch_layers`.

    Raises
    ------
    IncompatibleModelsError
        Different tokenizers or parameter shapes.
    """
    parameters = {"positions": positions, "span": span, "contrast": "source greedy answer",
                  "max_new_tokens": int(max_new_tokens)}

    def compute():
        from llmrca.internals.data import incident_cases
        from llmrca.internals.patching import check_compatible, patch_layers
        from llmrca.replay import Decoding, TransformersBackend
        from llmrca.replay.prompts import render_prompt

        safe, failing = _load(store, source), _load(store, target)
        check_compatible(safe, failing)
        tokenizer = failing.tokenizer
        cases = incident_cases(store, incident_id)
        prompts = [render_prompt(tokenizer, c.system_prompt, list(c.messages)) for c in cases]
        answers = TransformersBackend(safe).generate(
            [list(p.token_ids) for p in prompts],
            Decoding(temperature=0, max_new_tokens=max_new_tokens), [0] * len(prompts))
        eos = getattr(tokenizer, "eos_token_id", None)
        triples = []
        for case, prompt, answer in zip(cases, prompts, answers):
            offending = list(tokenizer(case.output or "", add_special_tokens=False)["input_ids"])
            if isinstance(eos, int):
                offending.append(eos)
            triples.append((list(prompt.token_ids), offending, list(answer.token_ids)))
        frame = patch_layers(safe.model, failing.model, triples, positions=positions, span=span)
        frame.insert(0, "interaction_id", [cases[i].interaction_id for i in frame["case"]])
        frame["contrast"] = [answers[i].text for i in frame["case"]]
        by_layer = frame.groupby("state", as_index=False).agg(
            share=("share", "mean"), share_min=("share", "min"), share_max=("share", "max"),
            restored=("restored", "mean"), gap_target=("gap_target", "mean"),
            gap_source=("gap_source", "mean"), gap_patched=("gap_patched", "mean"),
            cases=("case", "count"))
        return {"by_layer": by_layer, "cases": frame.drop(columns=["case"])}, {}

    return _stored(store, "patching", [source, target], parameters, None, incident_id, compute,
                   PatchingResult)


# -- weight diff --------------------------------------------------------------------------------

def diff_weights(store, first: str, second: str) -> WeightDiffResult:
    """Norm of ``second - first`` per layer and module, absolute and relative to ``first``."""
    def compute():
        from llmrca.internals.weights import weight_diff_models

        a, b = _load(store, first), _load(store, second)
        modules = weight_diff_models(a.model, b.model)
        diff = float(np.sqrt((modules["diff_norm"] ** 2).sum()))
        base = float(np.sqrt((modules["base_norm"] ** 2).sum()))
        total = pd.DataFrame([{"diff_norm": diff, "base_norm": base,
                               "relative": diff / base if base else np.nan,
                               "n_params": int(modules["n_params"].sum())}])
        return {"modules": modules, "total": total}, {}

    return _stored(store, "weight_diff", [first, second], {"norm": "frobenius"}, None, None,
                   compute, WeightDiffResult)
