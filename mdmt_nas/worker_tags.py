"""Worker tags: which process trains a child run (host:pid:start-time), and whether that process still lives.

A re-opened search marks KILLED the children a dead worker left RUNNING (tracking.Tracker.kill_stale_children); the
start time tells a reused pid apart, and a worker on another machine cannot be checked from here (None).
"""

from __future__ import annotations

import os
import socket

#: tag of a child run: host:pid:start-time of the process training it
WORKER_TAG = "mdmt_nas.worker"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def worker_id() -> str:
    """host:pid:start-time of this process (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def worker_alive(tag: str) -> bool | None:
    """Whether the process a worker tag names still runs: None when unknown (another machine)."""
    parts = tag.rsplit(":", 2)
    if len(parts) != 3:
        return False  # untagged: written by a process that predates worker tags, or a broken one
    host, pid, start = parts
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        pass
    return start == "?" or _start_time(int(pid)) == start
