"""`mdmt-nas export`: a torch.export program (.pt2) and ONNX that score batches without mdmt_nas, equal to the trained model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401

SMALL_M3OE = {
    "name": "small-m3oe",
    "embedding_dim": 4,
    "bottom": {"name": "m3oe_star", "params": {"star_dim": 16, "out_dim": 8, "skip": True}},
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2},
    "domain": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1, "fusion": {"name": "balance"}},
    "task": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1, "fusion": {"name": "balance"}},
    "gate": "softmax",
    "gate_scope": ["shared"],
    "gate_detach_input": True,
    "fusion": {"name": "weighted"},
    "heads": "domain_task",
    "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}
ROUTED_MMOE = {
    "name": "routed",
    "embedding_dim": 4,
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2},
    "domain": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1},
    "gate_scope": ["shared", "domain"],
    "heads": "domain_task",
    "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}
SPARSE_GATE = {  # rows dispatched only to their top-k experts (data-dependent in eager mode)
    "name": "topk",
    "embedding_dim": 4,
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 3},
    "gate": {"name": "noisy_topk", "params": {"k": 1, "domain_dim": 2}},
    "heads": "domain_task",
    "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}

RUNNER = textwrap.dedent("""
    import importlib.util, json, sys
    assert importlib.util.find_spec("mdmt_nas") is None, "mdmt_nas must not be importable here"
    import torch
    folder, inputs, outputs = sys.argv[1:4]
    batches = torch.load(inputs)
    results, specs = {}, {}
    extra = {"serving.json": ""}
    program = torch.export.load(folder + "/model.pt2", extra_files=extra).module()
    specs["pt2"] = json.loads(extra["serving.json"])
    results["pt2"] = [program(*b) for b in batches]
    import onnxruntime
    session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
    specs["onnx"] = json.loads(session.get_modelmeta().custom_metadata_map["mdmt_nas.serving"])
    feeds = [{"sparse": s.numpy(), "dense": d.numpy(), "domain": dom.numpy()} for s, d, dom in batches]
    results["onnx"] = [torch.from_numpy(session.run(None, f)[0]) for f in feeds]
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"] * 3, [i.shape for i in session.get_inputs()]
    torch.save(results, outputs)
    json.dump(specs, open(outputs + ".json", "w"))
    print("ok", len(batches))
""")


def _torch_only_env() -> tuple[list[str], dict[str, str]]:
    """`python -S` with only the directory holding torch on sys.path: no .pth files, so no editable mdmt_nas."""
    site = str(Path(torch.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MDMT"))}
    env["PYTHONPATH"] = site
    return [sys.executable, "-S"], env


def _batches(schema, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of several sizes, most of them missing some domains."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int, domains: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = torch.stack([torch.randint(0, f.vocab_size, (n,), generator=g) for f in schema.sparse], 1)
        dense = torch.randn(n, schema.num_dense, generator=g)
        domain = torch.tensor(domains, dtype=torch.long)[torch.randint(0, len(domains), (n,), generator=g)]
        return sparse, dense, domain

    D = schema.num_domains
    return [make(5, list(range(D))), make(37, [0, D - 1]), make(1, [1]), make(200, [0]), make(64, list(range(D)))]


def _guard_batch(schema) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row 0: sparse ids outside their vocabularies (-1, vocab_size); row 1: a domain id the model does not know."""
    sparse = torch.tensor(
        [[-1 if j % 2 else f.vocab_size for j, f in enumerate(schema.sparse)], [1] * schema.num_sparse]
    )
    return sparse, torch.zeros(2, schema.num_dense), torch.tensor([0, schema.num_domains])


