"""Optuna storage URLs: RDB databases (SQLite, PostgreSQL, MySQL) and Optuna's JournalStorage (file backend).

    sqlite:///study.db                 one host; a handful of worker processes (the default, in the output directory)
    postgresql://user@host:5432/db     many workers, several machines (needs psycopg2: pip install psycopg2-binary)
    journal:///abs/path/study.log      one host without a database: Optuna's JournalStorage, an append-only file
    journal://relative/study.log       the same, relative to the working directory

SQLite is fine for a few processes on one host, but its file locks are unreliable on network file systems
and writers queue behind one lock, so `sqlite_warnings` names PostgreSQL when the database lies on NFS/CIFS/...
or when more than `HANDFUL` workers share it. A journal file is for one host too (its lock is a file beside
it); it needs no database, but Optuna's JournalStorage has no heartbeat: the trial of a worker killed with
SIGKILL stays RUNNING (it does not count toward the budget, so the search still ends with its budget of
COMPLETE + PRUNED trials, but it is not retried with its parameters as on an RDB storage).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mdmt_nas.errors import UserError

JOURNAL = "journal://"
#: more workers than this on one SQLite study get a warning
HANDFUL = 4
#: file systems whose locks SQLite cannot rely on (Optuna and SQLite both say: use a server database there)
NETWORK_FS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "fuse.sshfs",
    "sshfs",
    "lustre",
    "glusterfs",
    "fuse.glusterfs",
    "ceph",
    "fuse.ceph",
    "gpfs",
    "afs",
    "beegfs",
    "davfs",
    "fuse.s3fs",
    "fuse.gcsfuse",
    "fuse.rclone",
)


def is_journal(url: str) -> bool:
    return url.startswith(JOURNAL)


def journal_path(url: str) -> Path:
    """The log file of a `journal://` URL (`journal:///abs/file.log`, `journal://relative/file.log`)."""
    rest = url[len(JOURNAL) :]
    if not rest or rest.endswith("/"):
        raise UserError(f"--storage {url!r}: a journal URL names a file, e.g. journal:///data/studies/search.log")
    return Path(rest)


def journal_storage(url: str) -> Any:
    """Optuna's JournalStorage on the file of `url` (its folder is created)."""
    import optuna

    path = journal_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--storage {url!r}: cannot create {path.parent} ({exc.strerror})") from None
    journal = getattr(optuna.storages, "journal", None)
    backend_cls = getattr(journal, "JournalFileBackend", None) or optuna.storages.JournalFileStorage  # optuna < 4
    return optuna.storages.JournalStorage(backend_cls(str(path)))


def rdb_url(url: str) -> str:
    """`postgresql://...` with the driver this environment has: SQLAlchemy 2.1 picks psycopg (3) for a bare
    postgresql:// URL, the `test` extra and most installs have psycopg2 (psycopg2-binary)."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if (
        scheme in ("postgresql", "postgres")
        and sep
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return f"postgresql+psycopg2://{rest}"
    return url


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///") :].split("?", 1)[0])


def filesystem_type(path: Path, mounts: str | None = None) -> str:
    """The file system type of the mount holding `path`, from /proc/mounts ('' where unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    target = os.path.abspath(path)
    best, kind = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def sqlite_warnings(url: str, workers: int | None = None, mounts: str | None = None) -> list[str]:
    """Why this SQLite study may fail under load (network file system, too many workers): messages naming PostgreSQL."""
    path = sqlite_path(url)
    if path is None:
        return []
    out = []
    fs = filesystem_type(path.parent if not path.exists() else path, mounts)
    if fs in NETWORK_FS or fs.startswith("nfs"):
        out.append(
            f"the SQLite study {path} is on a network file system ({fs}): SQLite's file locks are not reliable there "
            "and workers can corrupt or lock the database; use PostgreSQL (--storage postgresql://user@host/db, "
            "see docs/scale-out.md) for workers on several machines"
        )
    if workers is not None and workers > HANDFUL:
        out.append(
            f"{workers} workers share the SQLite study {path}: SQLite lets one writer in at a time, so with more than "
            f"{HANDFUL} workers they wait on its lock ('database is locked'); use PostgreSQL (--storage "
            "postgresql://user@host/db, see docs/scale-out.md)"
        )
    return out


def study_running_sqlite(url: str, study_name: str) -> int:
    """RUNNING trials of `study_name` in an existing SQLite study, read without opening Optuna (0 if none or unreadable)."""
    import sqlite3

    path = sqlite_path(url)
    if path is None or not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as con:
            row = con.execute(
                "select count(*) from trials t join studies s on s.study_id = t.study_id "
                "where s.study_name = ? and t.state = 'RUNNING'",
                (study_name,),
            ).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0
