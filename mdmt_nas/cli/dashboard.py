"""`mdmt-nas dashboard RUN_DIR`: Optuna's own dashboard (optuna-dashboard) for the study of an Optuna search.

Needs the `dashboard` extra (`pip install 'mdmt-nas[dashboard]'`). The study is
the one the search recorded in RUN_DIR/search.json (storage and name), else the
default storage RUN_DIR/study.db (a search still running or interrupted).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mdmt_nas.cli.app import app
from mdmt_nas.cli.common import console
from mdmt_nas.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def find_study(run_dir: Path, study: str | None = None) -> tuple[str, str]:
    """(storage URL, study name) of the Optuna search in `run_dir`."""
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir}: not a directory; pass the output directory of an Optuna search (`mdmt-nas search --searcher optuna-tpe ...`)"
        )
    storage = name = None
    try:
        info = json.loads((run_dir / "search.json").read_text()).get("searcher_info") or {}
        storage, name = info.get("storage"), info.get("study_name")
    except (OSError, ValueError):
        pass
    if storage is None and (run_dir / "study.db").exists():
        storage = f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if storage is None:
        searcher = ""
        try:
            searcher = json.loads((run_dir / "search.json").read_text()).get("searcher", "")
        except (OSError, ValueError):
            pass
        what = f"a {searcher} search" if searcher else "no Optuna search"
        raise UserError(
            f"{run_dir} holds {what}: the dashboard shows Optuna studies (searchers optuna-tpe, optuna-random, "
            "optuna-nsga2, optuna-grid); their study is in search.json or study.db"
        )
    import optuna

    try:
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:  # noqa: BLE001 - an unreadable storage
        raise UserError(f"cannot open the Optuna storage {storage}: {type(exc).__name__}: {exc}") from None
    name = study or name or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        listed = ", ".join(map(repr, names)) or "none"
        raise UserError(
            f"no study {name!r} in {storage} (studies: {listed}); pass --study NAME"
            if name
            else f"{storage} holds several studies ({listed}); pass --study NAME"
        )
    return storage, name


@app.command()
def dashboard(
    run_dir: Path = typer.Argument(..., help="Output directory of an Optuna search."),
    port: int = typer.Option(8080, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; the default keeps the dashboard on this machine."
    ),
    study: str = typer.Option(
        None, "--study", help="Study name, when the storage holds several (default: the search's)."
    ),
) -> None:
    """Serve optuna-dashboard for the study of an Optuna search (history, importances, parallel coordinates; Ctrl-C stops it)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(
            "`mdmt-nas dashboard` needs the dashboard extra: pip install 'mdmt-nas[dashboard]' (optuna-dashboard); "
            "`mdmt-nas ui` shows the same search in the MLflow UI"
        ) from None
    storage, name = find_study(run_dir, study)
    import optuna

    study_id = optuna.storages.get_storage(storage).get_study_id_from_name(name)
    console.print(
        f"Optuna dashboard for study {name!r} ({storage}) at [bold]http://{host}:{port}/dashboard/studies/{study_id}[/bold] "
        "(Ctrl-C stops it)",
        highlight=False,
        soft_wrap=True,
    )
    if host not in LOCAL_HOSTS:
        console.print(
            f"[yellow]listening on {host}: anyone who can reach this machine can read the study[/yellow]",
            highlight=False,
        )
    serve(optuna_dashboard.wsgi(storage), host, port)
    console.print("dashboard stopped", highlight=False)


def serve(app, host: str, port: int) -> None:
    """Serve a WSGI app until Ctrl-C or SIGTERM. Requests run in a server thread, so the KeyboardInterrupt of a signal
    always lands in the main thread's wait, never inside a request (where wsgiref would swallow it)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # no access log on the terminal
            pass

    try:
        httpd = make_server(host, port, app, handler_class=Quiet)
    except OSError as exc:
        raise UserError(
            f"cannot serve on {host}:{port} ({exc.strerror or exc}); is the port in use? try --port"
        ) from None
    thread = threading.Thread(target=httpd.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:  # SIGTERM too: the CLI's handler raises Terminated, a KeyboardInterrupt
        pass
    finally:
        httpd.shutdown()
        httpd.server_close()
