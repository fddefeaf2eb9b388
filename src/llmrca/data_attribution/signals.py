"""The three signals of training-data search, each a similarity of every example to every query.

Every signal returns a :class:`SignalScores`: one score per (example, offending interaction) and
the example's score, the best over interactions (an example is suspect when it explains *one*
offending interaction well; the incident's interactions often ask different things).

What "caused the incident behaviour" means here: an example that teaches the offending output
(its completion resembles the logged output) **for** a prompt like the offending one (its prompt
resembles the offending prompt). Benign examples can share the answer's shape ("Sure! Here is
how to ...") and safe examples can share the prompt's task; only the examples that pair both
are what the incident looks like. So ``lexical`` and ``representation`` measure the prompt and the
completion separately and combine them as a soft AND: the geometric mean of the two percentile
ranks (:func:`soft_and`). ``gradient`` gets the pairing for free: the gradient of the loss of the
offending output *given* the offending prompt.

* ``lexical`` -- BM25 (``rank_bm25.BM25Okapi``) of the offending prompt against each example's
  prompt, and of the logged output against each completion.
* ``representation`` -- cosine of hidden states at one layer of the version's model: the prompt's
  last token (what the model has read when it starts answering) and the mean over the completion's
  tokens, each centred on the training examples' mean (hidden states share a large common
  component that makes raw cosines all close to 1).
* ``gradient`` -- TracIn with the version's weights as the one checkpoint (Pruthi et al. 2020):
  cosine between the per-example gradient of the completion's loss and the incident's, on a
  parameter subset (the last block, the final norm and the output head), optionally count-sketched
  to a fixed width so large models fit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrca.data_attribution.examples import QueryCase, TrainingExample, encode_pair
from llmrca.errors import InvalidArgumentError

__all__ = ["SIGNALS", "SignalScores", "default_layer", "gradient_scores", "lexical_scores",
           "percentile_ranks", "representation_scores", "soft_and"]

#: The signals, in the order results list them.
SIGNALS = ("lexical", "representation", "gradient")

#: Parameter subsets the gradient signal can use.
GRADIENT_SUBSETS = ("last-block", "last-block+head")


@dataclass(frozen=True)
class SignalScores:
    """One signal's scores.

    Attributes
    ----------
    signal : str
    example_ids : tuple of str
        In the order the examples were given (scores do not depend on that order).
    scores : numpy.ndarray
        ``[n_examples]``: the example's score (higher = more suspect).
    per_query : numpy.ndarray
        ``[n_examples, n_queries]``: its score against each offending interaction.
    query_ids : tuple of str
    seconds : float
        Wall time of the computation (model loading excluded).
    info : dict
        Signal-specific provenance (layer, parameter subset, sketch width...).
    """

    signal: str
    example_ids: tuple[str, ...]
    scores: np.ndarray
    per_query: np.ndarray
    query_ids: tuple[str, ...]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def examples_per_second(self) -> float:
        return len(self.example_ids) / self.seconds if self.seconds > 0 else float("inf")


#: Values closer than this share of a column's range are ties: the same text scored through a
#: different summation order (BM25's IDF sums, a different batch's padding) must not rank
#: differently, or the ranking would depend on the order of the examples.
TIE_TOLERANCE = 1e-6


def _tolerant_ranks(column: np.ndarray) -> np.ndarray:
    order = np.argsort(column, kind="stable")
    ordered = column[order]
    span = float(ordered[-1] - ordered[0]) if len(ordered) else 0.0
    starts = np.concatenate([[True], np.diff(ordered) > TIE_TOLERANCE * max(span, 1e-12)])
    group = np.cumsum(starts) - 1
    positions = np.arange(1, len(column) + 1, dtype=float)
    mean_rank = np.bincount(group, positions) / np.bincount(group)
    ranks = np.empty(len(column))
    ranks[order] = mean_rank[group]
    return ranks


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Column-wise rank / n in (0, 1] (near-ties share their average rank): 1 = most similar."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return _tolerant_ranks(values) / max(len(values), 1)
    return np.stack([_tolerant_ranks(values[:, j]) for j in range(values.shape[1])],
                    axis=1) / max(len(values), 1)


def soft_and(prompt_similarity: np.ndarray, completion_similarity: np.ndarray) -> np.ndarray:
    """Geometric mean of the two percentile ranks, per (example, query).

    High only when *both* the prompt and the completion are among the most similar: an example
    with the offending answer shape but an unrelated prompt (or the offending prompt's task but a
    refusal) scores about the square root of a middling rank.
    """
    return np.sqrt(percentile_ranks(prompt_similarity) * percentile_ranks(completion_similarity))


def _finish(signal: str, examples: Sequence[TrainingExample], queries: Sequence[QueryCase],
            per_query: np.ndarray, start: float, **info: Any) -> SignalScores:
    per_query = np.asarray(per_query, dtype=float)
    return SignalScores(signal, tuple(e.example_id for e in examples), per_query.max(axis=1),
                        per_query, tuple(q.interaction_id for q in queries),
                        time.perf_counter() - start, info)


def _check_unique(examples: Sequence[TrainingExample]) -> None:
    ids = [e.example_id for e in examples]
    if len(set(ids)) != len(ids):
        raise InvalidArgumentError("training example ids must be unique")


# -- lexical ----------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lexical_scores(examples: Sequence[TrainingExample], queries: Sequence[QueryCase]
                   ) -> SignalScores:
    """BM25 of prompts against prompts and outputs against completions, combined by
    :func:`soft_and`."""
    from rank_bm25 import BM25Okapi

    _check_unique(examples)
    start = time.perf_counter()
    # BM25Okapi divides by the mean document length: an empty corpus entry is fine, an empty
    # corpus is not (search_training_data never gets here without examples).
    prompts = BM25Okapi([_words(e.prompt_text) or [""] for e in examples])
    completions = BM25Okapi([_words(e.completion) or [""] for e in examples])
    prompt_sim = np.stack([prompts.get_scores(_words(q.prompt_text)) for q in queries], axis=1)
    completion_sim = np.stack([completions.get_scores(_words(q.output)) for q in queries], axis=1)
    return _finish("lexical", examples, queries, soft_and(prompt_sim, completion_sim), start,
                   method="BM25Okapi(k1=1.5, b=0.75), \\w+ lower-cased words",
                   combine="geometric mean of prompt and completion percentile ranks; "
                           "max over offending interactions")


# -- representation -----------------------------------------------------------------------------------

def default_layer(model) -> int:
    """A middle hidden-state index: ``n_layers // 2 + 1`` (after the middle block)."""
    from llmrca.models.architectures import model_parts

    return model_parts(model).n_layers // 2 + 1


