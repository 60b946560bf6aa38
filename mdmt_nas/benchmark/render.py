"""Rendering the benchmark report: results.json and CSVs, the AUC bar and Pareto plots, report.md and report.html."""


from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mdmt_nas.benchmark.settings import REFERENCE, BenchmarkSettings
from mdmt_nas.benchmark.stats import (
    RESULTS_VERSION,
    BenchmarkState,
    ModelSummary,
    RunRecord,
    Stat,
    findings,
    search_findings,
    summarize,
)
from mdmt_nas.files import atomic_file, save_figure, write_text


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def split_description(info: dict[str, Any]) -> str:
    s = info.get("split")
    rows = info["rows"]
    counts = f"{rows['train']:,} / {rows['valid']:,} / {rows['test']:,} train / valid / test rows"
    if not s:
        return f"the dataset's own split, {counts}"
    fr = "/".join(f"{round(f * 100):g}" for f in s.get("fractions", ()))
    kind = s.get("kind", "?")
    extra = f" with split seed {s.get('seed')}" if kind in ("random", "hash") else (f" on column {s['column']}" if s.get("column") else "")
    return f"{kind} {fr} split{extra}, {counts}"


# ------------------------------------------------------------------------------ outputs
def write_outputs(state: BenchmarkState, final: bool) -> list[Path]:
    """results.json, runs.csv, summary.csv, the two plots, report.md and report.html; returns their paths."""
    out = state.output_dir
    specs = state.settings.specs()
    order = {sp.key: i for i, sp in enumerate(specs)}
    state.records.sort(key=lambda r: (r.seed, order.get(r.model, len(order))))  # resumed runs back in their place
    summaries = summarize(state.records, specs)
    text = findings(summaries)
    results = {
        "version": RESULTS_VERSION, "complete": final, "started": state.started,
        "written": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "wall_seconds": round(state.elapsed, 1),
        "command": state.settings.command, "previous_commands": state.previous_commands, "segments": state.segments,
        "settings": state.settings.model_dump(mode="json"), "dataset": state.dataset_info,
        "machine": state.machine, "mlflow": {"tracking_uri": state.tracking_uri, "experiment": state.settings.tracking.experiment,
                                             "parent_run_id": state.parent_run_id, "unreachable_parent_run_ids": state.unreachable_parents},
        "runs": [asdict(r) for r in state.records], "summary": [s.to_dict() for s in summaries], "candidates": state.candidates,
        "findings": text + search_findings(summaries, state.records, state.dataset_info.get("bayes")),
    }
    paths = [_write(out / "results.json", json.dumps(_jsonable(results), indent=2) + "\n")]
    paths.append(_write_runs_csv(out / "runs.csv", state.records))
    paths.append(_write_summary_csv(out / "summary.csv", summaries))
    figs = []
    if any(s.test_auc.n for s in summaries):
        figs.append(_save(plot_auc_bars(summaries, state.dataset_info["name"], state.settings.space_label), out / "auc_bar.png"))
    pareto = pareto_points(state.candidates)
    if pareto["points"]:
        figs.append(_save(plot_pareto(pareto, state.settings), out / "pareto.png"))
    doc = build_report(state, summaries, text, pareto, final, {p.name for p in figs})
    paths.append(_write(out / "report.md", render_markdown(doc)))
    paths.append(_write(out / "report.html", render_html(doc, f"Benchmark: {state.dataset_info['name']}")))
    return paths + figs


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _write(path: Path, text: str) -> Path:
    return write_text(path, text)


