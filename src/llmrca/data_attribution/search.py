"""Training-data search through the store: per-signal scores cached by content id, then fused.

Combined ranking: **reciprocal-rank fusion** (Cormack, Clarke and Büttcher 2009),
``score = sum over signals of 1 / (k + rank)`` with ``k = 60``. The signals' scores live on
scales that cannot be compared (percentile products, cosines of gradients), so only their ranks
are used; an example ranked high by several signals wins; and one signal that fails can add at
most ``1 / (k + 1)`` to any example, so it cannot drag the examples the other signals agree on
out of the top. A mean of normalised ranks would let a failing signal's order of the *whole*
list move the top examples; RRF only listens to each signal's top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrca.data_attribution.examples import (
    QueryCase,
    TrainingExample,
    incident_queries,
    training_examples,
)
from llmrca.data_attribution.result import TrainingSearchResult
from llmrca.data_attribution.signals import (
    SIGNALS,
    SignalScores,
    gradient_scores,
    lexical_scores,
    representation_scores,
)
from llmrca.errors import InvalidArgumentError, StoreError, UnknownNameError
from llmrca.ids import content_id

__all__ = ["FUSION_K", "fuse", "load_search", "search_training_data"]

#: The rank offset of reciprocal-rank fusion (the value of the original paper).
FUSION_K = 60


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 = highest score; (near-)ties share the average rank, so example order cannot matter."""
    from llmrca.data_attribution.signals import percentile_ranks

    values = np.asarray(scores, dtype=float)
    return len(values) + 1 - percentile_ranks(values) * len(values)


def fuse(example_ids: Sequence[str], scores: dict[str, np.ndarray], *, k: int = FUSION_K
         ) -> pd.DataFrame:
    """Reciprocal-rank fusion of per-signal scores.

    Returns one row per example, best first (ties by example id): ``example_id, rank, score``
    and ``<signal>_score, <signal>_rank`` per signal.
    """
    frame = pd.DataFrame({"example_id": list(example_ids)})
    fused = np.zeros(len(frame))
    for signal, values in scores.items():
        ranks = _ranks(values)
        frame[f"{signal}_score"] = np.asarray(values, dtype=float)
        frame[f"{signal}_rank"] = ranks
        fused += 1.0 / (int(k) + ranks)
    frame["score"] = fused
    frame = frame.sort_values(["score", "example_id"], ascending=[False, True],
                              kind="mergesort").reset_index(drop=True)
    frame.insert(1, "rank", np.arange(1, len(frame) + 1))
    order = ["example_id", "rank", "score"] + [c for s in scores for c in (f"{s}_score",
                                                                            f"{s}_rank")]
    return frame[order]


def _fingerprint(store, version: str) -> str:
    from llmrca.models import get_version

    record = get_version(store, version)
    return record.fingerprint or f"unfingerprinted:{version}:{record.source}"


def _data_id(examples: Sequence[TrainingExample]) -> str:
    return content_id([[e.example_id, list(e.messages), e.completion] for e in examples])


def _query_id(queries: Sequence[QueryCase]) -> str:
    return content_id([[q.interaction_id, list(q.messages), q.output] for q in queries])


def _signal_parameters(signal: str, *, layer, device: str, gradient_subset: str,
                       sketch_width: int | None) -> dict[str, Any]:
    if signal == "lexical":
        return {"method": "bm25okapi", "combine": "soft-and, max over queries"}
    if signal == "representation":
        return {"layer": None if layer is None else int(layer), "device": device,
                "positions": "prompt-last, completion-mean", "centring": "examples-mean"}
    return {"subset": gradient_subset, "sketch_width": sketch_width, "device": device,
            "similarity": "cosine", "checkpoints": ["version"]}


def _compute(signal: str, loaded, examples, queries, *, layer, gradient_subset, sketch_width,
             seed) -> SignalScores:
    if signal == "lexical":
        return lexical_scores(examples, queries)
    if signal == "representation":
        return representation_scores(loaded, examples, queries, layer=layer)
    return gradient_scores(loaded, examples, queries, subset=gradient_subset,
                           sketch_width=sketch_width, seed=seed)


