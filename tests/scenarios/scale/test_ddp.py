"""Data-parallel training: `torchrun --nproc-per-node 2 -m mdmt_nas train` on CPU (gloo, 127.0.0.1, 1 thread a rank).

The result equals a 1-process run with the same global batch and seed (within a float tolerance), only rank 0
creates an MLflow run, and a rank that dies makes the job exit non-zero with a clear message and nothing written.

Tolerance: the 2-rank gradient is (rank 0's rows' gradient sum + rank 1's) / all rows, summed in another order than
one process's mean over the whole batch (and through gloo's all-reduce), so each step differs by float32 rounding
(~1e-7 relative). Plain SGD carries that forward linearly: measured 1.2e-7 in the weights after 30 steps, so the test
uses SGD with 1e-5 (weights, absolute) and 1e-6 (mean AUC). Adam is not used here because it amplifies rounding: a
component whose gradient is near 0 gets an update of about +-lr whatever its size, so two runs that differ only in
float summation order (even 1 process with 2 torch threads instead of 1) drift apart by up to ~lr x steps in such
weights (benchmarks/ddp.py shows this) while their AUCs agree; for scale, a 1-process Adam run with batch 127 instead of
255 ends 0.1 away in the weights and 0.08 in test AUC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from scale_servers import free_port

ROOT = Path(__file__).resolve().parents[3]
WEIGHT_TOL = 1e-5
AUC_TOL = 1e-6

CONFIG = textwrap.dedent("""
    dataset:
      name: synthetic
      params: {n_rows: 2870}  # 2296 train rows = 9 x 255 + 1: the last step gives rank 0 no row
    arch:
      name: sb
      bottom: {name: mlp, params: {hidden: [32]}}
      heads: task
      tower: {name: mlp_tower, params: {hidden: [16]}}
    train:
      optimizer: sgd
      lr: 0.1
      batch_size: 255
      epochs: 3
      patience: 2
      threads: 1
      progress: false
      seed: 3
    tracking:
      log_model: false
