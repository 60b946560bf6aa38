"""Peak memory of the streaming data path versus the size of the data.

    python benchmarks/data_memory.py                            # 5M rows
    python benchmarks/data_memory.py --rows 1000000,5000000 --in-memory

Phases, each in a fresh Python process so each peak is its own:
  generate   write an N-row CSV in chunks (8 sparse incl. 500k users, 4 dense, domain, 2 labels)
  convert    `csv_to_parquet` (pyarrow streaming CSV reader -> row groups)
  stream     `open_streaming` (fit pass over train rows) + one shuffled epoch of train batches
  in-memory  (with --in-memory) the same Parquet loaded and encoded in RAM, for contrast

Reported per phase: peak RSS (getrusage ru_maxrss), RSS right after imports
(torch/pandas/pyarrow alone), the peak of Python-tracked allocations
(tracemalloc: numpy and Python objects, not Arrow buffers), Arrow's pool
peak, and time. Streaming is bounded when its peak stays flat as --rows grows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

MAPPING = dict(
    domain="domain",
    labels=["click", "buy"],
    sparse=["user", "item", "f2", "f3", "f4", "f5", "f6", "f7"],
    dense=["x0", "x1", "x2", "x3"],
)
VOCABS = {"user": 500_000, "item": 100_000, "f2": 5000, "f3": 1000, "f4": 300, "f5": 100, "f6": 20, "f7": 5}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase_generate(csv: Path, rows: int, chunk: int = 250_000) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        cols = {k: (rng.random(n) ** 3 * v).astype(np.int64) for k, v in VOCABS.items()}  # skewed popularity
        cols.update({f"x{j}": rng.normal(10**j, 10**j, n).round(3) for j in range(4)})
        cols["domain"] = rng.choice(3, n, p=[0.5, 0.3, 0.2])
        logit = 0.3 * (cols["f7"] - 2) + 0.2 * (cols["domain"] - 1) + rng.normal(0, 1, n)
        cols["click"] = (logit > 0.5).astype(np.int8)
        cols["buy"] = ((logit > 1.5) & (rng.random(n) < 0.5)).astype(np.int8)
        table = pa.table(cols)
        if writer is None:
            writer = pacsv.CSVWriter(csv, table.schema)
        writer.write_table(table)
    writer.close()
    return {"rows": rows}


def phase_convert(csv: Path, parquet: Path) -> dict:
    from mdmt_nas.data.convert import csv_to_parquet
    from mdmt_nas.data.encode import ColumnMapping

    rep = csv_to_parquet(csv, parquet, ColumnMapping(**MAPPING), row_group_size=131_072)
    return {"rows": rep.rows, "row_groups": rep.row_groups}


def phase_stream(parquet: Path, batch_size: int) -> dict:
    import torch

    from mdmt_nas.data.encode import ColumnMapping
    from mdmt_nas.data.parquet_stream import open_streaming
    from mdmt_nas.data.split import SplitConfig

    t = time.perf_counter()
    splits = open_streaming(parquet, ColumnMapping(**MAPPING), SplitConfig(kind="hash"), shuffle_buffer=4)
    fit_s = time.perf_counter() - t
    rows = 0
    for b in splits.train.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
        rows += len(b)
    return {"rows": rows, "fit_seconds": round(fit_s, 1), "vocab_user": splits.schema.sparse[0].vocab_size}


def phase_in_memory(parquet: Path) -> dict:
    from mdmt_nas.data.encode import ColumnMapping
    from mdmt_nas.data.split import SplitConfig
    from mdmt_nas.data.tabular import ParquetDataset, ParquetParams

    s = ParquetDataset(
        ParquetParams(path=parquet, columns=ColumnMapping(**MAPPING), split=SplitConfig(kind="hash"))
    ).load()
    return {"rows": len(s.train) + len(s.valid) + len(s.test)}


def run_phase(args: argparse.Namespace) -> None:
    """Child process: import, record the baseline, run one phase, print JSON."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow as pa
    import torch  # noqa: F401

    import mdmt_nas.data.parquet_stream  # noqa: F401

    baseline = _rss_mb()
    tracemalloc.start()
    t = time.perf_counter()
    work = Path(args.workdir)
    csv, parquet = work / "data.csv", work / "data.parquet"
    if args.phase == "generate":
        out = phase_generate(csv, args.rows)
    elif args.phase == "convert":
        out = phase_convert(csv, parquet)
    elif args.phase == "stream":
        out = phase_stream(parquet, args.batch_size)
    else:
        out = phase_in_memory(parquet)
    _, traced_peak = tracemalloc.get_traced_memory()
    out.update(
        phase=args.phase,
        seconds=round(time.perf_counter() - t, 1),
        peak_rss_mb=round(_peak_mb(), 1),
        baseline_rss_mb=round(baseline, 1),
        tracemalloc_peak_mb=round(traced_peak / 2**20, 1),
        arrow_peak_mb=round(pa.default_memory_pool().max_memory() / 2**20, 1),
    )
    print(json.dumps(out))


def _run_size(rows: int, workdir: Path, batch_size: int, in_memory: bool) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    phases = ["generate", "convert", "stream"] + (["in-memory"] if in_memory else [])
    results = []
    for ph in phases:
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            ph,
            "--rows",
            str(rows),
            "--batch-size",
            str(batch_size),
            "--workdir",
            str(workdir),
        ]
        print(f"[{rows:,} rows] {ph} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"phase {ph} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["csv_mib"] = (workdir / "data.csv").stat().st_size / 2**20
        r["parquet_mib"] = (
            (workdir / "data.parquet").stat().st_size / 2**20 if (workdir / "data.parquet").exists() else 0.0
        )
        r["data_rows"] = rows
        results.append(r)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows", default="5000000", help="rows, or comma-separated sizes to compare (e.g. 1000000,5000000)"
    )
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where to put the CSV/Parquet (default: a temp dir, deleted)"
    )
    ap.add_argument("--in-memory", action="store_true", help="also load the Parquet fully in memory, for contrast")
    ap.add_argument("--phase", choices=["generate", "convert", "stream", "in-memory"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        args.rows = int(args.rows)
        run_phase(args)
        return
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mdmt-nas-mem-")
        args.workdir = Path(tmp.name)
    sizes = [int(x) for x in str(args.rows).split(",")]
    results = [r for n in sizes for r in _run_size(n, args.workdir / f"rows-{n}", args.batch_size, args.in_memory)]
    head = ("data rows", "CSV MiB", "Parquet MiB", "phase", "rows handled", "seconds", "peak RSS MiB", "after imports MiB",
            "peak - imports", "tracemalloc peak", "arrow peak", "peak RSS / CSV size")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in results:
        print(
            f"| {r['data_rows']:,} | {r['csv_mib']:,.0f} | {(format(r['parquet_mib'], ',.0f') if r['parquet_mib'] else '-')} | {r['phase']} | {r['rows']:,} | {r['seconds']} | "
            f"{r['peak_rss_mb']:,.0f} | {r['baseline_rss_mb']:,.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:,.0f} | "
            f"{r['tracemalloc_peak_mb']:,.0f} | {r['arrow_peak_mb']:,.0f} | {r['peak_rss_mb'] / r['csv_mib']:.2f} |"
        )
    extra = [{"rows": r["data_rows"], "phase": r["phase"], **{k: v for k, v in r.items() if k in ("fit_seconds", "vocab_user", "row_groups")}}
             for r in results if r["phase"] in ("convert", "stream")]  # fmt: skip
    print(f"\ndetails: {json.dumps(extra)}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
