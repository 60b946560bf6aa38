"""`mdmt-nas export`: a TorchScript file that scores batches with plain torch, equal to the trained model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401

SMALL_M3OE = {
    "name": "small-m3oe", "embedding_dim": 4,
    "bottom": {"name": "m3oe_star", "params": {"star_dim": 16, "out_dim": 8, "skip": True}},
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2},
    "domain": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1, "fusion": {"name": "balance"}},
    "task": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1, "fusion": {"name": "balance"}},
    "gate": "softmax", "gate_scope": ["shared"], "gate_detach_input": True,
    "fusion": {"name": "weighted"}, "heads": "domain_task", "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}
ROUTED_MMOE = {
    "name": "routed", "embedding_dim": 4,
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2},
    "domain": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1},
    "gate_scope": ["shared", "domain"], "heads": "domain_task", "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}

RUNNER = textwrap.dedent("""
    import importlib.util, sys
    assert importlib.util.find_spec("mdmt_nas") is None, "mdmt_nas must not be importable here"
    import torch
    model = torch.jit.load(sys.argv[1])
    batches = torch.load(sys.argv[2])
    torch.save([model(*b) for b in batches], sys.argv[3])
    print("ok", len(batches))
""")


def _torch_only_env() -> tuple[list[str], dict[str, str]]:
    """`python -S` with only the directory holding torch on sys.path: no .pth files, so no editable mdmt_nas."""
    site = str(Path(torch.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MDMT"))}
    env["PYTHONPATH"] = site
    return [sys.executable, "-S"], env


def _batches(schema, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)

    def make(n: int, domains: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = torch.stack([torch.randint(0, f.vocab_size, (n,), generator=g) for f in schema.sparse], 1)
        dense = torch.randn(n, schema.num_dense, generator=g)
        domain = torch.tensor(domains, dtype=torch.long)[torch.randint(0, len(domains), (n,), generator=g)]
        return sparse, dense, domain

    D = schema.num_domains
    return [make(5, list(range(D))), make(37, [0, D - 1]), make(1, [1]), make(200, [0]), make(64, list(range(D)))]


def _check_exported(model_file: Path, trained: torch.nn.Module, schema, tmp_path: Path) -> None:
    batches = _batches(schema)
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(batches, inputs)
    script = tmp_path / "run_exported.py"
    script.write_text(RUNNER)
    cmd, env = _torch_only_env()
    proc = subprocess.run([*cmd, str(script), str(model_file), str(inputs), str(outputs)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = torch.load(outputs)
    trained.eval()
    with torch.no_grad():
        for (sparse, dense, domain), g in zip(batches, got):
            want = torch.sigmoid(trained(sparse, dense, domain))
            assert g.shape == (len(domain), schema.num_tasks)
            assert torch.allclose(g, want, atol=1e-5, rtol=0), float((g - want).abs().max())


@pytest.mark.parametrize("arch", [SMALL_M3OE, ROUTED_MMOE], ids=["m3oe-routing", "domain-experts"])
def test_exported_model_reproduces_predictions_without_mdmt_nas(tmp_path, mlflow_uri, splits, arch):
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.experiment import run_training
    from mdmt_nas.export import export_model

    cfg = ExperimentConfig.model_validate({**make_config(mlflow_uri).model_dump(), "arch": arch,
                                           "train": {"epochs": 1, "batch_size": 512, "threads": 1, "progress": False}})
    out = tmp_path / "train"
    outcome = run_training(cfg, splits, out)
    info = export_model(out / "arch.json", out / "weights.pt", tmp_path / "model.pt")
    assert info.max_abs_diff <= 1e-5 and info.batch_size == 64
    extra = {"arch.json": "", "schema.json": "", "mdmt_nas.json": ""}
    torch.jit.load(str(tmp_path / "model.pt"), _extra_files=extra)
    assert outcome.result.arch.id.encode() in extra["mdmt_nas.json"] and arch["name"].encode() in extra["arch.json"]
    _check_exported(tmp_path / "model.pt", outcome.result.model, splits.schema, tmp_path)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`mdmt-nas ARGS` in-process: (exit status, stdout, stderr)."""
    from mdmt_nas.cli.app import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_of_a_search_output_directory(tmp_path, mlflow_uri, splits, capsys, monkeypatch):
    """`mdmt-nas search` leaves weights of its best architecture; `mdmt-nas export` turns them into TorchScript."""
    from test_runner import write_space

    from mdmt_nas.export import load_trained

    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "search"
    code, text, err = run_cli(["search", "--space", write_space(tmp_path), "--searcher", "optuna-random", "--budget", "2", "--epochs", "1",
                               "--output", out, "--tracking-uri", mlflow_uri, "--set", "dataset.params.n_rows=3000",
                               "--set", "train.batch_size=512", "--set", "train.threads=1"], capsys)
    assert code == 0, err
    model_file = tmp_path / "exported" / "model.pt"
    code, text, err = run_cli(["export", "--arch", out / "best_arch.json", "--weights", out / "weights.pt", "--out", model_file], capsys)
    assert code == 0, err
    assert f"wrote {model_file}" in text and "domain int64 [B]" in text
    code, _, err = run_cli(["export", "--arch", out / "best_arch.json", "--weights", out / "weights.pt", "--out", model_file], capsys)
    assert code == 2 and "already exists" in err
    model, _, schema = load_trained(out / "best_arch.json", out / "weights.pt")
    _check_exported(model_file, model, schema, tmp_path)


def test_export_errors(tmp_path, mlflow_uri, splits):
    from mdmt_nas.errors import UserError
    from mdmt_nas.export import export_model
    from mdmt_nas.search.runner import run_search

    out = tmp_path / "search"
    run_search(make_config(mlflow_uri, searcher="optuna-random", budget=1), out, space=load_tiny(tmp_path), splits=splits)
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "weights.pt").write_bytes((out / "weights.pt").read_bytes())
    with pytest.raises(UserError, match="no data schema"):
        export_model(out / "best_arch.json", tmp_path / "lonely" / "weights.pt", tmp_path / "m.pt")
    other = load_tiny(tmp_path).to_arch({"expert": "mlp-16", "num_experts": 2, "task_experts": True, "task_num": 2})
    other.save(tmp_path / "other.json")
    with pytest.raises(UserError, match="does not fit the architecture"):
        export_model(tmp_path / "other.json", out / "weights.pt", tmp_path / "m.pt")