def _pairs(tokenizer, items) -> list[tuple[list[int], list[int]]]:
    return [encode_pair(tokenizer, item.messages,
                        item.completion if isinstance(item, TrainingExample) else item.output)
            for item in items]


def _prompt_and_completion_states(loaded, pairs, layer: int, batch_size: int
                                  ) -> tuple[np.ndarray, np.ndarray]:
    from llmrca.models.forward import hidden_states

    states = hidden_states(loaded.model, loaded.tokenizer, [p + c for p, c in pairs],
                           layers=[layer], positions="all", batch_size=batch_size)
    prompt = np.stack([s[len(p) - 1, 0] for s, (p, _c) in zip(states, pairs)])
    completion = np.stack([s[len(p):, 0].mean(axis=0) for s, (p, _c) in zip(states, pairs)])
    return prompt.astype(np.float64), completion.astype(np.float64)


def _centred_cosine(examples: np.ndarray, queries: np.ndarray, centre: np.ndarray) -> np.ndarray:
    a, b = examples - centre, queries - centre
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def representation_scores(loaded, examples: Sequence[TrainingExample],
                          queries: Sequence[QueryCase], *, layer: int | None = None,
                          batch_size: int = 32) -> SignalScores:
    """Centred hidden-state cosines (prompt's last token; completion mean) at ``layer``.

    ``layer`` is a hidden-state index (0 = embeddings, ``n_layers`` = after the last block);
    default :func:`default_layer`.
    """
    from llmrca.models.architectures import model_parts
    from llmrca.models.forward import _state_indices

    _check_unique(examples)
    n_states = model_parts(loaded.model).n_layers + 1
    chosen = default_layer(loaded.model) if layer is None else _state_indices(int(layer),
                                                                             n_states)[0]
    start = time.perf_counter()
    tokenizer = loaded.tokenizer
    ex_prompt, ex_completion = _prompt_and_completion_states(loaded, _pairs(tokenizer, examples),
                                                             chosen, batch_size)
    q_prompt, q_completion = _prompt_and_completion_states(loaded, _pairs(tokenizer, queries),
                                                           chosen, batch_size)
    prompt_sim = _centred_cosine(ex_prompt, q_prompt, ex_prompt.mean(axis=0))
    completion_sim = _centred_cosine(ex_completion, q_completion, ex_completion.mean(axis=0))
    return _finish("representation", examples, queries, soft_and(prompt_sim, completion_sim),
                   start, layer=int(chosen), positions="prompt last token; completion mean",
                   centring="training examples' mean")


# -- gradient ---------------------------------------------------------------------------------------

def _gradient_parameters(model, subset: str) -> list[tuple[str, Any]]:
    from llmrca.models.architectures import model_parts

    if subset not in GRADIENT_SUBSETS:
        raise InvalidArgumentError(f"gradient parameter subset must be one of "
                                   f"{list(GRADIENT_SUBSETS)}; got {subset!r}")
    parts = model_parts(model)
    modules = [parts.layers[-1]] + ([parts.final_norm] if parts.final_norm is not None else [])
    if subset == "last-block+head" and parts.lm_head is not None:
        modules.append(parts.lm_head)
    chosen: dict[int, tuple[str, Any]] = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for module in modules:
        for parameter in module.parameters():
            chosen.setdefault(id(parameter), (names.get(id(parameter), "?"), parameter))
    return list(chosen.values())


