"""The model registry and safe loading: named versions, fingerprints, an LRU cache of models.

Registration and fingerprints are implemented lower down (:mod:`llmrca.store.model_registry`,
:mod:`llmrca.fingerprint`) so that ingest can use them; they are re-exported here.

``import llmrca.models`` does not import torch or transformers; loading does, on first use.
"""

from llmrca.fingerprint import FINGERPRINT_PATTERNS, compute_fingerprint, is_local_source
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
    "FINGERPRINT_PATTERNS",
    "LoadedModel",
    "ModelVersion",
    "clear_model_cache",
    "compute_fingerprint",
    "get_version",
    "is_local_source",
    "list_versions",
    "load_pretrained",
    "load_version",
    "model_cache_info",
    "model_cache_size",
    "register_version",
]
