"""Why the model did it: attribution of an incident's offending outputs to its prompts.

Public API::

    attribute_incident(store, incident_id, version, method=, baseline=, target=, ...)
        -> AttributionResult  (.to_frame(), .summary(), .top_segments(), .faithfulness)
    AttributionResult.load(store, run_id) / load_attribution  (read-only store, no model)
    compare_attributions(store, incident_id, safe, failing, ...) -> (a, b, diff frame)
    attribution_diff(a, b) -> DataFrame sorted by change (prime suspect first)
    check_faithfulness(store, result, samples=, random_spans=, seed=) -> Faithfulness
    list_attributions(store, incident_id=None) -> DataFrame of stored attribution runs
    auto_segments / analyst_segments / Segment   (prompt segments, no vocabulary)
    segment_attribution / token_attribution       (the captum calls, on any model)

torch and captum are imported when something is computed, not when this package is imported.
Figures: :func:`llmrca.viz.segment_bars_figure`, :func:`llmrca.viz.token_heatmap_figure`.
"""

from llmrca.attribution.api import (
    BASELINES,
    METHODS,
    TARGETS,
    attribute_incident,
    check_faithfulness,
    compare_attributions,
    control_spans,
    default_refusal,
    list_attributions,
    paired_verdict,
)
from llmrca.attribution.methods import (
    SEGMENT_METHODS,
    SegmentScores,
    TokenScores,
    WeightedTarget,
    segment_attribution,
    token_attribution,
)
from llmrca.attribution.result import (
    AttributionResult,
    Faithfulness,
    attribution_diff,
    load_attribution,
)
from llmrca.attribution.segments import Segment, analyst_segments, auto_segments, split_clauses

__all__ = [
    "BASELINES",
    "METHODS",
    "SEGMENT_METHODS",
    "TARGETS",
    "AttributionResult",
    "Faithfulness",
    "Segment",
    "SegmentScores",
    "TokenScores",
    "WeightedTarget",
    "analyst_segments",
    "attribute_incident",
    "attribution_diff",
    "auto_segments",
    "check_faithfulness",
    "compare_attributions",
    "control_spans",
    "default_refusal",
    "list_attributions",
    "load_attribution",
    "paired_verdict",
    "segment_attribution",
    "split_clauses",
    "token_attribution",
]
