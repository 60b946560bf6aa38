"""Fixtures of the seed-system tests (helpers live in seed_helpers.py)."""

from __future__ import annotations

import pytest

from seed_helpers import tiny_schema


@pytest.fixture
def schema():
    return tiny_schema()


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests use tiny tensors: one thread is fastest (and immune to a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
