"""Fixtures of the bad-input tests: a finished search whose files must survive every bad command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bad_helpers import TINY, TINY_SPACE, cli  # noqa: E402,F401


@pytest.fixture(scope="session")
def previous(tmp_path_factory) -> Path:
    """prev/: a finished optuna search (out/ with study.db, weights.pt, leaderboard...) and its MLflow store."""
    root = tmp_path_factory.mktemp("prev")
    (root / "tiny.yaml").write_text(TINY_SPACE)
    r = cli(
        "search",
        "--space",
        root / "tiny.yaml",
        "--searcher",
        "optuna-random",
        "--budget",
        "1",
        "--output",
        root / "out",
        "--tracking-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        *TINY,
        cwd=root,
    )
    assert r.code == 0, r.text
    for name in ("study.db", "weights.pt", "best_arch.json", "search.json"):
        assert (root / "out" / name).exists(), name
    return root
