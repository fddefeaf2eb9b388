"""Forward passes and model internals: padding, hidden states, teacher forcing, residual hooks.

Loaded models are shared objects (the LRU cache in :mod:`llmrca.models.loading` hands the same
``nn.Module`` to every caller), so nothing here changes a model for longer than a ``with`` block:
every hook is installed by a context manager that removes it in ``finally`` -- on an exception
and on ``KeyboardInterrupt`` too -- and :func:`model_is_clean` / :func:`check_model_clean` tell
whether any llmrca hook is still attached (the replay backend refuses to generate otherwise).

Batches are left-padded with explicit ``position_ids`` (:func:`position_ids_for`): models with
absolute positions (GPT-2) give wrong hidden states on left-padded rows without them.

Layers are numbered like decoder blocks, 0 to ``n_layers - 1``; hidden-state indices like
``output_hidden_states``, 0 (the input of block 0) to ``n_layers`` (see
:mod:`llmrca.models.architectures` for the definition of the residual stream per family).

torch is imported inside the functions, so ``import llmrca.models`` stays light.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from llmrca.errors import HookError, InvalidArgumentError
from llmrca.models.architectures import model_parts

__all__ = [
    "add_to_residual",
    "batch_target_logprobs",
    "cache_keyword",
    "causal_forward",
    "check_model_clean",
    "engine_of",
    "forward_parameters",
    "hidden_states",
    "left_pad",
    "model_fingerprint",
    "model_is_clean",
    "pad_id_of",
    "position_ids_for",
    "project_out",
    "replace_residual",
    "residual_hook",
    "target_logprobs",
]


# -- identity of what computes: part of every sample and score key ------------------------------

def model_fingerprint(loaded_model) -> str:
    """The model identity in sample and score keys: its fingerprint, or name and source without one.

    Unfingerprinted models (a hub id with no local snapshot, a model built in memory) are keyed
    by name and source: the cache then trusts that the name still means the same weights. Never
    ``"None"``: two different unfingerprinted versions must not share keys.
    """
    fp = getattr(loaded_model, "fingerprint", None)
    if fp:
        return str(fp)
    return (f"unfingerprinted:{getattr(loaded_model, 'name', '')}:"
            f"{getattr(loaded_model, 'source', '')}")


def engine_of(loaded_model, backend: str = "transformers") -> str:
    """``<backend>:<device type>:<dtype>`` of an in-process torch model (part of every key).

    The device is the loaded model's ``device`` when it has one, else its parameters'; the dtype
    is its parameters'. Generation (``TransformersBackend.engine``) and teacher-forced scoring
    (``llmrca.replay.scoring.score_id``) both key with this.
    """
    import torch

    parameter = next(loaded_model.model.parameters())
    device = getattr(loaded_model, "device", None)
    device_type = torch.device(device).type if device else parameter.device.type
    return f"{backend}:{device_type}:{str(parameter.dtype).replace('torch.', '')}"


# -- padding and one forward pass ---------------------------------------------------------------

def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device=None):
    """Left-pad token sequences: returns ``(input_ids, attention_mask)`` tensors."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def position_ids_for(attention_mask):
    """``attention_mask.cumsum(-1) - 1`` clamped at 0: positions that ignore left padding.

    GPT-2 and other absolute-position models give wrong hidden states on left-padded batches
    unless they are told where each row really starts.
    """
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def pad_id_of(tokenizer, model=None) -> int:
    """The pad token id: the tokenizer's, else its (or the model's) end-of-sequence id, else 0."""
    for value in (getattr(tokenizer, "pad_token_id", None),
                  getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "config", None), "pad_token_id", None),
                  getattr(getattr(model, "config", None), "eos_token_id", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(value[0])
    return 0


@functools.cache
def _class_forward_parameters(model_class) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def forward_parameters(model) -> frozenset[str]:
    """The parameter names of the model class's ``forward``."""
    # The class's forward, not the instance attribute: a wrapper (a hook, a call counter) on the
    # instance would hide the real parameter names. The annotated local is for mypy, which does
    # not count ``type(model)`` (``type[Any]``) as Hashable for the cache; a plain ``type`` is.
    model_class: type = type(model)
    return _class_forward_parameters(model_class)


def cache_keyword(model) -> str:
    """The KV-cache keyword of ``model.forward``: ``cache`` (transformers 5) or ``past_key_values``."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"


def _forward_kwargs(model, input_ids, attention_mask, position_ids, *, use_cache: bool,
                    logits_to_keep: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask,
                              "position_ids": position_ids, "use_cache": use_cache}
    if logits_to_keep and "logits_to_keep" in forward_parameters(model):
        kwargs["logits_to_keep"] = logits_to_keep
    return kwargs


def causal_forward(model, input_ids, attention_mask, position_ids, *, cache=None,
                   use_cache: bool = False, logits_to_keep: int = 0, cache_kwarg: str | None = None):
    """One forward pass with explicit positions; returns ``(logits, cache)``.

    ``logits_to_keep=1`` computes logits for the last position only (when the model supports it;
    otherwise all positions come back and the caller reads the last).
    """
    kwargs = _forward_kwargs(model, input_ids, attention_mask, position_ids, use_cache=use_cache,
                             logits_to_keep=logits_to_keep)
    if cache is not None:
        kwargs[cache_kwarg or cache_keyword(model)] = cache
    out = model(**kwargs)
    new_cache = None
    if use_cache:
        new_cache = out.get("cache") if "cache" in out else out.get("past_key_values")
    return out.logits, new_cache


def _device_of(model):
    return next(model.parameters()).device


def _token_lists(tokenizer, inputs, add_special_tokens: bool) -> list[list[int]]:
    if isinstance(inputs, (str, bytes)):
        raise InvalidArgumentError("expected a sequence of texts or token-id lists, got one "
                                   "string; wrap it in a list")
    sequences = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if tokenizer is None:
                raise InvalidArgumentError("texts need a tokenizer; pass token-id lists or one")
            ids = list(tokenizer(item, add_special_tokens=add_special_tokens)["input_ids"])
        else:
            ids = [int(t) for t in item]
        if not ids:
            raise InvalidArgumentError(f"input {i} has no tokens")
        sequences.append(ids)
    if not sequences:
        raise InvalidArgumentError("no inputs given")
    return sequences


def _state_indices(layers, n_states: int) -> list[int]:
    if layers is None:
        return list(range(n_states))
    if isinstance(layers, int):
        layers = [layers]
    chosen = []
    for layer in layers:
        index = int(layer)
        if not -n_states <= index < n_states:
            raise InvalidArgumentError(
                f"hidden-state index {layer} out of range: this model has {n_states} (0 = "
                f"embeddings, 1..{n_states - 1} = after each layer; negative counts from the end)")
        chosen.append(index % n_states)
    return chosen


def hidden_states(model, tokenizer, inputs, *, layers: int | Sequence[int] | None = None,
                  positions: str | Sequence[int] = "last", batch_size: int = 16,
                  add_special_tokens: bool = False):
    """Residual-stream activations of many inputs, batched with left padding.

    Parameters
    ----------
    model, tokenizer
        A causal LM and its tokenizer (the tokenizer may be None when ``inputs`` are token ids).
    inputs : sequence of str or of token-id sequences
        Texts are encoded as replay encodes rendered prompts (no special tokens added unless
        ``add_special_tokens``).
    layers : int or sequence of int, optional
        Hidden-state indices as ``output_hidden_states`` numbers them: 0 = embeddings (the
        input of block 0), ``i + 1`` = after block ``i``; the last is after the final norm.
        Negative indices count from the end. Default: all ``n_layers + 1``.
    positions : ``"last"``, ``"all"`` or sequence of int
        Token positions within each input's own tokens (negative from its end).
    batch_size : int
        Inputs per forward pass. Results equal one-at-a-time passes within float tolerance.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        float32. ``"last"``: ``[n, L, d]``; a list of P positions: ``[n, P, L, d]``; ``"all"``:
        a list of ``n`` arrays ``[len_i, L, d]``. ``L`` is the number of layers asked for.
    """
    import numpy as np
    import torch

    if int(batch_size) < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1; got {batch_size}")
    if isinstance(positions, str) and positions not in ("last", "all"):
        raise InvalidArgumentError(f"positions must be 'last', 'all' or a list of ints; "
                                   f"got {positions!r}")
    sequences = _token_lists(tokenizer, inputs, add_special_tokens)
    wanted = _state_indices(layers, model_parts(model).n_layers + 1)
    explicit = None if isinstance(positions, str) else [int(p) for p in positions]
    if explicit is not None:
        for i, seq in enumerate(sequences):
            bad = [p for p in explicit if not -len(seq) <= p < len(seq)]
            if bad:
                raise InvalidArgumentError(f"positions {bad} out of range for input {i} "
                                           f"({len(seq)} tokens)")
    pad, device = pad_id_of(tokenizer, model), _device_of(model)
    results: list[Any] = []
    with torch.inference_mode():
        for start in range(0, len(sequences), int(batch_size)):
            chunk = sequences[start:start + int(batch_size)]
            ids, mask = left_pad(chunk, pad, device)
            out = model(**_forward_kwargs(model, ids, mask, position_ids_for(mask),
                                          use_cache=False, logits_to_keep=1),
                        output_hidden_states=True)
            stacked = torch.stack([out.hidden_states[i] for i in wanted], dim=2).float().cpu()
            width = ids.shape[1]
            for row, seq in enumerate(chunk):
                real = stacked[row, width - len(seq):]  # [len, L, d]
                if positions == "last":
                    results.append(real[-1].numpy())
                elif positions == "all":
                    results.append(real.numpy().copy())
                else:
                    results.append(real[explicit].numpy())
    return results if positions == "all" else np.stack(results)


def batch_target_logprobs(model, tokenizer, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                          *, batch_size: int = 16) -> list:
    """Teacher-forced ``log p(target_j | prompt, target_<j)`` of many (prompt, target) pairs.

    One left-padded forward per batch, log-softmax at temperature 1 in float32. Runs under any
    active residual hook (that is the point: patching and ablation measure how these change).

    Returns
    -------
    list of numpy.ndarray
        One float32 array of ``len(target)`` per pair.
    """
    import torch

    if int(batch_size) < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1; got {batch_size}")
    prepared = []
    for i, (prompt, target) in enumerate(pairs):
        prompt, target = [int(t) for t in prompt], [int(t) for t in target]
        if not prompt or not target:
            raise InvalidArgumentError(f"pair {i}: prompt and target both need tokens")
        prepared.append((prompt, target))
    pad, device = pad_id_of(tokenizer, model), _device_of(model)
    results = []
    with torch.inference_mode():
        for start in range(0, len(prepared), int(batch_size)):
            chunk = prepared[start:start + int(batch_size)]
            ids, mask = left_pad([p + t for p, t in chunk], pad, device)
            logits, _ = causal_forward(model, ids, mask, position_ids_for(mask))
            width = ids.shape[1]
            for row, (_prompt, target) in enumerate(chunk):
                # Target token j sits at column width - len(target) + j; its distribution is
                # read from the logits one column to the left.
                first = width - len(target) - 1
                row_lp = torch.log_softmax(logits[row, first:first + len(target)].float(), -1)
                chosen = row_lp.gather(-1, torch.tensor(target, device=row_lp.device)[:, None])
                results.append(chosen[:, 0].cpu().numpy())
    return results


def target_logprobs(model, tokenizer, prompt_ids: Sequence[int], target_ids: Sequence[int]):
    """Teacher-forced log-probability of each target token after the prompt (float32 array)."""
    return batch_target_logprobs(model, tokenizer, [(prompt_ids, target_ids)])[0]


# -- hooks, always scoped -----------------------------------------------------------------------

#: Attribute set on every hook function llmrca registers; its value describes the hook.
HOOK_MARK = "__llmrca_hook__"


def _llmrca_hooks(module, point: str | None = None) -> list[str]:
    tables = {"output": [module._forward_hooks], "input": [module._forward_pre_hooks]}.get(
        point or "", [module._forward_hooks, module._forward_pre_hooks])
    found = []
    for table in tables:
        found += [getattr(h, HOOK_MARK) for h in table.values() if hasattr(h, HOOK_MARK)]
    return found


def _hooked_modules(model) -> list[str]:
    return [f"{name or '<model>'} ({', '.join(marks)})" for name, module in model.named_modules()
            if (marks := _llmrca_hooks(module))]


def model_is_clean(model) -> bool:
    """True when no llmrca hook is attached to any module of ``model``."""
    return not _hooked_modules(model)


def check_model_clean(model) -> None:
    """Raise :class:`~llmrca.errors.HookError` naming the modules that still carry llmrca hooks."""
    hooked = _hooked_modules(model)
    if hooked:
        raise HookError(f"the model carries llmrca hooks on {', '.join(hooked)}; generating now "
                        f"would store patched outputs under the unpatched model's keys. Hooks "
                        f"are meant to be used inside `with residual_hook(...)` only",
                        modules=hooked)


def _layer_index(layer: int, n_layers: int) -> int:
    if not -n_layers <= int(layer) < n_layers:
        raise InvalidArgumentError(f"layer {layer} out of range: this model has {n_layers} "
                                   f"decoder layers (0..{n_layers - 1}; negative from the end)")
    return int(layer) % n_layers


@contextmanager
def residual_hook(model, layer: int, fn: Callable[[Any], Any], *, position: int | None = None,
                  point: str = "output", allow_overlap: bool = False) -> Iterator[None]:
    """Read or rewrite the residual stream at one decoder layer, for the ``with`` block only.

    Parameters
    ----------
    model
        A causal LM of a family :func:`~llmrca.models.architectures.model_parts` knows.
    layer : int
        Decoder layer (0-based; negative from the end).
    fn : callable
        Called with the residual at the hook point: ``[batch, seq, d]``, or ``[batch, d]`` when
        ``position`` is given. Returns a tensor of the same shape to replace it, or None to leave
        it unchanged (to record it).
    position : int, optional
        One column of the tensor the layer sees. Under left padding, negative positions
        (``-1`` = last token) mean the same token in every row; positive ones only without
        padding. Inside a cached generation loop each decode step sees one column (``-1``).
    point : ``"output"`` or ``"input"``
        After the layer (``hidden_states[layer + 1]``, before the final norm for the last layer)
        or before it (``hidden_states[layer]``).
    allow_overlap : bool
        Allow this hook while another llmrca hook sits on the same layer and point (they
        compose in the order they were entered). Refused by default: two patches of one
        residual point are usually a mistake. The input and the output of a layer are two
        points.

    Raises
    ------
    HookError
        Another llmrca hook is on this layer's ``point`` and ``allow_overlap`` is False.
    """
    if point not in ("output", "input"):
        raise InvalidArgumentError(f"point must be 'output' or 'input'; got {point!r}")
    parts = model_parts(model)
    index = _layer_index(layer, parts.n_layers)
    module = parts.layers[index]
    label = f"{parts.layers_path}.{index}"
    existing = _llmrca_hooks(module, point)
    if existing and not allow_overlap:
        raise HookError(f"{label} already carries an llmrca hook at its {point} "
                        f"({', '.join(existing)}); stack hooks on one point only with "
                        f"allow_overlap=True", modules=[label])

    def apply(hidden):
        if position is None:
            new = fn(hidden)
            return hidden if new is None else new
        if not -hidden.shape[1] <= position < hidden.shape[1]:
            raise InvalidArgumentError(f"position {position} out of range at {label}: the "
                                       f"layer sees {hidden.shape[1]} columns")
        new = fn(hidden[:, position, :])
        if new is None:
            return hidden
        patched = hidden.clone()
        patched[:, position, :] = new
        return patched

    def after(_module, _args, output):
        if isinstance(output, tuple):
            return (apply(output[0]),) + tuple(output[1:])
        return apply(output)

    def before(_module, args, kwargs):
        if args:
            return (apply(args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": apply(kwargs["hidden_states"])}

    description = f"residual {point} hook"
    setattr(after, HOOK_MARK, description)
    setattr(before, HOOK_MARK, description)
    handle = None
    try:
        if point == "output":
            handle = module.register_forward_hook(after)
        else:
            handle = module.register_forward_pre_hook(before, with_kwargs=True)
        yield
    finally:
        if handle is not None:
            handle.remove()


def _vector_like(vector, hidden):
    import torch

    return torch.as_tensor(vector).to(device=hidden.device, dtype=hidden.dtype)


def replace_residual(model, layer: int, position: int | None, vector, *, point: str = "output",
                     allow_overlap: bool = False):
    """Context manager: set the residual at ``layer`` (and ``position``) to ``vector``.

    ``vector`` broadcasts to what the hook sees: ``[d]`` (every row), ``[batch, d]`` (one per
    row) with a position; with ``position=None`` also ``[seq, d]`` or ``[batch, seq, d]``.
    Activation patching: record a run's residual with :func:`residual_hook`, replace it in
    another run.
    """
    def replace(hidden):
        return _broadcast_to(_vector_like(vector, hidden), hidden)

    return residual_hook(model, layer, replace, position=position, point=point,
                         allow_overlap=allow_overlap)


def _broadcast_to(value, hidden):
    # ``value`` broadcast to ``hidden``'s shape, as a fresh tensor (clear error when it cannot).
    try:
        return value.expand_as(hidden).clone()
    except RuntimeError:
        raise InvalidArgumentError(f"vector of shape {tuple(value.shape)} does not fit the "
                                   f"residual of shape {tuple(hidden.shape)}") from None


def add_to_residual(model, layer: int, direction, scale: float = 1.0, *,
                    position: int | None = None, point: str = "output",
                    allow_overlap: bool = False):
    """Context manager: add ``scale * direction`` (``[d]``) to the residual at ``layer`` (steering)."""
    def add(hidden):
        return hidden + float(scale) * _broadcast_to(_vector_like(direction, hidden), hidden)

    return residual_hook(model, layer, add, position=position, point=point,
                         allow_overlap=allow_overlap)


def project_out(model, layer: int, direction, *, position: int | None = None,
                point: str = "output", allow_overlap: bool = False):
    """Context manager: remove the residual's component along ``direction`` at ``layer``.

    ``h - (h . u) u`` with ``u = direction / |direction|`` (directional ablation).
    """
    import torch

    unit = torch.as_tensor(direction).double()
    norm = float(unit.norm())
    if unit.ndim != 1 or norm == 0.0:
        raise InvalidArgumentError("project_out needs a non-zero 1-D direction")
    unit = unit / norm

    def ablate(hidden):
        u = unit.to(device=hidden.device, dtype=hidden.dtype)
        return hidden - (hidden @ u)[..., None] * u

    return residual_hook(model, layer, ablate, position=position, point=point,
                         allow_overlap=allow_overlap)
