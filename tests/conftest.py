"""Shared fixtures: tiny synthetic data, a temp MLflow store, an isolated working directory."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MDMT_NAS_TEST", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_splits():
    from mdmt_nas.data.loading import load_dataset

    return load_dataset("synthetic", {"n_rows": 3000, "seed": 1})


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (tests/scale_servers.py): skipped where none can be started, failed in CI."""
    from scale_servers import postgres_server

    with postgres_server() as pg:
        yield pg
