"""Activation patching across versions, and the checks that make it meaningful.

The target (failing) version runs on ``prompt + output`` with its residual stream at one
hidden-state index replaced by the source (safe) version's on the same tokens. The contrastive
gap is ``log p(offending output | prompt) - log p(contrast | prompt)`` (sums over the output
tokens, teacher-forced); the share a patch restores is
``(gap_target - gap_patched) / (gap_target - gap_source)``: 1 = the patched target behaves like
the source, 0 = the patch changed nothing. When source and target agree (a model patched into
itself) the gap to close is 0 and the share is NaN; ``restored`` is then 0.

Positions: ``last`` (the last prompt token), ``prompt`` (every prompt token) or ``all`` (every
token, the output's included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from llmrca.errors import InvalidArgumentError, LlmrcaError

__all__ = ["IncompatibleModelsError", "architecture_signature", "check_compatible",
           "patch_layers", "tokenizer_fingerprint"]

POSITIONS = ("last", "prompt", "all")
SPANS = ("output", "first")


class IncompatibleModelsError(LlmrcaError, ValueError):
    """Two models cannot be patched or diffed into each other.

    Attributes
    ----------
    what : str
        ``tokenizer`` or ``architecture``.
    first, second : str
        What each side has (fingerprints or the first differing shape).
    """

    def __init__(self, what: str, first: str, second: str, detail: str = ""):
        self.what, self.first, self.second = what, first, second
        super().__init__(f"the two models have different {what}s ({first} vs {second})"
                         + (f": {detail}" if detail else "") + "; activation patching and weight "
                         "diffs need the same architecture and tokenizer")


def tokenizer_fingerprint(tokenizer) -> str:
    """16 hex digits over the vocabulary (token -> id) and the special tokens."""
    from llmrca.ids import content_id

    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    return content_id({"vocab": vocab, "special": special}, digits=16)


def architecture_signature(model) -> dict[str, list[int]]:
    """Parameter name -> shape (the layout two models must share)."""
    return {name: list(p.shape) for name, p in model.named_parameters()}


def check_compatible(first, second) -> None:
    """Raise :class:`IncompatibleModelsError` unless two LoadedModels share tokenizer and shapes."""
    from llmrca.models.architectures import model_parts

    ta, tb = tokenizer_fingerprint(first.tokenizer), tokenizer_fingerprint(second.tokenizer)
    if ta != tb:
        raise IncompatibleModelsError("tokenizer", ta, tb)
    pa, pb = model_parts(first.model), model_parts(second.model)
    if pa.n_layers != pb.n_layers:
        raise IncompatibleModelsError("architecture", f"{pa.n_layers} layers",
                                      f"{pb.n_layers} layers")
    sa, sb = architecture_signature(first.model), architecture_signature(second.model)
    if sa != sb:
        diff = sorted(set(sa) ^ set(sb)) or [n for n in sa if sa[n] != sb[n]]
        name = diff[0]
        raise IncompatibleModelsError("architecture", f"{name} {sa.get(name)}",
                                      f"{name} {sb.get(name)}", f"{len(diff)} parameter(s) "
                                      f"differ")


def _hook_point(state: int) -> tuple[int, str]:
    # Hidden-state index -> (decoder layer, hook point).
    return (0, "input") if state == 0 else (state - 1, "output")


def _record_all(model, ids: Sequence[int]) -> list:
    """The residual at every hidden-state point (pre final norm for the last) of one sequence."""
    import torch

    from llmrca.models.architectures import model_parts
    from llmrca.models.forward import causal_forward, residual_hook

    n_layers = model_parts(model).n_layers
    recorded: list = [None] * (n_layers + 1)

    def keeper(state):
        def keep(hidden):
            recorded[state] = hidden.detach().clone()
        return keep

    from contextlib import ExitStack

    tensor = torch.tensor([list(ids)])
    mask = torch.ones_like(tensor)
    with ExitStack() as stack, torch.inference_mode():
        for state in range(n_layers + 1):
            layer, point = _hook_point(state)
            stack.enter_context(residual_hook(model, layer, keeper(state), point=point))
        causal_forward(model, tensor, mask, mask.cumsum(-1) - 1)
    return recorded


def _logprob(model, ids: Sequence[int], n_prompt: int, span: slice) -> tuple[float, object]:
    """Sum of the teacher-forced log-probs of the output tokens in ``span``, and the logits."""
    import torch

    from llmrca.models.forward import causal_forward

    tensor = torch.tensor([list(ids)])
    mask = torch.ones_like(tensor)
    with torch.inference_mode():
        logits, _ = causal_forward(model, tensor, mask, mask.cumsum(-1) - 1)
    lp = torch.log_softmax(logits[0, n_prompt - 1:-1].float(), -1)
    target = tensor[0, n_prompt:]
    return float(lp.gather(-1, target[:, None])[span].sum()), logits


def _spans(offending: Sequence[int], contrast: Sequence[int], span: str) -> tuple[slice, slice]:
    if span == "output":
        return slice(None), slice(None)
    # The first output token where the two part ways: both are conditioned on the shared prefix.
    first = next((j for j, (a, b) in enumerate(zip(offending, contrast)) if a != b),
                 min(len(offending), len(contrast)) - 1)
    return slice(first, first + 1), slice(first, first + 1)


def patch_layers(source, target, cases: Sequence[tuple[Sequence[int], Sequence[int],
                                                        Sequence[int]]], *,
                 positions: str = "last", span: str = "output",
                 states: Sequence[int] | None = None) -> pd.DataFrame:
    """Patch the source model's residual into the target model, hidden-state index by index.

    Parameters
    ----------
    source, target : torch models
        Same architecture (checked by the caller with :func:`check_compatible`).
    cases : sequence of ``(prompt_ids, offending_ids, contrast_ids)``
    positions : ``last``, ``prompt`` or ``all``
    span : ``output`` or ``first``
        The gap over the whole output (sum of its tokens' log-probs), or at the first output
        token where the offending output and the contrast differ (the decision).
    states : hidden-state indices to patch (default: all, ``0..n_layers``)

    Returns
    -------
    DataFrame
        ``case, state, gap_target, gap_source, gap_patched, restored, share, max_logit_change``
        (``max_logit_change``: the patched target's largest change of any logit, for invariance
        checks).
    """
    import torch

    from llmrca.models.architectures import model_parts
    from llmrca.models.forward import residual_hook

    if positions not in POSITIONS:
        raise InvalidArgumentError(f"positions must be one of {', '.join(POSITIONS)}; "
                                   f"got {positions!r}")
    if span not in SPANS:
        raise InvalidArgumentError(f"span must be one of {', '.join(SPANS)}; got {span!r}")
    n_layers = model_parts(target).n_layers
    chosen = list(range(n_layers + 1)) if states is None else [int(s) for s in states]
    for s in chosen:
        if not 0 <= s <= n_layers:
            raise InvalidArgumentError(f"hidden-state index {s} out of range 0..{n_layers}")
    rows = []
    for case, (prompt, offending, contrast) in enumerate(cases):
        prompt = [int(t) for t in prompt]
        if not prompt or not offending or not contrast:
            raise InvalidArgumentError(f"case {case}: prompt, offending and contrast need tokens")
        n_prompt = len(prompt)
        seqs = [prompt + [int(t) for t in offending], prompt + [int(t) for t in contrast]]
        spans = _spans(seqs[0][n_prompt:], seqs[1][n_prompt:], span)
        src = [_logprob(source, s, n_prompt, sp)[0] for s, sp in zip(seqs, spans)]
        clean = [_logprob(target, s, n_prompt, sp) for s, sp in zip(seqs, spans)]
        recorded = [_record_all(source, s) for s in seqs]
        gap_target, gap_source = clean[0][0] - clean[1][0], src[0] - src[1]
        for state in chosen:
            layer, point = _hook_point(state)
            patched, change = [], 0.0
            for k, seq in enumerate(seqs):
                donor = recorded[k][state]

                def replace(hidden, donor=donor, n_prompt=n_prompt):
                    new = hidden.clone()
                    if positions == "last":
                        new[:, n_prompt - 1] = donor[:, n_prompt - 1]
                    elif positions == "prompt":
                        new[:, :n_prompt] = donor[:, :n_prompt]
                    else:
                        new[:] = donor
                    return new

                with residual_hook(target, layer, replace, point=point):
                    value, logits = _logprob(target, seq, n_prompt, spans[k])
                patched.append(value)
                change = max(change, float(torch.max(torch.abs(
                    logits - clean[k][1]))))  # type: ignore[operator]
            gap_patched = patched[0] - patched[1]
            to_close = gap_target - gap_source
            restored = gap_target - gap_patched
            rows.append({"case": case, "state": state, "gap_target": gap_target,
                         "gap_source": gap_source, "gap_patched": gap_patched,
                         "restored": restored,
                         "share": restored / to_close if abs(to_close) > 1e-6 else np.nan,
                         "max_logit_change": change})
    return pd.DataFrame(rows)
