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


#: Where the test suite caches its zoo (git-ignored); keyed by spec hash, reused between runs.
ZOO_TEST_CACHE = Path(__file__).resolve().parent.parent / ".llmrca" / "test-cache"


@pytest.fixture(scope="session")
def test_zoo():
    """The TEST_SPEC model-organism zoo (a ``llmrca.zoo.ZooBuild``), built once and cached.

    The first session on a machine trains it (about 45 s on two shared cores) and runs its
    behaviour check; later sessions reuse ``<repo>/.llmrca/test-cache/zoo/<spec hash>/``.
    """
    from llmrca.zoo import TEST_SPEC, build_zoo

    return build_zoo(TEST_SPEC, cache_dir=ZOO_TEST_CACHE)
