"""Data-parallel training: rows/s of `torchrun --nproc-per-node 2 -m mdmt_nas train` against 1 process, and the result difference.

Both train the same architecture on the same synthetic data with the same global batch and seed, 1 torch thread
per process (`--threads`), without MLflow. Printed: wall time of each command (start-up included), training rows/s
(train rows seen / train seconds; for 2 ranks rank 0's rows x 2), valid/test mean AUC of each, and the largest
absolute difference of their final weights. On a shared or 2-core machine the speed figures are not final: the
ranks compete with each other and with anything else running (the load average is printed before and after).

    python benchmarks/ddp.py [--rows 200000] [--batch 4096] [--epochs 2] [--ranks 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _config(rows: int, batch: int, epochs: int, threads: int) -> str:
    return textwrap.dedent(f"""
        dataset: {{name: synthetic, params: {{n_rows: {rows}}}}}
        arch:
          name: sb
          bottom: {{name: mlp, params: {{hidden: [256, 64]}}}}
          heads: task
          tower: {{name: mlp_tower, params: {{hidden: [64]}}}}
        train: {{lr: 0.003, batch_size: {batch}, epochs: {epochs}, patience: 0, threads: {threads}, progress: false, seed: 1}}
    """)


def _run(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "cfg.yaml").write_text(_config(args.rows, args.batch, args.epochs, 1))
        train = ["-m", "mdmt_nas", "train", "-c", "cfg.yaml", "--no-track"]
        walls = {"1 process": _run([sys.executable, *train, "-o", "one"], tmp)}
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(args.ranks),
            "--nnodes",
            "1",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(29400 + os.getpid() % 500),
        ]
        walls[f"{args.ranks} ranks"] = _run([*launcher, *train, "-o", "many"], tmp)
        rows = []
        for (name, wall), d, k in zip(walls.items(), ("one", "many"), (1, args.ranks)):
            m = json.loads((tmp / d / "metrics.json").read_text())["summary"]
            rows.append((name, wall, m["rows_per_second"] * k, m["valid_mean_auc"], m["test_mean_auc"]))
        w1, w2 = (torch.load(tmp / d / "weights.pt", weights_only=True) for d in ("one", "many"))
        diff = max(float((w1[n].float() - w2[n].float()).abs().max()) for n in w1 if w1[n].numel())
    print(f"{args.rows:,} synthetic rows (80% train), batch {args.batch}, {args.epochs} epochs, 1 thread per process")
    print(f"{'run':<10} {'wall s':>8} {'train rows/s':>13} {'valid AUC':>10} {'test AUC':>10}")
    for name, wall, rps, va, te in rows:
        print(f"{name:<10} {wall:>8.1f} {rps:>13,.0f} {va:>10.5f} {te:>10.5f}")
    print(
        f"speed-up (train rows/s): {rows[1][2] / rows[0][2]:.2f}x | |valid AUC diff| {abs(rows[0][3] - rows[1][3]):.2e} | "
        f"|test AUC diff| {abs(rows[0][4] - rows[1][4]):.2e} | max |weight diff| {diff:.2e}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
