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


class StorageError(UserError):
    """A file could not be written (full disk, read-only file system, no permission): what failed where, and the fix.

    The half-written file is gone (files.atomic_path); runs end FAILED with this message as their reason.
    """

    def __init__(self, message: str, path: object = None, errno_: int | None = None):
        super().__init__(message)
        self.path, self.errno = path, errno_


class TrackingError(UserError):
    """The MLflow tracking store cannot be used (read-only, unreachable, not a database): one line naming it and the fix."""


class OutputInUse(UserError):
    """The output directory is locked by another live mdmt-nas process."""


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
        super().__init__(f"{loc}unknown {kind} {name!r} ({hint}; `mdmt-nas plugins` lists every component)")


class DeprecatedNameWarning(DeprecationWarning):
    """A component was looked up by a deprecated name (a renamed component); the message names the old and the new name.

    The command line shows it (Python hides DeprecationWarnings outside `__main__` by default).
    """


class PluginError(MdmtNasError):
    """A plugin failed to import, register, or behave; the message names it."""


class DuplicateComponentError(PluginError, UserError):
    """Two plugins registered the same name for one kind: the name is unusable until the user picks one (exit 2)."""


class TrialFailed(MdmtNasError):
    """A candidate failed (NaN loss, component crash, limit exceeded); the search goes on."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class TrialPruned(MdmtNasError):
    """A candidate stopped early by its searcher's pruner (not a failure); raised from an epoch callback."""


class SearchStopped(MdmtNasError):
    """The search as a whole must stop (too many failed candidates, time is up); searchers let it through."""


class DeadlineReached(SearchStopped):
    """The search's time limit (search.timeout) passed: raised by `check_interrupt()` at the next batch, the running
    training stops there (its best epoch so far is kept), no new candidate starts."""


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


#: (monotonic deadline, seconds) of the running search (`search_deadline`); empty when none
DEADLINE: list[tuple[float, float]] = []


@contextlib.contextmanager
def search_deadline(seconds: float | None) -> Iterator[None]:
    """Within the block `check_interrupt()` raises DeadlineReached once `seconds` have passed (no limit when None).

    Nested (a phase's share of the search's time, e.g. DARTS' supernet): the earlier of the two deadlines holds."""
    if seconds is None:
        yield
        return
    import time

    end = (time.monotonic() + seconds, seconds)
    DEADLINE.append(min(end, DEADLINE[-1]) if DEADLINE else end)
    try:
        yield
    finally:
        DEADLINE.pop()


@contextlib.contextmanager
def suspended_deadline() -> Iterator[None]:
    """No DeadlineReached within the block (a stopped training measuring its best epoch); signals still raise."""
    saved = list(DEADLINE)
    DEADLINE.clear()
    try:
        yield
    finally:
        DEADLINE[:] = saved


def deadline_passed() -> bool:
    import time

    return bool(DEADLINE) and time.monotonic() > DEADLINE[-1][0]


def seconds_left() -> float | None:
    """Seconds until the running search's deadline (negative once passed); None without one."""
    import time

    return DEADLINE[-1][0] - time.monotonic() if DEADLINE else None


def deadline_message() -> str:
    return f"time limit of search.timeout={DEADLINE[-1][1]:g}s reached" if DEADLINE else "time limit reached"


def check_interrupt() -> None:
    """Raise the interruption of a received signal whose exception was swallowed, or DeadlineReached past the search's deadline.

    Called at every training and evaluation batch, and between candidates."""
    if PENDING_SIGNALS:
        import signal

        raise Terminated() if PENDING_SIGNALS[-1] == signal.SIGTERM else KeyboardInterrupt()
    if DEADLINE and deadline_passed():
        raise DeadlineReached(deadline_message())


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
