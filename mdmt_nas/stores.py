"""The databases a command writes to besides its output directory: the MLflow tracking store and the Optuna storage.

Checked before any work (`check_tracking_uri`, `check_storage_url`): a misspelt
scheme (`sqlte:///x.db` -> did you mean `sqlite:///x.db`), an SQLite file that
is not a database, a read-only database or folder, an unreachable tracking
server (a short timeout, `tracking.timeout`, instead of MLflow's minutes of
retries). What goes wrong later (the disk fills, the server goes away) is
turned into one line by `store_error`; the Python traceback is for `--debug`.
Their first use (`init_database`: MLflow and Optuna create their tables then) is
serialised between processes of this machine for SQLite and retried on a race.

Light on purpose (no MLflow, SQLAlchemy or Optuna import): it runs before the
heavy imports, so a mistyped URL is reported in a second.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdmt_nas.errors import StorageError, TrackingError, UserError, closest

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "cockroachdb")
TRACKING_SCHEMES = (*SQL_SCHEMES, "http", "https", "file", "databricks", "databricks-uc", "uc")
SQLITE_HEADER = b"SQLite format 3\x00"
#: what to do about a bad tracking store / Optuna storage
TRACKING_FIX = "pass --tracking-uri sqlite:///mlflow.db (or http://HOST:PORT of an MLflow server), or --no-track"
STORAGE_FIX = (
    "choose another --storage (e.g. sqlite:///study.db), or drop --storage to use the output directory's study.db"
)


def default_tracking_uri() -> str:
    """MLflow's own default when neither --tracking-uri nor $MLFLOW_TRACKING_URI is set."""
    return "sqlite:///mlflow.db"


def _scheme(url: str) -> str | None:
    return url.split("://", 1)[0].lower() if "://" in url else None


