"""Where a causal LM keeps its decoder layers, embeddings, final norm and output head.

One :class:`ArchitectureAdapter` per architecture family, registered in :data:`ARCHITECTURES`
under the family name and looked up by ``config.model_type``; a model of an unregistered type
goes through the generic fallback (:func:`generic_parts`). Both give a :class:`ModelParts`.

The residual stream is defined as ``output_hidden_states`` reports it: index 0 is the input of
decoder layer 0 (token embeddings, plus position embeddings for GPT-2, times ``sqrt(d)`` for
Gemma: the scaling lives in Gemma's embedding module), index ``i + 1`` is the output of decoder
layer ``i`` -- except the last index, which transformers reports *after* the final norm. A hook on
the last layer sees the un-normed residual; ``final_norm`` of it gives the reported value.

No torch import at module level: adapters only walk attributes of a model already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmrca.errors import ArchitectureError
from llmrca.registry import Registry

__all__ = [
    "ARCHITECTURES",
    "ArchitectureAdapter",
    "ModelParts",
    "generic_parts",
    "model_parts",
]

#: Attribute names tried, in order, for the final norm by the generic fallback.
FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "final_norm",
                    "norm_f", "ln_out")


@dataclass(frozen=True)
class ModelParts:
    """The pieces of a causal LM that forward passes and hooks need.

    Attributes
    ----------
    family : str
        The adapter that found them (``llama``, ``gpt2``, ...), or ``generic``.
    layers : torch.nn.ModuleList
        The decoder layers, in order; ``len(layers)`` is the number of layers.
    embeddings : torch.nn.Module
        The token embedding (``model.get_input_embeddings()``).
    final_norm : torch.nn.Module or None
        The norm applied after the last layer (None when none was found by the generic fallback).
    lm_head : torch.nn.Module or None
        The output projection (``model.get_output_embeddings()``).
    layers_path, final_norm_path : str
        Dotted attribute paths from the top model, for messages and documentation.
    """

    family: str
    layers: Any
    embeddings: Any
    final_norm: Any
    lm_head: Any
    layers_path: str
    final_norm_path: str | None

    @property
    def n_layers(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class ArchitectureAdapter:
    """How one architecture family lays out its modules (dotted paths from the top model).

    Attributes
    ----------
    family : str
        The registry name.
    model_types : tuple of str
        The ``config.model_type`` values this adapter serves.
    layers, final_norm : str
        Dotted paths of the decoder-layer ``ModuleList`` and of the final norm.
    notes : str
        What is particular about the family (shown in docs/internals.md).
    """

    family: str
    model_types: tuple[str, ...]
    layers: str
    final_norm: str
    notes: str = ""

    def parts(self, model) -> ModelParts:
        """The model's parts by this adapter's paths (AttributeError when a path is missing)."""
        return ModelParts(family=self.family, layers=_resolve(model, self.layers),
                          embeddings=model.get_input_embeddings(), final_norm=_resolve(
                              model, self.final_norm),
                          lm_head=model.get_output_embeddings(), layers_path=self.layers,
                          final_norm_path=self.final_norm)


ARCHITECTURES: Registry[ArchitectureAdapter] = Registry("architecture family")

for _adapter in (
    ArchitectureAdapter("llama", ("llama",), "model.layers", "model.norm",
                        "pre-norm blocks (RMSNorm), rotary positions"),
    ArchitectureAdapter("mistral", ("mistral", "mixtral"), "model.layers", "model.norm",
                        "as llama; sliding-window attention"),
    ArchitectureAdapter("qwen2", ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"), "model.layers",
                        "model.norm", "as llama; biases on q/k/v (qwen2)"),
    ArchitectureAdapter("gemma", ("gemma", "gemma2", "gemma3_text"), "model.layers",
                        "model.norm",
                        "embedding module scales by sqrt(hidden_size), so hidden state 0 is "
                        "already scaled; gemma2 adds post-norms inside each block (the block "
                        "output is still the residual)"),
    ArchitectureAdapter("phi", ("phi",), "model.layers", "model.final_layernorm",
                        "parallel attention and MLP on one LayerNorm; the block output is "
                        "input + attn + mlp"),
    ArchitectureAdapter("phi3", ("phi3",), "model.layers", "model.norm", "as llama"),
    ArchitectureAdapter("gpt_neox", ("gpt_neox",), "gpt_neox.layers",
                        "gpt_neox.final_layer_norm",
                        "parallel residual (use_parallel_residual=True by default); block "
                        "output is input + attn + mlp"),
    ArchitectureAdapter("gpt2", ("gpt2",), "transformer.h", "transformer.ln_f",
                        "learned absolute positions: hidden state 0 is token + position "
                        "embeddings (wte + wpe), not the token embedding alone"),
):
    ARCHITECTURES.register(_adapter.family, _adapter)


def _resolve(obj, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _adapter_for(model_type: str) -> ArchitectureAdapter | None:
    for family in ARCHITECTURES:
        adapter = ARCHITECTURES.get(family)
        if model_type in adapter.model_types:
            return adapter
    return None


def _n_layers(config) -> int | None:
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def generic_parts(model) -> ModelParts:
    """Find the parts of an unregistered architecture, or raise :class:`ArchitectureError`.

    Layers: the first ``nn.ModuleList`` (in ``named_modules`` order) whose length is the config's
    layer count and whose entries are all of one class. Embeddings and head: the model's
    ``get_input_embeddings`` / ``get_output_embeddings``. Final norm: the first of
    :data:`FINAL_NORM_NAMES` found on the module that holds the layers (or on the model).
    """
    import torch

    config = getattr(model, "config", None)
    expected = _n_layers(config)
    if expected is None:
        raise ArchitectureError(model, "the config names no layer count "
                                       "(num_hidden_layers / n_layer)")
    found = None
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == expected \
                and len({type(block) for block in module}) == 1:
            found = path, module
            break
    if found is None:
        raise ArchitectureError(model, f"no ModuleList of {expected} identical blocks found")
    layers_path, layers = found
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    if embeddings is None:
        raise ArchitectureError(model, "get_input_embeddings() gives no embedding module")
    parent_path = layers_path.rpartition(".")[0]
    parent = _resolve(model, parent_path) if parent_path else model
    norm, norm_path = None, None
    for owner, prefix in ((parent, parent_path), (model, "")):
        for name in FINAL_NORM_NAMES:
            candidate = getattr(owner, name, None)
            if isinstance(candidate, torch.nn.Module):
                norm, norm_path = candidate, f"{prefix}.{name}" if prefix else name
                break
        if norm is not None:
            break
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        head = None
    return ModelParts(family="generic", layers=layers, embeddings=embeddings, final_norm=norm,
                      lm_head=head, layers_path=layers_path, final_norm_path=norm_path)


def model_parts(model) -> ModelParts:
    """The decoder layers, embeddings, final norm and head of ``model``.

    The adapter registered for ``config.model_type`` is tried first; when there is none, or its
    paths do not exist on this model (a variant class), the generic fallback is used.

    Raises
    ------
    ArchitectureError
        Neither the adapter nor the fallback found the layers; the message names
        ``config.model_type`` and the model class.
    """
    model_type = str(getattr(getattr(model, "config", None), "model_type", "") or "")
    adapter = _adapter_for(model_type)
    if adapter is not None:
        try:
            return adapter.parts(model)
        except AttributeError:
            pass
    return generic_parts(model)
