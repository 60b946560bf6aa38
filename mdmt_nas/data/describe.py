"""Summary statistics of loaded splits: rows per split, per domain, positive rates per task.

Used by ``mdmt-nas data describe`` and handy in notebooks. Works on
in-memory tensors and on streaming sources (one pass over their batches).
"""

from __future__ import annotations

from typing import Any

import torch

from mdmt_nas.data.split import PARTS
from mdmt_nas.data.tensors import MDMTTensors, Splits


def _part_counts(
    part: Any, num_domains: int, num_tasks: int, batch_size: int = 262_144
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows per domain [D] and positives per (domain, task) [D, T] of one split."""
    rows = torch.zeros(num_domains, dtype=torch.float64)
    pos = torch.zeros(num_domains, num_tasks, dtype=torch.float64)
    chunks = [part] if isinstance(part, MDMTTensors) else part.batches(batch_size)
    for b in chunks:
        rows += torch.bincount(b.domain, minlength=num_domains).double()
        pos.index_add_(0, b.domain, b.labels.double())
    return rows, pos


def describe_splits(splits: Splits, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready summary: rows per split, schema, and per domain: rows and positive rate per task."""
    sch = splits.schema
    D, T = sch.num_domains, sch.num_tasks
    per_split = {p: _part_counts(getattr(splits, p), D, T) for p in PARTS}
    rows = sum(r for r, _ in per_split.values())
    pos = sum(q for _, q in per_split.values())
    total = float(rows.sum())
    domains = []
    for d, name in enumerate(sch.domain_names):
        n = float(rows[d])
        domains.append(
            {
                "name": name,
                "rows": int(n),
                "share": n / total if total else 0.0,
                "rows_per_split": {p: int(per_split[p][0][d]) for p in PARTS},
                "positive_rate": {t: (float(pos[d, j]) / n if n else 0.0) for j, t in enumerate(sch.tasks)},
            }
        )
    out: dict[str, Any] = {
        "rows": {p: len(getattr(splits, p)) for p in PARTS} | {"total": int(total)},
        "positive_rate": {t: (float(pos[:, j].sum()) / total if total else 0.0) for j, t in enumerate(sch.tasks)},
        "domains": domains,
        "tasks": list(sch.tasks),
        "schema": {
            "sparse": {f.name: f.vocab_size for f in sch.sparse},
            "dense": list(sch.dense),
            "domain": sch.domain,
        },
    }
    for key in ("interactions", "users", "items", "searches"):
        if info and key in info:
            out[key] = info[key]
    if info and info.get("notes"):
        out["notes"] = list(info["notes"])
    return out
