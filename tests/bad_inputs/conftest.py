"""Fixtures of the bad-input tests: a finished search whose files must survive every bad command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bad_helpers import cli  # noqa: E402

TINY_SPACE = """\
name: tiny
description: tiny space of the bad-input tests (4 architectures)
template:
  embedding_dim: 4
  shared: {expert: {choice: expert}, num: {choice: num_experts}}
  tower: {name: mlp_tower, params: {hidden: [8]}}
choices:
  expert:
    options:
      - {label: mlp-8, value: {name: mlp, params: {hidden: [8]}}}
      - {label: mlp-16, value: {name: mlp, params: {hidden: [16]}}}
  num_experts: {type: int, low: 1, high: 2}
"""

#: options that keep every command small (3000 synthetic rows, one epoch, one thread)
TINY = ["--set", "dataset.params.n_rows=3000", "--set", "train.epochs=1", "--set", "train.batch_size=512",
        "--set", "train.threads=1", "--set", "train.progress=false"]


@pytest.fixture(scope="session")
def previous(tmp_path_factory) -> Path:
    """prev/: a finished optuna search (out/ with study.db, weights.pt, leaderboard...) and its MLflow store."""
    root = tmp_path_factory.mktemp("prev")
    (root / "tiny.yaml").write_text(TINY_SPACE)
    r = cli("search", "--space", root / "tiny.yaml", "--searcher", "optuna-random", "--budget", "1", "--output", root / "out",
            "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}", *TINY, cwd=root)
    assert r.code == 0, r.text
    for name in ("study.db", "weights.pt", "best_arch.json", "search.json"):
        assert (root / "out" / name).exists(), name
    return root
