"""Judges: label replayed outputs ``unsafe`` / ``refusal`` / ``safe``, with a score.

Pick judges by spec (:func:`get_judge`), or let the incident's category pick them
(:func:`default_judges`); run each with ``judge.judge(samples, context)``; put several together
with :func:`combine` and check them against each other with :func:`agreement`; check one against
human labels with :func:`validate_judge` (sensitivity, specificity, and rates corrected for its
error). Results go to the store with :func:`llmrca.store.judgements.write_judgements`.

``import llmrca.judges`` does not import scikit-learn, torch or pandas.
"""

from llmrca.judges.base import (
    CONTEXT_KEYS,
    JUDGEMENT_COLUMNS,
    JUDGES,
    LABELS,
    Judge,
    Judgement,
    normalise_text,
    register_judge,
)
from llmrca.judges.classifier import ClassifierJudge
from llmrca.judges.combine import agreement, combine
from llmrca.judges.compliance import ComplianceJudge, content_words, echo
from llmrca.judges.hf import GuardLMJudge, HFClassifierJudge, ModelJudge
from llmrca.judges.refusal import DEFAULT_REFUSAL_PHRASES, RefusalJudge
from llmrca.judges.rules import Rule, RuleJudge, RuleSet, load_rules, shipped_rule_sets
from llmrca.judges.selection import DEFAULT_JUDGES, available_judges, default_judges, get_judge
from llmrca.judges.similarity import SimilarityJudge, similarity
from llmrca.judges.validation import (
    JudgeValidation,
    labels_frame,
    read_labels,
    stored_validation,
    validate_judge,
)

__all__ = [
    "CONTEXT_KEYS",
    "DEFAULT_JUDGES",
    "DEFAULT_REFUSAL_PHRASES",
    "JUDGEMENT_COLUMNS",
    "JUDGES",
    "LABELS",
    "ClassifierJudge",
    "ComplianceJudge",
    "GuardLMJudge",
    "HFClassifierJudge",
    "Judge",
    "JudgeValidation",
    "Judgement",
    "ModelJudge",
    "RefusalJudge",
    "Rule",
    "RuleJudge",
    "RuleSet",
    "SimilarityJudge",
    "agreement",
    "available_judges",
    "combine",
    "content_words",
    "default_judges",
    "echo",
    "get_judge",
    "labels_frame",
    "load_rules",
    "normalise_text",
    "read_labels",
    "register_judge",
    "shipped_rule_sets",
    "similarity",
    "stored_validation",
    "validate_judge",
]
