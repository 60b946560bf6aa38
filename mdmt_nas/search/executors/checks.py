"""What an executor refuses before any work: a searcher it cannot run, Ray missing, a cluster with files for stores."""

from __future__ import annotations

import importlib.util
from typing import Any

INSTALL = (
    "the Ray executor needs Ray: pip install 'mdmt-nas[ray]', on every machine of the cluster (the same Ray version)"
)
#: tracking URIs that workers on other machines can log into
SHARED_TRACKING = ("http://", "https://", "postgresql", "mysql", "databricks")


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def check_executor(
    searcher_cls: type, config: Any, storage: str | None = None, tracking_uri: str | None = None
) -> None:
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
        raise UserError(
            f"--executor ray runs the trials of an Optuna searcher (optuna-tpe, optuna-random, optuna-nsga2, "
            f"optuna-grid); {searcher_cls.name!r} runs in this process: drop --executor ray"
        )
    if not _ray_installed():
        raise UserError(f"--executor ray: {INSTALL}")
    if not ex.address:
        return
    storage = storage or config.search.storage
    if not storage or storage.startswith(("sqlite", "journal")):
        where = storage or "the default sqlite:///<output>/study.db"
        raise UserError(
            f"--executor ray --address {ex.address}: workers on other machines cannot open the Optuna study "
            f"{where} (they report every rung to it); pass --storage postgresql://USER@HOST/DB "
            "(docs/scale-out.md), or leave out --address for a Ray on this machine only"
        )
    if config.tracking.enabled:
        from mdmt_nas.tracking import resolve_uri

        uri = tracking_uri or resolve_uri(config.tracking.uri) or "./mlflow.db"
        if not uri.startswith(SHARED_TRACKING):
            raise UserError(
                f"--executor ray --address {ex.address}: workers on other machines cannot log into {uri}; "
                "start `mdmt-nas server` and pass its --tracking-uri http://HOST:PORT (docs/scale-out.md), "
                "or leave out --address for a Ray on this machine only"
            )
