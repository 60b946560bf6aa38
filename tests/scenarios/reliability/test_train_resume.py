"""`mdmt-nas train` stopped with Ctrl-C (SIGINT) or SIGTERM after an epoch, then run again with --resume, ends with
the metrics of an uninterrupted training (fixed seed, one thread), under the same MLflow run, none left RUNNING."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from rel_helpers import SMALL, cli_env, finish, kill, run_statuses, start, wait_for

TRAIN = ["train", "--config", "mmoe", *SMALL, "--set", "dataset.params.n_rows=20000", "--set", "train.epochs=5"]


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {
        "valid": m["valid"],
        "test": m["test"],
        "history": [{k: v for k, v in h.items() if "time" not in k and "rows_per" not in k} for h in m["history"]],
    }


def _epochs_done(ck: Path, n: int):
    def cond() -> bool:
        try:
            return int(torch.load(ck, map_location="cpu", weights_only=True)["loop"]["epoch"]) >= n
        except Exception:  # noqa: BLE001 - not written yet, being replaced, or another layout
            return False

    return cond


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path, sig):
    db = tmp_path / "mlflow.db"
    track = ["--tracking-uri", f"sqlite:///{db}"]
    ref_code, ref_text = finish(start([*TRAIN, *track, "--output", tmp_path / "reference"], cli_env()))
    assert ref_code == 0, ref_text[-2000:]

    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    proc = start([*TRAIN, *track, "--output", out], cli_env(), log=log)
    wait_for(_epochs_done(out / "checkpoint.pt", 2), proc, timeout=300, what="two epochs checkpointed", poll=0.02)
    status = kill(proc, sig)
    said = log.read_text()
    assert status != 0 and "--resume" in said, said[-2000:]  # the exact command to continue is printed
    assert (out / "weights.pt").exists() and not list(out.glob("*.tmp*"))
    assert all(s != "RUNNING" for s, _ in run_statuses(db)), run_statuses(db)

    code, text = finish(start([*TRAIN, *track, "--output", out, "--resume"], cli_env()))
    assert code == 0, text[-2000:]
    assert _metrics(out) == _metrics(tmp_path / "reference")
    statuses = run_statuses(db)
    assert len(statuses) == 2 and all(s == "FINISHED" for s, _ in statuses), (
        statuses
    )  # the resumed run is the same MLflow run
