"""Reading the trained alphas: each choice's margin, and the k most probable architectures beside the argmax."""

from __future__ import annotations

import heapq
import json
from typing import TYPE_CHECKING, Any

import torch

from mdmt_nas.arch import Architecture
from mdmt_nas.errors import ConfigError
from mdmt_nas.search.darts.relax import Relaxation, discretize

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.search.darts.alphas import AlphaController


def choice_margins(space: Any, ctl: AlphaController, assignment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per active relaxed choice: its probabilities, the pick, and the top-2 probability margin."""
    out: dict[str, dict[str, Any]] = {}
    for c, a in ctl.alphas.items():
        if c not in assignment or c not in space._by_name:
            continue
        p = torch.softmax(a.detach(), -1)
        top = p.topk(min(2, p.numel())).values
        labels = space.choice(c).labels()
        out[c] = {
            "pick": labels[int(p.argmax())],
            "margin": float(top[0] - top[-1]),
            "probs": {lab: round(float(v), 4) for lab, v in zip(labels, p)},
        }
    return out


def top_k_derived(
    space: Any, relaxation: Relaxation, ctl: AlphaController, k: int, max_visits: int = 400
) -> list[tuple[dict[str, Any], Architecture, float]]:
    """The k most probable distinct architectures under the alphas: (assignment, architecture, log-probability).

    Best-first over assignments: from the argmax, each step moves one active relaxed choice to another
    value (newly active choices take their argmax). The log-probability of an assignment is the sum over
    its active relaxed choices, so a choice that lost by a small margin gives the second candidate.
    Architectures without expert groups are skipped when the supernet has groups (it cannot represent them).
    """
    logp = {c: torch.log_softmax(a.detach(), -1) for c, a in ctl.alphas.items()}
    alphas = {c: a.detach() for c, a in ctl.alphas.items()}
    need_groups = bool(relaxation.arch.groups())

    def score(assign: dict[str, Any]) -> float:
        return float(sum(logp[c][space.choice(c).index(v)] for c, v in assign.items() if c in logp))

    def complete(forced: dict[str, Any]) -> dict[str, Any]:
        return discretize(space, alphas, forced=forced)[0]

    start = complete({})
    heap = [(-score(start), 0, start)]
    seen_assign = {json.dumps(start, sort_keys=True, default=str)}
    seen_arch: set[str] = set()
    out: list[tuple[dict[str, Any], Architecture, float]] = []
    tick = 1
    while heap and len(out) < k and tick < max_visits:
        neg, _, assign = heapq.heappop(heap)
        try:
            arch = space.to_arch(assign)
        except ConfigError:
            arch = None
        if arch is not None and arch.id not in seen_arch and (arch.groups() or not need_groups):
            seen_arch.add(arch.id)
            out.append((assign, arch, -neg))
        for c in assign:
            if c not in logp:
                continue
            for v in space.choice(c).values():
                if v == assign[c]:
                    continue
                child = complete({**{n: assign[n] for n in assign if n != c}, c: v})
                key = json.dumps(child, sort_keys=True, default=str)
                if key in seen_assign:
                    continue
                seen_assign.add(key)
                heapq.heappush(heap, (-score(child), tick, child))
                tick += 1
    return out
