"""AUC and logloss per (domain, task), plus their means.

A (domain, task) cell where only one class is present has no AUC: it is
reported as undefined (NaN, shown as "n/a") and left out of the means.
All cells are computed at once in torch (`cell_auc_logloss`), with ties handled
as scikit-learn's roc_auc_score does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from mdmt_nas.data.schema import Schema

EPS = 1e-7


def _safe(name: str) -> str:
    """MLflow-safe metric key segment."""
    return re.sub(r"[^0-9A-Za-z_\-. ]+", "_", str(name)) or "_"


@dataclass
class Metrics:
    """Metrics of one split: auc/logloss/rows/positives indexed [domain][task]."""

    domains: list[str]
    tasks: list[str]
    auc: np.ndarray  # [D, T], NaN where undefined
    logloss: np.ndarray  # [D, T], NaN where the cell has no rows
    rows: np.ndarray  # [D] rows per domain
    positives: np.ndarray  # [D, T]
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def mean_auc(self) -> float:
        vals = self.auc[~np.isnan(self.auc)]
        return float(vals.mean()) if vals.size else float("nan")

    @property
    def mean_logloss(self) -> float:
        vals = self.logloss[~np.isnan(self.logloss)]
        return float(vals.mean()) if vals.size else float("nan")

    def flat(self, prefix: str) -> dict[str, float]:
        """Flat metric dict for trackers: `{prefix}_auc/{domain}/{task}`, means, etc.; NaN cells omitted."""
        out = {f"{prefix}_mean_auc": self.mean_auc, f"{prefix}_mean_logloss": self.mean_logloss}
        for d, dn in enumerate(self.domains):
            for t, tn in enumerate(self.tasks):
                if not math.isnan(self.auc[d, t]):
                    out[f"{prefix}_auc/{_safe(dn)}/{_safe(tn)}"] = float(self.auc[d, t])
                if not math.isnan(self.logloss[d, t]):
                    out[f"{prefix}_logloss/{_safe(dn)}/{_safe(tn)}"] = float(self.logloss[d, t])
        for k, v in self.extra.items():
            out[f"{prefix}_{k}"] = v
        return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}

    def table_rows(self) -> list[dict[str, object]]:
        rows = []
        for d, dn in enumerate(self.domains):
            for t, tn in enumerate(self.tasks):
                rows.append(
                    {
                        "domain": dn,
                        "task": tn,
                        "rows": int(self.rows[d]),
                        "positive_rate": float(self.positives[d, t] / self.rows[d]) if self.rows[d] else float("nan"),
                        "auc": float(self.auc[d, t]),
                        "logloss": float(self.logloss[d, t]),
                    }
                )
        return rows

    def to_dict(self) -> dict[str, object]:
        return {
            "mean_auc": self.mean_auc,
            "mean_logloss": self.mean_logloss,
            "cells": self.table_rows(),
            **({"extra": self.extra} if self.extra else {}),
        }


def cell_auc_logloss(
    probs: torch.Tensor, labels: torch.Tensor, cell: torch.Tensor, num_cells: int
) -> tuple[torch.Tensor, ...]:
    """AUC, logloss, rows and positives of every cell at once (vectorised; no loop over cells or rows).

    probs, labels: [M] (any float dtype), cell: [M] int64 in [0, num_cells). AUC is the rank-sum
    (Mann-Whitney) form of the area under the ROC curve, ties counted half as scikit-learn's
    roc_auc_score does: sort by (cell, score), give each run of equal scores its mid rank,
    AUC = (sum of positives' ranks - P(P+1)/2) / (P N). NaN where a cell has one class; logloss
    (probabilities clipped to [EPS, 1 - EPS]) NaN where it has no rows. Float64 results.
    """
    p = probs.reshape(-1)
    y = labels.reshape(-1).to(torch.float64)
    c = cell.reshape(-1).to(torch.int64)
    m = p.numel()
    rows = torch.bincount(c, minlength=num_cells)[:num_cells].to(torch.float64)
    pos = torch.zeros(num_cells, dtype=torch.float64).index_add_(0, c, y)
    pc = p.to(torch.float64).clamp(EPS, 1 - EPS)
    ll_sum = torch.zeros(num_cells, dtype=torch.float64).index_add_(0, c, -(y * pc.log() + (1 - y) * (-pc).log1p()))
    logloss = torch.where(rows > 0, ll_sum / rows.clamp(min=1), torch.full_like(rows, math.nan))
    auc = torch.full((num_cells,), math.nan, dtype=torch.float64)
    if m == 0:
        return auc, logloss, rows, pos
    # by score, then (stable) by cell: grouped by cell, ascending score. numpy's sorts (vectorised quicksort,
    # radix sort for the ints) are 3-5x faster than torch.argsort on CPU; the order of equal scores is irrelevant.
    pn = p.detach().cpu().numpy()
    order_np = np.argsort(pn, kind="quicksort")
    order_np = order_np[np.argsort(c.numpy()[order_np], kind="stable")]
    order = torch.from_numpy(order_np)
    ps, cs, ys = p[order], c[order], y[order]
    starts = torch.cumsum(rows, 0) - rows  # first sorted position of each cell
    idx = torch.arange(m, dtype=torch.float64)
    new_run = torch.ones(m, dtype=torch.bool)
    new_run[1:] = (ps[1:] != ps[:-1]) | (cs[1:] != cs[:-1])
    run = torch.cumsum(new_run, 0) - 1
    n_runs = int(run[-1]) + 1
    first = idx[new_run]
    length = torch.bincount(run, minlength=n_runs).to(torch.float64)
    mid = (first + (length - 1) / 2)[run] - starts[cs] + 1  # 1-based mid rank within the cell
    rank_sum = torch.zeros(num_cells, dtype=torch.float64).index_add_(0, cs, mid * ys)
    neg = rows - pos
    ok = (pos > 0) & (neg > 0)
    auc = torch.where(ok, (rank_sum - pos * (pos + 1) / 2) / (pos * neg).clamp(min=1), auc)
    return auc, logloss, rows, pos


def compute_metrics(
    probs: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    domain: torch.Tensor | np.ndarray,
    schema: Schema,
) -> Metrics:
    """Per-(domain, task) AUC and logloss of predicted probabilities [N, T], all cells in one vectorised pass."""
    p = torch.as_tensor(probs)
    y = torch.as_tensor(labels)
    dom = torch.as_tensor(domain).to(torch.int64).reshape(-1)
    D, T = schema.num_domains, schema.num_tasks
    n = dom.numel()
    p, y = p.reshape(n, T), y.reshape(n, T)
    cell = (dom.unsqueeze(1) * T + torch.arange(T)).reshape(-1)
    auc, ll, cell_rows, pos = cell_auc_logloss(p.reshape(-1), y.reshape(-1), cell, D * T)
    rows = torch.bincount(dom, minlength=D)[:D] if n else torch.zeros(D, dtype=torch.int64)
    return Metrics(
        list(schema.domain_names),
        list(schema.tasks),
        auc.view(D, T).numpy(),
        ll.view(D, T).numpy(),
        rows.numpy(),
        pos.view(D, T).numpy(),
    )
