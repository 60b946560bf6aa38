"""What one training logs to its MLflow run: params, final metrics, its texts and the AUC heatmap."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mdmt_nas.tracking import flatten

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.tracking import Tracker


def metrics_csv(metrics_by_split: Mapping[str, Any]) -> str:
    """A CSV of per-(domain, task) metrics for each split."""
    buf = io.StringIO()
    buf.write("split,domain,task,rows,positive_rate,auc,logloss\n")
    for split, m in metrics_by_split.items():
        if m is None:
            continue
        for r in m.table_rows():
            buf.write(
                f"{split},{r['domain']},{r['task']},{r['rows']},{r['positive_rate']:.6f},{r['auc']:.6f},{r['logloss']:.6f}\n"
            )
    return buf.getvalue()


def auc_heatmap(metrics: Any, title: str):
    """A domains x tasks heatmap of AUC (matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(metrics.tasks), 1.2 + 0.6 * len(metrics.domains)))
    data = np.ma.masked_invalid(metrics.auc)
    im = ax.imshow(
        data,
        cmap="viridis",
        vmin=0.5,
        vmax=max(0.51, float(np.nanmax(metrics.auc)) if np.isfinite(metrics.auc).any() else 1.0),
    )
    ax.set_xticks(range(len(metrics.tasks)), metrics.tasks)
    ax.set_yticks(range(len(metrics.domains)), metrics.domains)
    for d in range(len(metrics.domains)):
        for t in range(len(metrics.tasks)):
            v = metrics.auc[d, t]
            ax.text(t, d, "n/a" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", color="w")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


#: the few metrics a reader of the runs table wants first, under short names (the long names stay too)
KEY_METRICS = ("valid_auc", "test_auc", "params", "latency_ms_1k")


def machine_load() -> float:
    """The 1-minute load average (NaN where the OS has none): latency measured on a busy machine is not comparable."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


def arch_brief(arch: Any) -> str:
    """The experts of an architecture in a few words, e.g. '4x mlp + cross' (the bottom alone if it has no groups)."""
    from collections import Counter

    counts = Counter(e.name for g in arch.groups().values() for e in g.experts)
    if not counts:
        return f"bottom {arch.bottom.name}" if arch.bottom is not None else "no experts"
    return " + ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())


def training_params(arch: Any, config: Any) -> dict[str, str]:
    """The MLflow params of one training: flattened architecture, training and dataset settings (logged when it
    starts, so an interrupted run has them too)."""
    params = {"arch_id": arch.id}
    params.update(flatten(arch.canonical(), "arch"))
    params.update(flatten(config.train.model_dump(mode="json"), "train"))
    params.update(flatten(config.dataset.model_dump(mode="json"), "dataset"))
    return params


def start_texts(arch: Any, config: Any) -> dict[str, str]:
    """The artifacts of a training known before it starts: arch.json and config.json."""
    return {"arch.json": arch.to_json(), "config.json": json.dumps(config.model_dump(mode="json"), indent=2)}


def log_training(
    tracker: Tracker,
    run_id: str | None,
    result: Any,
    config: Any,
    extra_params: Mapping[str, Any] | None = None,
    label: str | None = None,
    plot: bool = True,
    tags: Mapping[str, Any] | None = None,
    params: bool = True,
    texts: bool = True,
) -> None:
    """Params (flattened architecture + training config; params=False when train logged them at its start), final
    metrics (and `tags`, same request) and artifacts of one training (arch.json and config.json unless `texts` is false:
    logged at its start, `start_texts`); the AUC heatmap unless `plot` is false (a search's candidates that do not lead,
    see tracking.plots).

    The per-epoch metrics are not logged here: the caller logs each epoch as it ends (with its step), once.
    """
    if not run_id:
        return
    arch = result.arch
    logged: dict[str, Any] = {}
    if params:
        logged = training_params(arch, config)
        logged.update(extra_params or {})
    final = {}
    final.update(result.valid.flat("valid"))
    if result.test is not None:
        final.update(result.test.flat("test"))
    final.update(
        {
            "num_params": result.num_params,
            "latency_ms_per_1k": result.latency_ms_per_1k,
            # the passes it is the minimum of: the evaluation's valid and test passes, 3 of its own with the latency objective
            "latency_repeats": result.latency_repeats,
            "train_seconds": result.train_seconds,
            "rows_per_second": result.rows_per_second,
            "best_epoch": result.best_epoch,
        }
    )
    final.update(
        dict(
            zip(
                KEY_METRICS,
                (
                    result.valid.mean_auc,
                    result.test.mean_auc if result.test is not None else float("nan"),
                    result.num_params,
                    result.latency_ms_per_1k,
                ),
            )
        )
    )
    load = getattr(result, "latency_load", None)
    final["latency_load_1m"] = load if load is not None else machine_load()  # the load while latency was measured
    tracker.log_batch(run_id, logged, final, step=result.epochs_run, tags=tags)
    files = start_texts(arch, config) if texts else {}
    tracker.log_texts(run_id, {**files, "metrics.csv": metrics_csv({"valid": result.valid, "test": result.test})})
    if not plot:
        return
    import matplotlib.pyplot as plt

    metric_split = result.test if result.test is not None else result.valid
    who = " · ".join(x for x in (label, arch.name, arch.id) if x)
    fig = auc_heatmap(metric_split, f"{'test' if result.test is not None else 'valid'} AUC · {who}")
    tracker.log_figure(run_id, fig, "auc_heatmap.png")
    plt.close(fig)
