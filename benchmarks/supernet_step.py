"""The DARTS supernet's training step against the step of the largest architecture of its space.

A one-shot search is only cheap if a supernet step costs little more than one
candidate's step. This script builds the supernet of a space the way the
`darts` searcher does (`DartsSearcher._build`: softmax mixture, presence flags
hard-sampled; and with `gumbel: true`, GDAS: one sampled op per choice per
step, unsampled ops not computed), finds the largest architectures of the
space (the `--sample` random points, the default and the known points, ranked
by parameters; the `--top` largest are timed and the slowest is the
reference), and times, alternating, per batch of `--batch` rows:

- the supernet's weight step (what `DartsSearcher._weight_step` does),
- the supernet's full DARTS step (first-order alpha step on a valid batch +
  weight step, what one supernet batch costs),
- each large candidate's training step (the trainer's `Trainer.train_step`).

It prints ms per step (median), the ratios and the share of the fp32 matmul
peak is not the point here: the ratio is. Compare within one run only.

    python benchmarks/supernet_step.py [--space m3oe] [--batch 1024] [--threads 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from types import SimpleNamespace

import torch


def _load(a: argparse.Namespace):
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.data.loading import load_dataset
    from mdmt_nas.plugins import get_registry
    from mdmt_nas.spaces import load_space

    get_registry()
    splits = load_dataset("synthetic", {"n_rows": a.rows, **({"preset": a.preset} if a.preset else {})})
    return splits, load_space(a.space), ExperimentConfig()


def _largest(space, schema, sample: int, top: int, seed: int) -> list[tuple[str, object, int]]:
    """(label, arch, params) of the `top` largest points among random samples, the default and the known points."""
    from mdmt_nas.model import build_model

    rng = random.Random(seed)
    points = [("default", space.to_arch(space.default_assignment()))]
    points += [(f"known {k.name}", ar) for k, ar in space.known_points()]
    points += [(f"sample {i}", space.sample(rng)[1]) for i in range(sample)]
    seen, sized = set(), []
    for label, ar in points:
        if ar.id in seen:
            continue
        seen.add(ar.id)
        n = sum(p.numel() for p in build_model(ar, schema).parameters())
        sized.append((label, ar, n))
    return sorted(sized, key=lambda t: -t[2])[:top]


def _candidate_step(arch, schema, splits, config):
    """A closure doing one training step of `arch` on a batch: the trainer's own step (Trainer.train_step)."""
    from mdmt_nas.model import build_balancer, build_model
    from mdmt_nas.train import Trainer

    model = build_model(arch, schema)
    model.train()
    trainer = Trainer(model, build_balancer(arch, schema), splits, config.train.model_copy(update={"progress": False}))

    def step(batch, _valid) -> None:
        trainer.train_step(batch)

    return step


def _supernet_steps(space, splits, config, gumbel: bool, seed: int):
    """(weight step, full DARTS step) closures of the space's supernet, built as the darts searcher builds it."""
    from mdmt_nas.search.darts.searcher import DartsParams, DartsSearcher

    searcher = DartsSearcher(DartsParams(gumbel=gumbel))
    ctx = SimpleNamespace(space=space, splits=splits, config=config, seed=seed)
    net = searcher._build(ctx)
    net.model.train()
    net.ctl.training = True
    reduction = config.train.loss_reduction

    def weight(batch, _valid) -> None:
        searcher._weight_step(net, batch, reduction)

    def full(batch, valid) -> None:
        net.architect.step(batch, valid)
        searcher._weight_step(net, batch, reduction)

    n = sum(w.numel() for w in net.weights)
    return weight, full, n


def _time(fns: dict[str, object], batches: list, valids: list, steps: int) -> dict[str, float]:
    """Median ms per step of each closure, interleaved step by step (so load changes hit all alike)."""
    for f in fns.values():  # warm-up
        for i in range(3):
            f(batches[i % len(batches)], valids[i % len(valids)])
    out: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(steps):
        for k, f in fns.items():
            t = time.perf_counter()
            f(batches[i % len(batches)], valids[i % len(valids)])
            out[k].append(1000 * (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="m3oe")
    ap.add_argument("--rows", type=int, default=30_000, help="synthetic rows")
    ap.add_argument("--preset", default=None, help="synthetic preset (e.g. structure)")
    ap.add_argument("--batch", type=int, default=1024, help="rows per step (the darts searcher's default batch_size)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="timed steps of each (after 3 warm-up steps)")
    ap.add_argument("--sample", type=int, default=150, help="random points of the space searched for the largest")
    ap.add_argument("--top", type=int, default=3, help="largest points timed; the slowest is the reference")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    load0 = os.getloadavg()
    splits, space, config = _load(a)
    schema = splits.schema
    gen = torch.Generator().manual_seed(a.seed)
    batches = [b for _, b in zip(range(8), splits.train.batches(a.batch, shuffle=True, generator=gen))]
    valids = [b for _, b in zip(range(8), splits.valid.batches(a.batch, shuffle=True, generator=gen))]
    largest = _largest(space, schema, a.sample, a.top, a.seed)
    fns: dict[str, object] = {}
    sizes: dict[str, int] = {}
    for label, ar, n in largest:
        fns[f"candidate: {label} ({ar.id})"] = _candidate_step(ar, schema, splits, config)
        sizes[f"candidate: {label} ({ar.id})"] = n
    for gumbel in (False, True):
        tag = "gumbel (GDAS, the default)" if gumbel else "softmax (gumbel: false)"
        w, f, n = _supernet_steps(space, splits, config, gumbel, a.seed)
        fns[f"supernet {tag}: weight step"], fns[f"supernet {tag}: alpha + weight step"] = w, f
        sizes[f"supernet {tag}: weight step"] = sizes[f"supernet {tag}: alpha + weight step"] = n
    ms = _time(fns, batches, valids, a.steps)
    ref_key = max((k for k in ms if k.startswith("candidate")), key=lambda k: ms[k])
    ref = ms[ref_key]
    print(
        f"\n{a.space} space, batch {a.batch}, {a.threads} threads, median of {a.steps} interleaved steps; "
        f"load average {' / '.join(f'{x:.2f}' for x in load0)} before, {' / '.join(f'{x:.2f}' for x in os.getloadavg())} after\n"
    )
    print(f"{'step':<62}{'params':>11}{'ms/step':>9}{'x largest':>11}")
    print("-" * 93)
    for k, v in ms.items():
        print(f"{k:<62}{sizes[k]:>11,}{v:>9.1f}{v / ref:>10.2f}x")
    print(
        f"\nreference: the slowest of the {len(largest)} largest candidates ({ref_key}), {ref:.1f} ms/step; target: supernet step <= 2.5x"
    )


if __name__ == "__main__":
    main()
