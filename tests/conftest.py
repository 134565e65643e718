"""Shared test setup.

pytest puts tests/ on sys.path (pyproject `pythonpath`), so the input builders in tests/_*_fixtures.py
import as plain modules (`from _manifest_fixtures import write_ingest`): they are functions that take the
arguments each test needs. Fixtures that several test files use live here.
"""
from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test: tiny models gain nothing from threads, and on a shared 2-core
    machine OpenMP threads that wait for each other make them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
