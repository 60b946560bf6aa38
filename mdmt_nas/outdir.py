"""A command's output directory: created, checked writable, and held with an exclusive lock while the command runs.

`claim(path, resume)` is the one way `train`, `search` and `benchmark` take their
`--output`: two processes on one directory would share its study and overwrite
each other's leaderboard, weights and `best_arch.json`, so the second is refused
(exit 2) with the holder's pid and host. The lock is an `flock` on
`<output>/.lock`, released by the kernel when the process ends however it ends,
so a lock left by a killed process is taken over (with a note naming it). The
file records the holder (pid, host, start time, command) while it runs and is
emptied on a clean exit. Workers sharing one Optuna study (`--storage`,
`--study-name`) each use their own output directory and never meet here.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mdmt_nas.errors import OutputInUse, UserError

LOCK = ".lock"
#: files of the lock mechanism itself: an output directory holding only these is empty
_OWN = {LOCK, ".write-test"}


@dataclass
class Claim:
    """A held output directory; `note` tells of a stale lock taken over ('' otherwise)."""

    path: Path
    fd: int
    note: str = ""

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)  # a clean exit leaves an empty lock file: the next holder has nothing to take over
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def _holder(fd: int) -> dict[str, object]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _in_use(path: Path, holder: dict[str, object]) -> OutputInUse:
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" if holder else "another process"
    since = f" since {holder['started']}" if holder.get("started") else ""
    return OutputInUse(
        f"{path} is in use by {who}{since}; use another --output, or --storage/--study-name to share a study "
        "(each worker with its own --output)"
    )


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def check_free(path: Path) -> None:
    """Raise OutputInUse if a live process holds `path` (touches nothing)."""
    lock = path / LOCK
    if not lock.is_file():
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        if not _try_lock(fd):
            raise _in_use(path, _holder(fd))
    finally:
        os.close(fd)


def claim(path: Path, resume: bool = False, what: str = "output directory") -> Claim:
    """Create `path` (refusing an existing non-empty one unless resuming), check it is writable and lock it.

    Use it as a context manager around the command (`with claim(out) as held:`); the lock also ends with the process."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a directory; choose another --output")
    if path.is_dir():
        check_free(path)  # in use -> say so (not "not empty"), before anything is written
        if not resume and any(p.name not in _OWN for p in path.iterdir()):
            raise UserError(
                f"{what} {path} already exists and is not empty; pass --resume to continue it or choose another --output"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror}); choose another --output") from None
    if sys.platform == "win32":  # pragma: no cover - no flock: no lock
        return Claim(path, fd)
    if not _try_lock(fd):  # another process took it between the check and here
        holder = _holder(fd)
        os.close(fd)
        raise _in_use(path, holder)
    old = _holder(fd)
    note = ""
    if old.get("pid") and (old.get("pid") != os.getpid() or old.get("host") != socket.gethostname()):
        note = (
            f"took over the lock of {path} left by pid {old['pid']} on {old.get('host', '?')} "
            f"(started {old.get('started', '?')}), which is no longer running"
        )
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv[:1] and ["mdmt-nas", *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(info) + "\n").encode())
    held = Claim(path, fd, note)
    atexit.register(held.release)
    return held
