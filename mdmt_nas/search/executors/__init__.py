"""Executors of a search: where its candidates train.

    local   the searcher's own loop in this process (several processes share a study through --storage)
    ray     an Optuna searcher's trials as Ray actor calls: `mdmt-nas search --executor ray --workers N` (ray.py)

`run_searcher(searcher, ctx)` is the one place the runner hands a searcher to an executor.
"""

from __future__ import annotations

from typing import Any


def check_executor(searcher_cls: type, config: Any) -> None:
    """Refuse an executor this searcher or environment cannot use, before any work (UserError with the fix)."""
    ex = config.search.executor
    if ex.kind == "local":
        return
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.executors.ray import require_ray
    from mdmt_nas.search.optuna import OptunaSearcher

    if not issubclass(searcher_cls, OptunaSearcher):
        raise UserError(f"--executor ray runs the trials of an Optuna searcher (optuna-tpe, optuna-random, optuna-nsga2, "
                        f"optuna-grid); {searcher_cls.name!r} runs in this process: drop --executor ray")
    require_ray()


def run_searcher(searcher: Any, ctx: Any) -> Any:
    """`searcher.run(ctx)` on the executor `search.executor.kind` names."""
    kind = ctx.config.search.executor.kind
    if kind == "local":
        return searcher.run(ctx)
    from mdmt_nas.search.executors.ray import run_on_ray

    return run_on_ray(searcher, ctx)


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
