"""Search reports: ranking, Pareto front, leaderboard CSV and table, plots, and the live display of a search.

Pure functions of a list of `Candidate`s (the runner writes their outputs to
the search's directory and its MLflow parent run), plus `SearchDisplay`, the
progress a search shows while it runs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from mdmt_nas import files
from mdmt_nas.arch import Architecture
from mdmt_nas.files import atomic_file
from mdmt_nas.search.base import Candidate

#: objective name -> (Candidate attribute, sense); "max" is better when larger
OBJECTIVES: dict[str, tuple[str, str]] = {
    "auc": ("valid_mean_auc", "max"),
    "params": ("num_params", "min"),
    "latency": ("latency_ms_per_1k", "min"),
}
OBJECTIVE_LABELS = {"auc": "valid mean AUC", "params": "parameters", "latency": "latency (ms / 1k rows)"}
_STATE_RANK = {"finished": 0, "pruned": 1, "failed": 2}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Finished candidates by valid mean AUC (best first), then pruned ones, then failed ones."""

    def key(c: Candidate) -> tuple[int, float, int]:
        auc = c.valid_mean_auc if _finite(c.valid_mean_auc) else -math.inf
        return (_STATE_RANK.get(c.state, 3), -auc, c.number)

    return sorted(candidates, key=key)


def best_candidate(candidates: Sequence[Candidate]) -> Candidate | None:
    """The finished candidate with the highest valid mean AUC (ties: the earlier one)."""
    done = [c for c in candidates if c.state == "finished" and _finite(c.valid_mean_auc)]
    return ranked(done)[0] if done else None


def objective_vector(c: Candidate, objectives: Sequence[str]) -> tuple[float, ...]:
    """Objective values oriented so that larger is better for every entry."""
    out = []
    for name in objectives:
        attr, sense = OBJECTIVES[name]
        v = float(getattr(c, attr))
        out.append(v if sense == "max" else -v)
    return tuple(out)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(candidates: Sequence[Candidate], objectives: Sequence[str]) -> list[Candidate]:
    """Finished candidates no other finished candidate dominates, by valid AUC (best first).

    Architectures evaluated twice count once (the first evaluation).
    """
    pool: dict[str, Candidate] = {}
    for c in candidates:
        if c.state != "finished":
            continue
        vec = objective_vector(c, objectives)
        if not all(math.isfinite(v) for v in vec):
            continue
        pool.setdefault(c.arch.id, c)
    vecs = {cid: objective_vector(c, objectives) for cid, c in pool.items()}
    front = [c for cid, c in pool.items() if not any(dominates(vecs[o], vecs[cid]) for o in pool if o != cid)]
    return ranked(front)


# ------------------------------------------------------------------------------ leaderboard
LEADERBOARD_COLUMNS = (
    "rank",
    "number",
    "arch_id",
    "known",
    "state",
    "valid_mean_auc",
    "test_mean_auc",
    "num_params",
    "latency_ms_per_1k",
    "train_seconds",
    "fidelity",
    "final_seeds",
    "final_valid_mean_auc",
    "final_test_mean_auc",
    "pareto",
    "reason",
    "run_id",
    "assignment",
)


def leaderboard_rows(
    candidates: Sequence[Candidate], pareto: Sequence[Candidate] | None = None
) -> list[dict[str, Any]]:
    """One dict per candidate in rank order, with per-(domain, task) valid/test AUC columns appended."""
    on_front = {id(c) for c in pareto or []}
    cell_keys = sorted({k for c in candidates for k in c.metrics if k.startswith(("valid_auc/", "test_auc/"))})
    rows = []
    for rank, c in enumerate(ranked(candidates), 1):
        row = c.row()
        row.update(
            rank=rank if c.state == "finished" else "",
            pareto=id(c) in on_front,
            assignment=json.dumps(c.assignment, sort_keys=True, default=str),
            fidelity=round(c.fidelity, 4),
        )
        if c.seed_results:
            row.update(
                final_seeds=len(c.seed_results),
                final_valid_mean_auc=sum(v for _, v, _ in c.seed_results) / len(c.seed_results),
                final_test_mean_auc=sum(t for _, _, t in c.seed_results) / len(c.seed_results),
            )
        for k in cell_keys:
            row[k] = c.metrics.get(k, "")
        rows.append(row)
    return rows


def write_leaderboard_csv(
    path: str | Path, candidates: Sequence[Candidate], pareto: Sequence[Candidate] | None = None
) -> Path:
    path = Path(path)
    rows = leaderboard_rows(candidates, pareto)
    cells = sorted({k for r in rows for k in r if "/" in k})
    with atomic_file(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*LEADERBOARD_COLUMNS, *cells], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return path


