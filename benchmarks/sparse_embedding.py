"""Large vocabularies: dense Adam on the embedding table vs sparse gradients + SparseAdam.

train.sparse_embedding makes the table's gradient sparse (the rows of the batch's ids) and
updates it with SparseAdam, so a step no longer writes a full-size gradient and walks every
row of the table. This script trains the M3oE example (examples/m3oe.yaml) on random data whose
user field has `--vocab` ids (items a tenth of that, power-law popularity), each setting in its
own process, and prints per setting: the training step time (median), the bytes of the table,
its gradient after a step and the optimiser state, and the process's peak RSS.

    python benchmarks/sparse_embedding.py [--vocab 1000000 10000000] [--steps 10] [--batch 4096] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def one(vocab: int, sparse: bool, steps: int, batch: int, threads: int) -> dict:
    from mdmt_nas.config import TrainConfig, load_config
    from mdmt_nas.data.schema import Schema, SparseField
    from mdmt_nas.data.tensors import MDMTTensors, Splits
    from mdmt_nas.model import build_balancer, build_model
    from mdmt_nas.train import Trainer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vocabs = {"user": vocab, "item": max(vocab // 10, 2), "city": 400, "device": 50, "hour": 24}
    schema = Schema(
        sparse=[SparseField(name=n, vocab_size=v) for n, v in vocabs.items()],
        dense=["x"],
        domain_names=["a", "b", "c"],
        tasks=["click", "like"],
    )
    n = batch * (steps + 2)

    def ids(v: int) -> torch.Tensor:  # power-law popularity over [1, v)
        u = torch.rand(n)
        return (1 + (v - 1) * u.pow(3)).long().clamp_(max=v - 1)

    data = MDMTTensors(
        torch.stack([ids(v) for v in vocabs.values()], 1),
        torch.randn(n, 1),
        torch.randint(0, 3, (n,)),
        (torch.rand(n, 2) < 0.3).float(),
    )
    splits = Splits(schema, data, data.index(slice(0, batch)), data.index(slice(0, batch)))
    arch = load_config("examples/m3oe.yaml").arch
    model = build_model(arch, schema)
    cfg = TrainConfig(
        lr=1e-3, batch_size=batch, sparse_embedding=sparse, loss_reduction="domain_task_mean", progress=False
    )
    trainer = Trainer(model, build_balancer(arch, schema), splits, cfg)
    batches = list(data.batches(batch))
    times = []
    for i, b in enumerate(batches[: steps + 2]):
        t = time.perf_counter()
        trainer.train_step(b)
        if i >= 2:  # the first steps allocate the optimiser state
            times.append(time.perf_counter() - t)
    table = model.embedding.weight
    g = table.grad
    grad_bytes = (
        0 if g is None else (g._values().numel() * 4 + g._indices().numel() * 8 if g.is_sparse else g.numel() * 4)
    )
    opts = trainer.opt.opts if hasattr(trainer.opt, "opts") else [trainer.opt]
    state = sum(
        v.numel() * v.element_size() for o in opts for st in o.state.values() for v in st.values() if torch.is_tensor(v)
    )
    return {
        "vocab": vocab,
        "sparse": sparse,
        "step_ms": 1e3 * statistics.median(times),
        "table_mb": table.numel() * 4 / 2**20,
        "grad_mb": grad_bytes / 2**20,
        "state_mb": state / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("VOCAB", "SPARSE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1] == "1", args.steps, args.batch, args.threads)))
        return
    rows = []
    for v in args.vocab:
        for sparse in (False, True):  # each in its own process: clean peak RSS
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(v),
                "1" if sparse else "0",
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"\nM3oE example, user field with VOCAB ids (+ items VOCAB/10), embedding_dim 16, batch {args.batch}, "
        f"{args.threads} threads, median of {args.steps} steps; load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    hdr = f"{'vocab':>12} {'embedding optimiser':<22}{'step ms':>9}{'table MB':>10}{'grad MB':>9}{'opt state MB':>14}{'peak RSS MB':>13}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        name = "SparseAdam (sparse)" if r["sparse"] else "Adam (dense)"
        print(
            f"{r['vocab']:>12,} {name:<22}{r['step_ms']:>9.1f}{r['table_mb']:>10.1f}{r['grad_mb']:>9.1f}{r['state_mb']:>14.1f}{r['peak_rss_mb']:>13,.0f}"
        )
    for v in args.vocab:
        d, s = (next(r for r in rows if r["vocab"] == v and r["sparse"] == x) for x in (False, True))
        print(
            f"vocab {v:,}: step {d['step_ms'] / s['step_ms']:.1f}x faster sparse; peak RSS {d['peak_rss_mb'] - s['peak_rss_mb']:,.0f} MB lower"
        )


if __name__ == "__main__":
    main()
