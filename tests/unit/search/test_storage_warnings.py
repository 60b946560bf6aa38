"""A SQLite study where SQLite serves badly (a network file system, more than a handful of workers) warns, naming PostgreSQL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mdmt_nas.config import ExperimentConfig
from mdmt_nas.search.executors import storage_notes
from mdmt_nas.search.storage import HANDFUL, filesystem_type, sqlite_warnings

MOUNTS = """\
/dev/root / ext4 rw 0 0
server:/export /mnt/shared nfs4 rw 0 0
//host/share /mnt/smb cifs rw 0 0
tmpfs /mnt/shared/local tmpfs rw 0 0
"""


def test_the_longest_mount_point_holding_the_path_decides_the_file_system():
    assert filesystem_type("/mnt/shared/runs/study.db", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/shared/local/study.db", MOUNTS) == "tmpfs"  # a mount inside the NFS mount
    assert filesystem_type("/mnt/sharedx/study.db", MOUNTS) == "ext4"  # a name prefix is not a parent directory
    assert filesystem_type("/mnt/smb/a.db", MOUNTS) == "cifs"


def test_a_study_on_a_network_file_system_warns_and_names_postgresql():
    for path, fs in (("/mnt/shared/runs/study.db", "nfs4"), ("/mnt/smb/study.db", "cifs")):
        (msg,) = sqlite_warnings(f"sqlite:///{path}", workers=1, mounts=MOUNTS)
        assert path in msg and f"({fs})" in msg and "postgresql://" in msg and "docs/scale-out.md" in msg


@given(st.integers(min_value=1, max_value=64))
def test_more_than_a_handful_of_workers_warn_on_a_local_disk(workers):
    notes = sqlite_warnings("sqlite:////data/study.db", workers=workers, mounts=MOUNTS)
    if workers > HANDFUL:
        (msg,) = notes
        assert f"{workers} workers share the SQLite study /data/study.db" in msg and "postgresql://" in msg
    else:
        assert notes == []


def test_other_storages_never_warn():
    for url in ("postgresql://u@h/db", "journal:///tmp/study.log", "mysql://u@h/db"):
        assert sqlite_warnings(url, workers=100, mounts=MOUNTS) == []


def test_the_search_counts_ray_workers_and_running_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ray = ExperimentConfig.model_validate(
        {"search": {"storage": url, "executor": {"kind": "ray", "workers": HANDFUL + 4}}}
    )
    (msg,) = storage_notes(ray, type("S", (), {"name": "optuna-tpe"}), "m3oe")
    assert f"{HANDFUL + 4} workers share the SQLite study" in msg
    local = ExperimentConfig.model_validate({"search": {"storage": url}})
    assert storage_notes(local, type("S", (), {"name": "optuna-tpe"}), "m3oe") == []  # this process alone, no study yet
    assert storage_notes(ExperimentConfig(), type("S", (), {"name": "optuna-tpe"}), "m3oe") == []  # the default storage
