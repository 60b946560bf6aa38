"""MLflow tracking: one run per training, child runs per candidate of a search.

MLflow is imported lazily (it is slow to import). The tracking URI is
`--tracking-uri`, else $MLFLOW_TRACKING_URI, else MLflow's own default (a
SQLite `mlflow.db` in the working directory).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mdmt_nas.config import TrackingConfig
from mdmt_nas.errors import UserError

MAX_PARAM_LEN = 6000


def flatten(data: Any, prefix: str = "", sep: str = ".") -> dict[str, str]:
    """Nested dicts/lists -> {"a.b.0.c": "value"} strings, for MLflow params."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        if not data and prefix:
            out[prefix] = "{}"
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{sep}{k}" if prefix else str(k), sep))
    elif isinstance(data, (list, tuple)):
        if not data and prefix:
            out[prefix] = "[]"
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}{sep}{i}", sep))
    else:
        out[prefix] = "None" if data is None else str(data)
    return out


@contextlib.contextmanager
def sqlite_init_lock(url: str | None) -> Iterator[None]:
    """Serialise the first use of a SQLite database by processes of this machine (an flock on its folder):
    MLflow and Optuna create their tables on first use, and two processes doing so at once collide."""
    if not url or not url.startswith("sqlite:///"):
        yield
        return
    folder = Path(url[len("sqlite:///"):].split("?", 1)[0]).parent
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no flock (Windows) or no folder yet: the caller reports what goes wrong
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def init_database(create: Any, url: str | None, attempts: int = 4) -> Any:
    """`create()` (an MLflow client, an Optuna storage: both create or migrate their tables on first use),
    serialised on this machine for SQLite and retried when another worker is creating the same tables."""
    import time

    for attempt in range(attempts):
        try:
            with sqlite_init_lock(url):
                return create()
        except Exception as exc:
            text = str(exc)
            racing = (type(exc).__name__ in ("IntegrityError", "UniqueViolation", "CommandError")
                      or "already exists" in text or "database is locked" in text)
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)


def resolve_uri(uri: str | None) -> str | None:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or None


