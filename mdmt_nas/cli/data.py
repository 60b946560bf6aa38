"""`mdmt-nas data ...`: fetch, describe and convert datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from mdmt_nas.cli.console import make_console
from mdmt_nas.errors import ConfigError, UserError

data_app = typer.Typer(
    help="Datasets: fetch ml-100k, describe any registered dataset, convert CSV to Parquet.",
    no_args_is_help=True,
)
console = make_console()


def _load_mapping_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _split_list(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@data_app.command("get")
def get(
    name: str = typer.Argument(..., help="Dataset to fetch (ml-100k)."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache root (default $MDMT_NAS_CACHE or ~/.cache/mdmt-nas)."
    ),
    force: bool = typer.Option(False, "--force", help="Fetch again even if the files are there."),
) -> None:
    """Download a dataset into the local cache (ml-100k: from the RecBole wheel, without installing RecBole)."""
    from mdmt_nas.data.fetch import FETCHERS, MANUAL, RECBOLE_REQUIREMENT

    if name not in FETCHERS:
        if name in MANUAL:
            raise UserError(
                f"{name} cannot be downloaded by mdmt-nas; get it from {MANUAL[name]} and pass its folder as dataset param `dir`/`path`"
            )
        raise UserError(f"unknown dataset {name!r} for `data get`; fetchable: {', '.join(FETCHERS)}")
    from mdmt_nas.data.fetch import cache_dir as resolve_cache

    target = resolve_cache(cache_dir) / name
    present = target.is_dir() and any(target.iterdir()) and not force
    with console.status(f"Fetching {name} (pip download {RECBOLE_REQUIREMENT} --no-deps, extracting 3 files)..."):
        out = FETCHERS[name](cache_dir, force=force)
    files = ", ".join(f"{p.name} ({p.stat().st_size:,} bytes)" for p in sorted(out.iterdir()))
    state = "already present" if present else "ready"
    console.print(f"[green]{name}[/green] {state} in {out}: {files}", highlight=False)


def _dataset_args(dataset: str | None, config: Path | None, sets: list[str] | None) -> tuple[str, dict[str, Any]]:
    """Dataset name and params from --dataset, a config file (experiment config or bare params) and --set."""
    from mdmt_nas.config import apply_overrides

    name, params = dataset, {}
    if config is not None:
        data = _load_mapping_file(config)
        if isinstance(data.get("dataset"), dict):
            name = name or data["dataset"].get("name")
            params = dict(data["dataset"].get("params") or {})
        else:
            params = data
    overrides = [s.removeprefix("dataset.params.") for s in sets or []]
    apply_overrides(params, overrides)
    if not name:
        raise UserError("which dataset? pass --dataset NAME (see `mdmt-nas plugins` for the registered ones)")
    return name, params


@data_app.command("describe")
def describe(
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Registered dataset name (e.g. synthetic, ml-100k)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML with the dataset params (or an experiment config)."
    ),
    sets: list[str] | None = typer.Option(
        None, "--set", help="Override a param: KEY=VALUE (e.g. n_rows=10000, split.kind=time)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Load a dataset and print rows per split, users, and a domains x tasks table of rows and positive rates."""
    from mdmt_nas.data.describe import describe_splits
    from mdmt_nas.data.loading import make_dataset

    name, params = _dataset_args(dataset, config, sets)
    ds = make_dataset(name, params)
    if as_json:
        splits = ds.load()
    else:
        with console.status(f"Loading {name}..."):
            splits = ds.load()
    stats = describe_splits(splits, ds.info)
    stats = {"dataset": name, **stats}
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    _print_stats(stats)


