"""llmrca: an offline workbench for investigating LLM safety incidents.

``import llmrca`` is cheap: torch, transformers, captum and papermill load when first used.
"""

from llmrca.errors import (
    LlmrcaError,
    NotFoundError,
    StoreLockedError,
    UnknownNameError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "LlmrcaError",
    "NotFoundError",
    "StoreLockedError",
    "UnknownNameError",
    "ValidationError",
    "__version__",
    "ingest_bundle",
    "open_store",
]


def __getattr__(name: str):
    # Deferred so that `import llmrca` does not import duckdb/pandas until they are needed.
    if name == "open_store":
        from llmrca.store import open_store
        return open_store
    if name == "ingest_bundle":
        from llmrca.ingest import ingest_bundle
        return ingest_bundle
    raise AttributeError(f"module 'llmrca' has no attribute {name!r}")
