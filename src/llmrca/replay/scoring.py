"""Teacher-forced scoring: how likely is a given output under a model version?

The output is appended to the rendered prompt and one forward pass gives the log-probability of
each of its tokens (log-softmax at temperature 1) and the model's own top choice at each position.
Batches are left-padded with explicit ``position_ids``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmrca import ids
from llmrca.errors import InvalidArgumentError
from llmrca.models.forward import (
    causal_forward,
    check_model_clean,
    engine_of,
    left_pad,
    model_fingerprint,
    position_ids_for,
)
from llmrca.replay.prompts import RenderedPrompt, context_window, render_prompt

__all__ = [
    "Divergence",
    "OutputScore",
    "engine_of",
    "first_divergence",
    "score_id",
    "score_output",
    "score_outputs",
    "score_versions",
]


@dataclass(frozen=True)
class OutputScore:
    """Teacher-forced log-probabilities of one output under one model version.

    Attributes
    ----------
    model_version, model_fingerprint : str
        The version scored and its fingerprint.
    prompt : RenderedPrompt
        The prompt the output was conditioned on (it may carry a truncation warning).
    token_ids : tuple of int
        The output's tokens (the output text encoded alone, without special tokens; plus the
        end-of-sequence token when ``include_eos``).
    tokens : tuple of str
        Each token as text.
    token_logprobs : tuple of float
        ``log p(token_i | prompt, tokens_<i)`` at temperature 1.
    argmax_ids : tuple of int
        The model's most likely token at each output position.
    """

    model_version: str
    model_fingerprint: str
    prompt: RenderedPrompt
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]
    argmax_ids: tuple[int, ...]

    @property
    def total_logprob(self) -> float:
        """Log-probability of the whole output."""
        return float(sum(self.token_logprobs))

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        """Per-token average (comparable across outputs of different lengths)."""
        return self.total_logprob / self.n_tokens if self.n_tokens else float("nan")


@dataclass(frozen=True)
class Divergence:
    """Where two versions first disagree on a teacher-forced output.

    Attributes
    ----------
    position : int
        Index in the output's tokens.
    token_id, token : int, str
        The output's token there.
    argmax_a, argmax_b : str
        Each version's most likely token there (text).
    logprob_a, logprob_b : float
        Each version's log-probability of the output's token there.
    reason : str
        ``argmax`` (the top choices differ) or ``logprob_gap`` (the log-probabilities differ by
        more than the threshold).
    """

    position: int
    token_id: int
    token: str
    argmax_a: str
    argmax_b: str
    logprob_a: float
    logprob_b: float
    reason: str


def _model_meta(loaded_model) -> tuple[str, str]:
    return (str(getattr(loaded_model, "name", "model")), model_fingerprint(loaded_model))


def score_id(loaded_model, prompt: RenderedPrompt, token_ids: Sequence[int], engine: str) -> str:
    """Content-addressed id of a score: model fingerprint, engine, prompt and output tokens.

    The model part is :func:`~llmrca.models.forward.model_fingerprint`, as in sample keys, so
    two versions without a fingerprint never share a score.
    """
    return ids.score_id(model_fingerprint(loaded_model), engine, prompt.prompt_id, token_ids)


def encode_output(tokenizer, output_text: str, include_eos: bool = False) -> list[int]:
    """The output's tokens as teacher forcing feeds them."""
    ids = list(tokenizer(output_text, add_special_tokens=False)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if include_eos and eos is not None:
        ids.append(int(eos))
    return ids


def score_outputs(loaded_model, items: Sequence[Mapping[str, Any]], *, batch_size: int = 16,
                  include_eos: bool = False, no_truncate: bool = False,
                  counter: list[int] | None = None) -> list[OutputScore]:
    """Teacher-forced scores of many (prompt, output) pairs under one version, batched.

    Parameters
    ----------
    loaded_model
        A :class:`llmrca.models.LoadedModel` (or anything with ``name``, ``fingerprint``,
        ``model``, ``tokenizer``).
    items : sequence of mappings
        Each with ``messages`` (OpenAI chat shape, no system message), ``system_prompt`` (or
        None) and ``output`` (the text to score); ``interaction_id`` is used in errors.
    include_eos : bool
        Also score the end-of-sequence token after the output ("and then it stops").
    no_truncate : bool
        Raise :class:`~llmrca.replay.prompts.PromptTooLongError` rather than truncate the prompt
        when prompt + output exceed the context window.
    counter : list of int, optional
        ``counter[0]`` is incremented once per forward pass.
    """
    import torch

    model, tokenizer = loaded_model.model, loaded_model.tokenizer
    # Scores are stored under the model's key like samples: a leaked hook would corrupt them.
    check_model_clean(model)
    name, fingerprint = _model_meta(loaded_model)
    window = context_window(model)
    prepared = []
    for item in items:
        output_ids = encode_output(tokenizer, item["output"], include_eos)
        if not output_ids:
            raise InvalidArgumentError(
                f"interaction {item.get('interaction_id')}: empty output to score")
        budget = None if window is None else window - len(output_ids)
        prompt = render_prompt(tokenizer, item.get("system_prompt"), item["messages"],
                               max_prompt_tokens=budget, no_truncate=no_truncate,
                               interaction_id=item.get("interaction_id"), context=window,
                               max_new_tokens=len(output_ids))
        prepared.append((prompt, output_ids))
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else (getattr(tokenizer, "eos_token_id", None) or 0)
    device = next(model.parameters()).device
    model.eval()
    scores: list[OutputScore] = []
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start:start + batch_size]
        sequences = [list(p.token_ids) + out for p, out in chunk]
        input_ids, mask = left_pad(sequences, pad, device)
        with torch.inference_mode():
            logits, _ = causal_forward(model, input_ids, mask, position_ids_for(mask))
            if counter is not None:
                counter[0] += 1
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        width = input_ids.shape[1]
        for row, (prompt, out) in enumerate(chunk):
            # Token j of the output sits at column width - len(out) + j; its distribution is
            # the logits one column to the left.
            first = width - len(out) - 1
            positions = torch.arange(first, first + len(out), device=logprobs.device)
            targets = torch.tensor(out, device=logprobs.device)
            row_lp = logprobs[row, positions]
            chosen = row_lp.gather(-1, targets[:, None])[:, 0]
            scores.append(OutputScore(
                model_version=name, model_fingerprint=fingerprint, prompt=prompt,
                token_ids=tuple(out),
                tokens=tuple(tokenizer.decode([t]) for t in out),
                token_logprobs=tuple(float(x) for x in chosen.cpu()),
                argmax_ids=tuple(int(x) for x in row_lp.argmax(-1).cpu())))
    return scores