def _fmt(v: Any, digits: int = 4) -> str:
    if not _finite(v):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else f"{v:,}"


def leaderboard_table(
    candidates: Sequence[Candidate], title: str, top: int = 10, pareto: Sequence[Candidate] | None = None
):
    """A rich table of the top candidates (and a count of the rest)."""
    from rich.table import Table

    on_front = {id(c) for c in pareto or []}
    table = Table(title=title)
    for col, just in (
        ("#", "right"),
        ("trial", "right"),
        ("arch", "left"),
        ("state", "left"),
        ("valid AUC", "right"),
        ("test AUC", "right"),
        ("params", "right"),
        ("ms/1k", "right"),
        ("train s", "right"),
    ):
        table.add_column(col, justify=just, no_wrap=True)
    table.add_column("note", overflow="fold")
    rows = ranked(candidates)
    for rank, c in enumerate(rows[:top], 1):
        note = "pareto" if id(c) in on_front else ""
        if c.known:
            note = (note + " " if note else "") + f"known: {c.known}"
        if c.reason:
            note = (note + " " if note else "") + escape(c.reason if len(c.reason) <= 60 else c.reason[:57] + "...")
        style = {"pruned": "yellow", "failed": "red"}.get(c.state)
        table.add_row(
            str(rank) if c.state == "finished" else "-",
            str(c.number),
            c.arch.id,
            c.state,
            _fmt(c.valid_mean_auc),
            _fmt(c.test_mean_auc),
            _fmt(c.num_params),
            _fmt(c.latency_ms_per_1k, 2),
            _fmt(c.train_seconds, 1),
            note,
            style=style,
        )
    if len(rows) > top:
        table.caption = f"{len(rows) - top} more in leaderboard.csv"
    return table


def final_records_table(
    records: Sequence[dict[str, Any]], title: str = "final stage: best architectures, mean ± std over seeds"
):
    """The final stage's architectures (search/final.py FinalEntry.record()), best mean valid AUC first."""
    from rich.table import Table

    table = Table(title=title)
    for col, just in (
        ("#", "right"),
        ("arch", "left"),
        ("", "left"),
        ("seeds", "right"),
        ("valid AUC", "right"),
        ("test AUC", "right"),
    ):
        table.add_column(col, justify=just, no_wrap=True)
    for rank, r in enumerate(records, 1):
        table.add_row(
            str(rank),
            r["arch_id"],
            r["known"] or "searched",
            str(len(r["runs"])),
            f"{r['valid_mean_auc']:.4f} ± {r['valid_std']:.4f}",
            f"{r['test_mean_auc']:.4f} ± {r['test_std']:.4f}",
            style="bold" if rank == 1 else None,
        )
    return table


def verdict_line(v: dict[str, Any]) -> str:
    """One line: did the search beat the best known architecture on valid AUC?"""
    if not v or v.get("best_known") is None:
        return "no known architecture of this space was evaluated (warm start off, or none finished)"
    name, ref = v["best_known"], v["best_known_valid_mean_auc"]
    if v.get("fidelity") is not None and v["fidelity"] < 1:  # compared where both were trained alike: the screening
        at = f"{v['fidelity']:.0%} of a full training"
        if v.get("winner_is_known"):
            return f"the search did NOT beat the best known architecture: the winner is a known one (best known {name}, valid AUC {ref:.4f} at {at})"
        if v.get("beat_known"):
            return f"the search beat the best known architecture {name} on valid AUC at {at}: +{v['valid_margin']:.4f} (vs {ref:.4f})"
        return f"the search did NOT beat the best known architecture {name} on valid AUC at {at} ({v['valid_margin']:+.4f} vs {ref:.4f})"
    if v.get("winner_is_known"):
        return f"the search did NOT beat the best known architecture: the winner is {name} itself (valid AUC {ref:.4f})"
    if v.get("beat_known"):
        return (
            f"the search beat the best known architecture {name} on valid AUC: +{v['valid_margin']:.4f} (vs {ref:.4f})"
        )
    return f"the search did NOT beat the best known architecture {name} on valid AUC ({v['valid_margin']:+.4f} vs {ref:.4f})"


def winner_cells(c: Candidate) -> list[tuple[str, str, float, float]]:
    """(domain, task, valid AUC, test AUC) of a finished candidate, from its flat metrics (`valid_auc/<domain>/<task>`)."""
    cells: dict[tuple[str, str], list[float]] = {}
    for split, col in (("valid", 0), ("test", 1)):
        for key, v in c.metrics.items():
            if key.startswith(f"{split}_auc/") and key.count("/") == 2:
                _, d, t = key.split("/")
                cells.setdefault((d, t), [float("nan"), float("nan")])[col] = v
    return [(d, t, v, te) for (d, t), (v, te) in cells.items()]


