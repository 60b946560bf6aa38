"""Training throughput of the reference M3oE architecture: mdmt-nas vs the reference's way.

Both models have the same architecture and parameter shapes (examples/m3oe.yaml:
STAR bottom 512 -> 256 with skip, 4 shared + 1 per domain + 1 per task experts
256 -> 64 (one Linear + LayerNorm + ReLU), a softmax gate and a tower per (domain,
task), dense values fed raw; `--config` takes another M3oE config, e.g. one with
`hidden: [256, 64]` experts, as this benchmark used before 2026-12). The "reference-style"
model computes the way the public M3oE code does: every domain branch (STAR
slot, gates, towers) on every row followed by a mask, experts one by one in
Python loops, rows batched by a per-row Dataset + collate. mdmt-nas routes rows
to their domain's branch, evaluates identical experts as one stacked bank, and
slices pre-built tensors.

Prints a table: rows/s of each, the ratio, model FLOPs per row (forward +
backward, counted by torch's FlopCounterMode) and the share of this machine's
fp32 matmul peak (a 1024x1024 matmul, measured in the same run).

    python benchmarks/throughput.py [--rows 200000] [--batch 4096] [--steps 30] [--config examples/m3oe.yaml]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mdmt_nas.config import load_config
from mdmt_nas.data.loading import load_dataset
from mdmt_nas.model import build_model


def _block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU())


class ReferenceStyleM3oE(nn.Module):
    """M3oE computed as the reference code does: all branches on all rows, then masked."""

    def __init__(
        self,
        vocab: list[int],
        num_dense: int,
        D: int,
        T: int,
        E: int = 16,
        star: int = 512,
        rep: int = 256,
        hidden: tuple[int, ...] = (64,),
        n_shared: int = 4,
        raw_dense: bool = True,
    ):
        super().__init__()
        self.D, self.T = D, T
        self.embeddings = nn.ModuleList(nn.Embedding(v, E) for v in vocab)  # one table per field, as the reference
        self.dense_proj = None if raw_dense else nn.Parameter(torch.randn(num_dense, E) * 0.1)
        self.domain_emb = nn.Embedding(D, E)
        inp = (len(vocab) + 1) * E + (num_dense if raw_dense else num_dense * E)
        out = hidden[-1]

        def expert() -> nn.Sequential:
            dims = [rep, *hidden]
            return nn.Sequential(*(_block(a, b) for a, b in zip(dims[:-1], dims[1:])))

        self.shared_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(inp, star)))
        self.shared_bias = nn.Parameter(torch.zeros(star))
        self.slot_weight = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(inp, star))) for _ in range(D)
        )
        self.slot_bias = nn.ParameterList(nn.Parameter(torch.zeros(star)) for _ in range(D))
        self.star_mlp = _block(star, rep)
        self.skip = _block(inp, rep)
        self.experts = nn.ModuleList(expert() for _ in range(n_shared))
        self.domain_experts = nn.ModuleList(expert() for _ in range(D))
        self.task_experts = nn.ModuleList(expert() for _ in range(T))
        self.gates = nn.ModuleList(nn.Linear(rep, n_shared) for _ in range(D * T))
        self.towers = nn.ModuleList(nn.Sequential(_block(out, out), nn.Linear(out, 1)) for _ in range(D * T))
        self.a_d, self.a_t, self.b_d, self.b_t = (nn.Parameter(torch.tensor(1.0)) for _ in range(4))

    def forward(self, sparse, dense, domain):
        fields = [emb(sparse[:, i]) for i, emb in enumerate(self.embeddings)]
        fields.append(dense if self.dense_proj is None else dense.unsqueeze(-1) * self.dense_proj)
        x = torch.cat([f.flatten(1) if f.dim() == 3 else f for f in fields] + [self.domain_emb(domain)], dim=1)
        masks = [(domain == d) for d in range(self.D)]
        h = torch.zeros(x.shape[0], self.shared_weight.shape[1])
        for d in range(self.D):  # every domain's STAR slot on every row, then masked
            y = x @ (self.slot_weight[d] * self.shared_weight) + self.slot_bias[d] + self.shared_bias
            h = torch.where(masks[d].unsqueeze(1), y, h)
        h = self.star_mlp(h) + self.skip(x)
        gate = [torch.softmax(g(h.detach()), dim=1).unsqueeze(1) for g in self.gates]
        fea = torch.stack([e(h) for e in self.experts], 1)
        dom = [e(h) for e in self.domain_experts]
        tsk = [e(h) for e in self.task_experts]
        bd, bt = torch.sigmoid(self.b_d), torch.sigmoid(self.b_t)
        wd = [
            bd * dom[i] + sum((1 - bd) / (self.D - 1) * dom[j] for j in range(self.D) if j != i) for i in range(self.D)
        ]
        wt = [
            bt * tsk[i] + sum((1 - bt) / (self.T - 1) * tsk[j] for j in range(self.T) if j != i) for i in range(self.T)
        ]
        ad, at = torch.sigmoid(self.a_d), torch.sigmoid(self.a_t)
        out = torch.zeros(x.shape[0], self.T)
        for t in range(self.T):
            for d in range(self.D):  # every (domain, task) head on every row, then masked
                i = t * self.D + d
                fused = torch.bmm(gate[i], fea).squeeze(1) + ad * wd[d] + at * wt[t]
                logit = self.towers[i](fused).squeeze(1)
                out[:, t] = torch.where(masks[d], logit, out[:, t])
        return out


class RowDataset(torch.utils.data.Dataset):
    """The reference's input pipeline: one row per __getitem__, batches by collate."""

    def __init__(self, data):
        self.d = data

    def __len__(self):
        return len(self.d)

    def __getitem__(self, i):
        return self.d.sparse[i], self.d.dense[i], self.d.domain[i], self.d.labels[i]