#: Below this many parameters a CPU model's one-example passes run on one thread: they are too
#: small to split, and splitting them on a busy machine made them several times slower.
SMALL_MODEL_PARAMETERS = 50_000_000


@contextmanager
def _threads_for(model) -> Iterator[None]:
    import torch

    parameter = next(model.parameters())
    small = sum(int(p.numel()) for p in model.parameters()) < SMALL_MODEL_PARAMETERS
    if parameter.device.type != "cpu" or not small:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Sketch:
    """Count sketch of a flat gradient to ``width`` buckets (seeded hash and signs): inner
    products are preserved in expectation, memory stays O(width) per example."""

    def __init__(self, size: int, width: int, seed: int):
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        self.bucket = torch.randint(0, int(width), (size,), generator=generator)
        self.sign = torch.randint(0, 2, (size,), generator=generator).float() * 2 - 1
        self.width = int(width)

    def __call__(self, flat):
        import torch

        out = torch.zeros(self.width, dtype=flat.dtype)
        return out.index_add_(0, self.bucket, flat * self.sign)


def _flat_gradients(model, parameters, pairs, sketch, queries=None) -> np.ndarray:
    """One row per (prompt, completion): the gradient of the completion's mean token loss.

    With ``queries`` (unit rows), each row is instead its cosines with them: one example's
    gradient is held at a time, so memory does not grow with the number of examples.
    """
    import torch

    from llmrca.models.architectures import model_parts
    from llmrca.models.forward import causal_forward

    params = [p for _n, p in parameters]
    flags = [p.requires_grad for p in model.parameters()]
    rows = []
    # A tied output head is the input embedding too: without this, its gradient would flow back
    # through every block to the input (a whole-model backward for a last-block gradient). The
    # subset is the head's use of those weights; the input side is cut off.
    cut = model_parts(model).embeddings.register_forward_hook(
        lambda _module, _args, output: output.detach())
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        device = next(model.parameters()).device
        for prompt, completion in pairs:
            ids = torch.tensor([prompt + completion], device=device)
            mask = torch.ones_like(ids)
            with torch.enable_grad():
                logits, _ = causal_forward(model, ids, mask, (mask.cumsum(-1) - 1))
                target = ids[0, len(prompt):]
                logprobs = torch.log_softmax(logits[0, len(prompt) - 1:-1].float(), -1)
                loss = -logprobs.gather(-1, target[:, None]).mean()
                grads = torch.autograd.grad(loss, params)
            flat = torch.cat([g.reshape(-1) for g in grads]).detach().float().cpu()
            row = (sketch(flat) if sketch is not None else flat).numpy().astype(np.float64)
            if queries is not None:
                row = queries @ (row / max(float(np.linalg.norm(row)), 1e-30))
            rows.append(row)
    finally:
        cut.remove()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return np.stack(rows).astype(np.float64)


def gradient_scores(loaded, examples: Sequence[TrainingExample], queries: Sequence[QueryCase],
                    *, subset: str = "last-block+head", sketch_width: int | None = None,
                    seed: int = 0) -> SignalScores:
    """TracIn-style gradient cosines on a parameter subset (one checkpoint: the version).

    Parameters
    ----------
    subset : ``last-block+head`` or ``last-block``
        Which parameters' gradients are compared (the last decoder block and final norm, with or
        without the output head; a tied head is the input embedding, counted once).
    sketch_width : int, optional
        Count-sketch the gradients to this many buckets (seeded by ``seed``); default: exact
        dot products on the subset.
    """
    _check_unique(examples)
    model = loaded.model
    parameters = _gradient_parameters(model, subset)
    size = sum(int(p.numel()) for _n, p in parameters)
    sketch = None
    if sketch_width is not None:
        if int(sketch_width) < 1:
            raise InvalidArgumentError(f"sketch_width must be >= 1; got {sketch_width}")
        sketch = _Sketch(size, int(sketch_width), seed)
    start = time.perf_counter()
    tokenizer = loaded.tokenizer
    with _threads_for(model):
        query_grads = _flat_gradients(model, parameters, _pairs(tokenizer, queries), sketch)
        unit = query_grads / np.maximum(np.linalg.norm(query_grads, axis=1, keepdims=True),
                                        1e-30)
        cosines = _flat_gradients(model, parameters, _pairs(tokenizer, examples), sketch, unit)
    return _finish("gradient", examples, queries, cosines, start, subset=subset,
                   parameters=size, parameter_names=[n for n, _p in parameters],
                   sketch_width=sketch_width, checkpoint="the version's weights",
                   similarity="cosine of per-example completion-loss gradients")