def check_scheme(url: str, allowed: tuple[str, ...], what: str, fix: str) -> None:
    """A URL whose scheme is not one of `allowed` (or its dialect+driver form, `postgresql+psycopg2`) is an error with the closest one."""
    scheme = _scheme(url)
    if scheme is None:
        return
    base = scheme.split("+", 1)[0]
    if base in allowed:
        return
    near = closest(base, allowed, n=1)
    hint = f"did you mean {near[0] + url[len(base) :]!r}?" if near else f"known schemes: {', '.join(allowed)}"
    raise UserError(f"{what} {url!r}: unknown scheme {scheme!r} ({hint}); {fix}")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL (None for an in-memory database or another scheme)."""
    if not url.lower().startswith("sqlite:"):
        return None
    rest = url.split(":", 1)[1].lstrip("/") if url.lower().startswith("sqlite:///") else ""
    if not rest or rest.startswith(":memory:"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path)


def check_sqlite(url: str, what: str, fix: str, create: bool = True) -> None:
    """The SQLite file of `url` is a writable database (or can be created): else one line naming it and the fix."""
    path = sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{what} {url!r}: {path} is a directory, not a database file; {fix}")
    if path.exists():
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise UserError(f"{what} {url!r}: cannot read {path} ({exc.strerror}); {fix}") from None
        if head and head != SQLITE_HEADER:
            raise UserError(f"{what} {url!r}: {path} is not an SQLite database; move it away or {fix}")
        problem = _write_probe(path)
        if problem:
            raise UserError(f"{what} {url!r}: {path} {problem}; {fix}")
        return
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{what} {url!r}: the folder {folder} does not exist (or is not a folder); create it or {fix}")
    if create:
        try:
            fd, probe = tempfile.mkstemp(prefix=".mdmt-nas-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(
                f"{what} {url!r}: cannot create a database in {folder} ({exc.strerror.lower() if exc.strerror else exc}); {fix}"
            ) from None


def _write_probe(path: Path) -> str:
    """'' if the database takes a write (in a transaction that is rolled back), else why not."""
    try:
        con = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    except sqlite3.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE _mdmt_nas_write_probe (x)")
        con.execute("ROLLBACK")
        return ""
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return "is read-only (attempt to write a readonly database)"
        if "not a database" in text or "malformed" in text:
            return "is not an SQLite database (or is corrupt): move it away or restore it from a backup"
        if "disk is full" in text or "disk I/O" in text:
            return f"cannot be written ({text})"
        if "locked" in text:
            return ""  # busy with another writer for 60 s: not a fault of the file; the real call will wait again
        if "unable to open" in text and not _folder_writable(path.parent):
            return f"cannot be written: its folder {path.parent} is read-only (SQLite writes a journal file beside the database)"
        return f"cannot be written ({text})"
    finally:
        con.close()


def _folder_writable(folder: Path) -> bool:
    """A file can be created in `folder` (tried, not os.access: root passes that check on a read-only mount or an immutable folder)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".mdmt-nas-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_http(url: str, timeout: float) -> None:
    """An MLflow server answers at `url` within `timeout` seconds (any HTTP answer counts), else one line."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            why = f"no answer within {timeout:g} s (tracking.timeout)"
        else:
            why = getattr(reason, "strerror", None) or str(reason)
        raise TrackingError(
            f"the MLflow tracking server {url} is unreachable ({str(why).lower()}); start it (mdmt-nas ui, "
            f"or mlflow server), or {TRACKING_FIX}"
        ) from None


def check_tracking_uri(uri: str | None, timeout: float = 10.0) -> str:
    """The tracking URI (default MLflow's), checked: scheme, SQLite file and folder, server reachability. Returns it."""
    uri = uri or default_tracking_uri()
    what = "cannot use the MLflow tracking URI"
    check_scheme(uri, TRACKING_SCHEMES, what, TRACKING_FIX)
    scheme = _scheme(uri) or "file"
    if scheme.startswith("sqlite"):
        check_sqlite(uri, what, TRACKING_FIX)
    elif scheme in ("http", "https"):
        check_http(uri, timeout)
    return uri


def check_storage_url(url: str) -> None:
    """An Optuna RDB storage URL: a known SQL scheme, an SQLite file that is a writable database."""
    what = "cannot open the Optuna storage"
    if "://" not in url:
        raise UserError(
            f"{what} {url!r}: not a database URL; write it as sqlite:///path/study.db or postgresql://user@host/db"
        )
    check_scheme(url, SQL_SCHEMES, what, STORAGE_FIX)
    check_sqlite(url, what, STORAGE_FIX)


# ------------------------------------------------------------------------------ errors later on
_NET = (
    "Max retries exceeded",
    "Connection refused",
    "ConnectionError",
    "Failed to establish a new connection",
    "timed out",
    "Read timed out",
    "RemoteDisconnected",
    "Connection reset",
)


def store_error(exc: BaseException, store: str, flag: str = "--tracking-uri") -> UserError | None:
    """An environment failure of a store (read-only, full, not a database, unreachable) as one line; None for anything else."""
    fix = TRACKING_FIX if flag == "--tracking-uri" else STORAGE_FIX
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        what = (exc.strerror or os.strerror(exc.errno)).lower()
        return StorageError(
            f"{what} while writing to the MLflow store {store} ({exc.filename or 'its artifacts'}); {fix}",
            path=exc.filename,
            errno_=exc.errno,
        )
    text = " ".join(str(exc).split())
    if "readonly database" in text or "read-only file system" in text.lower():
        return TrackingError(f"the MLflow store {store} is read-only (attempt to write a readonly database); {fix}")
    if "database or disk is full" in text:
        return StorageError(
            f"no space left on device while writing to the MLflow store {store}; free some space, or {fix}",
            errno_=errno.ENOSPC,
        )
    if "file is not a database" in text or "database disk image is malformed" in text:
        return TrackingError(
            f"the MLflow store {store} is not an SQLite database (or is corrupt): move it away, or {fix}"
        )
    if "database is locked" in text:
        return TrackingError(f"the MLflow store {store} stayed locked by another process; retry, or {fix}")
    if any(n in text for n in _NET):
        return TrackingError(
            f"the MLflow tracking server {store} is unreachable ({text[:160]}); check the server, or {fix}"
        )
    return None


@contextlib.contextmanager
def sqlite_init_lock(url: str | None) -> Iterator[None]:
    """Serialise the first use of a SQLite database by processes of this machine (an flock on its folder):
    MLflow and Optuna create their tables on first use, and two processes doing so at once collide."""
    if not url or not url.startswith("sqlite:///"):
        yield
        return
    folder = Path(url[len("sqlite:///") :].split("?", 1)[0]).parent
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no flock (Windows) or no folder yet: the caller reports what goes wrong
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def init_database(create: Any, url: str | None, attempts: int = 4) -> Any:
    """`create()` (an MLflow client, an Optuna storage: both create or migrate their tables on first use),
    serialised on this machine for SQLite and retried when another worker is creating the same tables."""
    import time

    for attempt in range(attempts):
        try:
            with sqlite_init_lock(url):
                return create()
        except Exception as exc:
            text = str(exc)
            racing = (
                type(exc).__name__ in ("IntegrityError", "UniqueViolation", "CommandError")
                or "already exists" in text
                or "database is locked" in text
            )
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