def matmul_peak_gflops(n: int = 1024, reps: int = 30) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def step_fn(model, opt):
    def step(sparse, dense, domain, labels):
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(sparse, dense, domain), labels)
        loss.backward()
        opt.step()

    return step


def flops_per_row(model, b) -> float:
    with FlopCounterMode(display=False) as counter:
        F.binary_cross_entropy_with_logits(model(b.sparse, b.dense, b.domain), b.labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(b)


def time_steps(step, batches) -> float:
    step(*batches[0])  # warm-up
    t = time.perf_counter()
    for b in batches[1:]:
        step(*b)
    return sum(len(b[0]) for b in batches[1:]) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--config",
        default="examples/m3oe.yaml",
        help="an M3oE config (its expert sizes and dense_input shape both models)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    splits = load_dataset("synthetic", {"n_rows": args.rows})
    schema, train = splits.schema, splits.train
    arch = load_config(args.config).arch
    ours = build_model(arch, schema)
    assert arch.shared is not None
    ref = ReferenceStyleM3oE(
        [f.vocab_size for f in schema.sparse],
        schema.num_dense,
        schema.num_domains,
        schema.num_tasks,
        hidden=tuple(arch.shared.experts[0].params["hidden"]),
        raw_dense=arch.dense_input == "raw",
    )
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())

    gen = torch.Generator().manual_seed(0)
    ours_batches = [
        (b.sparse, b.dense, b.domain, b.labels)
        for _, b in zip(range(args.steps + 1), train.batches(args.batch, shuffle=True, generator=gen))
    ]
    probe = next(train.batches(args.batch))
    f_ours, f_ref = flops_per_row(ours, probe), flops_per_row(ref, probe)

    peak = matmul_peak_gflops()
    rps_ours = time_steps(step_fn(ours, torch.optim.Adam(ours.parameters(), 1e-3)), ours_batches)
    rps_ref = time_steps(step_fn(ref, torch.optim.Adam(ref.parameters(), 1e-3)), ours_batches)

    # end to end: each side's whole training step, input pipeline included. Reference:
    # per-row Dataset + collate, one masked BCE per (domain, task), predictions
    # copied to Python lists every batch (as its trainer does). mdmt-nas: tensor
    # slicing and the real Trainer step (rows sorted by domain, per-(domain, task)
    # mean BCE, balancer).
    D, T = schema.num_domains, schema.num_tasks
    loader = torch.utils.data.DataLoader(RowDataset(train), batch_size=args.batch, shuffle=True)
    ref_opt = torch.optim.Adam(ref.parameters(), 1e-3)
    preds, targets = [], []
    t = time.perf_counter()
    rows = 0
    for i, (sp, de, dm, y) in enumerate(loader):
        if i >= args.steps:
            break
        p = torch.sigmoid(ref(sp, de, dm))
        masks = [dm == d for d in range(D)]
        loss = sum(F.binary_cross_entropy(p[masks[d], t_], y[masks[d], t_]) for t_ in range(T) for d in range(D))
        targets.extend(y.tolist())
        preds.extend(p.tolist())
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        rows += len(y)
    e2e_ref = rows / (time.perf_counter() - t)
    from mdmt_nas.config import TrainConfig
    from mdmt_nas.model import build_balancer
    from mdmt_nas.train import Trainer

    trainer = Trainer(
        ours,
        build_balancer(arch, schema),
        splits,
        TrainConfig(lr=1e-3, loss_reduction="domain_task_mean", progress=False),
    )
    t = time.perf_counter()
    rows = 0
    for i, b in enumerate(train.batches(args.batch, shuffle=True, generator=gen)):
        if i >= args.steps:
            break
        trainer.train_step(b)
        rows += len(b)
    e2e_ours = rows / (time.perf_counter() - t)
    peak2 = matmul_peak_gflops()

    print(
        f"\n{args.config}: M3oE reference architecture, synthetic default ({schema.num_domains} domains x {schema.num_tasks} tasks), batch {args.batch}, {args.threads} threads"
    )
    print(f"fp32 matmul peak (1024x1024): {peak:.1f} GFLOP/s (before) / {peak2:.1f} GFLOP/s (after)\n")
    hdr = f"{'model':<28}{'params':>10}{'FLOPs/row':>12}{'rows/s':>10}{'GFLOP/s':>9}{'% peak':>8}{'e2e rows/s':>12}"
    print(hdr)
    print("-" * len(hdr))
    for name, n, f, r, e in (
        ("mdmt-nas (routed, stacked)", n_ours, f_ours, rps_ours, e2e_ours),
        ("reference-style (masked)", n_ref, f_ref, rps_ref, e2e_ref),
    ):
        gf = f * r / 1e9
        print(f"{name:<28}{n:>10,}{f / 1e6:>10.2f}M{r:>10,.0f}{gf:>9.1f}{100 * gf / peak:>7.1f}%{e:>12,.0f}")
    print(
        f"\nspeed-up (model step): {rps_ours / rps_ref:.2f}x   speed-up (end to end): {e2e_ours / e2e_ref:.2f}x   FLOPs ratio ref/ours: {f_ref / f_ours:.2f}x"
    )


if __name__ == "__main__":
    main()
