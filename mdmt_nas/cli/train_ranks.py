"""`mdmt-nas train` as one rank of a torchrun job: every rank trains, rank 0 alone logs to MLflow and writes files.

Rank 0 claims the output directory and writes it only after the training has finished on every rank
(experiment.run_training: no checkpoints under torchrun); the other ranks track nothing, write nothing and print
nothing. A failure on any rank (a peer died: distributed.DistributedFailure) leaves no output directory behind
that this run created, and an existing (empty) one empty again. `--resume` is refused (no checkpoints).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mdmt_nas.cli.app import report_plugin_failures
from mdmt_nas.cli.common import claim_output, console, default_output, on_interrupt, say_config, say_result
from mdmt_nas.errors import UserError
from mdmt_nas.files import shown_path


def train_ranks(cfg, output: Path | None, resume: bool) -> None:
    """One rank of `torchrun --nproc-per-node N -m mdmt_nas train ...` (see the module docstring)."""
    from mdmt_nas import distributed
    from mdmt_nas.experiment import load_splits, run_training
    from mdmt_nas.preflight import check_experiment
    from mdmt_nas.tracking import Tracker

    world = distributed.launched()
    assert world is not None
    if resume:
        raise UserError(
            "--resume is not available under torchrun: data-parallel training keeps no checkpoints; start it again"
        )
    distributed.check_config(cfg.train)
    if not world.leader:
        cfg = cfg.model_copy(
            update={"tracking": cfg.tracking.model_copy(update={"enabled": False, "register_model": None})}
        )
        console.quiet = True
    report_plugin_failures()
    check_experiment(cfg)
    Tracker(cfg.tracking).check()  # a bad --tracking-uri fails now, before any output is written
    distributed.start(world)
    try:
        if not world.leader:
            run_training(cfg, load_splits(cfg), None)
            return
        out = output or default_output("train", cfg.arch.name or cfg.arch.id)
        _leader(cfg, out, world, load_splits, run_training)
    finally:
        distributed.stop()


def _leader(cfg, out: Path, world, load_splits, run_training) -> None:
    """Rank 0: claim the output directory, train, print the result; on failure leave nothing half-written."""
    from mdmt_nas import distributed

    existed = out.exists()
    with claim_output(out):
        on_interrupt(
            lambda: [
                f"data-parallel training stopped on rank 0 (under torchrun, most likely because another rank failed: "
                "torchrun's summary below names it); nothing kept in "
                f"{shown_path(out)} (outputs are written only when every rank has finished)"
            ]
        )
        try:
            say_config(cfg)
            splits = load_splits(cfg)
            console.print(cfg.arch.summary(), highlight=False)
            console.print(distributed.splits_note(splits, world), highlight=False)
            outcome = run_training(cfg, splits, out)
        except BaseException:
            _discard(out, existed)
            raise
    say_result(cfg, outcome, out, ranks=world.size)


def _discard(out: Path, existed: bool) -> None:
    """Remove what this run wrote into `out` (claim_output made sure it held nothing else), and `out` if it made it."""
    from mdmt_nas.outdir import LOCK

    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name != LOCK:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
