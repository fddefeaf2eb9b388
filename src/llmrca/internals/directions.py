"""Concept directions: difference of means per layer, projections, cosines, interventions.

The refusal direction (Arditi et al. 2024, "Refusal in language models is mediated by a single
direction") at hidden-state index ``l`` is ``mean(h_l | positive) - mean(h_l | negative)`` at the
last prompt token. Projections are centred on the midpoint of the two class means, so a positive
projection sits on the positive ("will refuse") side.

Interventions are context managers over :mod:`llmrca.models.forward` hooks:
:func:`ablate_direction` removes the direction from the residual at the input of layer 0 and
the output of every layer (directional ablation), :func:`add_direction` adds it at one layer.
:func:`sample_with_intervention` samples under such hooks through the replay backend, marked
as intervened (:class:`~llmrca.replay.TransformersBackend` ``intervention=``): the samples are
returned, never written to the shared sample cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import pandas as pd

from llmrca.errors import InvalidArgumentError

__all__ = ["ablate_direction", "add_direction", "cosine_by_layer", "difference_of_means",
           "project", "sample_with_intervention"]


def difference_of_means(acts, labels) -> np.ndarray:
    """``[n_states, d]``: mean of the positive rows minus mean of the negative rows (float64)."""
    acts, y = np.asarray(acts, dtype=np.float64), np.asarray(labels).astype(int)
    if acts.ndim != 3 or len(acts) != len(y):
        raise InvalidArgumentError(f"acts must be [n, n_states, d] with one label per row; "
                                   f"got {acts.shape} and {y.shape}")
    if not (y == 1).any() or not (y == 0).any():
        raise InvalidArgumentError("a difference of means needs both classes")
    return acts[y == 1].mean(0) - acts[y == 0].mean(0)


def midpoints(acts, labels) -> np.ndarray:
    """``[n_states, d]``: the midpoint of the two class means (the projection's origin)."""
    acts, y = np.asarray(acts, dtype=np.float64), np.asarray(labels).astype(int)
    return (acts[y == 1].mean(0) + acts[y == 0].mean(0)) / 2


def project(acts, directions, origin=None) -> np.ndarray:
    """``[n, n_states]``: ``(h - origin) . u`` with ``u`` the unit direction of each layer."""
    acts = np.asarray(acts, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    norms = np.linalg.norm(directions, axis=-1, keepdims=True)
    units = np.divide(directions, norms, out=np.zeros_like(directions), where=norms > 0)
    centred = acts - (0.0 if origin is None else np.asarray(origin, dtype=np.float64))
    return np.einsum("nld,ld->nl", centred, units)


def cosine_by_layer(a, b) -> np.ndarray:
    """``[n_states]`` cosine similarity of two versions' directions, layer by layer."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide((a * b).sum(-1), denominator, out=np.full(len(a), np.nan),
                     where=denominator > 0)


@contextmanager
def ablate_direction(model, direction) -> Iterator[None]:
    """Remove ``direction`` from the residual at the input of layer 0 and every layer's output,
    at every position, for the ``with`` block."""
    from llmrca.models.architectures import model_parts
    from llmrca.models.forward import project_out

    n_layers = model_parts(model).n_layers
    with ExitStack() as stack:
        stack.enter_context(project_out(model, 0, direction, point="input"))
        for layer in range(n_layers):
            stack.enter_context(project_out(model, layer, direction))
        yield


def add_direction(model, state: int, direction, scale: float = 1.0, *,
                  where: str = "prompt"):
    """Add ``scale * direction`` at hidden-state index ``state`` (1..n_layers: the output of layer
    ``state - 1``; 0: the input of layer 0).

    ``where="prompt"`` (default) adds it to the prompt's positions only: in a cached generation
    loop that is the prefill pass (the hook sees more than one column), and the generated tokens
    read the steered prompt through attention. Adding it to every generated token too
    (``where="all"``) drives a tiny model off its vocabulary into noise at scale 1 (measured on
    the test zoo: refusal 0.71 at scale 0.5, garbled text at 1), which no judge reads as a
    refusal; steering the prompt restores refusal at scale 1.
    """
    import torch

    from llmrca.models.forward import residual_hook

    if where not in ("prompt", "all"):
        raise InvalidArgumentError(f"where must be 'prompt' or 'all'; got {where!r}")
    vector = torch.as_tensor(np.asarray(direction, dtype=np.float64))

    def add(hidden):
        if where == "prompt" and hidden.shape[1] == 1:
            return None  # a decode step: one new token
        return hidden + float(scale) * vector.to(device=hidden.device, dtype=hidden.dtype)

    layer, point = (0, "input") if int(state) == 0 else (int(state) - 1, "output")
    return residual_hook(model, layer, add, point=point)


def sample_with_intervention(loaded, prompts: Sequence[Any], *, intervention: str | None,
                             hooks: Callable[[], Any] | None, samples: int, seed: int,
                             temperature: float = 1.0, max_new_tokens: int = 24,
                             batch_size: int = 16) -> pd.DataFrame:
    """Sample ``samples`` continuations of each rendered prompt, under ``hooks()`` if given.

    ``intervention`` (a content id of what the hooks do) marks the backend and therefore every
    key as intervened; with ``hooks=None`` it must be None (a clean baseline, checked clean).
    Seeds derive from ``(seed, prompt id, sample index)``: baseline and intervened runs draw
    the same uniforms, so their difference is the intervention's.

    Returns
    -------
    DataFrame
        ``prompt_index, sample_index, seed, output, engine``.
    """
    from llmrca.ids import content_int
    from llmrca.replay import Decoding, TransformersBackend

    if (hooks is None) != (intervention is None):
        raise InvalidArgumentError("hooks and intervention go together: an intervened run needs "
                                   "both, a clean one neither")
    backend = TransformersBackend(loaded, batch_size=batch_size, intervention=intervention)
    decoding = Decoding(temperature=float(temperature), max_new_tokens=int(max_new_tokens))
    jobs = [(i, j, content_int(int(seed), p.prompt_id, j)) for i, p in enumerate(prompts)
            for j in range(int(samples))]
    with (hooks() if hooks is not None else ExitStack()):
        outs = backend.generate([list(prompts[i].token_ids) for i, _, _ in jobs], decoding,
                                [s for _, _, s in jobs])
    return pd.DataFrame({"prompt_index": [i for i, _, _ in jobs],
                         "sample_index": [j for _, j, _ in jobs],
                         "seed": [s for _, _, s in jobs], "output": [o.text for o in outs],
                         "engine": backend.engine})
