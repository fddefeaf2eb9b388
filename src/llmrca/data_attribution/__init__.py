"""Training-data search: which fine-tuning examples of a version caused an incident behaviour.

Public API::

    search_training_data(store, incident_id, version, *, signals=SIGNALS, interaction_ids=None,
                         layer=None, seed=0, device=None, ...) -> TrainingSearchResult
    leave_k_out(store, incident_id, version, example_ids, *, samples=8, seed=0, ...)
        -> LeaveOutResult
    precision_at_k(ranked_ids, planted_ids, k) -> float      (scoring: tests and benchmarks)
    training_recipe(store, version) -> TrainingRecipe
    load_search(store, run_id) -> TrainingSearchResult       (read-only)

The query is always the incident's offending interactions (prompt and logged output) and the
data the version's stored ``training_examples``: nothing here reads a zoo spec's strings or its
ground truth. See ``docs/data_attribution.md``.
"""

from llmrca.data_attribution.examples import (
    QueryCase,
    TrainingExample,
    incident_queries,
    training_examples,
)
from llmrca.data_attribution.leave_out import (
    TrainingRecipe,
    leave_k_out,
    retrain_without,
    training_recipe,
)
from llmrca.data_attribution.result import (
    LEAVE_OUT_COLUMNS,
    LeaveOutResult,
    TrainingSearchResult,
    precision_at_k,
)
from llmrca.data_attribution.search import FUSION_K, fuse, load_search, search_training_data
from llmrca.data_attribution.signals import (
    SIGNALS,
    SignalScores,
    gradient_scores,
    lexical_scores,
    representation_scores,
)

__all__ = [
    "FUSION_K",
    "LEAVE_OUT_COLUMNS",
    "SIGNALS",
    "LeaveOutResult",
    "QueryCase",
    "SignalScores",
    "TrainingExample",
    "TrainingRecipe",
    "TrainingSearchResult",
    "fuse",
    "gradient_scores",
    "incident_queries",
    "leave_k_out",
    "lexical_scores",
    "load_search",
    "precision_at_k",
    "representation_scores",
    "retrain_without",
    "search_training_data",
    "training_examples",
    "training_recipe",
]
