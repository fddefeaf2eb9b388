"""Shared fixtures. Tests run offline with a fixed global seed."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _fixed_seed():
    random.seed(1234)
    np.random.seed(1234)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def store(tmp_path):
    """A fresh store in a temporary folder, opened for writing."""
    from llmrca.store import Store

    with Store(tmp_path / "store.duckdb") as s:
        yield s
