"""`mdmt-nas export`: a trained model as a `torch.export` program (.pt2) and ONNX, for serving without mdmt_nas."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mdmt_nas.cli.app import app, report_plugin_failures
from mdmt_nas.cli.common import console
from mdmt_nas.errors import UserError


def _inputs(run_dir: Path | None, arch: Path | None, weights: Path | None) -> tuple[Path, Path]:
    if run_dir is not None:
        if not run_dir.is_dir():
            raise UserError(
                f"{run_dir}: not a directory; pass the output directory of `mdmt-nas train` or `mdmt-nas search`, "
                "or --arch FILE --weights FILE"
            )
        arch = arch or next(
            (run_dir / n for n in ("arch.json", "best_arch.json") if (run_dir / n).exists()), run_dir / "arch.json"
        )
        weights = weights or run_dir / "weights.pt"
    if arch is None or weights is None:
        raise UserError(
            "nothing to export: pass a run directory (`mdmt-nas export runs/train-...`) or --arch FILE --weights FILE"
        )
    if not weights.exists():
        raise UserError(
            f"{weights}: file not found; a search keeps weights only when search.retrain is on (the default)"
        )
    return arch, weights


# long: a typer command is its options list (one annotated parameter per flag, the help text beside it)
@app.command()
def export(
    run_dir: Path = typer.Argument(
        None, help="Output directory of `mdmt-nas train` or `mdmt-nas search` (arch.json, weights.pt, schema.json)."
    ),
    arch: Path = typer.Option(None, "--arch", help="Architecture JSON (default: RUN_DIR/arch.json)."),
    weights: Path = typer.Option(
        None, "--weights", help="weights.pt written with it; schema.json must sit next to it (or pass --schema)."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Directory to write model.pt2, model.onnx and serving.json into (default: RUN_DIR/export).",
    ),
    formats: str = typer.Option(
        "pt2,onnx",
        "--format",
        "-f",
        help="pt2, onnx, or both (comma-separated); torchscript (deprecated in torch 2.13) writes model.pt.",
    ),
    schema: Path = typer.Option(None, "--schema", help="Data schema JSON (default: schema.json next to the weights)."),
    dataset: str = typer.Option(
        None, "--dataset", help="Trace on rows of this dataset's valid split instead of zeros shaped by the schema."
    ),
    sets: list[str] = typer.Option(
        None, "--set", help="Dataset overrides when --dataset is given, e.g. --set dataset.params.n_rows=5000."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Rows of the example batch (any batch size works afterwards)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite files in --out."),
) -> None:
    """Export for serving: model.pt2 (torch.export.load) and model.onnx (onnxruntime), each checked against the model to 1e-5."""
    from mdmt_nas.serving.export import SUFFIX, export_model, parse_formats

    report_plugin_failures()
    wanted = parse_formats(formats)
    arch_path, weights_path = _inputs(run_dir, arch, weights)
    out_dir = out or (run_dir / "export" if run_dir is not None else weights_path.parent / "export")
    existing = [out_dir / f"model{SUFFIX[f]}" for f in wanted if (out_dir / f"model{SUFFIX[f]}").exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} already exists; pass --force to overwrite it or choose another --out")
    splits = None
    if dataset:
        from mdmt_nas.cli.common import build_config
        from mdmt_nas.experiment import load_splits

        with console.status(f"loading dataset {dataset!r}..."):
            splits = load_splits(build_config(None, None, dataset, sets))
    with console.status(f"exporting ({', '.join(wanted)})..."):
        info = export_model(
            arch_path, weights_path, out_dir, schema_path=schema, formats=wanted, batch_size=batch_size, splits=splits
        )
    spec = info.spec
    for fmt in wanted:
        diff = info.max_abs_diff[fmt]
        checked = (
            "not checked: onnxruntime is not installed"
            if diff != diff
            else f"max diff {diff:.1e} on batches with missing domains"
        )
        console.print(
            escape(f"wrote {info.files[fmt]} ({fmt}, {info.seconds[fmt]:.1f}s; {checked})"),
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"wrote {info.files['serving']} (inputs, outputs, schema" + (", raw encoding)" if spec["encoding"] else ")"),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        escape(
            f"architecture {info.arch_id}; inputs: sparse int64 [batch, {len(spec['sparse_fields'])}], dense float32 "
            f"[batch, {len(spec['dense_fields'])}], domain int64 [batch] in 0..{len(spec['domains']) - 1} ({', '.join(spec['domains'])}); "
            f"output: probabilities [batch, {len(spec['tasks'])}] ({', '.join(spec['tasks'])})"
        ),
        highlight=False,
        soft_wrap=True,
    )
    if "pt2" in info.files:
        console.print(
            f"load it with torch only: torch.export.load({str(info.files['pt2'])!r}).module()(sparse, dense, domain)",
            highlight=False,
            soft_wrap=True,
        )
    if "onnx" in info.files:
        console.print(
            escape(
                f"or with onnxruntime: InferenceSession({str(info.files['onnx'])!r}).run(None, {{'sparse': ..., 'dense': ..., 'domain': ...}})"
            ),
            highlight=False,
            soft_wrap=True,
        )
