"""Storage faults and a shared output directory: a full disk while the weights are written (ENOSPC injected at the
write) is exit 2 naming the file, leaves no partial file and a FAILED MLflow run; a second process on a held output
directory is refused naming the holder; the lock of a dead process is taken over with a note."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

from rel_helpers import SMALL, cli_env, cli_inprocess, finish, run_statuses, start

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
    code, text = finish(start([*TRAIN, "--no-track", "--output", out], cli_env()))  # only the lock file in it: still empty
    assert code == 0, text
    assert "took over the lock of" in text and f"pid {holder.pid}" in text, text
    assert (out / "weights.pt").exists()
