"""`mdmt-nas train` end to end: AUC table, MLflow run with metrics and artifacts, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--set", "dataset.params.n_rows=3000", "--set", "train.epochs=1", "--set", "train.batch_size=512"]


def run_cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    # the default store (./mlflow.db) is under test: no URI leaking in from the environment
    # (mlflow.set_tracking_uri in an earlier in-process test exports MLFLOW_TRACKING_URI)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "mdmt_nas", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_train_prints_table_and_logs_mlflow_run(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text((ROOT / "examples" / "mmoe.yaml").read_text())
    proc = run_cli("train", "--config", str(cfg), *TINY, "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test AUC" in proc.stdout and "domain_0" in proc.stdout and "task_1" in proc.stdout
    out = tmp_path / "out"
    for name in ("arch.json", "weights.pt", "metrics.json", "schema.json"):
        assert (out / name).exists()
    # MLflow's default store is ./mlflow.db in the working directory
    assert (tmp_path / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mdmt-nas")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "test_auc/domain_0/task_0" in run.data.metrics and "valid_mean_auc" in run.data.metrics
    assert run.data.params["arch.shared.experts.0.name"] == "mlp"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"arch.json", "metrics.csv", "auc_heatmap.png", "config.json"} <= artifacts
    saved = json.loads((out / "metrics.json").read_text())
    assert abs(saved["summary"]["test_mean_auc"] - run.data.metrics["test_mean_auc"]) < 1e-9


def test_train_from_arch_json_alone(tmp_path):
    arch = tmp_path / "a.json"
    arch.write_text(
        json.dumps({"name": "tiny", "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2}})
    )
    proc = run_cli("train", "--arch", str(arch), *TINY, "--no-track", "--output", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_component_exits_2_with_field_and_suggestion(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("arch:\n  shared: {expert: mpl, num: 2}\n")
    proc = run_cli("train", "--config", str(cfg), *TINY, "--no-track", cwd=tmp_path)
    assert proc.returncode == 2
    assert "arch.shared.experts[0].name" in proc.stderr and "'mlp'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content, needles",
    [
        ("train:\n  lrr: 0.1\n", ["train.lrr", "did you mean 'lr'"]),
        ("train:\n  batch_size: -3\n", ["train.batch_size", "greater than or equal to 1"]),
        ("train: [1, 2\n", ["invalid YAML"]),
        (
            "arch:\n  shared: {expert: mlp}\n  gate: {name: softmax, params: {temperatur: 2}}\n",
            ["arch.gate.params", "unknown parameter", "temperature"],
        ),
    ],
)
def test_bad_config_is_reported_with_path(tmp_path, content, needles):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    proc = run_cli("train", "--config", str(cfg), "--no-track", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    for n in needles:
        assert n in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version():
    proc = run_cli("--version", cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("mdmt-nas ")


def test_throwaway_plugin_distribution_adds_an_expert(tmp_path):
    """A distribution with an entry point in group `mdmt_nas` adds an expert usable by name."""
    site = tmp_path / "site"
    pkg = site / "toy_expert_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent('''
        import torch
        from pydantic import BaseModel, ConfigDict
        from mdmt_nas.components import Expert
        from mdmt_nas.plugins import hookimpl

        class ToyParams(BaseModel):
            model_config = ConfigDict(extra="forbid")
            width: int = 8

        class ToyExpert(Expert):
            """A linear expert from a third-party distribution."""
            name = "toy_expert"
            Params = ToyParams
            def __init__(self, params, in_dim, num_fields, field_dim, num_domains=1):
                super().__init__(params, in_dim, num_fields, field_dim, num_domains)
                self.lin = torch.nn.Linear(in_dim, params.width)
            @classmethod
            def output_dim(cls, params, in_dim):
                return params.width
            def forward(self, x, ctx):
                return torch.tanh(self.lin(x))

        @hookimpl
        def register_experts(register):
            register(ToyExpert)
    ''')
    )
    dist = site / "toy_expert_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-expert-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mdmt_nas]\ntoy = toy_expert_plugin\n")
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("arch:\n  shared: {expert: {name: toy_expert, params: {width: 6}}, num: 2}\n")
    proc = run_cli(
        "train",
        "--config",
        str(cfg),
        *TINY,
        "--output",
        str(tmp_path / "o"),
        cwd=tmp_path,
        env_extra={"PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stderr
    arch = json.loads((tmp_path / "o" / "arch.json").read_text())
    assert arch["shared"]["experts"][0]["name"] == "toy_expert"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("mdmt-nas").experiment_id])[0]
    assert run.data.params["arch.shared.experts.0.name"] == "toy_expert"
    # the registry attributes it to the distribution
    code = "from mdmt_nas.plugins import get_host; e = get_host().registry.entry('expert', 'toy_expert'); print(e.plugin, e.dist, e.version)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"}
    probe = subprocess.run(
        [sys.executable, "-c", code], env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert probe.stdout.split() == ["toy", "toy-expert-plugin", "0.1"], probe.stderr