def _short(text: str, width: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def search_training_data(store, incident_id: str, version: str, *,
                         signals: Sequence[str] = SIGNALS,
                         interaction_ids: Sequence[str] | None = None, layer: int | None = None,
                         seed: int = 0, device: Any = None,
                         gradient_subset: str = "last-block+head",
                         sketch_width: int | None = None,
                         fusion_k: int = FUSION_K) -> TrainingSearchResult:
    """Rank ``version``'s training examples by how likely they caused the incident behaviour.

    The query is the incident's offending interactions (prompt and logged output). Each signal
    (see :mod:`llmrca.data_attribution.signals`) is computed once per (version fingerprint,
    training data, queries, parameters, seed) and stored in ``training_search_signals``; a warm
    re-run reads it back without loading the model, and so does a read-only store.

    Parameters
    ----------
    signals : sequence of str
        Among :data:`SIGNALS`.
    interaction_ids : sequence of str, optional
        Use only these offending interactions (default: all with a logged output).
    layer : int, optional
        Hidden-state index of the representation signal (default: a middle one).
    seed : int
        Seeds the gradient signal's count sketch (the other signals are deterministic).
    device : optional
        Where the model runs (default CPU).
    gradient_subset : ``last-block+head`` or ``last-block``
    sketch_width : int, optional
        Count-sketch width of the gradient signal (default: exact).
    fusion_k : int
        The offset of reciprocal-rank fusion.

    Returns
    -------
    TrainingSearchResult

    Raises
    ------
    UnknownNameError
        A signal name is not one of :data:`SIGNALS`.
    NotFoundError
        The version has no training data, or the incident no offending output.
    StoreError
        The store is read-only and lacks a signal's scores.
    """
    from llmrca import __version__
    from llmrca.models.loading import resolve_device
    from llmrca.store.training_search import (
        RUNS,
        SIGNAL_SCORES,
        read_run,
        read_signals,
        search_run_id,
        signal_id,
    )

    asked = list(dict.fromkeys(str(s) for s in signals))
    if not asked:
        raise InvalidArgumentError(f"give at least one signal among {list(SIGNALS)}")
    for name in asked:
        if name not in SIGNALS:
            raise UnknownNameError("training-search signal", name, SIGNALS)
    chosen = [s for s in SIGNALS if s in asked]
    if int(fusion_k) < 1:
        raise InvalidArgumentError(f"fusion_k must be >= 1; got {fusion_k}")
    examples = training_examples(store, version)
    queries = incident_queries(store, incident_id, interaction_ids)
    fingerprint = _fingerprint(store, version)
    device_name = resolve_device(device)
    data_id, query_id = _data_id(examples), _query_id(queries)
    parameters = {s: _signal_parameters(s, layer=layer, device=device_name,
                                        gradient_subset=gradient_subset,
                                        sketch_width=sketch_width) for s in chosen}
    seeds = {s: (int(seed) if s == "gradient" and sketch_width is not None else None)
             for s in chosen}
    ids = {s: signal_id(s, fingerprint, data_id, query_id, parameters[s], seeds[s])
           for s in chosen}
    stored = read_signals(store, list(ids.values()))
    missing = [s for s in chosen if ids[s] not in stored]
    if missing and store.read_only:
        raise StoreError(f"store {store.path} is open read-only and holds no {', '.join(missing)} "
                         f"scores for {incident_id} on {version} with these parameters; open it "
                         f"for writing to compute them")
    loaded, models_loaded = None, 0
    for s in missing:
        if s != "lexical" and loaded is None:
            from llmrca.models import load_version

            loaded = load_version(store, version, device=device_name)
            models_loaded = 1
        scores = _compute(s, loaded, examples, queries, layer=layer,
                          gradient_subset=gradient_subset, sketch_width=sketch_width, seed=seed)
        row = {"signal_id": ids[s], "incident_id": incident_id, "model_version": version,
               "model_fingerprint": fingerprint, "signal": s, "parameters": parameters[s],
               "seed": seeds[s], "example_ids": list(scores.example_ids),
               "query_ids": list(scores.query_ids), "scores": scores.scores.tolist(),
               "per_query": scores.per_query.tolist(), "seconds": scores.seconds,
               "info": scores.info, "package_version": __version__}
        SIGNAL_SCORES.write(store, [row])
        stored[ids[s]] = row
    example_ids = [e.example_id for e in examples]
    per_signal = {}
    for s in chosen:
        row = stored[ids[s]]
        if list(row["example_ids"]) != example_ids:  # pragma: no cover - keyed by the data
            raise StoreError(f"stored {s} scores {ids[s]} do not cover {version}'s examples")
        per_signal[s] = np.asarray(row["scores"], dtype=float)
    table = fuse(example_ids, per_signal, k=fusion_k)
    by_id = {e.example_id: e for e in examples}
    table["prompt"] = [_short(next((m.get("content") for m in reversed(by_id[i].messages)
                                    if m.get("role") == "user"), "")) for i in table["example_id"]]
    table["completion"] = [_short(by_id[i].completion) for i in table["example_id"]]
    fusion = {"method": "reciprocal-rank fusion", "k": int(fusion_k)}
    run_id = search_run_id(incident_id, fingerprint, [ids[s] for s in chosen],
                           {"signals": parameters, "fusion": fusion})
    timing = {s: float(stored[ids[s]]["seconds"]) for s in chosen}
    info = {"fingerprint": fingerprint, "parameters": {**parameters, "fusion": fusion},
            "seed": int(seed), "signal_ids": ids, "queries": [q.interaction_id for q in queries],
            "n_examples": len(examples), "data_id": data_id, "query_id": query_id,
            "seconds": timing,
            "examples_per_second": {s: (len(examples) / t if t > 0 else None)
                                    for s, t in timing.items()},
            "signal_info": {s: stored[ids[s]].get("info") for s in chosen},
            "package_version": __version__}
    if not store.read_only and read_run(store, run_id) is None:
        RUNS.write(store, [{"run_id": run_id, "incident_id": incident_id,
                            "model_version": version, "model_fingerprint": fingerprint,
                            "signals": chosen, "signal_ids": [ids[s] for s in chosen],
                            "parameters": {"signals": parameters, "fusion": fusion},
                            "seed": int(seed), "info": info, "package_version": __version__}])
    provenance = {**info, "models_loaded": models_loaded, "cached": not missing,
                  "computed": missing}
    return TrainingSearchResult(run_id, incident_id, version, tuple(chosen), table, provenance)


def load_search(store, run_id: str) -> TrainingSearchResult:
    """A stored search, rebuilt from its signal rows (works on a read-only store; loads no
    model).

    Raises
    ------
    NotFoundError
        No search ``run_id`` in the store.
    """
    from llmrca.errors import NotFoundError
    from llmrca.store.training_search import read_run, read_signals

    run = read_run(store, run_id)
    if run is None:
        raise NotFoundError(f"no training-data search {run_id} in store {store.path}")
    info = dict(run["info"])
    signals = [str(s) for s in run["signals"]]
    rows = read_signals(store, list(run["signal_ids"]))
    per_signal = {}
    for s, sid in zip(signals, run["signal_ids"]):
        if sid not in rows:
            raise NotFoundError(f"search {run_id}: its {s} scores ({sid}) are not in the store")
        per_signal[s] = np.asarray(rows[sid]["scores"], dtype=float)
    example_ids = [str(i) for i in rows[run["signal_ids"][0]]["example_ids"]]
    table = fuse(example_ids, per_signal, k=int(run["parameters"]["fusion"]["k"]))
    try:
        by_id = {e.example_id: e for e in training_examples(store, run["model_version"])}
    except LookupError:
        by_id = {}
    table["prompt"] = [_short(next((m.get("content") for m in reversed(by_id[i].messages)
                                    if m.get("role") == "user"), "")) if i in by_id else None
                       for i in table["example_id"]]
    table["completion"] = [_short(by_id[i].completion) if i in by_id else None
                           for i in table["example_id"]]
    provenance = {**info, "models_loaded": 0, "cached": True, "computed": []}
    return TrainingSearchResult(run_id, run["incident_id"], run["model_version"],
                                tuple(signals), table, provenance)