""")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MDMT_NAS_DIST_TIMEOUT="60", COLUMNS="200", **extra)
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo on loopback, whatever the host name resolves to
    return env


def _train(tmp: Path, out: str, db: str, ranks: int, *extra: str, **env: str) -> subprocess.CompletedProcess:
    cfg = tmp / "cfg.yaml"
    cfg.write_text(CONFIG)
    launcher = (
        [sys.executable, "-m", "mdmt_nas"]
        if ranks == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(ranks),
            "--nnodes",
            "1",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            "-m",
            "mdmt_nas",
        ]
    )
    cmd = [*launcher, "train", "-c", str(cfg), "-o", str(tmp / out), "--tracking-uri", f"sqlite:///{tmp / db}", *extra]
    return subprocess.run(cmd, cwd=tmp, env=_env(**env), capture_output=True, text=True, timeout=120)


def _runs(tmp: Path, db: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / db}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    one = _train(tmp, "one", "one.db", 1)
    assert one.returncode == 0, one.stdout + one.stderr
    two = _train(tmp, "two", "two.db", 2)
    assert two.returncode == 0, two.stdout + two.stderr
    return tmp, one, two


def test_two_ranks_equal_one_process(both):
    tmp, _, two = both
    assert "data-parallel on 2 ranks" in two.stdout
    m1, m2 = (json.loads((tmp / d / "metrics.json").read_text())["summary"] for d in ("one", "two"))
    assert m1["epochs_run"] == m2["epochs_run"] and m1["best_epoch"] == m2["best_epoch"]
    for key in ("valid_mean_auc", "test_mean_auc"):
        assert abs(m1[key] - m2[key]) <= AUC_TOL, (key, m1[key], m2[key])
    w1, w2 = (torch.load(tmp / d / "weights.pt", weights_only=True) for d in ("one", "two"))
    assert w1.keys() == w2.keys()
    worst = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1 if w1[k].numel())
    assert worst <= WEIGHT_TOL, worst
    # the test split is the full one on both (gathered from the ranks' shares)
    t1, t2 = (json.loads((tmp / d / "metrics.json").read_text())["test"] for d in ("one", "two"))
    assert json.dumps(t1, sort_keys=True).count("rows") == json.dumps(t2, sort_keys=True).count("rows")


def test_only_rank_zero_creates_an_mlflow_run(both):
    tmp, _, _ = both
    runs = _runs(tmp, "two.db")
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in runs]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params.get("train.batch_size") == "255"  # the global batch, as given


def test_a_dying_rank_fails_the_job_and_writes_nothing(tmp_path):
    res = _train(tmp_path, "dead", "dead.db", 2, MDMT_NAS_TEST_DIE="1:5")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "rank" in out and "exitcode" in out  # torchrun's summary: the rank that failed first
    assert "data-parallel training stopped" in out or "another rank died" in out, out
    assert not (tmp_path / "dead").exists(), list((tmp_path / "dead").rglob("*"))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".pt"))]
    runs = _runs(tmp_path, "dead.db")
    assert len(runs) <= 1 and all(r.info.status != "RUNNING" for r in runs), [
        (r.info.run_name, r.info.status) for r in runs
    ]


def _parquet(tmp: Path, n: int = 2400, groups_of: int = 100) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    scene = rng.integers(1, 4, n)
    user = rng.integers(0, 50, n)
    click = (rng.random(n) < 0.2 + 0.5 * (user % 2)).astype(int)  # learnable: the user id says a lot
    table = pd.DataFrame(
        {
            "user": user,
            "item": rng.choice(list("abcde"), n),
            "price": rng.normal(50, 10, n),
            "scene": scene,
            "click": click,
            "buy": (click & (rng.random(n) < 0.5)).astype(int),
        }
    )
    path = tmp / "rows.parquet"
    table.to_parquet(path, row_group_size=groups_of)
    return path


PARQUET_PARAMS = {
    "columns": {"domain": "scene", "labels": ["click", "buy"], "sparse": ["user", "item"], "dense": ["price"]},
    "streaming": True,
}


def test_ranks_stream_disjoint_row_groups_that_cover_the_split(tmp_path):
    from mdmt_nas.data import load_dataset
    from mdmt_nas.distributed import World, shard_of

    splits = load_dataset("parquet", {"path": str(_parquet(tmp_path)), **PARQUET_PARAMS})
    for name in ("train", "test"):
        full = getattr(splits, name)
        shards = [shard_of(full, World(r, 2)) for r in range(2)]
        assert not ((shards[0].counts > 0) & (shards[1].counts > 0)).any()  # no row group read by both ranks
        assert (shards[0].counts + shards[1].counts == full.counts).all()
        assert len(shards[0]) > 0 and len(shards[1]) > 0


def test_two_ranks_train_on_streaming_parquet_and_score_the_full_test_split(tmp_path):
    from mdmt_nas.data import load_dataset

    path = _parquet(tmp_path)
    params = {"path": str(path), **PARQUET_PARAMS}
    cfg = CONFIG.replace(
        "  name: synthetic\n  params: {n_rows: 2870}", f"  name: parquet\n  params: {json.dumps(params)}"
    )
    assert cfg != CONFIG
    (tmp_path / "pq.yaml").write_text(cfg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--nnodes",
        "1",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "mdmt_nas",
        "train",
        "-c",
        "pq.yaml",
        "-o",
        "pq",
        "--no-track",
        "--set",
        "train.optimizer=adam",
        "--set",
        "train.lr=0.01",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "each streams its own row groups" in res.stdout
    m = json.loads((tmp_path / "pq" / "metrics.json").read_text())
    rows = sum(c["rows"] for c in m["test"]["cells"] if c["task"] == "click")
    assert rows == len(load_dataset("parquet", params).test)  # every test row scored once (gathered from both ranks)
    assert m["summary"]["valid_mean_auc"] > 0.6


def test_search_and_resume_are_refused_under_torchrun(tmp_path):
    env = _env(WORLD_SIZE="2", RANK="0")
    res = subprocess.run(
        [sys.executable, "-m", "mdmt_nas", "search", "--space", "mmoe", "--budget", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "search does not run under torchrun" in res.stdout + res.stderr, (
        res.stdout + res.stderr
    )
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    res = subprocess.run(
        [sys.executable, "-m", "mdmt_nas", "train", "-c", "cfg.yaml", "-o", "x", "--resume", "--no-track"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--resume is not available under torchrun" in res.stdout + res.stderr, (
        res.stdout + res.stderr
    )
    assert not (tmp_path / "x").exists()


def test_a_search_winner_retrains_data_parallel(tmp_path):
    """The retraining of a search's winner under torchrun: `train --arch RUN/best_arch.json` on 2 ranks trains that
    architecture (same id) and ends where a 1-process retraining of it ends."""
    from helpers import tiny_space_yaml

    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space_yaml())
    search = subprocess.run(
        [sys.executable, "-m", "mdmt_nas", "search", "--space", str(space), "--searcher", "optuna-random", "--budget", "2",
         "--epochs", "1", "--dataset", "synthetic", "--set", "dataset.params.n_rows=2870", "--set", "train.threads=1",
         "--set", "train.progress=false", "--set", "tracking.log_model=false", "--output", str(tmp_path / "search"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'search.db'}"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert search.returncode == 0, search.stdout + search.stderr
    best = tmp_path / "search" / "best_arch.json"
    one = _train(tmp_path, "one", "one.db", 1, "--arch", str(best))
    two = _train(tmp_path, "two", "two.db", 2, "--arch", str(best))
    assert one.returncode == 0 and two.returncode == 0, one.stdout + one.stderr + two.stdout + two.stderr
    assert "data-parallel on 2 ranks" in two.stdout
    from mdmt_nas.arch import Architecture

    want = Architecture.load(best).id
    assert (
        Architecture.load(tmp_path / "two" / "arch.json").id
        == want
        == Architecture.load(tmp_path / "one" / "arch.json").id
    )
    w1, w2 = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("one", "two"))
    assert max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1 if w1[k].numel()) <= WEIGHT_TOL
