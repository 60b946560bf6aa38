"""Executors of a search: where its candidates train.

    local   the searcher's own loop in this process (several processes share a study through --storage)
    ray     an Optuna searcher's trials as Ray actor calls: `mdmt-nas search --executor ray --workers N` (ray.py)

`run_searcher(searcher, ctx, cleanup)` is the one place the runner hands a searcher to an executor;
`check_executor` refuses what an executor cannot run, before any work.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any

INSTALL = "the Ray executor needs Ray: pip install 'mdmt-nas[ray]', on every machine of the cluster (the same Ray version)"
#: tracking URIs that workers on other machines can log into
SHARED_TRACKING = ("http://", "https://", "postgresql", "mysql", "databricks")


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def check_executor(searcher_cls: type, config: Any, storage: str | None = None, tracking_uri: str | None = None) -> None:
    """Refuse an executor this searcher or environment cannot use (UserError with the fix).

    `storage` / `tracking_uri`: the resolved Optuna storage and MLflow URI, when known; with `--address` (a Ray
    cluster, workers on other machines) they must be servers, not files on this machine.
    """
    ex = config.search.executor
    if ex.kind == "local":
        return
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.optuna import OptunaSearcher

    if not issubclass(searcher_cls, OptunaSearcher):
        raise UserError(f"--executor ray runs the trials of an Optuna searcher (optuna-tpe, optuna-random, optuna-nsga2, "
                        f"optuna-grid); {searcher_cls.name!r} runs in this process: drop --executor ray")
    if not _ray_installed():
        raise UserError(f"--executor ray: {INSTALL}")
    if not ex.address:
        return
    storage = storage or config.search.storage
    if not storage or storage.startswith(("sqlite", "journal")):
        where = storage or "the default sqlite:///<output>/study.db"
        raise UserError(f"--executor ray --address {ex.address}: workers on other machines cannot open the Optuna study "
                        f"{where} (they report every rung to it); pass --storage postgresql://USER@HOST/DB "
                        "(docs/scale-out.md), or leave out --address for a Ray on this machine only")
    if config.tracking.enabled:
        from mdmt_nas.tracking import resolve_uri

        uri = tracking_uri or resolve_uri(config.tracking.uri) or "./mlflow.db"
        if not uri.startswith(SHARED_TRACKING):
            raise UserError(f"--executor ray --address {ex.address}: workers on other machines cannot log into {uri}; "
                            "start `mdmt-nas server` and pass its --tracking-uri http://HOST:PORT (docs/scale-out.md), "
                            "or leave out --address for a Ray on this machine only")


def run_searcher(searcher: Any, ctx: Any, cleanup: contextlib.ExitStack) -> Any:
    """`searcher.run(ctx)` on the executor `search.executor.kind` names; `cleanup` ends with the search."""
    if ctx.config.search.executor.kind == "local":
        return searcher.run(ctx)
    from mdmt_nas.search.executors.ray import run_on_ray

    return run_on_ray(searcher, ctx, cleanup)


def storage_notes(config: Any, searcher_cls: type, space_name: str) -> list[str]:
    """Warnings about a SQLite study shared by more workers than it serves well, or on a network file system."""
    from mdmt_nas.search import storage as stores

    scfg = config.search
    if not scfg.storage or not scfg.storage.startswith("sqlite:///"):
        return []
    if scfg.executor.kind == "ray":
        workers = scfg.executor.workers
    else:  # this process plus the workers already training trials of the same study
        name = scfg.study_name or f"{space_name}-{searcher_cls.name}-{config.dataset.name}-seed{scfg.seed}"
        workers = 1 + stores.study_running_sqlite(scfg.storage, name)
    return stores.sqlite_warnings(scfg.storage, workers)
