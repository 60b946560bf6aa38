"""Error types shared by the library and the CLI.

Every error a user can cause derives from `UserError`: the CLI prints its
message (what, where, how to fix) and exits with status 2, no traceback.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator


class MdmtNasError(Exception):
    """Base class of all mdmt-nas errors."""


class UserError(MdmtNasError):
    """Bad input from the user (config, data, CLI): exit status 2, no traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A config or architecture file does not validate."""


class DataError(UserError):
    """A dataset file or table is malformed."""


class UnknownComponentError(UserError):
    """A component name is not registered for its kind."""

    def __init__(self, kind: str, name: str, known: Iterable[str], where: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        self.where = where
        self.suggestions = closest(name, self.known)
        hint = (
            f"did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else f"registered {kind}s: {', '.join(self.known) or '(none)'}"
        )
        loc = f"{where}: " if where else ""
        super().__init__(
            f"{loc}unknown {kind} {name!r} ({hint}; `mdmt-nas plugins` lists every component)"
        )


class PluginError(MdmtNasError):
    """A plugin failed to import, register, or behave; the message names it."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same name for one kind."""


class TrialFailed(MdmtNasError):
    """A candidate failed (NaN loss, component crash, limit exceeded); the search goes on."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class TrialPruned(MdmtNasError):
    """A candidate stopped early by its searcher's pruner (not a failure); raised from an epoch callback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so runs and trials end KILLED/FAIL like on Ctrl-C."""


#: signals the CLI received (SIGINT/SIGTERM). The handler raises at once, except while a search runs
#: (`deferred_signals`): an exception raised in the middle of a database call (Optuna's storage, MLflow)
#: can leave its session unusable, and Python ignores one raised inside a __del__ or weakref callback.
#: Training loops call `check_interrupt()` at every batch, so the interruption comes within a batch.
PENDING_SIGNALS: list[int] = []
DEFER_SIGNALS: list[bool] = []


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block a first SIGINT/SIGTERM is only recorded (raised by the next `check_interrupt()`);
    a second one raises at once."""
    DEFER_SIGNALS.append(True)
    try:
        yield
    finally:
        DEFER_SIGNALS.pop()


def check_interrupt() -> None:
    """Raise the interruption of a received signal whose exception was swallowed."""
    if PENDING_SIGNALS:
        import signal

        raise Terminated() if PENDING_SIGNALS[-1] == signal.SIGTERM else KeyboardInterrupt()


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Closest registered names to a misspelt one (difflib ratio >= 0.5)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def raised_at(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame of an exception, to point at the plugin's code."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
