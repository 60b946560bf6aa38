"""Per-epoch checkpoints of a training, so `mdmt-nas train --resume` continues exactly where it stopped.

`EpochCheckpoint` is what `Trainer.fit` calls: `save(trainer)` after every
epoch writes `checkpoint.pt` atomically (files.save_torch) with everything the
next epoch depends on -- the weights, both optimisers, the balancer, the
trainer's loop state (epoch, history, best epoch and its weights, patience),
the batch generators (position inside an endless stream too) and every RNG
(torch, numpy, Python, and any `torch.Generator` a component or balancer
holds) -- and `weights.pt` when the epoch is the best so far. `restore(trainer)`
puts it all back before the first epoch. An interrupted epoch is redone from the
same state, so with a fixed seed on one thread the resumed training ends with
the metrics of an uninterrupted one.

What a component keeps in plain Python attributes is not saved: state that must
survive a resume belongs in parameters, buffers or a `torch.Generator`.
Checkpoints are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdmt_nas.errors import ConfigError
from mdmt_nas.files import save_torch

CHECKPOINT = "checkpoint.pt"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, Python, numpy) as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
    }


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def generators(*modules: torch.nn.Module) -> dict[str, torch.Generator]:
    """Every torch.Generator held as an attribute by a module (e.g. PCGrad's), by `<root>.<path>.<attr>`."""
    out = {}
    for i, root in enumerate(modules):
        for path, m in root.named_modules():
            for attr, value in vars(m).items():
                if isinstance(value, torch.Generator):
                    out[f"{i}.{path}.{attr}"] = value
    return out


def capture(trainer: Any) -> dict[str, Any]:
    """Everything the next epoch of `trainer` depends on (see the module docstring)."""
    loop = trainer.loop
    return {
        "version": VERSION,
        "arch_id": trainer.model.arch.id,
        "model": trainer.model.state_dict(),
        "balancer": trainer.balancer.state_dict(),
        "opt": trainer.opt.state_dict(),
        "structure_opt": trainer.structure.opt.state_dict() if trainer.structure is not None else None,
        "step_count": trainer.step_count,
        "loop": {
            "epoch": loop.epoch,
            "history": loop.history,
            "best_auc": loop.best_auc,
            "best_epoch": loop.best_epoch,
            "best_state": loop.best_state,
            "bad_epochs": loop.bad_epochs,
            "stopped_early": loop.stopped_early,
            "rows_seen": loop.rows_seen,
            "train_time": loop.train_time,
        },
        "gen": trainer.gen.get_state(),
        "stream": trainer.stream.state(),
        "arch_stream": trainer.arch_stream.state() if trainer.arch_stream is not None else None,
        "generators": {k: g.get_state() for k, g in generators(trainer.model, trainer.balancer).items()},
        "rng": rng_state(),
    }


def restore(trainer: Any, ck: dict[str, Any]) -> None:
    """Put a captured state back into a freshly built trainer of the same architecture and config."""
    trainer.model.load_state_dict(ck["model"])
    trainer.balancer.load_state_dict(ck["balancer"])
    trainer.opt.load_state_dict(ck["opt"])
    if trainer.structure is not None and ck.get("structure_opt") is not None:
        trainer.structure.opt.load_state_dict(ck["structure_opt"])
    trainer.step_count = int(ck["step_count"])
    for k, v in ck["loop"].items():
        setattr(trainer.loop, k, v)
    if trainer.cfg.epoch_rows is None:
        trainer.gen.set_state(ck["gen"])
    else:
        trainer.stream.restore(ck["stream"])
    if trainer.arch_stream is not None and ck.get("arch_stream") is not None:
        trainer.arch_stream.restore(ck["arch_stream"])
    for k, g in generators(trainer.model, trainer.balancer).items():
        if k in ck["generators"]:
            g.set_state(ck["generators"][k])
    set_rng_state(ck["rng"])


def load(path: Path, arch_id: str) -> dict[str, Any]:
    """A checkpoint of architecture `arch_id`, read with weights_only=True (ConfigError naming the file otherwise)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file
        raise ConfigError(
            f"{path}: cannot read the training checkpoint ({type(exc).__name__}: {exc}); delete it to start over"
        ) from None
    if not isinstance(ck, dict) or ck.get("version") != VERSION:
        raise ConfigError(f"{path}: not a training checkpoint of this mdmt-nas version; delete it to start over")
    if ck.get("arch_id") != arch_id:
        raise ConfigError(f"{path} belongs to architecture {ck.get('arch_id')}, not {arch_id}; use another --output")
    return ck


class EpochCheckpoint:
    """The `checkpoint` of Trainer.fit for an output directory: `checkpoint.pt` after every epoch, `weights.pt` when best."""

    def __init__(self, out: Path, state: dict[str, Any] | None = None, on_save: Any = None):
        self.out, self.state, self.on_save = Path(out), state, on_save
        self.best_saved = state["loop"]["best_epoch"] if state else -1

    @property
    def path(self) -> Path:
        return self.out / CHECKPOINT

    def restore(self, trainer: Any) -> None:
        if self.state is not None:
            restore(trainer, self.state)

    def save(self, trainer: Any) -> None:
        loop = trainer.loop
        if (
            loop.best_state is not None and loop.best_epoch != self.best_saved
        ):  # the best weights so far: usable at once
            save_torch(loop.best_state, self.out / "weights.pt")
            self.best_saved = loop.best_epoch
        save_torch(capture(trainer), self.path)
        if self.on_save is not None:
            self.on_save(trainer)