class Tracker:
    """A thin, explicit wrapper over the MLflow client (no global active-run state)."""

    def __init__(self, cfg: TrackingConfig | None = None):
        cfg = cfg or TrackingConfig()
        self.cfg = cfg
        self.enabled = cfg.enabled
        self._client = None
        self._experiment_id: str | None = None

    @property
    def client(self):
        if self._client is None:
            import mlflow
            from mlflow.tracking import MlflowClient

            uri = resolve_uri(self.cfg.uri)
            try:
                if uri:
                    mlflow.set_tracking_uri(uri)
                self._client = init_database(lambda: MlflowClient(tracking_uri=uri), uri or mlflow.get_tracking_uri())
            except Exception as exc:  # unknown scheme, malformed URI
                raise self._bad_uri(uri, exc) from None
        return self._client

    def _bad_uri(self, uri: str | None, exc: BaseException) -> UserError:
        first = " ".join(str(exc).split())[:300]
        return UserError(f"cannot use the MLflow tracking URI {uri or '(MLflow default)'!r}: {type(exc).__name__}: {first}; "
                         "pass --tracking-uri sqlite:///mlflow.db (or http://HOST:PORT of an MLflow server), or --no-track")

    def check(self) -> None:
        """Open the tracking store and its experiment now: a bad URI fails before any work (UserError)."""
        if self.enabled:
            _ = self.experiment_id

    @property
    def tracking_uri(self) -> str:
        import mlflow

        return resolve_uri(self.cfg.uri) or mlflow.get_tracking_uri()

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            client = self.client
            try:
                with sqlite_init_lock(self.tracking_uri):  # workers creating one SQLite store at once race on its tables
                    exp = client.get_experiment_by_name(self.cfg.experiment)
                    if exp is not None and exp.lifecycle_stage == "deleted":
                        raise UserError(f"MLflow experiment {self.cfg.experiment!r} in {self.tracking_uri} is deleted; restore it "
                                        "(mlflow experiments restore) or choose another tracking.experiment")
                    self._experiment_id = exp.experiment_id if exp else client.create_experiment(self.cfg.experiment)
            except UserError:
                raise
            except Exception as exc:  # unreachable server, not a database, unwritable location
                from mlflow.exceptions import MlflowException

                if isinstance(exc, MlflowException) and "RESOURCE_ALREADY_EXISTS" in str(getattr(exc, "error_code", "")):
                    self._experiment_id = client.get_experiment_by_name(self.cfg.experiment).experiment_id  # another worker created it
                else:
                    raise self._bad_uri(self.tracking_uri, exc) from None
        return self._experiment_id

    # ------------------------------------------------------------------ runs
    def start_run(self, name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        if not self.enabled:
            return None
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id:
            self.client.set_terminated(run_id, status=status)

    @contextlib.contextmanager
    def run(self, name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> Iterator[str | None]:
        """A run that ends FINISHED, FAILED on an exception, KILLED on interruption."""
        run_id = self.start_run(name, parent_run_id, tags)
        try:
            yield run_id
        except (KeyboardInterrupt, SystemExit):
            self.end_run(run_id, "KILLED")
            raise
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        else:
            self.end_run(run_id, "FINISHED")

    # ------------------------------------------------------------------ logging
    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if not run_id or not params:
            return
        from mlflow.entities import Param

        items = [Param(k[:250], str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not run_id or not metrics:
            return
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k[:250], float(v), ts, step or 0) for k, v in metrics.items() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        if run_id:
            for k, v in tags.items():
                self.client.set_tag(run_id, k, str(v))

    def log_text(self, run_id: str | None, text: str, name: str) -> None:
        if run_id:
            self.client.log_text(run_id, text, name)

    def log_dict(self, run_id: str | None, data: Any, name: str) -> None:
        if run_id:
            self.log_text(run_id, json.dumps(data, indent=2, default=str), name)

    def log_file(self, run_id: str | None, path: str | Path, artifact_path: str | None = None) -> None:
        if run_id:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_figure(self, run_id: str | None, fig: Any, name: str) -> None:
        if run_id:
            self.client.log_figure(run_id, fig, name)


def metrics_csv(metrics_by_split: Mapping[str, Any]) -> str:
    """A CSV of per-(domain, task) metrics for each split."""
    buf = io.StringIO()
    buf.write("split,domain,task,rows,positive_rate,auc,logloss\n")
    for split, m in metrics_by_split.items():
        if m is None:
            continue
        for r in m.table_rows():
            buf.write(f"{split},{r['domain']},{r['task']},{r['rows']},{r['positive_rate']:.6f},{r['auc']:.6f},{r['logloss']:.6f}\n")
    return buf.getvalue()


def auc_heatmap(metrics: Any, title: str):
    """A domains x tasks heatmap of AUC (matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(metrics.tasks), 1.2 + 0.6 * len(metrics.domains)))
    data = np.ma.masked_invalid(metrics.auc)
    im = ax.imshow(data, cmap="viridis", vmin=0.5, vmax=max(0.51, float(np.nanmax(metrics.auc)) if np.isfinite(metrics.auc).any() else 1.0))
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


def log_training(tracker: Tracker, run_id: str | None, result: Any, config: Any, extra_params: Mapping[str, Any] | None = None) -> None:
    """Params (flattened architecture + training config), final metrics and artifacts of one training."""
    if not run_id:
        return
    arch = result.arch
    params = {"arch_id": arch.id}
    params.update(flatten(arch.canonical(), "arch"))
    params.update(flatten(config.train.model_dump(mode="json"), "train"))
    params.update(flatten(config.dataset.model_dump(mode="json"), "dataset"))
    params.update(extra_params or {})
    tracker.log_params(run_id, params)
    for rec in result.history:
        tracker.log_metrics(run_id, {k: v for k, v in rec.items() if k != "epoch"}, step=int(rec["epoch"]))
    final = {}
    final.update(result.valid.flat("valid"))
    if result.test is not None:
        final.update(result.test.flat("test"))
    final.update({"num_params": result.num_params, "latency_ms_per_1k": result.latency_ms_per_1k,
                  "train_seconds": result.train_seconds, "rows_per_second": result.rows_per_second,
                  "best_epoch": result.best_epoch})
    tracker.log_metrics(run_id, final, step=result.epochs_run)
    tracker.log_text(run_id, arch.to_json(), "arch.json")
    tracker.log_text(run_id, json.dumps(config.model_dump(mode="json"), indent=2), "config.json")
    tracker.log_text(run_id, metrics_csv({"valid": result.valid, "test": result.test}), "metrics.csv")
    import matplotlib.pyplot as plt

    metric_split = result.test if result.test is not None else result.valid
    fig = auc_heatmap(metric_split, f"{'test' if result.test is not None else 'valid'} AUC - {arch.name or arch.id}")
    tracker.log_figure(run_id, fig, "auc_heatmap.png")
    plt.close(fig)


def tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mdmt-nas-")
