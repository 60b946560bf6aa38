"""What the MLflow UI shows: child runs named to read by themselves, short key metrics, the leaderboard as the
parent's description, per-epoch metrics logged once with their step, heatmaps titled by trial and architecture;
and `train` printing a line per epoch when its output is not a terminal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, runs_of, splits  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def test_search_runs_read_by_themselves(tmp_path, mlflow_uri, splits, monkeypatch):
    from mdmt_nas.search.runner import run_search
    from mdmt_nas.tracking import Tracker

    titles: list[str] = []
    real = Tracker.log_figure
    monkeypatch.setattr(
        Tracker,
        "log_figure",
        lambda self, run_id, fig, name: (titles.append(fig.axes[0].get_title()), real(self, run_id, fig, name)),
    )
    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=3, epochs=2)
    outcome = run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    parents, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    client = MlflowClient(mlflow_uri)
    finished = [c for c in children if c.data.tags.get("state") == "finished"]
    assert finished
    for c in finished:
        number = c.data.tags["number"]
        assert re.fullmatch(rf"trial-{number} · valid 0\.\d{{4}} · (\d+x )?mlp( \+ (\d+x )?mlp)*", c.info.run_name), (
            c.info.run_name
        )
        assert f"{c.data.metrics['valid_auc']:.4f}" in c.info.run_name
        m = c.data.metrics
        assert (
            m["valid_auc"] == m["valid_mean_auc"]
            and m["test_auc"] == m["test_mean_auc"]
            and m["params"] == m["num_params"]
        )
        assert m["latency_ms_1k"] == m["latency_ms_per_1k"] and "latency_load_1m" in m
        steps = sorted(h.step for h in client.get_metric_history(c.info.run_id, "valid_mean_auc"))
        # one point per report (optuna reports twice per epoch by default) at its step, not logged twice, then the final value
        assert steps == [0, 1, 2, 3, 4], steps
        assert [h.step for h in client.get_metric_history(c.info.run_id, "train_loss")] == [0, 1, 2, 3]
    assert {t.split(" · ")[1] for t in titles} >= {c.info.run_name.split(" · ")[0] for c in finished}
    assert all(re.fullmatch(r"(test|valid) AUC · trial-\d+ · .*[0-9a-f]{10}", t) for t in titles), titles
    note = parents[0].data.tags["mlflow.note.content"]
    best = outcome.best
    assert "| rank | trial | arch |" in note and f"`{best.arch.id}`" in note and f"**Winner `{best.arch.id}`**" in note
    cells = [ln for ln in note.split("**Winner")[1].splitlines() if ln.startswith("| domain_")]
    assert len(cells) == splits.schema.num_domains * splits.schema.num_tasks
    assert f"{best.valid_mean_auc:.4f}" in note


def test_train_logs_each_epoch_once_and_prints_a_line_per_epoch_when_piped(tmp_path, mlflow_uri):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdmt_nas",
            "train",
            "--config",
            str(ROOT / "examples" / "mmoe.yaml"),
            "--set",
            "train.epochs=2",
            "--set",
            "train.patience=0",
            "--set",
            "dataset.params.n_rows=2000",
            "--set",
            "train.threads=1",
            "--set",
            "tracking.log_model=false",
            "--set",
            "tracking.experiment=piped",
            "--tracking-uri",
            mlflow_uri,
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"epoch \d/2: ", ln)]
    assert len(lines) == 2, proc.stdout
    for i, ln in enumerate(lines, 1):
        assert re.search(
            rf"train epoch {i}/2: train loss \d\.\d{{4}}, valid AUC \d\.\d{{4}}, [\d,]+ rows/s, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$",
            ln,
        ), ln
    parents, _ = runs_of(mlflow_uri, "piped")
    history = MlflowClient(mlflow_uri).get_metric_history(parents[0].info.run_id, "train_loss")
    assert [h.step for h in history] == [0, 1]
