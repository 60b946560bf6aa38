"""The final stage of a search: the best few architectures trained with several seeds, the winner by mean valid AUC.

A single training's valid AUC carries seed noise of the same size as the
differences between good architectures, so the search's ranking is re-checked:
the `top_k` best fully trained architectures (and the best known architecture,
so "searched vs best known" is measured on the same seeds) get `seeds` trainings
each -- the search's own training is the first -- and the one with the highest
mean valid AUC wins. Test AUC is reported, never used.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from mdmt_nas.config import TrainConfig
from mdmt_nas.search.base import Candidate, SearchContext


@dataclass
class FinalEntry:
    """One architecture of the final stage and the results of its seeds."""

    candidate: Candidate
    runs: list[tuple[int, float, float]] = field(default_factory=list)  # (seed, valid mean AUC, test mean AUC)

    @property
    def valid_mean(self) -> float:
        return statistics.fmean(v for _, v, _ in self.runs)

    @property
    def test_mean(self) -> float:
        vals = [t for _, _, t in self.runs if math.isfinite(t)]
        return statistics.fmean(vals) if vals else float("nan")

    def std(self, which: int) -> float:
        vals = [r[which] for r in self.runs]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    def record(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "arch_id": c.arch.id,
            "known": c.known,
            "number": c.number,
            "seeds": [s for s, _, _ in self.runs],
            "valid_mean_auc": self.valid_mean,
            "valid_std": self.std(1),
            "test_mean_auc": self.test_mean,
            "test_std": self.std(2),
            "runs": [{"seed": s, "valid_mean_auc": v, "test_mean_auc": t} for s, v, t in self.runs],
        }


def finalists(candidates: list[Candidate], top_k: int) -> list[Candidate]:
    """The best `top_k` distinct fully trained architectures by valid AUC, plus the best known one if it is not among them."""
    seen: set[str] = set()
    pool = []
    for c in sorted(
        (c for c in candidates if c.state == "finished" and c.fidelity >= 1.0 and math.isfinite(c.valid_mean_auc)),
        key=lambda c: (-c.valid_mean_auc, c.number),
    ):
        if c.arch.id not in seen:
            seen.add(c.arch.id)
            pool.append(c)
    top = pool[:top_k]
    best_known = next((c for c in pool if c.known), None)
    if best_known is not None and not any(c is best_known for c in top):
        top.append(best_known)
    return top


def run_final_stage(
    ctx: SearchContext, candidates: list[Candidate], top_k: int, seeds: int, train_config: TrainConfig
) -> tuple[list[FinalEntry], list[Candidate]]:
    """Train each finalist with seeds 1..seeds-1 more (child runs of kind `final`): (entries best first, the new runs)."""
    entries = [
        FinalEntry(c, [(train_config.seed, c.valid_mean_auc, c.test_mean_auc)]) for c in finalists(candidates, top_k)
    ]
    new: list[Candidate] = []
    if seeds > 1:
        for e in entries:
            for k in range(1, seeds):
                seed = train_config.seed + k
                cfg = train_config.model_copy(update={"seed": seed, "progress": False})
                label = f"final-{e.candidate.known or e.candidate.arch.id}-seed{seed}"
                run = ctx.evaluate(
                    e.candidate.arch,
                    label,
                    assignment=e.candidate.assignment,
                    train_config=cfg,
                    kind="final",
                    known=e.candidate.known,
                )
                new.append(run)
                if run.state == "finished":
                    e.runs.append((seed, run.valid_mean_auc, run.test_mean_auc))
    entries.sort(key=lambda e: (-e.valid_mean, e.candidate.number))
    for e in entries:
        e.candidate.seed_results = list(e.runs)
    return entries, new


def verdict(entries: list[FinalEntry], candidates: list[Candidate]) -> dict[str, Any]:
    """Did the search beat the best known architecture on valid AUC? (None when no known architecture finished.)"""
    known = [e for e in entries if e.candidate.known]
    if not known and not entries:
        return {}
    best = entries[0] if entries else None
    best_known = known[0] if known else None
    if best_known is None:
        return _screened_verdict(best, candidates)
    margin = best.valid_mean - best_known.valid_mean if best else float("nan")
    return {
        "best_known": best_known.candidate.known,
        "best_known_valid_mean_auc": best_known.valid_mean,
        "best_known_test_mean_auc": best_known.test_mean,
        "winner_is_known": bool(best and best.candidate.known),
        "beat_known": bool(best and not best.candidate.known and margin > 0),
        "valid_margin": margin,
    }


def _screened_verdict(best: FinalEntry | None, candidates: list[Candidate]) -> dict[str, Any]:
    """The verdict at the budget the known architectures were trained on when none of them was trained fully
    (DARTS screens them briefly beside its derived ones): the winner's screening against the best known one's."""
    known = [c for c in candidates if c.known and c.state == "finished" and math.isfinite(c.valid_mean_auc)]
    if best is None or not known:
        return {"best_known": None, "beat_known": None}
    ref = max(known, key=lambda c: c.valid_mean_auc)
    peers = [
        c.valid_mean_auc
        for c in candidates
        if c.arch.id == best.candidate.arch.id
        and c.state == "finished"
        and c.fidelity == ref.fidelity
        and math.isfinite(c.valid_mean_auc)
    ]
    is_known = any(c.arch.id == best.candidate.arch.id for c in known)
    margin = max(peers) - ref.valid_mean_auc if peers else float("nan")
    return {
        "best_known": ref.known,
        "best_known_valid_mean_auc": ref.valid_mean_auc,
        "best_known_test_mean_auc": ref.test_mean_auc,
        "winner_is_known": is_known,
        "beat_known": bool(not is_known and margin > 0),
        "valid_margin": margin,
        "fidelity": ref.fidelity,
    }
