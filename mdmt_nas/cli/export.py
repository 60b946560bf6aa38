"""`mdmt-nas export`: a trained architecture as a TorchScript file that runs with plain torch."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmt_nas.cli.app import app, report_plugin_failures
from mdmt_nas.cli.common import console
from mdmt_nas.errors import UserError


@app.command()
def export(
    arch: Path = typer.Option(..., "--arch", help="Architecture JSON (arch.json of a training, best_arch.json of a search)."),
    weights: Path = typer.Option(..., "--weights", help="weights.pt written with it; schema.json must sit next to it (or pass --schema)."),
    out: Path = typer.Option(Path("model.pt"), "--out", "-o", help="TorchScript file to write."),
    schema: Path = typer.Option(None, "--schema", help="Data schema JSON (default: schema.json next to the weights)."),
    dataset: str = typer.Option(None, "--dataset", help="Trace on rows of this dataset's valid split instead of zeros shaped by the schema."),
    sets: list[str] = typer.Option(None, "--set", help="Dataset overrides when --dataset is given, e.g. --set dataset.params.n_rows=5000."),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows of the trace batch (any batch size works afterwards)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write a TorchScript model: scores = torch.jit.load(OUT)(sparse int64 [B,Fs], dense float [B,Fd], domain int64 [B]) -> [B,T]."""
    from mdmt_nas.export import export_model

    report_plugin_failures()
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to overwrite it or choose another --out")
    splits = None
    if dataset:
        from mdmt_nas.cli.common import build_config
        from mdmt_nas.experiment import load_splits

        with console.status(f"loading dataset {dataset!r}..."):
            splits = load_splits(build_config(None, None, dataset, sets))
    info = export_model(arch, weights, out, schema_path=schema, batch_size=batch_size, splits=splits)
    spec = info.inputs
    console.print(f"wrote {info.path} (architecture {info.arch_id}; traced on {info.batch_size} rows, "
                  f"checked on other batch sizes with missing domains: max diff {info.max_abs_diff:.1e})", highlight=False)
    console.print(f"inputs: sparse int64 [B, {spec['inputs']['sparse'][1][1]}], dense float32 [B, {spec['inputs']['dense'][1][1]}], "
                  f"domain int64 [B] in 0..{len(spec['domains']) - 1} ({', '.join(spec['domains'])}); "
                  f"output: probabilities [B, {len(spec['tasks'])}] ({', '.join(spec['tasks'])})", highlight=False, soft_wrap=True)
    console.print(f"load it anywhere with torch only: torch.jit.load({str(info.path)!r})", highlight=False)
