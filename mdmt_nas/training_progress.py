"""A training's progress display: a rich bar of epochs and batches on a terminal, else one plain line per epoch."""

from __future__ import annotations

import time


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A rich progress display of epochs and batches on a terminal; elsewhere (a pipe, a file, CI) one plain line
    per epoch on stdout; nothing when disabled."""

    def __init__(self, enabled: bool, epochs: int, steps: int, label: str, terminal: bool = True, first_epoch: int = 0):
        self.lines = enabled and not terminal
        self.enabled = enabled and terminal
        self.epochs, self.label, self.t0, self.first = epochs, label, time.perf_counter(), first_epoch
        if not self.enabled:
            return
        from rich import progress as rp

        self.p = rp.Progress(
            rp.TextColumn("[bold]{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[info]}"),
            rp.TimeElapsedColumn(),
            rp.TimeRemainingColumn(),
            transient=True,
            redirect_stdout=False,
        )
        self.p.start()
        self.ep = self.p.add_task(f"{label} epochs", total=epochs, completed=first_epoch, info="")
        self.bt = self.p.add_task("  batches", total=steps, info="")

    def batch(self, loss: float) -> None:
        if self.enabled:
            self.p.update(self.bt, advance=1, info=f"loss {loss:.4f}")

    def epoch(
        self, info: str, epoch: int = 0, record: dict[str, float] | None = None, rows_per_second: float = 0.0
    ) -> None:
        if self.enabled:
            self.p.update(self.ep, advance=1, info=info)
            self.p.reset(self.bt)
        if self.lines:
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / max(1, epoch + 1 - self.first) * (self.epochs - epoch - 1)
            rec = record or {}
            print(
                f"{self.label} epoch {epoch + 1}/{self.epochs}: train loss {rec.get('train_loss', float('nan')):.4f}, {info}, "
                f"{rows_per_second:,.0f} rows/s, elapsed {_clock(elapsed)}, ETA {_clock(eta)}",
                flush=True,
            )

    def close(self) -> None:
        if self.enabled:
            self.p.stop()