def _num(v: Any, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _write_runs_csv(path: Path, records: Sequence[RunRecord]) -> Path:
    cells = list(dict.fromkeys((c["domain"], c["task"]) for r in records for c in r.cells))
    cols = ["model", "label", "kind", "seed", "status", "test_mean_auc", "test_mean_logloss", "valid_mean_auc", "num_params",
            "train_seconds", "wall_seconds", "epochs_run", "best_epoch", "arch_id", "run_id", "reason"]
    cols += [f"test_auc/{d}/{t}" for d, t in cells] + [f"test_logloss/{d}/{t}" for d, t in cells]
    with atomic_file(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in records:
            by = {(c["domain"], c["task"]): c for c in r.cells}
            row = [r.model, r.label, r.kind, r.seed, r.status, _num(r.test_mean_auc), _num(r.test_mean_logloss), _num(r.valid_mean_auc),
                   r.num_params, _num(r.train_seconds, 2), _num(r.wall_seconds, 2), r.epochs_run, r.best_epoch, r.arch_id, r.run_id or "", r.reason]
            row += [_num(by.get(k, {}).get("auc")) for k in cells] + [_num(by.get(k, {}).get("logloss")) for k in cells]
            w.writerow(row)
    return path


def _write_summary_csv(path: Path, summaries: Sequence[ModelSummary]) -> Path:
    cells = list(dict.fromkeys(k for s in summaries for k in s.cells_auc))
    cols = ["model", "label", "kind", "seeds", "test_mean_auc", "test_mean_auc_std", "test_mean_logloss", "test_mean_logloss_std",
            "valid_mean_auc", "valid_mean_auc_std", "num_params", "wall_seconds", "train_seconds"]
    cols += [f"test_auc/{d}/{t}{x}" for d, t in cells for x in ("", "_std")] + [f"test_logloss/{d}/{t}{x}" for d, t in cells for x in ("", "_std")]
    with atomic_file(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for s in summaries:
            row = [s.model, s.label, s.kind, " ".join(map(str, s.seeds)), _num(s.test_auc.mean), _num(s.test_auc.std),
                   _num(s.test_logloss.mean), _num(s.test_logloss.std), _num(s.valid_auc.mean), _num(s.valid_auc.std),
                   _num(s.num_params.mean, 0), _num(s.wall_seconds.mean, 1), _num(s.train_seconds.mean, 1)]
            row += [_num(getattr(s.cells_auc.get(k), a, float("nan"))) for k in cells for a in ("mean", "std")]
            row += [_num(getattr(s.cells_logloss.get(k), a, float("nan"))) for k in cells for a in ("mean", "std")]
            w.writerow(row)
    return path


# ------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def plot_auc_bars(summaries: Sequence[ModelSummary], dataset: str, space: str = "m3oe"):
    """Mean test AUC ± std per model; fixed baselines and searched architectures in two colours."""
    plt = _plt()
    done = [s for s in summaries if s.test_auc.n]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(done) + 2), 4.2))
    xs = range(len(done))
    means = [s.test_auc.mean for s in done]
    stds = [s.test_auc.std for s in done]
    colours = ["tab:orange" if s.kind == "search" else ("tab:green" if s.model == REFERENCE else "tab:blue") for s in done]
    ax.bar(xs, means, yerr=stds, capsize=4, color=colours, edgecolor="black", linewidth=0.5)
    lo = min(m - s for m, s in zip(means, stds))
    hi = max(m + s for m, s in zip(means, stds))
    pad = max(0.005, (hi - lo) * 0.25)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + 2.5 * pad))
    for x, m, s in zip(xs, means, stds):
        ax.text(x, m + s + pad * 0.08, f"{m:.4f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [s.label for s in done], rotation=30, ha="right")
    n = max(s.test_auc.n for s in done)
    ax.set_ylabel("mean test AUC over (domain, task)")
    ax.set_title(f"{dataset}: mean test AUC" + (f" ± std over {n} seeds" if n > 1 else " (1 seed)") + " (axis does not start at 0)", fontsize=10)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:blue", label="fixed baseline"), Patch(color="tab:green", label="fixed M3oE"),
                       Patch(color="tab:orange", label=f"searched ({space} space)")], fontsize="small", loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def pareto_points(candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Finished search candidates (valid AUC, params) and the Pareto front of the multi-trial ones (max AUC, min params)."""
    pts = [c for c in candidates if c.get("state") == "finished" and c.get("valid_mean_auc") is not None
           and not math.isnan(float(c["valid_mean_auc"])) and c.get("num_params")]
    trials = [c for c in pts if c.get("kind") == "candidate"]
    front = []
    for c in trials:
        dominated = any(o is not c and o["valid_mean_auc"] >= c["valid_mean_auc"] and o["num_params"] <= c["num_params"]
                        and (o["valid_mean_auc"] > c["valid_mean_auc"] or o["num_params"] < c["num_params"]) for o in trials)
        if not dominated:
            front.append(c)
    front.sort(key=lambda c: c["num_params"])
    return {"points": pts, "front": front}


def plot_pareto(pareto: dict[str, Any], settings: BenchmarkSettings):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = pareto["points"]
    seeds = sorted({c["seed"] for c in pts})
    cmap = plt.get_cmap("tab10")
    for i, seed in enumerate(seeds):
        trial = [c for c in pts if c["seed"] == seed and c["kind"] == "candidate"]
        if trial:
            ax.scatter([c["num_params"] for c in trial], [c["valid_mean_auc"] for c in trial], color=cmap(i), alpha=0.7, s=28,
                       label=f"TPE candidates, seed {seed}")
        chosen = [c for c in trial if c.get("chosen")]
        if chosen:
            ax.scatter([c["num_params"] for c in chosen], [c["valid_mean_auc"] for c in chosen], color=cmap(i), marker="*", s=180,
                       edgecolor="black", linewidth=0.6, zorder=3)
        derived = [c for c in pts if c["seed"] == seed and c["kind"] == "retrain"]
        if derived:
            ax.scatter([c["num_params"] for c in derived], [c["valid_mean_auc"] for c in derived], color=cmap(i), marker="D", s=50,
                       edgecolor="black", linewidth=0.6, label=f"DARTS derived (full training), seed {seed}")
    front = pareto["front"]
    if front:
        ax.step([c["num_params"] for c in front], [c["valid_mean_auc"] for c in front], where="post", color="black", linewidth=1,
                label="Pareto front of the TPE candidates (all seeds)")
    if pts and min(c["num_params"] for c in pts) > 0:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.1)
    ax.set_xlabel("parameters")
    ax.set_ylabel("valid mean AUC")
    ax.set_title(f"{settings.space_label} space: searched candidates (star = chosen; TPE candidates trained " + (f"{settings.candidate_epochs} epoch(s))" if settings.candidate_epochs else "fully)"),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the report document
Block = tuple  # ("h1"|"h2"|"p"|"ul"|"code"|"img"|"table", ...)


def _darts_default_epochs() -> str:
    try:
        from mdmt_nas.search.darts import DartsParams

        return f"{DartsParams().epochs} (default)"
    except Exception:  # noqa: BLE001 - only a label
        return "the default number of"


def _load_text(state: BenchmarkState) -> str:
    """The machine's load while the benchmark ran: wall times on a shared machine depend on it."""
    start = state.segments[0]["load_1min"] if state.segments else state.machine.get("load_average_1min_at_start")
    loads = sorted(r.load_1min for r in state.records if not math.isnan(r.load_1min))
    text = f"1-min load average {start} at the start"
    if loads:
        text += f", {loads[0]:g}–{loads[-1]:g} (median {loads[len(loads) // 2]:g}) after the runs"
    return text + " (a shared machine: wall times include other users' load)"


def _table_fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


# one document, section after section in reading order: split, the report's order would be scattered
def build_report(state: BenchmarkState, summaries: Sequence[ModelSummary], text: Sequence[str], pareto: dict[str, Any], final: bool,
                 figures: set[str]) -> list[Block]:
    s = state.settings
    info = state.dataset_info
    m = state.machine
    n_seeds = len(s.seeds)
    doc: list[Block] = [("h1", f"Benchmark: {info['name']}" + (" (quick run)" if s.quick else ""))]
    expected = len(s.seeds) * len(s.models)
    if not final:
        doc.append(("p", f"**Partial report**: {len(state.records)} of {expected} runs done when this was written "
                         f"({state.elapsed / 60:.0f} min in). Tables cover the finished runs only."))
    split = split_description(info)
    doc.append(("p", f"Every number below comes from the **test split** of {info['name']} — {split} — the same split for every model "
                     f"and seed; domains {', '.join(info['domains'])}; tasks {', '.join(info['tasks'])}. Mean ± sample std (ddof 1) "
                     f"over training seeds {', '.join(map(str, s.seeds))}."))
    doc.append(("h2", "How it was made"))
    doc.append(("code", s.command or "(run from Python: run_benchmark)"))
    if len(state.segments) > 1:
        doc.append(("p", f"Run in {len(state.segments)} parts, continued with `--resume`: " + "; ".join(
            f"from {seg['started']} ({seg['runs_done_before']} runs done, load {seg['load_1min']}, {seg['torch_threads']} thread(s))"
            for seg in state.segments) + "."))
    if state.previous_commands:
        doc.append(("p", "Resumed (`--resume`): earlier runs of this report came from " + "; ".join(f"`{c}`" for c in state.previous_commands) + "."))
    tr = [f"{k}={v}" for k, v in s.train_overrides.items()]
    search_train = f"the `{s.search_train}` example's train section"
    items = [
        f"Date: {state.started[:10]} (started {state.started}); wall time {_fmt_seconds(state.elapsed)} in total.",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s), Python {m['python']}, {m['platform']}; {_load_text(state)}.",
        "Fixed baselines: the `arch` and `train` sections of examples/<name>.yaml (" + ", ".join(
            f"{sp.label} = {sp.source}" for sp in s.specs() if sp.kind == "fixed") + "), the dataset replaced"
        + (f"; epochs set to {s.epochs} for every model" if s.epochs else "; each example's own epochs and early stopping")
        + (f"; train overrides {', '.join(tr)}" if tr else "") + ".",
        f"Searched: the `{s.space_label}` space" + (" (its known architectures evaluated first as warm-start candidates)" if s.warm_start else "")
        + f". DARTS: supernet for {s.darts_epochs or _darts_default_epochs()} epochs, the top derived architectures and the known ones "
        f"screened briefly, the best retrained from scratch. Multi-trial searches: budget {s.tpe_trials} (trials or wall time), each "
        + (f"candidate trained {s.candidate_epochs} epoch(s), the winner retrained" if s.candidate_epochs else
           "candidate trained fully unless the multi-fidelity pruner stops it early, so the winner's figure is a full training")
        + f" (params {json.dumps(s.tpe_params)}; final stage {s.final_seeds} seed(s)). Candidates and retraining use "
        f"{search_train}. One search per seed (search seed = training seed).",
        f"MLflow: experiment `{s.tracking.experiment}`" + (f" at `{state.tracking_uri}`, parent run `{state.parent_run_id}` (one child "
        "run per training; each search is a child with its candidates nested under it)" if state.parent_run_id else " (tracking off)") + "."
        + (f" Runs of earlier parts were logged under parent run(s) {', '.join(f'`{p}`' for p in state.unreachable_parents)}, which "
           "the `--resume` could not re-open in this tracking store (deleted, or another machine's store)." if state.unreachable_parents else ""),
    ]
    doc.append(("ul", items))
    doc.append(("h2", "Findings"))
    doc.append(("p", " ".join(text)))
    extra = search_findings(summaries, state.records, info.get("bayes"))
    if extra:
        doc.append(("p", " ".join(extra)))
    doc.append(("p", "Rule: a difference in mean test AUC counts only when it exceeds the sum of the two models' standard deviations "
                     "over seeds; otherwise it is reported as a tie within seed noise."))

    # ---- summary
    doc.append(("h2", "Summary"))
    rows = []
    for sm in summaries:
        fails = f" ({len(sm.failed_seeds)} failed)" if sm.failed_seeds else ""
        rows.append([sm.label, "searched" if sm.kind == "search" else "fixed", f"{sm.test_auc.n}{fails}", sm.test_auc.fmt(), sm.test_logloss.fmt(),
                     sm.valid_auc.fmt(), f"{sm.num_params.mean:,.0f}" if sm.num_params.n else "n/a",
                     f"{sm.wall_seconds.mean:.0f}" if sm.wall_seconds.n else "n/a", f"{sm.train_seconds.mean:.0f}" if sm.train_seconds.n else "n/a"])
    if info.get("bayes"):
        b = info["bayes"]
        rows.append(["Bayes ceiling", "oracle", "-", f"{b['test_mean_auc']:.4f}", f"{b.get('test_mean_logloss', float('nan')):.4f}",
                     f"{b['valid_mean_auc']:.4f}", "-", "-", "-"])
    doc.append(("table", ["model", "kind", "seeds", "test mean AUC", "test mean logloss", "valid mean AUC", "params", "wall s / seed",
                          "train s / seed"], rows,
                f"Test split: {split}. Wall time per seed: the whole training incl. evaluation and logging; for a searched model the "
                "search plus the retraining of its winner. Train time: the retraining's epochs only."))
    if "auc_bar.png" in figures:
        doc.append(("img", "auc_bar.png", "mean test AUC ± std per model"))

    # ---- per cell
    cells = list(dict.fromkeys(k for sm in summaries for k in sm.cells_auc))
    if cells:
        head = ["model"] + [f"{d} / {t}" for d, t in cells] + ["mean"]
        for title, attr, mean_attr in (("Test AUC per (domain, task)", "cells_auc", "test_auc"), ("Test logloss per (domain, task)", "cells_logloss", "test_logloss")):
            doc.append(("h2", title))
            rows = [[sm.label] + [getattr(sm, attr).get(k, Stat(float("nan"), float("nan"), 0)).fmt() for k in cells] + [getattr(sm, mean_attr).fmt()]
                    for sm in summaries if sm.test_auc.n]
            doc.append(("table", head, rows, f"Test split: {split}; mean ± std over seeds{'' if n_seeds > 1 else ' (one seed: no std)'}."))

    # ---- searches
    searched = [r for r in state.records if r.kind == "search" and r.search]
    if searched:
        doc.append(("h2", "Searches"))
        rows = []
        for r in searched:
            si = r.search or {}
            rows.append([r.label, str(r.seed), f"`{si.get('best_arch_id', '')}`", f"{si.get('finished')}/{si.get('pruned')}/{si.get('failed')}",
                         _table_fmt(si.get("best_valid_auc_in_search")) if si.get("best_valid_auc_in_search") is not None else "n/a",
                         _table_fmt(r.valid_mean_auc), _table_fmt(r.test_mean_auc), f"{r.num_params:,}", f"{si.get('search_seconds', 0):.0f}",
                         f"{si.get('dir', '')}/"])
        doc.append(("table", ["search", "seed", "chosen architecture", "finished/pruned/failed", "valid AUC in search", "valid AUC retrained",
                              "test AUC retrained", "params", "search s", "outputs"], rows,
                    "Valid AUC in search: TPE — the winner's candidate training; DARTS — its derived architecture's retraining (the DARTS "
                    "search itself scores a supernet). Outputs: best_arch.json, leaderboard.csv, search.json per search."))
        for r in searched:
            si = r.search or {}
            if si.get("arch_summary"):
                doc.append(("p", f"{r.label}, seed {r.seed} — chosen architecture:"))
                doc.append(("code", si["arch_summary"]))
    if "pareto.png" in figures:
        doc.append(("h2", "Search candidates: valid AUC against parameters"))
        trained = (f"were trained {s.candidate_epochs} epoch(s) each, so their AUCs are below fully trained models'"
                   if s.candidate_epochs else "were trained fully (those the multi-fidelity pruner stopped early are left out)")
        doc.append(("p", f"Every finished candidate of the searches (valid split). TPE candidates {trained}; the DARTS points are "
                         "derived architectures after full retraining. The line is the Pareto front (higher AUC, fewer parameters) "
                         "of the TPE candidates."))
        doc.append(("img", "pareto.png", "valid AUC vs parameters of the searched candidates"))
        front = pareto["front"]
        if front:
            doc.append(("table", ["search", "seed", "trial", "architecture", "valid AUC", "params"],
                        [[c["label"], str(c["seed"]), str(c["number"]), f"`{c['arch_id']}`", _table_fmt(c["valid_mean_auc"]), f"{c['num_params']:,}"]
                         for c in front], "Pareto front of the TPE candidates (valid split)."))

    failed = [r for r in state.records if r.status != "finished"]
    if failed:
        doc.append(("h2", "Failed runs"))
        doc.append(("ul", [f"{r.label}, seed {r.seed}: {r.reason}" for r in failed]))
    doc.append(("h2", "Files"))
    doc.append(("ul", ["`results.json`: settings, machine, every run (per-cell test metrics), summaries, candidates, findings.",
                       "`runs.csv`: one row per (model, seed); `summary.csv`: one row per model (mean and std).",
                       "`auc_bar.png`, `pareto.png`: the figures above; `report.html`: this report as HTML."]))
    return doc


