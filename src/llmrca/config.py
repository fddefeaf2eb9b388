"""Where things live by default, and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

#: The store file used when neither ``--db`` nor ``LLMRCA_DB`` says otherwise.
DEFAULT_DB_PATH = Path(".llmrca") / "llmrca.duckdb"


def db_path(explicit: str | os.PathLike | None = None) -> Path:
    """The store path: ``explicit``, else ``$LLMRCA_DB``, else ``./.llmrca/llmrca.duckdb``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("LLMRCA_DB")
    return Path(env) if env else DEFAULT_DB_PATH


def cache_dir() -> Path:
    """Where built model organisms are cached: ``$LLMRCA_CACHE`` or ``./.llmrca/cache``."""
    env = os.environ.get("LLMRCA_CACHE")
    return Path(env) if env else Path(".llmrca") / "cache"


def offline() -> bool:
    """True when loading must not touch the network (``LLMRCA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("LLMRCA_OFFLINE", "HF_HUB_OFFLINE"))


def duckdb_memory_limit() -> str:
    """DuckDB's memory budget: ``$LLMRCA_MEMORY_LIMIT`` or 512MB.

    A fixed budget keeps peak memory flat however large the ingested logs are: DuckDB spills to
    disk beyond it. Raise it for faster ingestion of very large files.
    """
    return os.environ.get("LLMRCA_MEMORY_LIMIT", "512MB")
