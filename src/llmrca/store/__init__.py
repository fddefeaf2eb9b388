"""The DuckDB store: the only layer that writes SQL."""

from llmrca.store.core import Store, open_store
from llmrca.store.schema import LATEST_VERSION

__all__ = ["LATEST_VERSION", "Store", "open_store"]