# ------------------------------------------------------------------------------ renderers
def render_markdown(doc: Sequence[Block]) -> str:
    out: list[str] = []
    for b in doc:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}")
        elif kind == "h2":
            out.append(f"## {b[1]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "code":
            out.append(f"```\n{b[1]}\n```")
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "table":
            head, rows, caption = b[1], b[2], b[3]
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if _numeric(rows, i) else "---" for i in range(len(head))) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
            if caption:
                lines.append("")
                lines.append(f"*{caption}*")
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _numeric(rows: Sequence[Sequence[Any]], col: int) -> bool:
    """A column of numbers (right-aligned): every cell starts with a digit, a sign or is n/a."""
    cells = [str(r[col]) for r in rows if col < len(r)]
    return bool(cells) and all(re.match(r"^([-+]?[0-9]|n/a)", c) for c in cells)


def _inline_html(text: str) -> str:
    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return t


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}caption{caption-side:bottom;font-style:italic;text-align:left;padding:.4em 0;color:#555}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}"""


def render_html(doc: Sequence[Block], title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in doc:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline_html(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(b[1])}</code></pre>")
        elif kind == "img":
            out.append(f"<p><img src=\"{html.escape(b[1])}\" alt=\"{html.escape(b[2])}\"></p>")
        elif kind == "table":
            head, rows, caption = b[1], b[2], b[3]
            t = ["<table>"]
            if caption:
                t.append(f"<caption>{_inline_html(caption)}</caption>")
            align = [' style="text-align:right"' if _numeric(rows, i) else ' style="text-align:left"' for i in range(len(head))]
            t.append("<thead><tr>" + "".join(f"<th{a}>{_inline_html(h)}</th>" for h, a in zip(head, align)) + "</tr></thead><tbody>")
            t += ["<tr>" + "".join(f"<td{a}>{_inline_html(c)}</td>" for c, a in zip(row, align)) + "</tr>" for row in rows]
            t.append("</tbody></table>")
            out.append("".join(t))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
