"""Hypotheses about an incident's root cause, each a statistical test with a verdict.

Public API::

    investigate(store, incident_id, hypotheses=None, deployed=, previous=, samples=, seed=,
                alpha=, judges=, bundle=) -> HypothesisReport
        (.to_frame(), .root_cause, .contributing, .conclusion(), .get(name))
    load_hypotheses(store, run_id) / HypothesisReport.load   (read-only store, no model)
    HYPOTHESES, register_hypothesis, HypothesisKind, Outcome   (the kinds' registry)
    HypothesisSpec, load_hypotheses_file                       (which to test; hypotheses.yaml)
    paired_prompt_test, rates_test, decide_verdict, evaluate   (the statistics and the rule)
    Evidence                                                   (what the kinds share)

Shipped kinds: ``version_regression``, ``prompt_segment_cause``, ``refusal_weakened``,
``training_data_artifact``, ``guardrail_gap``, ``system_prompt_change``
(see ``docs/hypotheses.md``). torch loads only when a test needs a model.
"""

from llmrca.hypotheses import kinds as _kinds  # noqa: F401 - registers the shipped kinds
from llmrca.hypotheses.api import evaluate, investigate
from llmrca.hypotheses.evidence import Evidence, Trigger
from llmrca.hypotheses.kinds import (
    DEFAULT_KINDS,
    HYPOTHESES,
    HypothesisKind,
    Outcome,
    register_hypothesis,
)
from llmrca.hypotheses.result import (
    FRAME_COLUMNS,
    HypothesisReport,
    HypothesisResult,
    load_hypotheses,
)
from llmrca.hypotheses.spec import HypothesisSpec, default_specs, load_hypotheses_file
from llmrca.hypotheses.testing import (
    VERDICTS,
    PromptTest,
    decide_verdict,
    paired_prompt_test,
    rates_test,
)

__all__ = [
    "DEFAULT_KINDS",
    "FRAME_COLUMNS",
    "HYPOTHESES",
    "VERDICTS",
    "Evidence",
    "HypothesisKind",
    "HypothesisReport",
    "HypothesisResult",
    "HypothesisSpec",
    "Outcome",
    "PromptTest",
    "Trigger",
    "decide_verdict",
    "default_specs",
    "evaluate",
    "investigate",
    "load_hypotheses",
    "load_hypotheses_file",
    "paired_prompt_test",
    "rates_test",
    "register_hypothesis",
]
