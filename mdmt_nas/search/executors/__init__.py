"""Executors of a search: where its candidates train.

    local   the searcher's own loop in this process (several processes share a study through --storage)
    ray     an Optuna searcher's trials as Ray actor calls: `mdmt-nas search --executor ray --workers N` (ray.py)

`run_searcher(searcher, ctx, cleanup)` is the one place the runner hands a searcher to an executor;
`check_executor` refuses what an executor cannot run, before any work.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mdmt_nas.search.executors.checks import INSTALL, check_executor

__all__ = ["INSTALL", "check_executor", "run_searcher", "storage_notes"]


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
