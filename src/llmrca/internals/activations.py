"""Hidden states at the last prompt token, cached in the store by model fingerprint.

A prompt's residual stream (every hidden-state index, ``output_hidden_states`` numbering: 0 =
embeddings, ``i + 1`` = after decoder layer ``i``, the last after the final norm) is a row of
``activation_cache`` keyed by (model fingerprint, engine, rendered prompt id, position):
asking for it again costs no forward pass. Other positions are computed, not cached
(:func:`llmrca.models.hidden_states` directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrca.store.cache import CacheReport

__all__ = ["cached_hidden_states"]


def cached_hidden_states(store, loaded, prompts: Sequence[Any], *, batch_size: int = 16
                         ) -> tuple[np.ndarray, CacheReport]:
    """``[n, n_states, d]`` float32 activations at each prompt's last token, and what was computed.

    Parameters
    ----------
    store : Store or None
        Where activations are cached (None: compute, cache nothing). A read-only store serves
        what it holds and computes the rest in memory without writing.
    loaded : LoadedModel
        The model (its fingerprint keys the cache).
    prompts : sequence of RenderedPrompt
        From :func:`llmrca.internals.data.render_requests` or the replay's renderer.
    """
    from llmrca.models.forward import engine_of, hidden_states, model_fingerprint
    from llmrca.store.cache import compute_missing
    from llmrca.store.internals import ACTIVATIONS, activation_id, encode_activation

    fingerprint, engine = model_fingerprint(loaded), engine_of(loaded)
    keys = [activation_id(fingerprint, engine, p.prompt_id, "last") for p in prompts]
    items = dict(zip(keys, prompts))

    def forward(part) -> np.ndarray:
        return hidden_states(loaded.model, loaded.tokenizer, [list(p.token_ids) for p in part],
                             positions="last", batch_size=batch_size)

    def compute(part) -> list[dict[str, Any]]:
        values = forward(part)
        return [{"activation_id": activation_id(fingerprint, engine, p.prompt_id, "last"),
                 "model_fingerprint": fingerprint, "engine": engine,
                 "prompt_hash": p.prompt_id, "position": "last", "n_states": v.shape[0],
                 "width": v.shape[1], "data": encode_activation(v)} for p, v in zip(part, values)]

    if store is None or store.read_only:
        known = set() if store is None else ACTIVATIONS.existing(store, items)
        todo = [k for k in items if k not in known]
        fresh = dict(zip(todo, forward([items[k] for k in todo]))) if todo else {}
        stored = _read(store, known) if known else {}
        values = {**stored, **fresh}
        report = CacheReport(keys=len(items), cached=frozenset(known), computed=len(todo))
    else:
        report = compute_missing(store, ACTIVATIONS, items, compute, chunk_size=256)
        values = _read(store, set(items))
    return np.stack([values[k] for k in keys]).astype(np.float32), report


def _read(store, keys: set[str]) -> dict[str, np.ndarray]:
    from llmrca.store.internals import ACTIVATIONS, decode_activation

    frame = ACTIVATIONS.rows(store, keys, ("activation_id", "n_states", "width", "data"))
    return {str(key): decode_activation(str(data), int(n_states), int(width))
            for key, n_states, width, data in zip(frame["activation_id"], frame["n_states"],
                                                   frame["width"], frame["data"])}
