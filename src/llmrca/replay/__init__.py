"""Replay an incident against model versions: sampled and greedy generation with per-sample seeds,
a content-addressed cache in the store, prompt perturbations, teacher-forced scoring, and
reproduction rates with intervals and tests.

Public API::

    ReplayConfig(samples, decoding, seed, variants, judges, backend, truncation)
    replay_incident(store, incident_id, versions, config=None, ...) -> ReplayResult
    compare_versions(store, incident_id, versions, config=None, ...) -> CompareResult
    load_replay(store, run_id) / ReplayResult.load(store, run_id) -> ReplayResult (read-only)
    rate_table / comparison_table / perturbation_table (samples DataFrame) -> DataFrame
    score_output(loaded_model, messages, system_prompt, output_text) -> OutputScore
    first_divergence(score_a, score_b) -> Divergence | None
    BACKENDS / ReplayBackend  (extension point: one hook, ``generate_batch``)
    RayBackend  (``backend="ray"``: Ray Data over a cluster; Ray imported only when it runs)

torch is imported when a model runs, not when this package is imported.
"""

from llmrca.replay.backends import BACKENDS, GeneratedSample, ReplayBackend, TransformersBackend
from llmrca.replay.config import MAX_PLANNED_SAMPLES, ReplayConfig
from llmrca.replay.decoding import Decoding, sample_key, sample_seed
from llmrca.replay.engine import compare_versions, regenerate_sample, replay_incident
from llmrca.replay.measure import comparison_table, perturbation_table, rate_table
from llmrca.replay.prompts import (
    VARIANT_KINDS,
    PromptTooLongError,
    RenderedPrompt,
    Variant,
    drop_prefix,
    drop_span,
    drop_system,
    original,
    render_prompt,
    replace_request,
    swap_prefix,
)
from llmrca.replay.ray_backend import RayBackend
from llmrca.replay.result import CompareResult, ReplayResult, load_replay
from llmrca.replay.scoring import (
    Divergence,
    OutputScore,
    first_divergence,
    score_output,
    score_outputs,
    score_versions,
)

__all__ = [
    "BACKENDS",
    "MAX_PLANNED_SAMPLES",
    "VARIANT_KINDS",
    "CompareResult",
    "Decoding",
    "Divergence",
    "GeneratedSample",
    "OutputScore",
    "PromptTooLongError",
    "RayBackend",
    "RenderedPrompt",
    "ReplayBackend",
    "ReplayConfig",
    "ReplayResult",
    "TransformersBackend",
    "Variant",
    "compare_versions",
    "comparison_table",
    "drop_prefix",
    "drop_span",
    "drop_system",
    "first_divergence",
    "load_replay",
    "original",
    "perturbation_table",
    "rate_table",
    "regenerate_sample",
    "render_prompt",
    "replace_request",
    "replay_incident",
    "sample_key",
    "sample_seed",
    "score_output",
    "score_outputs",
    "score_versions",
    "swap_prefix",
]
