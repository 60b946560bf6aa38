"""MLflow tracking: the run lifecycle (parent, children, reopen, stale runs, worker tags) and what a training logs.

One run per training; a search or a benchmark has one parent run, re-opened when
it is resumed, and a child run per candidate (each tagged with the worker that
trains it, so a re-opened parent can tell a dead worker's RUNNING child from a
live one's). Searchers and the benchmark use these methods, never the raw client.

MLflow is imported lazily (it is slow to import). The tracking URI is
`--tracking-uri`, else $MLFLOW_TRACKING_URI, else MLflow's own default (a
SQLite `mlflow.db` in the working directory).

Writes (params, metrics, tags, texts, figures, renames) are write-behind by default
(`tracking.async_logging`, tracking_queue.py): they return at once and one thread writes
them in order. Whatever reads back (`client`, resume, `end_run`) flushes first, so it
sees every write made before; a failed write is raised by the next call.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mdmt_nas.config import TrackingConfig
from mdmt_nas.errors import SearchStopped, UserError
from mdmt_nas.stores import init_database, sqlite_init_lock
from mdmt_nas.tracking_queue import WriteBehind
from mdmt_nas.worker_tags import WORKER_TAG, worker_alive, worker_id

MAX_PARAM_LEN = 6000
#: the tag that is a run's name: set with other tags, it renames the run in the same request
RUN_NAME = "mlflow.runName"


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


def resolve_uri(uri: str | None) -> str | None:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def _quiet_mlflow() -> None:
    """MLflow logs a database error with its whole traceback (~90 lines) before raising it; we print one line instead
    (`--debug` shows the traceback)."""
    import logging

    if os.environ.get("MDMT_NAS_DEBUG") != "1":
        for name in ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _http_limits(cfg: TrackingConfig) -> None:
    """Bounded retries and timeouts for an MLflow server (MLflow's defaults retry for minutes); the user's own env wins."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(cfg.retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(cfg.timeout))))


class _GuardedClient:
    """The MLflow client, with environment failures of the store (read-only, full disk, not a database, server gone)
    raised as one-line UserErrors (stores.store_error); every other exception passes unchanged."""

    def __init__(self, client: Any, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                from mdmt_nas.stores import store_error

                mapped = store_error(exc, self._uri)
                if mapped is None:
                    raise
                raise mapped from exc

        return call


class Tracker:
    """A thin, explicit wrapper over the MLflow client (no global active-run state)."""

    def __init__(self, cfg: TrackingConfig | None = None):
        cfg = cfg or TrackingConfig()
        self.cfg = cfg
        self.enabled = cfg.enabled
        self._client = None
        self._experiment_id: str | None = None
        self._writes = WriteBehind() if cfg.enabled and cfg.async_logging else None
        #: runs this tracker ended: a write to one of them is flushed before it returns (the run was already whole in
        #: the store, and a reader after end_run must not see it change later)
        self._ended: set[str] = set()

    @property
    def client(self):
        """The MLflow client, to read back or call what the tracker does not wrap: pending writes are flushed first."""
        store = self._store()
        self.flush()
        return store

    def flush(self) -> None:
        """Wait until every write made so far is in the store; raises the failure of one of them."""
        if self._writes is not None:
            self._writes.flush()

    def _write(self, method: str, run_id: str, *args: Any, **kwargs: Any) -> None:
        """`client.method(run_id, ...)` now (async_logging off), else queued behind the earlier writes."""
        self._later(method, getattr(self._store(), method), run_id, *args, **kwargs)

    def _later(self, what: str, fn: Any, run_id: str, *args: Any, **kwargs: Any) -> None:
        """`fn(run_id, ...)` behind the earlier writes; a write to a run that has ended is in the store when it returns."""
        if self._writes is None:
            fn(run_id, *args, **kwargs)
            return
        self._writes.submit(fn, run_id, *args, what=f"{what} of run {run_id}", **kwargs)
        if run_id in self._ended:
            self._writes.flush()

    def _store(self):
        """The guarded MLflow client, created on first use (in the caller's thread: a bad URI is raised there)."""
        if self._writes is not None:
            self._writes.check()
        if self._client is None:
            import mlflow
            from mlflow.tracking import MlflowClient

            uri = resolve_uri(self.cfg.uri)
            _quiet_mlflow()
            _http_limits(self.cfg)
            try:
                if uri:
                    mlflow.set_tracking_uri(uri)
                client = init_database(lambda: MlflowClient(tracking_uri=uri), uri or mlflow.get_tracking_uri())
            except Exception as exc:  # unknown scheme, malformed URI
                from mdmt_nas.stores import store_error

                raise (store_error(exc, uri or mlflow.get_tracking_uri()) or self._bad_uri(uri, exc)) from None
            self._client = _GuardedClient(client, uri or mlflow.get_tracking_uri())
        return self._client

    def _bad_uri(self, uri: str | None, exc: BaseException) -> UserError:
        first = " ".join(str(exc).split())[:300]
        return UserError(
            f"cannot use the MLflow tracking URI {uri or '(MLflow default)'!r}: {type(exc).__name__}: {first}; "
            "pass --tracking-uri sqlite:///mlflow.db (or http://HOST:PORT of an MLflow server), or --no-track"
        )

    def check(self) -> None:
        """Check the tracking store (scheme, SQLite file, server reachable within tracking.timeout; stores.py), then open it
        and its experiment: a bad URI fails before any work (UserError, one line)."""
        if self.enabled:
            from mdmt_nas.stores import check_tracking_uri

            check_tracking_uri(resolve_uri(self.cfg.uri), self.cfg.timeout)
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
                with sqlite_init_lock(
                    self.tracking_uri
                ):  # workers creating one SQLite store at once race on its tables
                    exp = client.get_experiment_by_name(self.cfg.experiment)
                    if exp is not None and exp.lifecycle_stage == "deleted":
                        raise UserError(
                            f"MLflow experiment {self.cfg.experiment!r} in {self.tracking_uri} is deleted; restore it "
                            "(mlflow experiments restore) or choose another tracking.experiment"
                        )
                    self._experiment_id = exp.experiment_id if exp else client.create_experiment(self.cfg.experiment)
            except UserError:
                raise
            except Exception as exc:  # unreachable server, not a database, unwritable location
                from mdmt_nas.stores import store_error

                if store_error(exc, self.tracking_uri) is not None:
                    raise store_error(exc, self.tracking_uri) from None
                from mlflow.exceptions import MlflowException

                if isinstance(exc, MlflowException) and "RESOURCE_ALREADY_EXISTS" in str(
                    getattr(exc, "error_code", "")
                ):
                    self._experiment_id = client.get_experiment_by_name(
                        self.cfg.experiment
                    ).experiment_id  # another worker created it
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
        run = self._store().create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        """End the run after everything logged before: it returns once the run is whole in the store."""
        if run_id:
            self._write("set_terminated", run_id, status=status)
            self.flush()
            self._ended.add(run_id)

    def end_failed(self, run_id: str | None, exc: BaseException, status: str = "FAILED") -> None:
        """End a run whose block raised: tags state and reason (the one-line message), status FAILED (KILLED for an interruption).

        Best effort: when the store itself is what failed (read-only, full disk) nothing more can be recorded, and the
        original error is the one to report."""
        if not run_id:
            return
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        state = "killed" if interrupted else "failed"
        reason = (
            "interrupted"
            if interrupted
            else (str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
        )
        try:
            if self._writes is not None:  # what was queued is written; a failure among it is not the error to report
                self._writes.flush(raise_error=False)
            self.set_tags(run_id, {"state": state, "reason": reason[:5000]})
            self.end_run(run_id, "KILLED" if interrupted else status)
        except Exception:  # noqa: BLE001 - never mask the error that ended the run
            pass

    def start_child(self, name: str, parent_run_id: str | None, tags: dict[str, str] | None = None) -> str | None:
        """A child run of a search, tagged with this worker (see `kill_stale_children`)."""
        return self.start_run(name, parent_run_id, {**(tags or {}), WORKER_TAG: worker_id()})

    def reopen(self, run_id: str | None) -> bool:
        """Mark an earlier run RUNNING again (a resumed search); False if tracking is off or the run is gone."""
        if not self.enabled or not run_id:
            return False
        client = self.client  # flushed: a failed earlier write is raised, not taken for a deleted run
        try:
            client.update_run(run_id, status="RUNNING")
        except Exception:  # noqa: BLE001 - deleted, or another tracking server
            return False
        self._ended.discard(run_id)
        return True

    def open_parent(self, previous: str | None, name: str, tags: dict[str, str]) -> tuple[str | None, bool]:
        """Re-open `previous` (a resumed search's parent run) if it still exists, else start a new parent run.

        Returns (run id, re-opened). Children of a re-opened parent left RUNNING by a dead worker are marked KILLED.
        """
        if not self.enabled:
            return None, False
        if previous:
            client = self.client  # flushed: a failed earlier write is raised, not taken for a deleted run
            try:
                client.get_run(previous)
            except Exception:  # noqa: BLE001 - deleted, or another tracking server
                previous = None
            if previous:
                self.client.update_run(previous, status="RUNNING")
                self._ended.discard(previous)
                self.kill_stale_children(previous)
                return previous, True
        return self.start_run(name, None, tags), False

    def kill_stale_children(self, parent: str) -> None:
        """Child runs still RUNNING under a re-opened parent whose process died (SIGKILL, crash): mark them KILLED.

        Runs of a live worker on this machine (several workers share one study) and of workers on other machines
        (whose processes cannot be checked from here) are left alone.
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'",
        )
        for r in runs:
            if worker_alive(r.data.tags.get(WORKER_TAG, "")) is not False:
                continue
            self.set_tags(
                r.info.run_id,
                {
                    "state": "killed",
                    "reason": "the search process ended while this candidate trained (killed or crashed)",
                },
            )
            self.end_run(r.info.run_id, "KILLED")

    def log_params_again(self, run_id: str | None, params: Mapping[str, Any], reopened: bool) -> None:
        """Params of a (possibly re-opened) run: new keys are logged, changed ones become `resumed.<key>` tags."""
        if not run_id:
            return
        if not reopened:
            self.log_params(run_id, params)
            return
        existing = self.client.get_run(run_id).data.params
        self.log_params(run_id, {k: v for k, v in params.items() if k[:250] not in existing})
        changed = {
            f"resumed.{k}": v
            for k, v in params.items()
            if k[:250] in existing and existing[k[:250]] != str(v)[:MAX_PARAM_LEN]
        }
        self.set_tags(run_id, changed)

    @contextlib.contextmanager
    def ending_on_error(self, run_id: str | None) -> Iterator[None]:
        """The run ends KILLED if the block is interrupted, FAILED (tagged with the reason) if it raises; else it stays open."""
        try:
            yield
        except BaseException as exc:
            self.end_failed(run_id, exc, "KILLED" if isinstance(exc, SearchStopped) else "FAILED")
            raise

    @contextlib.contextmanager
    def run(
        self, name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None
    ) -> Iterator[str | None]:
        """A run that ends FINISHED, FAILED on an exception, KILLED on interruption."""
        run_id = self.start_run(name, parent_run_id, tags)
        try:
            yield run_id
        except BaseException as exc:
            self.end_failed(run_id, exc)
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
            self._write("log_batch", run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not run_id or not metrics:
            return
        items = _metric_items(metrics, step)
        for i in range(0, len(items), 500):
            self._write("log_batch", run_id, metrics=items[i : i + 500])

    def rename(self, run_id: str | None, name: str) -> None:
        self.set_tags(run_id, {RUN_NAME: name[:250]})  # one request (update_run reads the whole run first)

    def log_batch(
        self,
        run_id: str | None,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        step: int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Params, metrics and tags in one request when they fit MLflow's limits (100 params, 100 tags, 1000 entries),
        else in chunks."""
        if not run_id:
            return
        tags = tags or {}
        if len(params) > 100 or len(tags) > 100 or len(params) + len(metrics) + len(tags) > 1000:
            self.log_params(run_id, params)
            self.log_metrics(run_id, metrics, step)
            self.set_tags(run_id, tags)
            return
        from mlflow.entities import Param, RunTag

        self._write(
            "log_batch",
            run_id,
            params=[Param(k[:250], str(v)[:MAX_PARAM_LEN]) for k, v in params.items()],
            metrics=_metric_items(metrics, step),
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        if run_id and tags:  # one request for all of them
            from mlflow.entities import RunTag

            self._write("log_batch", run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_texts(self, run_id: str | None, texts: Mapping[str, str]) -> None:
        """Several text artifacts in one upload (name -> content)."""
        if run_id and texts:
            self._later("log_texts", functools.partial(_upload, self._store()), run_id, dict(texts))

    def log_text(self, run_id: str | None, text: str, name: str) -> None:
        if run_id:
            self._write("log_text", run_id, text, name)

    def log_dict(self, run_id: str | None, data: Any, name: str) -> None:
        if run_id:
            self.log_text(run_id, json.dumps(data, indent=2, default=str), name)

    def log_file(self, run_id: str | None, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file now (after the queued writes): the file may change once this returns."""
        if run_id:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_figure(self, run_id: str | None, fig: Any, name: str) -> None:
        """A matplotlib figure as an image artifact: drawn here (the caller closes it), uploaded behind the other writes."""
        if not run_id:
            return
        if not hasattr(fig, "savefig"):  # not matplotlib (plotly): MLflow draws it, now
            self.client.log_figure(run_id, fig, name)
            return
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format=Path(name).suffix[1:] or "png")
        self._later("log_figure", functools.partial(_upload, self._store()), run_id, {name: buf.getvalue()})


def _metric_items(metrics: Mapping[str, float], step: int | None) -> list[Any]:
    """MLflow Metrics stamped now (the time they were logged, not written), None and NaN left out."""
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    return [
        Metric(k[:250], float(v), ts, step or 0)
        for k, v in metrics.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    ]


def _upload(client: Any, run_id: str, files: Mapping[str, str | bytes]) -> None:
    """Several artifacts (relative name -> text or bytes) in one upload."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        client.log_artifacts(run_id, tmp)