def candidate_markdown(c: Candidate) -> str:
    """One finished candidate's per-(domain, task) AUC as Markdown (its MLflow run's description)."""
    lines = [
        f"**`{c.arch.id}`** (trial {c.number}): valid mean AUC {_fmt(c.valid_mean_auc)}, test {_fmt(c.test_mean_auc)}, "
        f"{_fmt(c.num_params)} params",
        "",
        "| domain | task | valid AUC | test AUC |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {d} | {t} | {_fmt(v)} | {_fmt(te)} |" for d, t, v, te in winner_cells(c)]
    return "\n".join(lines) + "\n"


def leaderboard_markdown(candidates: Sequence[Candidate], best: Candidate | None, title: str, top: int = 15) -> str:
    """The leaderboard and the winner's per-(domain, task) AUC as Markdown (the MLflow parent run's description)."""
    lines = [
        f"**{title}**",
        "",
        "| rank | trial | arch | state | valid AUC | test AUC | params | ms/1k rows |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    rows = ranked(candidates)
    for rank, c in enumerate(rows[:top], 1):
        lines.append(
            f"| {rank if c.state == 'finished' else '-'} | {c.number} | `{c.arch.id}` | {c.state} | {_fmt(c.valid_mean_auc)} | "
            f"{_fmt(c.test_mean_auc)} | {_fmt(c.num_params)} | {_fmt(c.latency_ms_per_1k, 2)} |"
        )
    if len(rows) > top:
        lines.append(f"\n{len(rows) - top} more in leaderboard.csv")
    if best is not None:
        lines += [
            "",
            f"**Winner `{best.arch.id}`** (trial {best.number}): per-(domain, task) AUC",
            "",
            "| domain | task | valid AUC | test AUC |",
            "|---|---|---:|---:|",
        ]
        lines += [f"| {d} | {t} | {_fmt(v)} | {_fmt(te)} |" for d, t, v, te in winner_cells(best)]
        lines.append(f"| **mean** | | **{_fmt(best.valid_mean_auc)}** | **{_fmt(best.test_mean_auc)}** |")
    return "\n".join(lines) + "\n"


def pareto_table(front: Sequence[Candidate], objectives: Sequence[str]):
    from rich.table import Table

    table = Table(title=f"Pareto front ({', '.join(OBJECTIVE_LABELS[o] for o in objectives)})")
    table.add_column("trial", justify="right")
    table.add_column("arch")
    for o in objectives:
        table.add_column(OBJECTIVE_LABELS[o], justify="right")
    table.add_column("test AUC", justify="right")
    for c in front:
        vals = [
            _fmt(getattr(c, OBJECTIVES[o][0]), 4 if o == "auc" else 2) if o != "params" else _fmt(c.num_params)
            for o in objectives
        ]
        table.add_row(str(c.number), c.arch.id, *vals, _fmt(c.test_mean_auc))
    return table


# ------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_auc_vs_trial(candidates: Sequence[Candidate], title: str = "valid mean AUC per trial"):
    """Valid mean AUC of each candidate by trial number, with the running best of finished ones."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    cs = sorted(candidates, key=lambda c: c.number)
    for state, marker, colour in (("finished", "o", "tab:blue"), ("pruned", "x", "tab:orange")):
        pts = [(c.number, c.valid_mean_auc) for c in cs if c.state == state and _finite(c.valid_mean_auc)]
        if pts:
            ax.scatter(
                *zip(*pts), marker=marker, color=colour, label=state if state == "finished" else "pruned (last epoch)"
            )
    failed = [c.number for c in cs if c.state == "failed"]
    if failed:
        finite = [c.valid_mean_auc for c in cs if _finite(c.valid_mean_auc)]
        y = min(finite) if finite else 0.5
        ax.scatter(failed, [y] * len(failed), marker="v", color="tab:red", label="failed")
    best, xs, ys = -math.inf, [], []
    for c in cs:
        if c.state == "finished" and _finite(c.valid_mean_auc):
            best = max(best, c.valid_mean_auc)
        if best > -math.inf:
            xs.append(c.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", linewidth=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("valid mean AUC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def plot_pareto(candidates: Sequence[Candidate], front: Sequence[Candidate], objectives: Sequence[str]):
    """Valid AUC against each cost objective: all finished candidates, the front highlighted."""
    plt = _plt()
    costs = [o for o in objectives if o != "auc"] or ["params"]
    fig, axes = plt.subplots(1, len(costs), figsize=(6 * len(costs), 4.5), squeeze=False)
    done = [c for c in candidates if c.state == "finished" and _finite(c.valid_mean_auc)]
    for ax, cost in zip(axes[0], costs):
        attr = OBJECTIVES[cost][0]
        pts = [(getattr(c, attr), c.valid_mean_auc) for c in done if _finite(getattr(c, attr))]
        if pts:
            ax.scatter(*zip(*pts), color="tab:gray", alpha=0.6, label="finished")
        fpts = sorted((getattr(c, attr), c.valid_mean_auc, c.number) for c in front if _finite(getattr(c, attr)))
        if fpts:
            ax.plot([p[0] for p in fpts], [p[1] for p in fpts], "o-", color="tab:red", label="Pareto front")
            for x, y, n in fpts:
                ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
        if cost == "params" and pts and min(p[0] for p in pts) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(OBJECTIVE_LABELS[cost])
        ax.set_ylabel("valid mean AUC")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    fig.suptitle("Pareto front" + (" (front over " + ", ".join(objectives) + ")" if len(costs) > 1 else ""))
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    plt = _plt()
    try:
        return files.save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def failure_summary(candidates: Sequence[Candidate], limit: int = 5) -> list[str]:
    """'N x reason' lines for failed candidates, most frequent first."""
    counts: dict[str, int] = {}
    for c in candidates:
        if c.state == "failed":
            reason = c.reason or "(no reason recorded)"
            counts[reason] = counts.get(reason, 0) + 1
    lines = [f"{n} x {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} other reason(s)"]
    return lines


# ------------------------------------------------------------------------------ live display
class SearchDisplay:
    """Live progress on a terminal (candidates and epochs); one line per candidate elsewhere; nothing if quiet."""

    def __init__(self, console: Any | None, total: int | None, unit: str):
        self.console = console
        self.live = console is not None and console.is_terminal
        self.total = total if unit == "trials" else None
        self.progress = None
        self.done = 0
        self.best: float = -math.inf

    def start(self) -> None:
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.t_all = self.progress.add_task("candidates", total=self.total, info="")
        self.t_ep = self.progress.add_task("  epochs", total=1, info="")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def candidate_start(self, label: str, arch: Architecture, epochs: int) -> None:
        if self.progress is not None:
            self.progress.reset(self.t_ep, total=epochs, description=f"  {label} ({arch.id})", info="")

    def epoch(self, record: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(
                self.t_ep, advance=1, info=f"valid AUC {record.get('valid_mean_auc', float('nan')):.4f}"
            )

    def supernet_epoch(self, epoch: int, epochs: int, record: dict[str, float], seconds: float, first: int = 0) -> None:
        """A one-shot searcher's supernet epoch: a plain line when not on a terminal (CI, `| tee`), the live display otherwise.

        seconds: since the first epoch of this run (`first`, > 0 when resumed), for the ETA."""
        if self.console is None:
            return
        auc = record.get("valid_mean_auc", float("nan"))
        eta = seconds / max(1, epoch + 1 - first) * (epochs - epoch - 1)
        line = (
            f"supernet epoch {epoch + 1}/{epochs}: train loss {record.get('train_loss', float('nan')):.4f}, "
            f"valid AUC {auc:.4f}, {record.get('epoch_seconds', float('nan')):.1f}s, ETA {eta:.0f}s"
        )
        if self.progress is not None:
            self.progress.update(self.t_ep, info=line)
        else:
            self.console.print(line, highlight=False, soft_wrap=True)

    def candidate_end(self, c: Candidate) -> None:
        if self.console is None:
            return
        if c.state == "finished" and _finite(c.valid_mean_auc):
            self.best = max(self.best, c.valid_mean_auc)
        self.done += 1
        auc = f"{c.valid_mean_auc:.4f}" if _finite(c.valid_mean_auc) else "n/a"
        colour = {"finished": "green", "pruned": "yellow", "failed": "red"}.get(c.state, "white")
        line = (
            f"[{colour}]{c.state:8}[/{colour}] #{c.number:<4} {c.arch.id}  valid AUC {auc}  "
            f"params {c.num_params:,}  {c.train_seconds:.1f}s" + (f"  ({escape(c.reason)})" if c.reason else "")
        )
        self.console.print(line, highlight=False, soft_wrap=True)
        if self.progress is not None:
            best = f"best {self.best:.4f}" if self.best > -math.inf else ""
            self.progress.update(self.t_all, advance=1, info=best)
