"""Where a search candidate's time goes besides training: the fixed overhead of each trial.

Runs the search's own evaluator (search/evaluate.py: one MLflow child run per candidate in a
temporary sqlite store, the shape guard, validation every epoch, test, latency, artifacts) on
the M3oE example, 1 epoch on 20k training rows of the synthetic default, and times each piece
by wrapping the functions that do it:

- train epochs: Trainer.train_epoch (the steps; everything else is overhead),
- forward passes of valid/test evaluation (predict) and the AUC/logloss of the cells (compute_metrics),
- model build, latency measurement, best-state copies, the AUC heatmap (matplotlib), MLflow calls.

Prints seconds per candidate (median over `--candidates`, the first one dropped as warm-up)
and each piece's share of the candidate. The candidates are one architecture, so each stays among
the search's best few; `--outside-best-few` times them as most candidates of a long search are
timed, behind a best few that score higher (the latency then takes one timed pass, not three).

    python benchmarks/candidate_overhead.py [--rows 25000] [--epochs 1] [--candidates 4] [--threads 2] [--outside-best-few]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

PIECES = collections.defaultdict(float)


def timed(owner, name: str, piece: str) -> None:
    """Wrap owner.name so its wall time adds to PIECES[piece] (outermost call only); absent names are skipped
    (so the script also measures older code, e.g. with PYTHONPATH pointing at another checkout)."""
    fn = getattr(owner, name, None)
    if fn is None:
        return
    depth = [0]

    @functools.wraps(fn)
    def wrapper(*a, **k):
        depth[0] += 1
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                PIECES[piece] += time.perf_counter() - t

    setattr(owner, name, wrapper)


def instrument() -> None:
    import mdmt_nas.metrics as metrics
    import mdmt_nas.model as model_mod
    import mdmt_nas.tracking as tracking
    import mdmt_nas.train as train

    timed(train.Trainer, "train_epoch" if hasattr(train.Trainer, "train_epoch") else "train_step", "train epochs")
    timed(train, "predict", "evaluation forward passes")
    timed(metrics, "compute_metrics", "AUC + logloss (compute_metrics)")
    train.compute_metrics = metrics.compute_metrics
    timed(train, "build_model", "model build")
    timed(train, "measure_latency", "latency measurement")
    timed(train.copy, "deepcopy", "best-state copies")
    timed(tracking, "auc_heatmap", "AUC heatmap (matplotlib)")
    timed(tracking.Tracker, "log_figure", "AUC heatmap (matplotlib)")
    for name in (
        "start_child",
        "log_params",
        "log_metrics",
        "log_batch",
        "set_tags",
        "log_text",
        "log_texts",
        "end_run",
    ):
        timed(tracking.Tracker, name, "MLflow logging")
    del model_mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=25_000, help="synthetic rows (80%% train)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="examples/m3oe.yaml")
    ap.add_argument("--outside-best-few", action="store_true", help="candidates behind a best few that score higher")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    instrument()
    from mdmt_nas.config import TrackingConfig, load_config
    from mdmt_nas.data.loading import load_dataset
    from mdmt_nas.search.evaluate import Evaluator
    from mdmt_nas.tracking import Tracker

    splits = load_dataset("synthetic", {"n_rows": args.rows})
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            args.config,
            overrides=[
                f"train.epochs={args.epochs}",
                "train.progress=false",
                f"train.threads={args.threads}",
                "train.patience=0",
            ],
        )
        config = config.model_copy(
            update={"tracking": TrackingConfig(uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}", experiment="overhead")}
        )
        tracker = Tracker(config.tracking)
        evaluator = Evaluator(splits, config, tracker, output_dir=Path(tmp) / "out", searcher="bench", space="m3oe")
        evaluator.parent_run_id = tracker.start_run("overhead-parent")
        if args.outside_best_few:  # placeholders the candidates never beat (no weights: nothing uses them here)
            evaluator.top_states = {f"best-{i}": (2.0, {}) for i in range(evaluator.keep_top)}
        runs: list[dict[str, float]] = []
        for i in range(args.candidates):
            PIECES.clear()
            t = time.perf_counter()
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                evaluator(config.arch, f"c{i}", number=i)
            total = time.perf_counter() - t
            runs.append({**PIECES, "candidate": total})
        tracker.end_run(evaluator.parent_run_id)
    keep = runs[1:] or runs
    med = {k: statistics.median(r.get(k, 0.0) for r in keep) for k in runs[0]}
    total = med["candidate"]
    other = total - sum(v for k, v in med.items() if k != "candidate")
    print(
        f"\nper-candidate time, {args.config}, {len(splits.train):,} train rows, {args.epochs} epoch(s), {args.threads} threads, "
        f"median of {len(keep)} candidates{' outside the best few' if args.outside_best_few else ''}; load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    print(f"{'piece':<36}{'seconds':>9}{'share':>8}")
    print("-" * 53)
    for k, v in sorted(((k, v) for k, v in med.items() if k != "candidate"), key=lambda kv: -kv[1]) + [
        ("other (evaluator, guard set-up, ...)", other)
    ]:
        print(f"{k:<36}{v:>9.3f}{100 * v / total:>7.1f}%")
    print(f"{'candidate':<36}{total:>9.3f}{100.0:>7.1f}%")
    fixed = total - med.get("train epochs", 0.0) - med.get("evaluation forward passes", 0.0)
    print(
        f"\nfixed overhead (all but train epochs and evaluation forward passes): {fixed:.3f} s = {100 * fixed / total:.1f}% of the candidate"
    )


if __name__ == "__main__":
    main()
