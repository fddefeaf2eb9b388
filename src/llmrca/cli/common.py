"""Helpers shared by the command modules: opening the store, printing tables."""

from __future__ import annotations

import sys

from llmrca.store import Store, open_store


def store_from(args, read_only: bool = False) -> Store:
    """Open the store named by ``--db`` (or the default) for this command."""
    return open_store(getattr(args, "db", None), read_only=read_only)


def print_table(df, out=None, max_colwidth: int = 60) -> None:
    """Print a DataFrame as a plain text table (no index)."""
    out = out or sys.stdout
    if df is None or len(df) == 0:
        print("(no rows)", file=out)
        return
    import pandas as pd

    with pd.option_context("display.max_colwidth", max_colwidth, "display.width", 200,
                           "display.max_columns", 50):
        print(df.to_string(index=False), file=out)
