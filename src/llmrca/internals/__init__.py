"""Why the model did it: hidden states, probes, concept directions, patching, weight diffs.

Two levels:

* On models and arrays (any architecture :func:`llmrca.models.model_parts` knows):
  :class:`LinearProbe`, :func:`probe_layers`, :func:`transfer_accuracy`,
  :func:`difference_of_means`, :func:`project`, :func:`ablate_direction`,
  :func:`add_direction`, :func:`sample_with_intervention`, :func:`patch_layers`,
  :func:`check_compatible`, :func:`weight_diff_models`.
* On registered versions, through the store (cached, with provenance, read back read-only):
  :func:`probe_versions`, :func:`refusal_directions`, :func:`causal_checks`,
  :func:`patch_versions`, :func:`diff_weights`, with request sets from data
  (:func:`requests_from_training`, :func:`requests_from_incident`) and hidden states cached by
  model fingerprint (:func:`cached_hidden_states`).

Importing this package is cheap; torch and scikit-learn load when an analysis runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "CausalCheckResult",
    "DirectionResult",
    "IncompatibleModelsError",
    "LinearProbe",
    "PatchingResult",
    "ProbeResult",
    "RequestSet",
    "WeightDiffResult",
    "ablate_direction",
    "add_direction",
    "cached_hidden_states",
    "causal_checks",
    "check_compatible",
    "cosine_by_layer",
    "diff_weights",
    "difference_of_means",
    "incident_cases",
    "load_result",
    "patch_layers",
    "patch_versions",
    "probe_layers",
    "probe_versions",
    "project",
    "refusal_directions",
    "requests_from_incident",
    "requests_from_training",
    "sample_with_intervention",
    "transfer_accuracy",
    "weight_diff_models",
]

_LAZY = {
    "CausalCheckResult": "results", "DirectionResult": "results", "PatchingResult": "results",
    "ProbeResult": "results", "WeightDiffResult": "results",
    "IncompatibleModelsError": "patching", "check_compatible": "patching",
    "patch_layers": "patching", "LinearProbe": "probes", "probe_layers": "probes",
    "transfer_accuracy": "probes", "RequestSet": "data", "incident_cases": "data",
    "requests_from_incident": "data", "requests_from_training": "data",
    "ablate_direction": "directions", "add_direction": "directions",
    "cosine_by_layer": "directions", "difference_of_means": "directions",
    "project": "directions", "sample_with_intervention": "directions",
    "cached_hidden_states": "activations", "weight_diff_models": "weights",
    "causal_checks": "analysis", "diff_weights": "analysis", "patch_versions": "analysis",
    "probe_versions": "analysis", "refusal_directions": "analysis",
}


def load_result(store, result_id: str):
    """A stored internals result by id (typed, ``info['cached']`` True)."""
    from llmrca.internals.results import result_from_row
    from llmrca.store.internals import read_result

    return result_from_row(read_result(store, result_id))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"llmrca.internals.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'llmrca.internals' has no attribute {name!r}")
