"""The attribution methods: captum's perturbation methods over prompt segments, and layer
integrated gradients over prompt tokens.

Segment attribution goes through captum's ``LLMAttribution`` with a ``TextTemplateInput`` (the
rendered prompt with one slot per segment). Its forward function is replaced by
:class:`SegmentScorer`'s, which (a) scores a whole batch of perturbed prompts in one left-padded
forward pass (captum's own runs one prompt at a time and cannot take
``perturbations_per_eval > 1``), (b) encodes prompts as replay does (no special tokens added:
the chat template wrote them) and (c) scores a weighted sum of targets, so the contrastive target
``log p(offending) - log p(refusal)`` is one forward function.

Token attribution is captum's ``LLMGradientAttribution(LayerIntegratedGradients)`` on the
embedding layer that :func:`llmrca.models.model_parts` finds; IG is linear in the target, so
the contrastive target is the difference of two runs.

Nothing here draws (figures are :mod:`llmrca.viz`); torch and captum are imported on use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrca.errors import InvalidArgumentError
from llmrca.registry import Registry

__all__ = ["SEGMENT_METHODS", "SegmentScores", "TokenScores", "WeightedTarget",
           "segment_attribution", "token_attribution"]


@dataclass(frozen=True)
class WeightedTarget:
    """``weight * log p(token_ids | prompt)`` summed over tokens; targets add up."""

    token_ids: tuple[int, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class SegmentScores:
    """Per-segment attribution of one prompt.

    ``scores[i]`` is captum's attribution of segment ``i``; ``full_score`` the target on the
    whole prompt, ``empty_score`` with every segment replaced by its baseline.
    """

    scores: tuple[float, ...]
    full_score: float
    empty_score: float
    forward_passes: int


@dataclass(frozen=True)
class TokenScores:
    """Per-token IG attribution of one prompt.

    Attributes
    ----------
    tokens : tuple of str
        The attributed prompt tokens (special tokens skipped).
    positions : tuple of int
        Their positions in the prompt.
    scores : tuple of float
        Attribution of each token to the target (summed over target tokens).
    per_target : tuple of tuple of float
        ``[n_target_tokens][n_tokens]`` (for the heatmap); empty for contrastive targets.
    full_score, baseline_score : float
        The target on the prompt and on the baseline prompt (attributed tokens -> baseline id).
    completeness_gap : float
        ``sum(scores) - (full_score - baseline_score)``: IG's convergence error.
    """

    tokens: tuple[str, ...]
    positions: tuple[int, ...]
    scores: tuple[float, ...]
    per_target: tuple[tuple[float, ...], ...]
    full_score: float
    baseline_score: float
    completeness_gap: float


def _captum_llm():
    try:
        from captum.attr import LLMAttribution  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - captum is a dependency
        raise InvalidArgumentError("attribution needs captum: pip install 'captum>=0.7'") from exc
    return LLMAttribution


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _make_scorer_class():
    LLMAttribution = _captum_llm()

    class SegmentScorer(LLMAttribution):  # type: ignore[misc, valid-type]
        """``LLMAttribution`` whose forward function scores batches of perturbed prompts."""

        def __init__(self, attr_method, tokenizer, model, targets: Sequence[WeightedTarget],
                     batch_size: int):
            super().__init__(attr_method, tokenizer, attr_target="log_prob")
            self.include_per_token_attr = False  # the target may be a contrast of two outputs
            self._model, self._targets, self._batch_size = model, list(targets), batch_size
            self.forward_passes = 0

        def score_texts(self, texts: Sequence[str]):
            import torch

            from llmrca.models.forward import batch_target_logprobs

            prompts = [_encode(self.tokenizer, t) for t in texts]
            total = torch.zeros(len(prompts), dtype=torch.float64)
            for target in self._targets:
                pairs = [(p, target.token_ids) for p in prompts]
                lps = batch_target_logprobs(self._model, self.tokenizer, pairs,
                                            batch_size=self._batch_size)
                self.forward_passes += -(-len(pairs) // self._batch_size)
                total += target.weight * torch.tensor([float(x.sum()) for x in lps],
                                                      dtype=torch.float64)
            return total

        def _forward_func(self, perturbed_tensor, inp, *_args, **_kwargs):
            rows = perturbed_tensor.reshape(-1, inp.n_itp_features)
            texts = [inp.to_model_input(row[None]) for row in rows]
            return self.score_texts(texts).to(torch_float()).to(rows.device)

    return SegmentScorer


def torch_float():
    import torch

    return torch.float32


def _perturbation_method(name: str, model_fn):
    from captum.attr import FeatureAblation, ShapleyValueSampling

    return {"ablation": FeatureAblation, "shapley": ShapleyValueSampling}[name](model_fn)


#: Segment methods: name -> captum class name (extension point; ``ig`` is token-level).
SEGMENT_METHODS: Registry[str] = Registry("segment attribution method")
SEGMENT_METHODS.register("ablation", "FeatureAblation")
SEGMENT_METHODS.register("shapley", "ShapleyValueSampling")


def segment_attribution(model, tokenizer, template: str, values: Sequence[str],
                        baselines: Sequence[str], targets: Sequence[WeightedTarget], *,
                        method: str = "ablation", perturbations_per_eval: int = 16,
                        shapley_samples: int = 25, seed: int = 0,
                        batch_size: int = 16) -> SegmentScores:
    """Attribute a target to the segments of a templated prompt.

    Parameters
    ----------
    template, values, baselines
        A ``str.format`` template with numbered slots, the segment texts and what replaces each
        segment when it is "absent" (``""``: removal; pad tokens: the pad baseline).
    targets
        The target is ``sum(weight * log p(tokens | prompt))``.
    method : ``ablation`` or ``shapley``
    perturbations_per_eval : int
        Perturbed prompts scored per forward batch (1: captum's one-at-a-time behaviour; the
        scores do not depend on it).
    shapley_samples, seed
        Permutations sampled by Shapley value sampling, and the torch seed drawn from.
    """
    import torch
    from captum.attr import TextTemplateInput

    SEGMENT_METHODS.get(method)
    if int(perturbations_per_eval) < 1:
        raise InvalidArgumentError(f"perturbations_per_eval must be >= 1; got "
                                   f"{perturbations_per_eval}")
    if not values:
        raise InvalidArgumentError("no segments to attribute")
    scorer_class = _make_scorer_class()
    placeholder = _perturbation_method(method, model)
    scorer = scorer_class(placeholder, tokenizer, model, targets, batch_size)
    inp = TextTemplateInput(template, values=list(values), baselines=list(baselines))
    kwargs: dict[str, Any] = {"perturbations_per_eval": int(perturbations_per_eval)}
    if method == "shapley":
        kwargs["n_samples"] = int(shapley_samples)
        torch.manual_seed(int(seed))
    # target is given as token ids we never use (the scorer knows its targets); captum insists
    # on one. use_cached_outputs/forward_in_tokens are ignored by our forward function.
    dummy = torch.tensor(list(targets[0].token_ids))
    with torch.no_grad():
        result = scorer.attribute(inp, target=dummy, use_cached_outputs=False,
                                  forward_in_tokens=False, **kwargs)
        full, empty = scorer.score_texts([template.format(*values), template.format(*baselines)])
    return SegmentScores(scores=tuple(float(x) for x in result.seq_attr.cpu().tolist()),
                         full_score=float(full), empty_score=float(empty),
                         forward_passes=scorer.forward_passes)


class _ReplayEncoding:
    """A tokenizer whose ``encode`` adds no special tokens (the chat template wrote them), as
    replay encodes prompts; everything else is the wrapped tokenizer's."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def encode(self, text, return_tensors=None, add_special_tokens=False, **kwargs):
        import torch

        ids = _encode(self._tokenizer, text)
        return torch.tensor([ids]) if return_tensors == "pt" else ids

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def _ig_run(model, tokenizer, text: str, target_ids: Sequence[int], baseline_id: int,
            skip_ids: Sequence[int], n_steps: int):
    import torch
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    from llmrca.models.architectures import model_parts

    wrapped = _ReplayEncoding(tokenizer)
    lig = LayerIntegratedGradients(model, model_parts(model).embeddings)
    llm = LLMGradientAttribution(lig, wrapped)
    inp = TextTokenInput(text, wrapped, baselines=int(baseline_id),
                         skip_tokens=list(skip_ids) or None)
    result = llm.attribute(inp, target=torch.tensor(list(target_ids)), n_steps=int(n_steps))
    return inp, result


