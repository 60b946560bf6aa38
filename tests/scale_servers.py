"""Throwaway servers of the scale-out tests: PostgreSQL (initdb + pg_ctl on a free 127.0.0.1 port) and an MLflow
tracking server (`mdmt-nas server`), both removed afterwards.

A missing server binary or driver skips the test on a developer's machine; with CI=true it fails, since
.ci/run installs them (a skip there would hide that the shared-study tests never ran).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(ok: bool, what: str) -> None:
    """Skip (outside CI) or fail (CI=true) when something a test needs is missing."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"{what} (CI=true: .ci/run installs it, so a missing one is a failure, not a skip)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


@dataclass
class Postgres:
    """A running throwaway server: `url(db)` is an SQLAlchemy URL (Optuna), `plain(db)` a libpq one (MLflow)."""

    port: int
    user: str = "mdmt"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{db}"

    def plain(self, db: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def createdb(self, *names: str) -> None:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            for name in names:
                cur.execute(f'create database "{name}"')
        con.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb + pg_ctl start on a free loopback port (as `nobody` when root: the server refuses root); removed after."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    need(
        bool(initdb and pg_ctl), "PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql"
    )
    try:
        import psycopg2
    except ImportError:
        psycopg2 = None
    need(psycopg2 is not None, "psycopg2 not installed: pip install psycopg2-binary")
    base = Path(tempfile.mkdtemp(prefix="mdmt-pg-"))  # outside pytest's private temp folder, so `nobody` can enter it
    data = base / "pgdata"
    run_as: list[str] = []
    if os.geteuid() == 0:
        need(
            shutil.which("runuser") is not None,
            "running as root without runuser: cannot start PostgreSQL as another user",
        )
        run_as = ["runuser", "-u", "nobody", "--"]
        os.chmod(base, 0o777)
        data.mkdir(mode=0o700)
        shutil.chown(data, "nobody")
    port = free_port()
    log = base / "pg.log"
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "mdmt", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run_as,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        text = (exc.stderr or b"").decode(errors="replace") + (log.read_text() if log.exists() else "")
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {' '.join(map(str, exc.cmd))}\n{text}")
    try:
        for _ in range(100):
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="mdmt", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                time.sleep(0.2)
        yield Postgres(port)
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Poll `url` until it answers 200; fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the server ended (status {proc.returncode}) before {url} answered:\n{out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:g}s")


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, log: Path) -> Iterator[str]:
    """`mdmt-nas server` on a free loopback port; yields its tracking URI; the whole process group is stopped after."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MDMT_NAS_LOAD_PLUGINS": "",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mdmt_nas",
                "server",
                "--backend-store-uri",
                backend,
                "--artifacts",
                str(artifacts),
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mdmt-nas server ended (status {proc.returncode}):\n{log.read_text()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"mdmt-nas server did not answer on {uri}:\n{log.read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
