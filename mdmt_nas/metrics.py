"""AUC and logloss per (domain, task), plus their means.

A (domain, task) cell where only one class is present has no AUC: it is
reported as undefined (NaN, shown as "n/a") and left out of the means.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

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
                rows.append({
                    "domain": dn,
                    "task": tn,
                    "rows": int(self.rows[d]),
                    "positive_rate": float(self.positives[d, t] / self.rows[d]) if self.rows[d] else float("nan"),
                    "auc": float(self.auc[d, t]),
                    "logloss": float(self.logloss[d, t]),
                })
        return rows

    def to_dict(self) -> dict[str, object]:
        return {"mean_auc": self.mean_auc, "mean_logloss": self.mean_logloss, "cells": self.table_rows(), **({"extra": self.extra} if self.extra else {})}


def compute_metrics(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, domain: torch.Tensor | np.ndarray, schema: Schema) -> Metrics:
    """Per-(domain, task) AUC and logloss of predicted probabilities [N, T]."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    dom = np.asarray(domain)
    D, T = schema.num_domains, schema.num_tasks
    auc = np.full((D, T), np.nan)
    ll = np.full((D, T), np.nan)
    rows = np.bincount(dom, minlength=D)[:D] if dom.size else np.zeros(D, dtype=np.int64)
    pos = np.zeros((D, T))
    pc = np.clip(p, EPS, 1 - EPS)
    cell_ll = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    for d in range(D):
        m = dom == d
        if not m.any():
            continue
        for t in range(T):
            yt = y[m, t]
            pos[d, t] = yt.sum()
            ll[d, t] = cell_ll[m, t].mean()
            if 0 < pos[d, t] < yt.size:
                auc[d, t] = roc_auc_score(yt, p[m, t])
    return Metrics(list(schema.domain_names), list(schema.tasks), auc, ll, rows, pos)
