"""`mdmt-nas server`: an MLflow tracking server that workers on other machines log into over HTTP.

The backend store (runs, params, metrics) is PostgreSQL or SQLite; artifacts (leaderboards, plots, models)
go to `--artifacts` and are served by the same server (`--serve-artifacts`), so a worker needs nothing but
the printed `--tracking-uri http://HOST:PORT`. The server binds 127.0.0.1 unless `--host` says otherwise.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import typer

from mdmt_nas.cli.app import app
from mdmt_nas.cli.common import console
from mdmt_nas.cli.ui import run_until_exit, server_command
from mdmt_nas.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_backend(uri: str) -> None:
    """Open the backend store once: a wrong password, a missing database or driver fails here, with the fix."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :].split("?", 1)[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--backend-store-uri {uri!r}: cannot create {path.parent} ({exc.strerror})") from None
        return
    if not uri.startswith(("postgresql", "mysql", "mssql")):
        raise UserError(
            f"--backend-store-uri {uri!r}: expected postgresql://user@host:5432/db or sqlite:///path/mlflow.db"
        )
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as exc:
        raise UserError(
            f"--backend-store-uri {uri!r} needs the database driver {exc.name!r}: pip install psycopg2-binary"
        ) from None
    except Exception as exc:  # noqa: BLE001 - unreachable server, no such database, bad credentials
        first = " ".join(str(exc).split())[:300]
        raise UserError(
            f"cannot connect to the backend store {uri!r}: {first}; create the database first "
            "(createdb mlflow) and check the user, password and port"
        ) from None


def client_uri(host: str, port: int) -> str:
    """The --tracking-uri workers pass: this machine's name when bound to every interface."""
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def wait_ready(uri: str, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


@app.command()
def server(
    backend_store_uri: str = typer.Option(
        "sqlite:///mlflow-server/mlflow.db",
        "--backend-store-uri",
        help="Runs, params and metrics: postgresql://user@host:5432/mlflow or sqlite:///path/mlflow.db.",
    ),
    artifacts: Path = typer.Option(
        Path("mlflow-server/artifacts"),
        "--artifacts",
        help="Directory of the artifacts (leaderboards, plots, models), served to workers by this server.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 lets workers on other machines in."
    ),
    port: int = typer.Option(5000, "--port", "-p", help="Port to listen on."),
    workers: int = typer.Option(
        4, "--workers", min=1, help="Server worker processes (requests of many search workers at once)."
    ),
    allowed_hosts: str = typer.Option(
        None,
        "--allowed-hosts",
        help="Host headers the server accepts (MLflow's --allowed-hosts), "
        "e.g. mlflow.lab,10.0.0.5:5000; default: this machine's names when --host is not loopback.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the server command and the --tracking-uri, do not start it."
    ),
) -> None:
    """Start an MLflow tracking server for many workers and print the --tracking-uri to give them (Ctrl-C stops it)."""
    from mdmt_nas.search.storage import rdb_url

    artifacts = artifacts.resolve()
    backend_store_uri = rdb_url(backend_store_uri)  # postgresql:// with the installed driver (psycopg2)
    cmd = server_command(backend_store_uri, host, port, workers)
    cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    remote = host not in LOOPBACK
    if remote:
        names = allowed_hosts or ",".join(
            sorted({f"{n}:{port}" for n in (socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1")})
        )
        cmd += ["--allowed-hosts", names]
    elif allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    uri = client_uri(host, port)
    if dry_run:
        console.print(" ".join(cmd), highlight=False, soft_wrap=True)
        console.print(f"workers: --tracking-uri {uri}", highlight=False, soft_wrap=True)
        return
    check_backend(backend_store_uri)
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--artifacts {artifacts}: cannot create it ({exc.strerror})") from None
    if remote:
        console.print(
            f"[yellow]listening on {host}: anyone who can reach this machine can read and write the runs "
            "(MLflow has no login here; keep it on a private network)[/yellow]",
            highlight=False,
        )
    local = f"http://127.0.0.1:{port}" if remote else uri

    def started(proc: subprocess.Popen) -> None:
        if wait_ready(local, proc):
            console.print(
                f"MLflow tracking server on [bold]{uri}[/bold] (backend {backend_store_uri}, artifacts {artifacts}); "
                "Ctrl-C stops it",
                highlight=False,
                soft_wrap=True,
            )
            console.print(f"give workers: --tracking-uri {uri}", highlight=False, soft_wrap=True)

    run_until_exit(cmd, port, started)  # its own process group: gunicorn/uvicorn workers stop with it