def token_attribution(model, tokenizer, text: str, targets: Sequence[WeightedTarget], *,
                      baseline_id: int, n_steps: int = 64) -> TokenScores:
    """Layer integrated gradients of the target with respect to the prompt's token embeddings.

    Special tokens (the chat template's) are not attributed; the attributed tokens' baseline is
    ``baseline_id`` (the pad token). ``completeness_gap`` checks IG against a direct computation
    of ``target(prompt) - target(baseline prompt)``.
    """
    from llmrca.models.forward import target_logprobs

    skip = sorted(set(getattr(tokenizer, "all_special_ids", []) or []))
    prompt = _encode(tokenizer, text)
    if not prompt:
        raise InvalidArgumentError("the prompt has no tokens")
    scores = None
    per_target: tuple[tuple[float, ...], ...] = ()
    inp = None
    for target in targets:
        inp, result = _ig_run(model, tokenizer, text, target.token_ids, baseline_id, skip,
                              n_steps)
        part = result.seq_attr.detach().double().cpu() * target.weight
        scores = part if scores is None else scores + part
        if len(targets) == 1:
            per_target = tuple(tuple(float(x) * target.weight for x in row)
                               for row in result.token_attr.detach().cpu().tolist())
    assert inp is not None and scores is not None  # targets is never empty (checked by caller)
    mask = [t not in set(skip) for t in prompt]
    positions = tuple(i for i, keep in enumerate(mask) if keep)
    baseline_prompt = [t if not keep else int(baseline_id) for t, keep in zip(prompt, mask)]
    full = sum(t.weight * float(target_logprobs(model, tokenizer, prompt, t.token_ids).sum())
               for t in targets)
    base = sum(t.weight * float(target_logprobs(model, tokenizer, baseline_prompt,
                                                t.token_ids).sum()) for t in targets)
    total = float(scores.sum())
    tokens = tuple(str(v) for v in inp.values)
    return TokenScores(tokens=tokens, positions=positions,
                       scores=tuple(float(x) for x in scores.tolist()), per_target=per_target,
                       full_score=full, baseline_score=base,
                       completeness_gap=total - (full - base))