def _print_stats(s: dict[str, Any]) -> None:
    rows = s["rows"]
    facts = [f"{s['interactions']:,} interactions" if "interactions" in s else f"{rows['total']:,} rows"]
    for key in ("users", "items", "searches"):
        if key in s:
            facts.append(f"{s[key]:,} {key}")
    facts.append(f"{len(s['domains'])} domains x {len(s['tasks'])} tasks")
    console.print(f"{s['dataset']}: " + ", ".join(facts), highlight=False, markup=False)
    console.print(f"splits: train {rows['train']:,} | valid {rows['valid']:,} | test {rows['test']:,}", highlight=False)
    sch = s["schema"]
    sparse = ", ".join(f"{k} ({v:,})" for k, v in sch["sparse"].items())
    dense = ", ".join(sch["dense"])
    console.print(
        f"features: {len(sch['sparse'])} sparse [{sparse}]; {len(sch['dense'])} dense [{dense}]",
        highlight=False,
        markup=False,
    )
    table = Table(title="domains x tasks (all splits)")
    table.add_column("domain")
    for col in ("rows", "share", "train", "valid", "test"):
        table.add_column(col, justify="right")
    for t in s["tasks"]:
        table.add_column(f"{t} pos. rate", justify="right")
    for d in s["domains"]:
        table.add_row(
            d["name"], f"{d['rows']:,}", f"{d['share']:.1%}", *(f"{d['rows_per_split'][p]:,}" for p in ("train", "valid", "test")),
            *(f"{d['positive_rate'][t]:.3f}" for t in s["tasks"]),
        )  # fmt: skip
    table.add_section()
    table.add_row("all", f"{rows['total']:,}", "100%", f"{rows['train']:,}", f"{rows['valid']:,}", f"{rows['test']:,}",
                  *(f"{s['positive_rate'][t]:.3f}" for t in s["tasks"]), style="bold")  # fmt: skip
    console.print(table)
    for note in s.get("notes", []):
        console.print(f"note: {note}", highlight=False, markup=False)


@data_app.command("convert")
def convert(
    input: Path = typer.Argument(..., help="CSV file to convert."),
    output: Path = typer.Argument(..., help="Parquet file to write."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML column mapping (domain, labels, sparse, dense, timestamp; or under `columns:`).",
    ),
    domain: str | None = typer.Option(None, "--domain", help="Domain column."),
    label: list[str] | None = typer.Option(
        None, "--label", help="Label column(s), one per task (repeat or comma-separate)."
    ),
    sparse: list[str] | None = typer.Option(None, "--sparse", help="Categorical feature column(s)."),
    dense: list[str] | None = typer.Option(None, "--dense", help="Numeric feature column(s)."),
    timestamp: str | None = typer.Option(None, "--timestamp", help="Timestamp column."),
    keep: list[str] | None = typer.Option(
        None, "--keep", help="Extra column(s) to keep as text (e.g. a split or id column)."
    ),
    sep: str = typer.Option(",", "--sep", help="Field separator of the CSV."),
    row_group_size: int = typer.Option(
        131_072, "--row-group-size", min=1, help="Rows per Parquet row group (the streaming unit)."
    ),
) -> None:
    """Convert a CSV to Parquet in bounded memory, keeping the mapped columns with fixed types."""
    from mdmt_nas.data.convert import csv_to_parquet
    from mdmt_nas.data.encode import ColumnMapping
    from mdmt_nas.data.loading import validation_error

    fields: dict[str, Any] = {}
    extra_keep: list[str] = []
    if config is not None:
        data = _load_mapping_file(config)
        data = data.get("columns", data) if isinstance(data.get("columns"), dict) else data
        extra_keep = list(data.pop("keep", []) or [])
        fields.update(data)
    flags = {
        "domain": domain,
        "labels": _split_list(label),
        "sparse": _split_list(sparse),
        "dense": _split_list(dense),
        "timestamp": timestamp,
    }
    fields.update({k: v for k, v in flags.items() if v})
    mapping = None
    if fields:
        try:
            mapping = ColumnMapping(**fields)
        except ValidationError as exc:
            raise validation_error(exc, ColumnMapping, prefix="columns") from None
    keep_cols = list(dict.fromkeys(extra_keep + _split_list(keep)))
    with console.status(f"Converting {input} ...") as status:
        report = csv_to_parquet(
            input, output, mapping, separator=sep.encode().decode("unicode_escape"), keep=keep_cols,
            row_group_size=row_group_size, progress=lambda n: status.update(f"Converting {input}: {n:,} rows"),
        )  # fmt: skip
    console.print(
        f"wrote {output}: {report.rows:,} rows in {report.row_groups} row groups, {len(report.columns)} columns; "
        f"{report.input_bytes / 1e6:,.1f} MB CSV -> {report.output_bytes / 1e6:,.1f} MB Parquet in {report.seconds:.1f}s",
        highlight=False,
    )
