"""The public M3oE reference code against mdmt-nas on the same MovieLens-100K file.

Given a checkout of github.com/Applied-Machine-Learning-Lab/M3oE (never
downloaded here, never modified: its modules are imported from the checkout
and its own data preparation and trainer run on a file we write), this
script

1. converts MovieLens-100K (RecBole's atomic files, `mdmt-nas data get
   ml-100k`) into the reference's `examples/data/ml-1m/ml-1m.csv` layout:
   columns user_id, movie_id, rating, timestamp, title, genres (`|`-separated),
   gender, age (ML-1M age codes 1/18/25/35/45/50/56 from the raw ages),
   occupation, zip; rows grouped by user in file order, like ML-1M's
   ratings.dat;
2. prepares it with the reference's `get_movielens_data_rank_multidomain`
   (click = rating > 3, like = rating > 4; features user_id, movie_id, gender,
   occupation, zip, first genre, domain indicator as 16-dim embeddings plus age
   as one MinMax-scaled dense value; domains age {1,18}, {25}, {35+};
   sequential 80/10/10 split) and builds its `MDMTRec` and `CTRTrainer` exactly
   as its `run_movielens.py` does (device cpu);
3. loads the same file with mdmt-nas's `csv` dataset (labels as thresholds
   on rating, genre = first element of genres, the same sequential split) and
   the architecture of examples/m3oe.yaml with the dense value fed raw, as
   the reference does;
4. alternates one reference training epoch (`CTRTrainer.train_one_epoch`,
   its DataLoader with its default 8 workers) with one mdmt-nas training epoch
   (`Trainer.train_epoch`, the structure step included), `--epochs` times
   each, and prints rows/s (median over epochs), the ratio, FLOPs per training
   row of each (forward + loss + backward, torch.utils.flop_counter) and the
   share of this machine's fp32 matmul peak (a 1024x1024 matmul measured in
   the same run, before and after).

    python benchmarks/reference_m3oe.py --reference /path/to/M3oE [--epochs 6] [--batch 4096] [--threads 2]

Without `--reference` (or $MDMT_NAS_M3OE_REFERENCE) it prints why it skipped
and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ENV_REFERENCE = "MDMT_NAS_M3OE_REFERENCE"
#: ML-1M age codes: a code c covers raw ages [c, next code).
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)


def ml1m_age_code(age: pd.Series) -> np.ndarray:
    """Raw ages -> ML-1M age codes (1 = under 18, 18 = 18-24, 25 = 25-34, ..., 56 = 56+)."""
    codes = np.asarray(ML1M_AGE_CODES)
    return codes[np.clip(np.searchsorted(codes, age.to_numpy(dtype=np.int64), side="right") - 1, 0, None)]


def convert_ml100k(src: Path, out_csv: Path) -> int:
    """RecBole's ml-100k atomic files -> the reference's ml-1m.csv layout; returns the row count."""
    from mdmt_nas.data.movielens import read_atomic

    inter = read_atomic(src / "ml-100k.inter", ["user_id", "item_id", "rating", "timestamp"])
    user = read_atomic(src / "ml-100k.user", ["user_id", "age", "gender", "occupation", "zip_code"])
    item = read_atomic(src / "ml-100k.item", ["item_id", "movie_title", "class"])
    df = inter.merge(item, on="item_id", how="left").merge(user, on="user_id", how="left")
    out = pd.DataFrame({
        "user_id": df["user_id"].astype(np.int64),
        "movie_id": df["item_id"].astype(np.int64),
        "rating": df["rating"].astype(float).astype(np.int64),
        "timestamp": df["timestamp"].astype(float).astype(np.int64),
        "title": df["movie_title"],
        "genres": df["class"].str.split().str.join("|"),
        "gender": df["gender"],
        "age": ml1m_age_code(df["age"].astype(np.int64)),
        "occupation": df["occupation"],
        "zip": df["zip_code"],
    })  # fmt: skip
    out = out.sort_values("user_id", kind="stable")  # ML-1M's ratings.dat is grouped by user, in file order
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_csv, index=False)
    return len(out)


def ours_mapping() -> dict:
    """The csv mapping that reads the converted file the way the reference prepares it."""
    return {
        "domain": "age",
        "domain_names": {"1": "under25", "18": "under25", "25": "25to34", "35": "35plus", "45": "35plus", "50": "35plus", "56": "35plus"},
        "labels": {"click": "rating > 3", "like": "rating > 4"},
        "derived": {"genre": {"first_of": "genres", "separator": "|"}},
        "sparse": ["user_id", "movie_id", "gender", "occupation", "zip", "genre"],
        "dense": ["age"],
    }  # fmt: skip


def matmul_peak_gflops(n: int = 1024, reps: int = 30) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Swallow the reference's prints and tqdm bars (they go to stdout/stderr)."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class Reference:
    """The reference's own data preparation, model and trainer, set up as its run_movielens.py main() does."""

    def __init__(self, checkout: Path, data_dir: Path, batch: int, seed: int, workers: int | None):
        for p in (checkout, checkout / "examples"):
            if str(p) not in sys.path:
                sys.path.insert(0, str(p))
        import run_movielens as rm  # the reference's example script (imported, never modified)
        from MDMTRec.models.multi_domain import MDMTRec
        from MDMTRec.trainers import CTRTrainer
        from MDMTRec.utils.data import DataGenerator, TorchDataset

        self.TorchDataset = TorchDataset
        rm.setup_seed(seed)
        dense, sparse, x_train, y_train, x_val, y_val, x_test, y_test, domain_num = (
            rm.get_movielens_data_rank_multidomain("all", "all", str(data_dir))
        )
        self.x_train, self.y_train, self.domain_num = x_train, y_train, domain_num
        kw = {} if workers is None else {"num_workers": workers}
        self.train_loader, self.val_loader, _ = DataGenerator(x_train, y_train).generate_dataloader(
            x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, batch_size=batch, **kw)  # fmt: skip
        self.model = MDMTRec(dense + sparse, domain_num=domain_num, task_num=2, fcn_dims=[512, 256, 256, 64], expert_num=4,
                             exp_d=1, exp_t=1, bal_d=1, bal_t=1)  # fmt: skip
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.trainer = CTRTrainer(self.model, optimizer_params={"lr": 1e-2, "weight_decay": 1e-5},
                                  optimizer_params_darts={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=1, earlystop_patience=10,
                                  device="cpu", model_path=str(data_dir / "ref_model_"), scheduler_params={"step_size": 4, "gamma": 0.85})  # fmt: skip

    def epoch(self) -> float:
        """One training epoch (CTRTrainer.train_one_epoch); rows/s."""
        t = time.perf_counter()
        self.trainer.train_one_epoch(self.train_loader, domain_num=self.domain_num, task_num=2)
        return len(self.x_train) / (time.perf_counter() - t)

    def flops_per_row(self, batch: int) -> float:
        """Forward, loss and backward of one train_one_epoch step (the optimizer step adds no matmul FLOPs)."""
        from torch.utils.flop_counter import FlopCounterMode

        n = min(batch, len(self.x_train))
        loader = torch.utils.data.DataLoader(self.TorchDataset(self.x_train[:n], self.y_train[:n]), batch_size=n)
        with FlopCounterMode(display=False) as counter:
            self.trainer.train_one_epoch(loader, domain_num=self.domain_num, task_num=2)
        return counter.get_total_flops() / n

    def valid_auc(self) -> float:
        try:
            _, auc, _, _ = self.trainer.evaluate_multi_domain(self.model, self.val_loader, self.domain_num, task_num=2)
        except ValueError:  # scikit-learn: a (domain, task) cell with one class (tiny files only)
            return float("nan")
        return float(np.mean(auc))


class Ours:
    """mdmt-nas on the same file: csv dataset, examples/m3oe.yaml, the reference's optimiser settings."""

    def __init__(self, data_dir: Path, batch: int, seed: int, threads: int, config: str):
        from mdmt_nas.config import TrainConfig, load_config
        from mdmt_nas.data.loading import load_dataset
        from mdmt_nas.model import build_balancer, build_model
        from mdmt_nas.train import Trainer, set_seed

        self.splits = load_dataset(
            "csv", {"path": str(data_dir / "ml-1m.csv"), "columns": ours_mapping(), "split": {"kind": "sequential"}}
        )
        cfg = load_config(config)
        arch = cfg.arch
        train = cfg.train.model_copy(update={"lr": 1e-2, "weight_decay": 1e-5, "arch_lr": 1e-3, "batch_size": batch, "seed": seed,
                                             "threads": threads, "progress": False, "loss_reduction": "domain_task_mean"})  # fmt: skip
        self.cfg = TrainConfig.model_validate(train.model_dump())
        set_seed(seed)
        self.model = build_model(arch, self.splits.schema)
        self.params = self.model.num_parameters()
        self.trainer = Trainer(self.model, build_balancer(arch, self.splits.schema), self.splits, self.cfg)
        self.trainer.start_streams()

    def epoch(self) -> float:
        """One training epoch as Trainer.fit runs it (batches, steps, the once-per-epoch structure step); rows/s."""
        t = time.perf_counter()
        _, _, rows = self.trainer.train_epoch()
        return rows / (time.perf_counter() - t)

    def flops_per_row(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        b = next(iter(self.splits.train.batches(self.cfg.batch_size)))
        with FlopCounterMode(display=False) as counter:
            self.trainer.train_step(b)
        return counter.get_total_flops() / len(b)

    def valid_auc(self) -> float:
        from mdmt_nas.train import evaluate

        return evaluate(self.model, self.splits.valid, self.splits.schema).mean_auc


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--reference",
        type=Path,
        default=os.environ.get(ENV_REFERENCE) or None,
        help=f"M3oE checkout (default ${ENV_REFERENCE})",
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="RecBole ml-100k files (default: the `mdmt-nas data get ml-100k` cache)",
    )
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where ml-1m.csv is written (default: a temporary folder)"
    )
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument(
        "--workers", type=int, default=None, help="reference DataLoader workers (default: the reference's own, 8)"
    )
    ap.add_argument("--config", default="examples/m3oe.yaml", help="mdmt-nas architecture (default: the M3oE example)")
    ap.add_argument("--verbose", action="store_true", help="show the reference's own output")
    args = ap.parse_args()
    if args.reference is None:
        print(
            f"reference_m3oe: skipped: no M3oE reference checkout given (--reference PATH or ${ENV_REFERENCE}); "
            "get one with `git clone https://github.com/Applied-Machine-Learning-Lab/M3oE` (this script never downloads it)"
        )
        return 0
    if (
        not (args.reference / "MDMTRec" / "models" / "multi_domain" / "model.py").is_file()
        or not (args.reference / "examples" / "run_movielens.py").is_file()
    ):
        print(
            f"reference_m3oe: {args.reference} is not a checkout of the M3oE reference code (no MDMTRec/models/multi_domain/model.py "
            "or examples/run_movielens.py)",
            file=sys.stderr,
        )
        return 2
    from mdmt_nas.data.fetch import ml100k_dir

    src = args.data_dir or ml100k_dir()
    if not (src / "ml-100k.inter").is_file():
        print(
            f"reference_m3oe: no ml-100k files in {src}; run `mdmt-nas data get ml-100k` or pass --data-dir",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        rows = convert_ml100k(src, work / "ml-1m.csv")
        with quiet(not args.verbose):
            ref = Reference(args.reference.resolve(), work, args.batch, args.seed, args.workers)
        ours = Ours(work, args.batch, args.seed, args.threads, args.config)
        print(
            f"\nM3oE: reference code ({args.reference}) vs mdmt-nas ({args.config}), MovieLens-100K in the reference's ml-1m.csv "
            f"layout ({rows:,} rows, {len(ref.x_train):,} train rows; mdmt-nas {len(ours.splits.train):,}), batch {args.batch}, "
            f"{args.threads} threads, load average before: {load()}"
        )
        peak = matmul_peak_gflops()
        ref_rps, ours_rps = [], []
        for e in range(args.epochs):
            with quiet(not args.verbose):
                ref_rps.append(ref.epoch())
            ours_rps.append(ours.epoch())
            print(
                f"  epoch {e}: reference {ref_rps[-1]:>9,.0f} rows/s   mdmt-nas {ours_rps[-1]:>9,.0f} rows/s   ({ours_rps[-1] / ref_rps[-1]:.2f}x)   load {load()}"
            )
        peak2 = matmul_peak_gflops()
        with quiet(not args.verbose):
            f_ref, auc_ref = ref.flops_per_row(args.batch), ref.valid_auc()
        f_ours, auc_ours = ours.flops_per_row(), ours.valid_auc()
    r_ref, r_ours = statistics.median(ref_rps), statistics.median(ours_rps)
    print(
        f"fp32 matmul peak (1024x1024): {peak:.1f} GFLOP/s (before) / {peak2:.1f} GFLOP/s (after); load average after: {load()}\n"
    )
    hdr = f"{'model':<24}{'params':>10}{'FLOPs/row':>12}{'rows/s':>10}{'GFLOP/s':>9}{'% peak':>8}{'valid AUC':>11}"
    print(hdr)
    print("-" * len(hdr))
    for name, n, f, r, auc in (
        ("reference (M3oE code)", ref.params, f_ref, r_ref, auc_ref),
        ("mdmt-nas", ours.params, f_ours, r_ours, auc_ours),
    ):
        gf = f * r / 1e9
        print(
            f"{name:<24}{n:>10,}{f / 1e6:>10.2f}M{r:>10,.0f}{gf:>9.1f}{100 * gf / max(peak, peak2):>7.1f}%{auc:>11.4f}"
        )
    print(
        f"\nrows/s median of {args.epochs} epochs each, alternated. speed-up mdmt-nas / reference: {r_ours / r_ref:.2f}x   "
        f"FLOPs/row reference / mdmt-nas: {f_ref / f_ours:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