def score_output(loaded_model, prompt_messages: Sequence[Mapping[str, Any]],
                 system_prompt: str | None, output_text: str, *,
                 include_eos: bool = False) -> OutputScore:
    """Teacher-forced log-probability of ``output_text`` after the prompt, per token and in total."""
    return score_outputs(loaded_model, [{"messages": list(prompt_messages),
                                         "system_prompt": system_prompt, "output": output_text}],
                         include_eos=include_eos)[0]


def score_versions(loaded_models: Sequence[Any], prompt_messages: Sequence[Mapping[str, Any]],
                   system_prompt: str | None, output_text: str, *,
                   include_eos: bool = False) -> dict[str, OutputScore]:
    """:func:`score_output` under each version, keyed by version name."""
    return {getattr(m, "name", str(i)): score_output(m, prompt_messages, system_prompt,
                                                     output_text, include_eos=include_eos)
            for i, m in enumerate(loaded_models)}


def first_divergence(scores_a: OutputScore, scores_b: OutputScore, *,
                     logprob_gap: float | None = None, tokenizer=None) -> Divergence | None:
    """The first output token where two versions disagree, or None if they never do.

    Versions disagree at a position when their most likely next tokens differ, or (with
    ``logprob_gap``) when their log-probabilities of the output's token differ by more than it.
    Both scores must be of the same output tokens (same tokenizer).
    """
    if scores_a.token_ids != scores_b.token_ids:
        raise InvalidArgumentError("first_divergence needs scores of the same output tokens; the "
                                   "two versions tokenized the output differently")
    for i, token in enumerate(scores_a.token_ids):
        lp_a, lp_b = scores_a.token_logprobs[i], scores_b.token_logprobs[i]
        reason = None
        if scores_a.argmax_ids[i] != scores_b.argmax_ids[i]:
            reason = "argmax"
        elif logprob_gap is not None and abs(lp_a - lp_b) > logprob_gap:
            reason = "logprob_gap"
        if reason:
            def text(tid: int) -> str:
                return tokenizer.decode([tid]) if tokenizer is not None else str(tid)
            return Divergence(position=i, token_id=token, token=scores_a.tokens[i],
                              argmax_a=text(scores_a.argmax_ids[i]),
                              argmax_b=text(scores_b.argmax_ids[i]),
                              logprob_a=lp_a, logprob_b=lp_b, reason=reason)
    return None
