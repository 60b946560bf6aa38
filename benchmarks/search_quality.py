"""Search quality on the synthetic default: searched architectures vs fixed baselines, over seeds.

For each seed (model initialisation, sampler; the data are the same for every run):

  darts          the `darts` searcher on the space (supernet epochs = --darts-epochs), then its
                 retraining of the derived architecture (train epochs = --epochs)
  optuna-tpe     --trials candidates (--candidate-epochs each); the winner by valid AUC
  optuna-random  the same with random sampling
  shared_bottom, mmoe, ple, m3oe
                 the example configs (examples/*.yaml) trained once (their own training settings;
                 --epochs overrides their epochs)

Reports test mean AUC (mean +- std over seeds; selection always on valid), wall time per method,
and for DARTS the cost ratio (supernet search + retraining) / one training of the derived
architecture (the retraining child run's own wall time). Searched candidates train with the
MMoE example's settings (Adam lr 0.003, batch 4096, patience 3) so that every method gets the same
optimiser.

    python benchmarks/search_quality.py            # full: 200k rows, 3 seeds, 20 trials (hours on 2 cores)
    python benchmarks/search_quality.py --quick    # 20k rows, 3 seeds, 6 trials, 2 epochs (minutes)

Writes <output>/search_quality.md and results.json; MLflow runs go to <output>/mlflow.db.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXED = ("shared_bottom", "mmoe", "ple", "m3oe")
SEARCHED = ("darts", "optuna-tpe", "optuna-random")
SEARCH_TRAIN = {"lr": 0.003, "batch_size": 4096, "patience": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="20k rows, 6 trials, 2 epochs everywhere, 2 supernet epochs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", type=int, default=None, help="synthetic rows (default 200000; 20000 with --quick)")
    p.add_argument("--trials", type=int, default=None, help="Optuna trials per search (default 20; 6 with --quick)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of fixed models and of DARTS' retraining (default: the examples' 8; 2 with --quick)",
    )
    p.add_argument(
        "--candidate-epochs", type=int, default=None, help="epochs of each Optuna candidate (default: --epochs or 8)"
    )
    p.add_argument(
        "--darts-epochs", type=int, default=None, help="DARTS supernet epochs (default: the searcher's; 2 with --quick)"
    )
    p.add_argument("--space", default="m3oe")
    p.add_argument(
        "--methods", default=",".join(SEARCHED + FIXED), help="comma-separated subset of " + ", ".join(SEARCHED + FIXED)
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--output", type=Path, default=None, help="default runs/search-quality-<time>")
    a = p.parse_args(argv)
    if a.quick:
        a.rows = a.rows or 20_000
        a.trials = a.trials or 6
        a.epochs = a.epochs or 2
        a.darts_epochs = a.darts_epochs or 2
    a.rows = a.rows or 200_000
    a.trials = a.trials or 20
    a.candidate_epochs = a.candidate_epochs or a.epochs or 8
    a.output = a.output or ROOT / "runs" / f"search-quality-{time.strftime('%Y%m%d-%H%M%S')}"
    bad = [m for m in a.methods.split(",") if m not in SEARCHED + FIXED]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(SEARCHED + FIXED)}")
    return a


def base_overrides(a: argparse.Namespace, seed: int, uri: str) -> list[str]:
    out = [
        f"dataset.params.n_rows={a.rows}",
        f"train.seed={seed}",
        "train.progress=false",
        f"tracking.uri={uri}",
        "tracking.experiment=search-quality",
    ]
    if a.threads:
        out.append(f"train.threads={a.threads}")
    return out


def run_fixed(name: str, a: argparse.Namespace, seed: int, splits: Any, uri: str) -> dict[str, Any]:
    from mdmt_nas.config import load_config
    from mdmt_nas.experiment import run_training

    sets = base_overrides(a, seed, uri) + ([f"train.epochs={a.epochs}"] if a.epochs else [])
    cfg = load_config(ROOT / "examples" / f"{name}.yaml", sets)
    t0 = time.perf_counter()
    r = run_training(cfg, splits, run_name=f"{name}-seed{seed}").result
    return {
        "test_auc": r.test.mean_auc,
        "valid_auc": r.valid.mean_auc,
        "wall": time.perf_counter() - t0,
        "params": r.num_params,
        "arch_id": r.arch.id,
    }


def run_searched(name: str, a: argparse.Namespace, seed: int, splits: Any, uri: str, out: Path) -> dict[str, Any]:
    from mdmt_nas.config import load_config
    from mdmt_nas.search.runner import run_search

    sets = base_overrides(a, seed, uri) + [f"train.{k}={v}" for k, v in SEARCH_TRAIN.items()]
    sets += [f"search.space={a.space}", f"search.searcher={name}", f"search.seed={seed}"]
    if name == "darts":
        if a.darts_epochs:
            sets.append(f"search.budget={a.darts_epochs}")
        if a.epochs:
            sets.append(f"train.epochs={a.epochs}")
    else:
        sets += [
            f"search.budget={a.trials}",
            f"search.epochs={a.candidate_epochs}",
            f"train.epochs={a.candidate_epochs}",
        ]
    cfg = load_config(None, sets)
    t0 = time.perf_counter()
    outcome = run_search(cfg, out / f"{name}-seed{seed}", splits=splits)
    wall = time.perf_counter() - t0
    best = outcome.best
    res = {
        "test_auc": best.test_mean_auc if best else math.nan,
        "valid_auc": best.valid_mean_auc if best else math.nan,
        "wall": wall,
        "params": best.num_params if best else 0,
        "arch_id": outcome.result.best.id,
        "candidates": len(outcome.result.candidates),
        "finished": outcome.summary["finished"],
        "pruned": outcome.summary["pruned"],
        "failed": outcome.summary["failed"],
    }
    if name == "darts" and best is not None and best.run_id:
        from mlflow.tracking import MlflowClient

        info = MlflowClient(uri).get_run(best.run_id).info
        retrain = (info.end_time - info.start_time) / 1000.0
        res.update(retrain_wall=retrain, ratio=wall / retrain if retrain > 0 else math.nan)
    return res


def mean_std(values: list[float], digits: int = 4) -> str:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def report(a: argparse.Namespace, results: dict[str, list[dict[str, Any]]], total: float) -> str:
    lines = [
        f"# Search quality on synthetic ({a.rows:,} rows, {a.seeds} seeds, space `{a.space}`)",
        "",
        f"settings: trials {a.trials} x {a.candidate_epochs} epochs (Optuna), DARTS supernet {a.darts_epochs or 'default'} epochs, "
        f"fixed/retrain epochs {a.epochs or 'example defaults'}; total {total / 60:.1f} min",
        "",
        "| method | test mean AUC | valid mean AUC | wall time (s) | params (last seed) | candidates |",
        "|---|---|---|---|---|---|",
    ]
    for m, rs in results.items():
        cands = (
            ""
            if "candidates" not in rs[0]
            else " / ".join(f"{r['finished']}f {r['pruned']}p {r['failed']}x" for r in rs)
        )
        lines.append(
            f"| {m} | {mean_std([r['test_auc'] for r in rs])} | {mean_std([r['valid_auc'] for r in rs])} | "
            f"{mean_std([r['wall'] for r in rs], 1)} | {rs[-1]['params']:,} | {cands} |"
        )
    if "darts" in results:
        ratios = [r.get("ratio", math.nan) for r in results["darts"]]
        lines += [
            "",
            f"DARTS cost: (supernet search + retraining) / one training of the derived architecture = {mean_std(ratios, 2)} "
            f"(retraining {mean_std([r.get('retrain_wall', math.nan) for r in results['darts']], 1)} s)",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import torch

    from mdmt_nas.data.loading import load_dataset

    if a.threads:
        torch.set_num_threads(a.threads)
    a.output.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{a.output.resolve() / 'mlflow.db'}"
    splits = load_dataset("synthetic", {"n_rows": a.rows})
    methods = a.methods.split(",")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    t_all = time.perf_counter()
    for seed in range(a.seeds):
        for m in methods:
            t = time.perf_counter()
            r = run_searched(m, a, seed, splits, uri, a.output) if m in SEARCHED else run_fixed(m, a, seed, splits, uri)
            results[m].append(r)
            print(
                f"seed {seed} {m:14} test AUC {r['test_auc']:.4f}  valid AUC {r['valid_auc']:.4f}  {time.perf_counter() - t:7.1f}s"
                + (f"  ratio {r['ratio']:.2f}" if "ratio" in r else ""),
                flush=True,
            )
            (a.output / "results.json").write_text(
                json.dumps(
                    {"args": {k: str(v) for k, v in vars(a).items()}, "results": results}, indent=2, default=float
                )
            )
    text = report(a, results, time.perf_counter() - t_all)
    (a.output / "search_quality.md").write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
