"""The model registry and safe loading: named versions, fingerprints, an LRU cache of models.

Registration and fingerprints are implemented lower down (:mod:`llmrca.store.model_registry`,
:mod:`llmrca.fingerprint`) so that ingest can use them; they are re-exported here.

Forward passes, hidden states, teacher forcing and scoped residual hooks are in
:mod:`llmrca.models.forward`; where each architecture family keeps its layers is in
:mod:`llmrca.models.architectures`. Both are re-exported here.

``import llmrca.models`` does not import torch or transformers; loading does, on first use.
"""

from llmrca.fingerprint import FINGERPRINT_PATTERNS, compute_fingerprint, is_local_source
from llmrca.models.architectures import (
    ARCHITECTURES,
    ArchitectureAdapter,
    ModelParts,
    model_parts,
)
from llmrca.models.forward import (
    add_to_residual,
    batch_target_logprobs,
    causal_forward,
    check_model_clean,
    hidden_states,
    left_pad,
    model_is_clean,
    position_ids_for,
    project_out,
    replace_residual,
    residual_hook,
    target_logprobs,
)
from llmrca.models.loading import (
    LoadedModel,
    clear_model_cache,
    load_pretrained,
    load_version,
    model_cache_info,
    model_cache_size,
)
from llmrca.store.model_registry import ModelVersion, get_version, list_versions, register_version

__all__ = [
    "ARCHITECTURES",
    "FINGERPRINT_PATTERNS",
    "ArchitectureAdapter",
    "LoadedModel",
    "ModelParts",
    "ModelVersion",
    "add_to_residual",
    "batch_target_logprobs",
    "causal_forward",
    "check_model_clean",
    "clear_model_cache",
    "compute_fingerprint",
    "get_version",
    "hidden_states",
    "is_local_source",
    "left_pad",
    "list_versions",
    "load_pretrained",
    "load_version",
    "model_cache_info",
    "model_cache_size",
    "model_is_clean",
    "model_parts",
    "position_ids_for",
    "project_out",
    "register_version",
    "replace_residual",
    "residual_hook",
    "target_logprobs",
]
