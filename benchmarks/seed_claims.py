"""Do the seed papers' claims reproduce on mdmt-nas's synthetic data? Prints one table per claim.

Claims checked (components in mdmt_nas/builtin/{cesaa,dephn,hamur,pmtrec,balancers}.py):

  speed   CESAA: a noisy top-k gate (k=2 of 16 experts) costs <= 0.3x the step time of
          all 16 experts dense (rows are dispatched only to selected experts), and the
          cost grows with k, not with the pool size.
  cesaa   ... at an AUC within noise of the dense 16-expert MMoE.
  mi      CESAA's mutual-information loss raises the measured expert-domain MI.
  dephn   DEPHN (soft selection, shared DNN + private Cross/FINT, explicit-map gates with
          the virtual gradient) beats MMoE on negatively / non-linearly correlated tasks.
  hamur   The HAMUR hyper adapter improves the same backbone on domain-shifted data.
  pmtrec  PMTRec beats equal weights on the main task's AUC when the auxiliary tasks are
          noisy (a share of their labels flipped).

Every training uses the ordinary trainer (mdmt_nas.train.train_architecture) with a fixed
number of epochs (best epoch restored by mean valid AUC); data seed = training seed, and
figures are the mean (+- std) over `--seeds` seeds. Test AUC is the mean over domains of
the per-(domain, task) AUC. The default run takes about 10 minutes on 2 CPU cores:

    python benchmarks/seed_claims.py                      # all claims, defaults
    python benchmarks/seed_claims.py --only speed,mi      # a subset
    python benchmarks/seed_claims.py --rows 100000 --epochs 8 --seeds 5 --all   # longer
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mdmt_nas.arch import Architecture
from mdmt_nas.config import TrainConfig
from mdmt_nas.data.loading import load_dataset
from mdmt_nas.data.tensors import Splits
from mdmt_nas.model import build_model
from mdmt_nas.train import TrainResult, train_architecture

CLAIMS = ("speed", "cesaa", "mi", "dephn", "hamur", "pmtrec")


def mlp(hidden: list[int]) -> dict[str, Any]:
    return {"name": "mlp", "params": {"hidden": hidden}}


TOWER = {"name": "mlp_tower", "params": {"hidden": [32]}}
EXPERT = mlp([128, 32])
MMOE = {"shared": {"expert": EXPERT, "num": 4}, "gate": "softmax", "tower": TOWER}
DEPHN = {
    "input_adapter": {"name": "soft_selection", "params": {"heads": 2}},
    "shared": {"experts": [EXPERT]},
    # DCN-v2's low-rank cross (rank 32) keeps the 5-layer cross affordable on 2 cores
    "task": {
        "experts": [
            {"name": "cross", "params": {"layers": 5, "low_rank": 32, "out_dim": 32}},
            {"name": "fint", "params": {"layers": 3, "out_dim": 32}},
        ]
    },
    "gate_scope": ["shared", "task"],
    "gate": "dephn",
    "tower": TOWER,
}
HAMUR = {"name": "hamur", "params": {"bottleneck": 32, "k": 32, "hyper_hidden": [64]}}
BACKBONES = {
    "mlp (towers)": ({"bottom": mlp([128, 64]), "tower": TOWER}, ["towers"]),
    "mmoe (experts)": (MMOE, ["experts"]),
    "dcn (bottom)": ({"bottom": {"name": "cross", "params": {"layers": 3, "out_dim": 64}}, "tower": TOWER}, ["bottom"]),
}

DATA = {
    "cesaa": {"num_domains": 4, "shared_signal": 0.3},
    "hamur": {"num_domains": 4, "shared_signal": 0.2, "domain_feature_shift": 1.5},
    "pmtrec": {"num_tasks": 3, "task_correlation": "positive"},
}


# ----------------------------------------------------------------------------- helpers
def fmt(values: list[float], digits: int = 4) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} +- {statistics.stdev(vals):.{digits}f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n## {title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    sys.stdout.flush()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.seeds = list(range(args.seeds))
        self._data: dict[str, Splits] = {}
        self.results: dict[str, Any] = {}

    def data(self, params: dict[str, Any], seed: int, flip: tuple[list[int], float] | None = None) -> Splits:
        key = json.dumps([params, seed, flip], sort_keys=True)
        if key not in self._data:
            splits = load_dataset("synthetic", {**params, "n_rows": self.args.rows, "seed": seed})
            if flip is not None:
                tasks, p = flip
                g = torch.Generator().manual_seed(10_000 + seed)
                for part in (splits.train, splits.valid, splits.test):
                    for t in tasks:
                        mask = torch.rand(len(part), generator=g) < p
                        part.labels[:, t] = torch.where(mask, 1 - part.labels[:, t], part.labels[:, t])
            self._data[key] = splits
        return self._data[key]

    def train(self, arch: dict[str, Any], splits: Splits, seed: int) -> TrainResult:
        a = self.args
        cfg = TrainConfig(
            epochs=a.epochs, batch_size=a.batch, lr=a.lr, patience=0, seed=seed, progress=False, threads=a.threads
        )
        t0 = time.perf_counter()
        result = train_architecture(Architecture.model_validate({"embedding_dim": 16, **arch}), splits, cfg)
        if a.verbose:
            print(
                f"    trained in {time.perf_counter() - t0:.1f}s: test AUC {result.test.mean_auc:.4f}", file=sys.stderr
            )
        return result

    @staticmethod
    def task_auc(result: TrainResult, t: int) -> float:
        col = result.test.auc[:, t]
        col = col[~np.isnan(col)]
        return float(col.mean()) if col.size else float("nan")

    # ------------------------------------------------------------------------- speed
    def speed(self) -> None:
        B, steps = self.args.speed_batch, self.args.speed_steps
        torch.set_num_threads(self.args.threads)
        splits = self.data(DATA["cesaa"], 0)
        batch = next(iter(splits.train.batches(B)))
        rows = []
        for hidden in ([256, 64], [128, 32]) if self.args.all else ([256, 64],):
            variants = {
                "dense softmax, 16 experts": {"gate": "softmax", "num": 16},
                "noisy_topk k=2 of 16 (per task)": {"gate": {"name": "noisy_topk", "params": {"k": 2}}, "num": 16},
                "noisy_topk k=2 of 16 (per row)": {
                    "gate": {"name": "noisy_topk", "params": {"k": 2, "select": "row"}},
                    "num": 16,
                },
                "noisy_topk k=2 of 32 (per row)": {
                    "gate": {"name": "noisy_topk", "params": {"k": 2, "select": "row"}},
                    "num": 32,
                },
                "noisy_topk k=4 of 16 (per row)": {
                    "gate": {"name": "noisy_topk", "params": {"k": 4, "select": "row"}},
                    "num": 16,
                },
            }
            fns = {
                name: self._step_fn(
                    {"shared": {"expert": mlp(hidden), "num": v["num"]}, "gate": v["gate"], "tower": TOWER},
                    splits,
                    batch,
                )
                for name, v in variants.items()
            }
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
            for f in fns.values():  # warm-up
                f()
            for _ in range(steps):  # interleaved, so a busy machine slows every variant alike
                for name, f in fns.items():
                    times[name].append(f())
            dense = statistics.median(a + b for a, b in times["dense softmax, 16 experts"])
            for name, ts in times.items():
                med = statistics.median(a + b for a, b in ts)
                fb, opt = statistics.median(a for a, _ in ts), statistics.median(b for _, b in ts)
                rows.append(
                    [
                        f"mlp {hidden}",
                        name,
                        f"{med * 1000:.1f}",
                        f"{fb * 1000:.1f}",
                        f"{opt * 1000:.1f}",
                        f"{med / dense:.3f}",
                    ]
                )
                self.results.setdefault("speed", {})[f"{hidden} {name}"] = {
                    "ms": med * 1000,
                    "fwd_bwd_ms": fb * 1000,
                    "optimizer_ms": opt * 1000,
                    "ratio": med / dense,
                }
        table(
            f"CESAA speed: training step time, batch {B}, {self.args.threads} thread(s), median of {steps} interleaved steps (target: k=2 of 16 <= 0.3x dense)",
            ["experts", "gate", "ms/step", "fwd+bwd", "optimizer", "x dense"],
            rows,
        )

    def _step_fn(self, arch: dict[str, Any], splits: Splits, b) -> Any:
        torch.manual_seed(0)
        model = build_model(Architecture.model_validate({"embedding_dim": 16, **arch}), splits.schema).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> tuple[float, float]:
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            ctx = model.make_context(b.sparse, b.dense, b.domain, b.labels)
            loss = F.binary_cross_entropy_with_logits(model.forward_context(ctx), b.labels)
            aux = ctx.aux.total_loss()
            (loss if aux is None else loss + aux).backward()
            t1 = time.perf_counter()
            opt.step()  # Adam touches every expert's parameters: grows with the pool size whatever the gate
            return t1 - t0, time.perf_counter() - t1

        return step

    # ------------------------------------------------------------------------- CESAA AUC and MI
    def cesaa_arch(self, mi_weight: float, mi_on: str = "weights") -> dict[str, Any]:
        gate = {"name": "noisy_topk", "params": {"k": 2, "mi_weight": mi_weight, "mi_on": mi_on}}
        return {"shared": {"expert": mlp([64, 32]), "num": 16}, "gate": gate, "tower": TOWER}

    def cesaa_runs(self, variants: list[tuple[float, str]]) -> list[tuple[str, list[tuple[TrainResult, Splits]]]]:
        cache: dict[tuple[float, str], list[tuple[TrainResult, Splits]]] = self.results.setdefault("_cesaa_runs", {})
        out = []
        for w, on in variants:
            if (w, on) not in cache:
                cache[w, on] = [
                    (self.train(self.cesaa_arch(w, on), self.data(DATA["cesaa"], s), s), self.data(DATA["cesaa"], s))
                    for s in self.seeds
                ]
            out.append((f"k=2 of 16, w_MI={w:g}" + ("" if on == "weights" else f" (mi_on {on})"), cache[w, on]))
        return out

    def cesaa(self) -> None:
        dense_arch = {"shared": {"expert": mlp([64, 32]), "num": 16}, "gate": "softmax", "tower": TOWER}
        dense = [self.train(dense_arch, self.data(DATA["cesaa"], s), s) for s in self.seeds]
        sparse = [r for r, _ in self.cesaa_runs([(0.01, "weights")])[0][1]]
        d_auc = [r.test.mean_auc for r in dense]
        s_auc = [r.test.mean_auc for r in sparse]
        diff = [b - a for a, b in zip(d_auc, s_auc)]
        rows = [
            ["dense softmax, 16 experts", fmt(d_auc), f"{statistics.mean(r.rows_per_second for r in dense):.0f}", ""],
            [
                "noisy_topk k=2 of 16, w_MI=0.01",
                fmt(s_auc),
                f"{statistics.mean(r.rows_per_second for r in sparse):.0f}",
                fmt(diff),
            ],
        ]
        table(
            "CESAA: test mean AUC, k=2 of 16 vs all 16 dense (4 domains, shared_signal 0.3)",
            ["model", "test AUC", "train rows/s", "AUC diff (sparse - dense)"],
            rows,
        )
        self.results["cesaa"] = {"dense": d_auc, "sparse": s_auc}

    def mi(self) -> None:
        variants = [(0.0, "weights"), (0.01, "weights"), (0.05, "weights")]
        if self.args.all:
            variants += [(0.2, "weights"), (0.05, "probs")]
        rows = []
        for key, pairs in self.cesaa_runs(variants):
            soft, sel, cv, auc = [], [], [], []
            for result, splits in pairs:
                m = self._gate_metrics(result, splits)
                soft.append(m["cesaa.mi"])
                sel.append(m["cesaa.mi_sel"])
                cv.append(m["cesaa.load_cv"])
                auc.append(result.test.mean_auc)
            rows.append([key, fmt(soft), fmt(sel), fmt(cv, 3), fmt(auc)])
            self.results.setdefault("mi", {})[key] = {"mi": soft, "mi_sel": sel, "load_cv": cv, "auc": auc}
        table(
            f"CESAA: expert-domain mutual information on the test split (nats; max log 4 = {math.log(4):.3f})",
            ["model", "MI (gate weights)", "MI (selections)", "load CV", "test AUC"],
            rows,
        )

    @staticmethod
    def _gate_metrics(result: TrainResult, splits: Splits) -> dict[str, float]:
        model = result.model.eval()
        b = next(iter(splits.test.batches(len(splits.test))))
        with torch.no_grad():
            ctx = model.make_context(b.sparse, b.dense, b.domain)
            model.forward_context(ctx)
        return dict(ctx.aux.metrics)

    # ------------------------------------------------------------------------- DEPHN
    def dephn(self) -> None:
        rows = []
        archs = {"mmoe (4 x mlp)": MMOE, "dephn": DEPHN}
        if self.args.all:
            archs["dephn, no virtual gradient"] = {
                **DEPHN,
                "gate": {"name": "dephn", "params": {"virtual_gradient": False}},
            }
            archs["dephn, identity map only"] = {**DEPHN, "gate": {"name": "dephn", "params": {"maps": ["identity"]}}}
        for corr in ("negative", "nonlinear"):
            base = None
            for name, arch in archs.items():
                res = [self.train(arch, self.data({"task_correlation": corr}, s), s) for s in self.seeds]
                t0, t1, mean = (
                    [self.task_auc(r, 0) for r in res],
                    [self.task_auc(r, 1) for r in res],
                    [r.test.mean_auc for r in res],
                )
                base = mean if base is None else base
                diff = fmt([b - a for a, b in zip(base, mean)]) if mean is not base else ""
                rows.append(
                    [corr, name, fmt(t0), fmt(t1), fmt(mean), diff, f"{statistics.mean(r.num_params for r in res):.0f}"]
                )
                self.results.setdefault("dephn", {})[f"{corr} {name}"] = mean
        table(
            "DEPHN vs MMoE: test AUC per task (2 tasks, 3 domains)",
            ["tasks", "model", "AUC task_0", "AUC task_1", "mean AUC", "diff vs mmoe", "params"],
            rows,
        )

    # ------------------------------------------------------------------------- HAMUR
    def hamur(self) -> None:
        rows = []
        names = list(BACKBONES) if self.args.all else ["mlp (towers)"]
        for name in names:
            arch, sites = BACKBONES[name]
            bare = [self.train(arch, self.data(DATA["hamur"], s), s) for s in self.seeds]
            adapted = [
                self.train({**arch, "adapter": HAMUR, "adapter_sites": sites}, self.data(DATA["hamur"], s), s)
                for s in self.seeds
            ]
            a, b = [r.test.mean_auc for r in bare], [r.test.mean_auc for r in adapted]
            rows.append(
                [
                    name,
                    fmt(a),
                    fmt(b),
                    fmt([y - x for x, y in zip(a, b)]),
                    f"{bare[0].num_params} -> {adapted[0].num_params}",
                ]
            )
            self.results.setdefault("hamur", {})[name] = {"bare": a, "hamur": b}
        table(
            "HAMUR: same backbone without / with the hyper adapter (4 domains, shared_signal 0.2, feature shift 1.5)",
            ["backbone (adapter site)", "test AUC bare", "test AUC + hamur", "diff", "params"],
            rows,
        )

    # ------------------------------------------------------------------------- PMTRec
    def pmtrec(self) -> None:
        flip = ([1, 2], self.args.aux_noise)
        balancers: dict[str, Any] = {"equal": "equal", "pmtrec": {"name": "pmtrec", "params": {"main_task": "task_0"}}}
        if self.args.all:
            balancers.update(
                {
                    "pmtrec, no personal weights": {
                        "name": "pmtrec",
                        "params": {"main_task": "task_0", "personalize": False},
                    },
                    "pmtrec, focusing only": {
                        "name": "pmtrec",
                        "params": {"main_task": "task_0", "personalize": False, "balance": False},
                    },
                    "pmtrec, GMB reduce-only": {
                        "name": "pmtrec",
                        "params": {"main_task": "task_0", "balance_mode": "reduce"},
                    },
                    "pcgrad": "pcgrad",
                    "uncertainty": "uncertainty",
                    "gradnorm": "gradnorm",
                }
            )
        rows, base = [], None
        for name, bal in balancers.items():
            res = [self.train({**MMOE, "balancer": bal}, self.data(DATA["pmtrec"], s, flip), s) for s in self.seeds]
            main = [self.task_auc(r, 0) for r in res]
            base = main if base is None else base
            diff = fmt([b - a for a, b in zip(base, main)]) if main is not base else ""
            rows.append(
                [
                    name,
                    fmt(main),
                    diff,
                    fmt([self.task_auc(r, 1) for r in res]),
                    f"{statistics.mean(r.rows_per_second for r in res):.0f}",
                ]
            )
            self.results.setdefault("pmtrec", {})[name] = main
        table(
            f"PMTRec vs equal weights: main task (task_0) test AUC; auxiliary tasks 1, 2 with {self.args.aux_noise:.0%} labels flipped",
            ["balancer", "main-task AUC", "diff vs equal", "aux task_1 AUC", "train rows/s"],
            rows,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CLAIMS), help=f"comma-separated claims among {', '.join(CLAIMS)}")
    ap.add_argument("--rows", type=int, default=20_000, help="synthetic rows per dataset (80/10/10 split)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is the most stable on a shared machine)")
    ap.add_argument("--speed-batch", type=int, default=4096)
    ap.add_argument("--speed-steps", type=int, default=5)
    ap.add_argument(
        "--aux-noise", type=float, default=0.3, help="share of auxiliary-task labels flipped for the PMTRec claim"
    )
    ap.add_argument(
        "--all",
        action="store_true",
        help="also: smaller experts in the speed table, MI ablations, DEPHN ablations, HAMUR on MMoE and DCN, all balancers",
    )
    ap.add_argument("--json", default=None, help="also write the raw figures to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    t0 = time.perf_counter()
    print(
        f"# seed claims: rows={args.rows} epochs={args.epochs} batch={args.batch} lr={args.lr} seeds={args.seeds} threads={args.threads}"
    )
    for claim in [c.strip() for c in args.only.split(",") if c.strip()]:
        if claim not in CLAIMS:
            ap.error(f"unknown claim {claim!r}; choose from {', '.join(CLAIMS)}")
        t = time.perf_counter()
        getattr(bench, claim)()
        print(f"({claim}: {time.perf_counter() - t:.0f}s)")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    if args.json:
        out = {k: v for k, v in bench.results.items() if not k.startswith("_")}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
