"""Benchmark statistics: one record per (model, seed), mean and std over seeds, and the findings written from them.

A difference counts as real only when it exceeds the sum of the two models'
standard deviations over seeds; otherwise it is reported as a tie within noise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mdmt_nas.benchmark.settings import REFERENCE, BenchmarkSettings, ModelSpec


# ------------------------------------------------------------------------------ records
@dataclass
class RunRecord:
    """One model trained (and tested) with one seed."""

    model: str
    label: str
    kind: str
    seed: int
    status: str = "finished"  # or "failed"
    reason: str = ""
    valid_mean_auc: float = float("nan")
    test_mean_auc: float = float("nan")
    test_mean_logloss: float = float("nan")
    cells: list[dict[str, Any]] = field(default_factory=list)  # domain, task, auc, logloss (test split)
    num_params: int = 0
    train_seconds: float = float("nan")
    wall_seconds: float = float("nan")
    epochs_run: int = 0
    best_epoch: int = -1
    arch_id: str = ""
    run_id: str | None = None
    load_1min: float = float("nan")  # the machine's 1-min load average when the run ended (a shared machine)
    search: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("valid_mean_auc", "test_mean_auc", "test_mean_logloss", "train_seconds", "wall_seconds", "load_1min"):
            if known.get(k) is None:
                known[k] = float("nan")
        return cls(**known)


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            return cls(float("nan"), float("nan"), 0)
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return cls(m, sd, len(vals))

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


@dataclass
class ModelSummary:
    model: str
    label: str
    kind: str
    seeds: list[int]
    failed_seeds: list[int]
    test_auc: Stat
    test_logloss: Stat
    valid_auc: Stat
    cells_auc: dict[tuple[str, str], Stat]
    cells_logloss: dict[tuple[str, str], Stat]
    num_params: Stat
    wall_seconds: Stat
    train_seconds: Stat

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells_auc"] = [{"domain": k[0], "task": k[1], **asdict(v)} for k, v in self.cells_auc.items()]
        d["cells_logloss"] = [{"domain": k[0], "task": k[1], **asdict(v)} for k, v in self.cells_logloss.items()]
        return d


def summarize(records: Sequence[RunRecord], order: Sequence[ModelSpec] | None = None) -> list[ModelSummary]:
    """Mean ± std over seeds per model (finished runs only), in `order` (default: first appearance)."""
    keys: list[str] = [m.key for m in order] if order else list(dict.fromkeys(r.model for r in records))
    out = []
    for key in keys:
        rs = [r for r in records if r.model == key]
        if not rs:
            continue
        ok = [r for r in rs if r.status == "finished"]
        cells = list(dict.fromkeys((c["domain"], c["task"]) for r in ok for c in r.cells))

        def cell(r: RunRecord, k: tuple[str, str], what: str) -> float:
            return next((float(c[what]) for c in r.cells if (c["domain"], c["task"]) == k), float("nan"))

        out.append(
            ModelSummary(
                model=key,
                label=rs[0].label,
                kind=rs[0].kind,
                seeds=[r.seed for r in ok],
                failed_seeds=[r.seed for r in rs if r.status != "finished"],
                test_auc=Stat.of([r.test_mean_auc for r in ok]),
                test_logloss=Stat.of([r.test_mean_logloss for r in ok]),
                valid_auc=Stat.of([r.valid_mean_auc for r in ok]),
                cells_auc={k: Stat.of([cell(r, k, "auc") for r in ok]) for k in cells},
                cells_logloss={k: Stat.of([cell(r, k, "logloss") for r in ok]) for k in cells},
                num_params=Stat.of([r.num_params for r in ok]),
                wall_seconds=Stat.of([r.wall_seconds for r in ok]),
                train_seconds=Stat.of([r.train_seconds for r in ok]),
            )
        )
    return out


# ------------------------------------------------------------------------------ findings
def compare(a: Stat, b: Stat) -> str:
    """'better', 'worse' or 'tie': a difference counts only beyond the sum of both stds over seeds."""
    diff = a.mean - b.mean
    noise = a.std + b.std
    if diff > noise:
        return "better"
    if diff < -noise:
        return "worse"
    return "tie"


def _vs(s: ModelSummary, other: ModelSummary, what: str) -> tuple[str, str]:
    """(verdict, phrase) of `s` against `other` on mean test AUC."""
    v = compare(s.test_auc, other.test_auc)
    diff = s.test_auc.mean - other.test_auc.mean
    noise = s.test_auc.std + other.test_auc.std
    ref = f"{what} {other.label} ({other.test_auc.fmt()})"
    if min(s.test_auc.n, other.test_auc.n) < 2:
        word = {"better": "above", "worse": "below", "tie": "level with"}[v]
        return v, f"{word} {ref}" + (f" by {diff:+.4f}" if v != "tie" else "") + " (one seed: no spread to judge noise)"
    if v == "better":
        return v, f"better than {ref} by {diff:+.4f}, more than the summed std {noise:.4f}"
    if v == "worse":
        return v, f"worse than {ref} by {diff:+.4f}, more than the summed std {noise:.4f}"
    return v, f"a tie with {ref}: the difference {diff:+.4f} is within the summed std {noise:.4f}"


def findings(summaries: Sequence[ModelSummary], reference: str = REFERENCE) -> list[str]:
    """Sentences read off the numbers: the best model, and each searched architecture against fixed M3oE and the best baseline."""
    done = [s for s in summaries if s.test_auc.n > 0]
    if not done:
        return ["No model finished, so there are no findings."]
    out = []
    if all(s.test_auc.n < 2 for s in done):
        out.append(
            "Only one seed per model was run, so the spread over seeds is unknown and no difference below is established beyond noise."
        )
    top = max(done, key=lambda s: s.test_auc.mean)
    fixed = [s for s in done if s.kind == "fixed"]
    searched = [s for s in done if s.kind == "search"]
    ref = next((s for s in fixed if s.model == reference), None)
    best = max(fixed, key=lambda s: s.test_auc.mean) if fixed else None
    out.append(
        f"The highest mean test AUC is {top.label}'s ({top.test_auc.fmt()})"
        + (
            f"; the best fixed baseline is {best.label} ({best.test_auc.fmt()})."
            if best is not None and best is not top
            else "."
        )
    )
    if not searched:
        out.append("No searched architecture finished, so the search is not compared.")
        return out
    if best is None:
        out.append("No fixed baseline finished, so the searched architectures are not compared.")
        return out
    vs_best: list[str] = []
    vs_ref: list[str] = []
    for s in searched:
        parts = []
        if ref is not None:
            v, text = _vs(s, ref, "fixed")
            parts.append(text)
            vs_ref.append(v)
        if ref is None or best.model != ref.model:
            v, text = _vs(s, best, "the best baseline")
            parts.append(text)
        vs_best.append(v)
        params = f" with {s.num_params.mean:,.0f} parameters" if s.num_params.n else ""
        if ref is not None and ref.num_params.n and params:
            params += f" (M3oE: {ref.num_params.mean:,.0f})"
        out.append(
            f"The {s.label} architecture reaches {s.test_auc.fmt()}{params}; it is " + ", and ".join(parts) + "."
        )
    return out + _verdicts(searched, vs_best, vs_ref, best, ref)


def _verdicts(
    searched: list[ModelSummary], vs_best: list[str], vs_ref: list[str], best: ModelSummary, ref: ModelSummary | None
) -> list[str]:
    """The verdict sentences of `findings`: the searched architectures against the best baseline, then against `ref`."""
    out: list[str] = []
    n = len(searched)
    noun = "the searched architecture" if n == 1 else "the searched architectures"
    wins = vs_best.count("better")
    if wins == n:
        out.append(f"Verdict: {noun} {'beats' if n == 1 else 'all beat'} the best fixed baseline ({best.label}).")
    elif wins:
        names = [s.label for s, v in zip(searched, vs_best) if v == "better"]
        out.append(f"Verdict: only {', '.join(names)} beats the best fixed baseline ({best.label}).")
    else:
        out.append(
            f"Verdict: {noun} {'does' if n == 1 else 'do'} not beat the best fixed baseline ({best.label})"
            + (", none beyond seed noise." if any(v == "tie" for v in vs_best) else ".")
        )
    if ref is not None and best.model != ref.model:
        wins = [s.label for s, v in zip(searched, vs_ref) if v == "better"]
        losses = [s.label for s, v in zip(searched, vs_ref) if v == "worse"]
        if len(wins) == n:
            out.append(f"Against fixed {ref.label}, {noun} {'is' if n == 1 else 'are all'} better.")
        elif not wins:
            out.append(
                f"Against fixed {ref.label}, {noun} {'is' if n == 1 else 'are'} not better"
                + (
                    " (a tie within noise)."
                    if not losses and n == 1
                    else " (ties within noise)."
                    if not losses
                    else "."
                )
            )
        else:
            out.append(
                f"Against fixed {ref.label}, {', '.join(wins)} {'is' if len(wins) == 1 else 'are'} better, the other{'s' if n - len(wins) > 1 else ''} not."
            )
    return out


def search_findings(
    summaries: Sequence[ModelSummary], records: Sequence[RunRecord], bayes: dict[str, Any] | None
) -> list[str]:
    """The Bayes ceiling, the share of the gap from the best fixed model to it that each search closed,
    each search's cost in trainings, and whether it beat the space's known architectures inside the search."""
    done = [s for s in summaries if s.test_auc.n > 0]
    fixed = [s for s in done if s.kind == "fixed"]
    best = max(fixed, key=lambda s: s.test_auc.mean) if fixed else None
    out = []
    ceiling = (bayes or {}).get("test_mean_auc")
    if ceiling is not None:
        out.append(
            f"The Bayes ceiling (the generator's true probabilities scored on the same test rows) is {ceiling:.4f}"
            + (
                f"; the best fixed baseline ({best.label}) is {ceiling - best.test_auc.mean:.4f} below it."
                if best
                else "."
            )
        )
    fixed_wall = sum(s.wall_seconds.mean for s in fixed if s.wall_seconds.n)
    for s in (s for s in done if s.kind == "search"):
        runs = [r for r in records if r.model == s.model and r.status == "finished" and r.search]
        parts = []
        if ceiling is not None and best is not None and ceiling > best.test_auc.mean:
            parts.append(
                f"closes {(s.test_auc.mean - best.test_auc.mean) / (ceiling - best.test_auc.mean):+.0%} of the gap from "
                f"{best.label} to the ceiling"
            )
        walls = [r.search.get("search_seconds", float("nan")) for r in runs]
        trains = [r.train_seconds for r in runs if r.train_seconds and math.isfinite(r.train_seconds)]
        if walls and trains:
            parts.append(
                f"costs {statistics.fmean(walls) / statistics.fmean(trains):.1f}x one training of its winner "
                f"({statistics.fmean(walls):.0f} s per search)"
            )
        if walls and fixed_wall:
            parts.append(
                f"{statistics.fmean(walls) / fixed_wall:.2f}x the wall time of training every fixed baseline once ({fixed_wall:.0f} s)"
            )
        beat = [r.search.get("verdict", {}).get("beat_known") for r in runs]
        if any(b is not None for b in beat):
            parts.append(
                f"beat the best known architecture of the space on valid AUC inside {sum(bool(b) for b in beat)} of {len(runs)} searches"
            )
        if parts:
            out.append(f"{s.label} " + "; ".join(parts) + ".")
    return out


RESULTS_VERSION = 1


@dataclass
class BenchmarkState:
    settings: BenchmarkSettings
    output_dir: Path
    dataset_info: dict[str, Any]
    machine: dict[str, Any]
    started: str
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    records: list[RunRecord] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    previous_commands: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(
        default_factory=list
    )  # one per process: started, command, load, runs already done
    unreachable_parents: list[str] = field(
        default_factory=list
    )  # parents of earlier parts that a --resume could not re-open
    t0: float = field(default_factory=time.monotonic)
    finished: bool = False

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def done(self, key: str, seed: int) -> bool:
        return any(r.model == key and r.seed == seed for r in self.records)
