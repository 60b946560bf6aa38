"""The CLI's rich consoles (a light module: importing it loads rich only)."""

from __future__ import annotations

import os

from rich.console import Console, ConsoleDimensions

PIPED_WIDTH = 140


class _CliConsole(Console):
    """When the output is a file or pipe (CI logs, `| tee`), 140 columns instead of rich's 80, so
    result tables are not cut to `valid A…`. Decided at each print: COLUMNS and terminals still win."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not os.environ.get("COLUMNS") and not self.is_terminal:
            return ConsoleDimensions(PIPED_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def make_console(stderr: bool = False) -> Console:
    return _CliConsole(stderr=stderr)