def _check_exported(folder: Path, trained: torch.nn.Module, schema, tmp_path: Path) -> dict:
    """Run the exports in a process without mdmt_nas; compare with the trained model to 1e-5. Returns the bundled specs."""
    batches = _batches(schema) + [_guard_batch(schema)]
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(batches, inputs)
    script = tmp_path / "run_exported.py"
    script.write_text(RUNNER)
    cmd, env = _torch_only_env()
    proc = subprocess.run(
        [*cmd, str(script), str(folder), str(inputs), str(outputs)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(outputs)
    trained.eval()
    with torch.no_grad():
        for fmt in ("pt2", "onnx"):
            for (sparse, dense, domain), g in zip(batches[:-1], got[fmt][:-1]):
                want = torch.sigmoid(trained(sparse, dense, domain))
                assert g.shape == (len(domain), schema.num_tasks)
                assert torch.allclose(g, want, atol=1e-5, rtol=0), (fmt, float((g - want).abs().max()))
            guarded = got[fmt][-1]
            unknown = torch.sigmoid(
                trained(
                    torch.zeros(1, schema.num_sparse, dtype=torch.long),
                    torch.zeros(1, schema.num_dense),
                    torch.tensor([0]),
                )
            )
            assert torch.allclose(guarded[0], unknown[0], atol=1e-5, rtol=0), (
                fmt
            )  # out-of-range ids score as unknown (0)
            assert torch.isnan(guarded[1]).all(), fmt  # an unknown domain gives NaN, not an index error
    return json.loads((tmp_path / "outputs.pt.json").read_text())


@pytest.mark.parametrize(
    "arch", [SMALL_M3OE, ROUTED_MMOE, SPARSE_GATE], ids=["m3oe-routing", "domain-experts", "sparse-gate"]
)
def test_exports_reproduce_predictions_without_mdmt_nas(tmp_path, mlflow_uri, splits, arch):
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.experiment import run_training
    from mdmt_nas.serving.export import export_model

    cfg = ExperimentConfig.model_validate(
        {
            **make_config(mlflow_uri).model_dump(),
            "arch": arch,
            "train": {"epochs": 1, "batch_size": 512, "threads": 1, "progress": False},
        }
    )
    out = tmp_path / "train"
    outcome = run_training(cfg, splits, out)
    info = export_model(out / "arch.json", out / "weights.pt", tmp_path / "export")
    assert set(info.files) == {"pt2", "onnx", "serving"}
    assert all(d <= 1e-5 for d in info.max_abs_diff.values()), info.max_abs_diff
    specs = _check_exported(tmp_path / "export", outcome.result.model, splits.schema, tmp_path)
    for spec in specs.values():  # the schema travels inside each file
        assert spec["arch_id"] == outcome.result.arch.id and spec["tasks"] == splits.schema.tasks
        assert spec["domains"] == splits.schema.domain_names and spec["schema"] == splits.schema.model_dump(mode="json")
        enc = spec["encoding"]
        assert [f["column"] for f in enc["sparse"]] == [f.name for f in splits.schema.sparse]
        assert [len(f["vocab"]) + 1 for f in enc["sparse"]] == [f.vocab_size for f in splits.schema.sparse]
        assert [f["column"] for f in enc["dense"]] == splits.schema.dense and all(f["std"] > 0 for f in enc["dense"])
    assert json.loads((tmp_path / "export" / "serving.json").read_text()) == specs["pt2"]


def test_export_of_a_search_output_directory(tmp_path, mlflow_uri, splits, capsys, monkeypatch):
    """`mdmt-nas search` leaves weights of its best architecture; `mdmt-nas export RUN_DIR` writes the exports beside them."""
    from test_runner import write_space

    from mdmt_nas.serving.export import load_trained

    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "search"
    code, text, err = run_cli(
        [
            "search",
            "--space",
            write_space(tmp_path),
            "--searcher",
            "optuna-random",
            "--budget",
            "2",
            "--epochs",
            "1",
            "--output",
            out,
            "--tracking-uri",
            mlflow_uri,
            "--set",
            "dataset.params.n_rows=3000",
            "--set",
            "train.batch_size=512",
            "--set",
            "train.threads=1",
            "--set",
            "tracking.log_model=false",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"export it: mdmt-nas export {out}" in text
    assert (out / "encoding.json").exists()
    code, text, err = run_cli(["export", out], capsys)
    assert code == 0, err
    folder = out / "export"
    assert (
        f"wrote {folder / 'model.pt2'}" in text
        and f"wrote {folder / 'model.onnx'}" in text
        and "domain int64 [batch]" in text
    )
    code, _, err = run_cli(["export", out, "--format", "pt2"], capsys)
    assert code == 2 and "already exists" in err and "--force" in err
    model, _, schema = load_trained(out / "best_arch.json", out / "weights.pt")
    _check_exported(folder, model, schema, tmp_path)
    code, text, err = run_cli(["export", out, "--format", "torchscript", "--out", tmp_path / "ts"], capsys)
    assert code == 0, err
    extra = {"serving.json": ""}
    scripted = torch.jit.load(str(tmp_path / "ts" / "model.pt"), _extra_files=extra)
    assert json.loads(extra["serving.json"])["arch_id"] == model.arch.id
    b = _batches(schema)[1]
    with torch.no_grad():
        assert torch.allclose(scripted(*b), torch.sigmoid(model(*b)), atol=1e-5, rtol=0)
    code, _, err = run_cli(["export", out, "--format", "pt2,tflite", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "unknown format 'tflite'" in err


def test_export_errors(tmp_path, mlflow_uri, splits, capsys):
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.runner import run_search
    from mdmt_nas.serving.export import export_model

    out = tmp_path / "search"
    run_search(
        make_config(mlflow_uri, searcher="optuna-random", budget=1), out, space=load_tiny(tmp_path), splits=splits
    )
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "weights.pt").write_bytes((out / "weights.pt").read_bytes())
    with pytest.raises(UserError, match="no data schema"):
        export_model(out / "best_arch.json", tmp_path / "lonely" / "weights.pt", tmp_path / "m")
    other = load_tiny(tmp_path).to_arch({"expert": "mlp-16", "num_experts": 2, "task_experts": True, "task_num": 2})
    other.save(tmp_path / "other.json")
    with pytest.raises(UserError, match="does not fit the architecture"):
        export_model(tmp_path / "other.json", out / "weights.pt", tmp_path / "m")
    code, _, err = run_cli(["export", tmp_path / "nowhere"], capsys)
    assert code == 2 and "not a directory" in err
    code, _, err = run_cli(["export"], capsys)
    assert code == 2 and "nothing to export" in err
    assert not (tmp_path / "m").exists()  # nothing half-written


# ------------------------------------------------------------------------------ static routing (what makes export safe)
def test_static_routing_equals_sorted_routing_with_missing_domains():
    """Under static_routing every branch sees every row and each row keeps its own domain's result: the same
    values as the slice/gather paths, for any mix of domains (a domain may have no rows)."""
    from mdmt_nas.routing import DomainRouting, is_static, static_routing

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(4, 3, 5, generator=g), torch.randn(4, 5, generator=g)
    for domain in (
        torch.tensor([0, 0, 2, 2, 2]),
        torch.tensor([3, 1, 3, 0]),
        torch.tensor([2]),
        torch.tensor([1, 1, 1]),
    ):
        x = torch.randn(len(domain), 3, generator=g)
        want = DomainRouting(domain, 4).grouped_linear(x, w, b)
        assert not is_static()
        with static_routing():
            assert is_static()
            seen = []
            got = DomainRouting(domain, 4).grouped_linear(x, w, b)
            DomainRouting(domain, 4).apply(x, lambda d, xs, idx: seen.append((d, xs.shape[0], idx)) or xs)
        torch.testing.assert_close(got, want)
        assert seen == [(d, len(domain), slice(None)) for d in range(4)]
    assert not is_static()


def test_sparse_dispatch_under_static_routing_equals_eager(splits):
    """A sparse gate's rows go only to their selected experts in eager mode; statically every expert runs and the
    unselected outputs are zeroed: the same model output."""
    from mdmt_nas.arch import Architecture
    from mdmt_nas.model import build_model
    from mdmt_nas.routing import static_routing

    torch.manual_seed(0)
    model = build_model(Architecture.model_validate(SPARSE_GATE), splits.schema).eval()
    b = next(iter(splits.valid.batches(300)))
    with torch.no_grad():
        eager = model(b.sparse, b.dense, b.domain)
        with static_routing():
            static = model(b.sparse, b.dense, b.domain)
    torch.testing.assert_close(static, eager, atol=1e-6, rtol=1e-5)
