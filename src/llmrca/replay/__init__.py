"""Replay an incident against model versions: sampled and greedy generation with per-sample seeds,
a content-addressed cache in the store, prompt perturbations, teacher-forced scoring, and
reproduction rates with intervals and tests.

Public API::

    replay_incident(store, incident_id, versions, ...) -> ReplayResult
    compare_versions(store, incident_id, versions, ...) -> CompareResult
    score_output(loaded_model, messages, system_prompt, output_text) -> OutputScore
    first_divergence(score_a, score_b) -> Divergence | None
    BACKENDS / ReplayBackend  (extension point: one hook, ``generate_batch``)

torch is imported when a model runs, not when this package is imported.
"""

from llmrca.replay.backends import BACKENDS, GeneratedSample, ReplayBackend, TransformersBackend
from llmrca.replay.decoding import Decoding, sample_key, sample_seed
from llmrca.replay.engine import (
    CompareResult,
    ReplayResult,
    compare_versions,
    regenerate_sample,
    replay_incident,
)
from llmrca.replay.prompts import (
    VARIANT_KINDS,
    PromptTooLongError,
    RenderedPrompt,
    Variant,
    drop_prefix,
    drop_system,
    original,
    render_prompt,
    replace_request,
    swap_prefix,
)
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
    "VARIANT_KINDS",
    "CompareResult",
    "Decoding",
    "Divergence",
    "GeneratedSample",
    "OutputScore",
    "PromptTooLongError",
    "RenderedPrompt",
    "ReplayBackend",
    "ReplayResult",
    "TransformersBackend",
    "Variant",
    "compare_versions",
    "drop_prefix",
    "drop_system",
    "first_divergence",
    "original",
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
