"""Write-behind MLflow logging: a tracker's writes go onto a bounded queue that one background thread drains in order.

Why: every MLflow write is a database transaction or an HTTP request (milliseconds each, more on a
loaded machine or a remote server), and a search makes a dozen per candidate. With the writes queued,
the training loop hands them over and goes on; the store catches up while the next batches train.

What it keeps from the synchronous path:

- order: one thread runs the writes in the order they were submitted (so a run's status is written
  after its metrics, and a later value of a key after an earlier one);
- nothing observed half-written: `flush()` waits until every write submitted before it has run; the
  tracker flushes when a run ends and before anything reads back from the store;
- failures: the first exception of a write (a store error already mapped to its one-line UserError by
  the guarded client) is kept, the writes queued after it are dropped (their store is failing, and
  writing past a gap would break the order), and it is raised by the next submit or flush;
- memory: the queue is bounded, a submit waits for room when the store falls behind (back-pressure);
- stops: queues still holding writes are flushed at interpreter exit (atexit, also after the SIGINT /
  SIGTERM interruptions, which unwind into a normal exit) and by the CLI's forced-exit watchdog
  (`flush_all` with a time bound).

The thread exits after a few idle seconds and starts again with the next write, so idle trackers hold no
thread. A process forked with writes pending drops the parent's (the parent writes them itself).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

#: writes held at most before a submit waits (a write is one request: up to 1000 metrics or 100 params)
QUEUE_SIZE = 256
#: seconds without writes after which the thread ends (the next write starts another)
IDLE_SECONDS = 5.0

_LIVE: weakref.WeakSet[WriteBehind] = weakref.WeakSet()
_AT_EXIT: list[int] = []  # pid of the process whose atexit hook is registered


class WriteBehind:
    """A bounded FIFO of writes run by one background thread; `flush()` waits for them and raises the first failure."""

    def __init__(self, maxsize: int | None = None, idle: float = IDLE_SECONDS):
        self.maxsize, self.idle = maxsize or QUEUE_SIZE, idle
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[tuple[Callable[..., Any], tuple, dict, str]] = deque()
        self._pending = 0  # submitted and not yet run (queued + running)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pid = os.getpid()

    # ------------------------------------------------------------------ caller side
    def submit(self, fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> None:
        """Queue `fn(*args, **kwargs)`; raises the failure of an earlier write instead (this one is then not queued)."""
        self._forked()
        self.check()
        with self._cond:
            while len(self._items) >= self.maxsize and self._thread is not None:
                self._cond.wait()
            self._items.append((fn, args, kwargs, what or getattr(fn, "__name__", "write")))
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="mdmt-nas-mlflow-writes", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        _LIVE.add(self)
        if os.getpid() not in _AT_EXIT:  # after MLflow's own hooks, so this one runs before them
            _AT_EXIT.append(os.getpid())
            atexit.register(_flush_at_exit)

    def flush(self, timeout: float | None = None, raise_error: bool = True) -> bool:
        """Wait until every write submitted so far has run (at most `timeout` seconds): True when none is left.

        Then raises the first failure among them (raise_error=False: forget it, for a caller that reports
        another error). Called from a write itself (the background thread) it returns at once."""
        self._forked()
        if threading.current_thread() is self._thread:
            return False
        with self._cond:
            done = self._cond.wait_for(lambda: self._pending == 0, timeout)
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error
        return done

    def check(self) -> None:
        """Raise (once) the failure of an earlier write, if there was one."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    @property
    def pending(self) -> int:
        return self._pending

    def _forked(self) -> None:
        if self._pid != os.getpid():  # a child of fork(): the thread did not come along, the parent writes its queue
            self._reset()

    # ------------------------------------------------------------------ the thread
    def _drain(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._items, self.idle):
                    self._thread = None  # idle: end; the next submit starts another thread
                    return
                fn, args, kwargs, what = self._items.popleft()
                self._cond.notify_all()  # room for a submit waiting on a full queue
                skip = self._error is not None
            try:
                if not skip:
                    fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - kept and raised in the caller's thread
                exc.add_note(f"(raised by the background MLflow write {what}, submitted earlier)")
                with self._cond:
                    self._error = self._error or exc
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()


def flush_all(timeout: float | None = None) -> list[BaseException]:
    """Flush every queue of this process (at most `timeout` seconds in all); their failures are returned, not raised."""
    end = None if timeout is None else time.monotonic() + timeout
    errors = []
    for q in list(_LIVE):
        left = None if end is None else max(0.0, end - time.monotonic())
        try:
            q.flush(left)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
    return errors


def _flush_at_exit() -> None:
    """Write what is still queued before the process ends; a failure is one line on stderr (nothing left to raise to)."""
    for exc in flush_all():
        first = " ".join(str(exc).split())[:300]
        print(f"mdmt-nas: an MLflow write failed at exit: {type(exc).__name__}: {first}", file=sys.stderr)
