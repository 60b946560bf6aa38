"""Storage faults and a shared output directory: a full disk while the weights are written (ENOSPC injected at the
write) is exit 2 naming the file, leaves no partial file and a FAILED MLflow run; a second process on a held output
directory is refused naming the holder; the lock of a dead process is taken over with a note."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from rel_helpers import SMALL, cli_env, cli_inprocess, finish, make_read_only, run_statuses, start, write_space

TRAIN = ["train", "--config", "shared_bottom", *SMALL, "--set", "train.epochs=2"]


def test_a_full_disk_while_writing_the_weights_fails_cleanly(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the disk fills exactly when weights.pt is flushed
        if ".weights.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    db, out = tmp_path / "mlflow.db", tmp_path / "out"
    code, text = cli_inprocess(*TRAIN, "--tracking-uri", f"sqlite:///{db}", "--output", str(out))
    assert code == 2, text
    assert "no space left on device while writing" in text and "weights.pt" in text and "--output" in text, text
    assert "Traceback" not in text and "unexpected pos" not in text, text
    assert not (out / "weights.pt").exists() and not list(out.glob(".*.tmp")), sorted(p.name for p in out.iterdir())
    assert [s for s, _ in run_statuses(db)] == ["FAILED"], run_statuses(db)


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mdmt_nas.outdir import claim
    held = claim(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_held_output_directory_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        code, text = finish(start([*TRAIN, "--no-track", "--output", out], cli_env()))
        assert code == 2, text
        assert f"is in use by pid {holder.pid}" in text and "use another --output" in text, text
        assert not (out / "weights.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    code, text = finish(
        start([*TRAIN, "--no-track", "--output", out], cli_env())
    )  # only the lock file in it: still empty
    assert code == 0, text
    assert "took over the lock of" in text and f"pid {holder.pid}" in text, text
    assert (out / "weights.pt").exists()


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    """An MLflow SQLite store with its tables and one finished run (made once; each test copies it)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("earlier"))
    client.set_terminated(run.info.run_id)
    return db


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_only_store(tmp_path, mlflow_db, what, stack):
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "mlflow.db"
    shutil.copy(mlflow_db, db)
    how = make_read_only(db if what == "file" else folder, stack)
    return db, how


def _assert_one_line(text, db, code):
    assert code == 2, text
    assert str(db) in text and "--tracking-uri" in text and "--no-track" in text, text
    assert "Traceback" not in text and "sqlalchemy" not in text.lower() and "OperationalError" not in text, text
    assert len([ln for ln in text.splitlines() if ln.startswith("error:")]) == 1, text


@pytest.mark.parametrize("what", ["file", "folder"])
@pytest.mark.parametrize("command", ["train", "search"])
def test_a_read_only_mlflow_store_is_one_line_naming_it_and_the_fix(tmp_path, mlflow_db, command, what):
    """Refused before any data is read or the output directory is made; the store is unchanged; --no-track works."""
    args = (
        TRAIN
        if command == "train"
        else [
            "search",
            "--space",
            write_space(tmp_path),
            "--searcher",
            "optuna-random",
            "--budget",
            "1",
            "--epochs",
            "1",
            *SMALL,
        ]
    )
    out = tmp_path / "out"
    with contextlib.ExitStack() as stack:
        db, how = _read_only_store(tmp_path, mlflow_db, what, stack)
        before = _digest(db)
        code, text = cli_inprocess(*args, "--tracking-uri", f"sqlite:///{db}", "--output", out)
        _assert_one_line(text, db, code)
        assert ("is read-only" if what == "file" else f"its folder {db.parent} is read-only") in text, (how, text)
        assert not out.exists(), sorted(p.name for p in out.iterdir())
        assert _digest(db) == before
        assert [s for s, _ in run_statuses(db)] == ["FINISHED"]  # the earlier run only
    if command == "train":
        code, text = cli_inprocess(*args, "--no-track", "--output", out)
        assert code == 0 and (out / "weights.pt").exists(), text


def test_a_store_that_turns_read_only_after_the_check_is_one_line_too(tmp_path, mlflow_db, monkeypatch):
    """The up-front check passed (the store went read-only since): MLflow's first write fails as one line, not
    SQLAlchemy's ~90 lines of traceback."""
    import mdmt_nas.stores

    monkeypatch.setattr(mdmt_nas.stores, "check_tracking_uri", lambda uri, timeout=10.0: uri)
    with contextlib.ExitStack() as stack:
        db, _ = _read_only_store(tmp_path, mlflow_db, "file", stack)
        code, text = cli_inprocess(*TRAIN, "--tracking-uri", f"sqlite:///{db}", "--output", tmp_path / "out")
        _assert_one_line(text, db, code)
        assert "read-only" in text, text
        assert not (tmp_path / "out" / "weights.pt").exists()
