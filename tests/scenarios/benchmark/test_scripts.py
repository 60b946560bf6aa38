"""The scripts under benchmarks/ keep running as the library changes (tiny sizes; no figures asserted).

They are not unit tests of speed: each runs once with the smallest settings and must print its
table with finite numbers, so a refactor that breaks a benchmark fails here, not months later.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run(script: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**(os.environ if env is None else env), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_throughput_prints_both_models_and_the_ratios():
    out = run("throughput.py", "--rows", "4000", "--batch", "256", "--steps", "3", "--threads", "1")
    assert "mdmt-nas (routed, stacked)" in out and "reference-style (masked)" in out
    m = re.search(
        r"speed-up \(model step\): ([\d.]+)x\s+speed-up \(end to end\): ([\d.]+)x\s+FLOPs ratio ref/ours: ([\d.]+)x",
        out,
    )
    assert m, out
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in m.groups())
    assert float(m.group(3)) > 1.0  # routing skips the per-domain branches' work on other domains' rows


def test_seed_claims_speed_table():
    out = run(
        "seed_claims.py",
        "--only",
        "speed",
        "--rows",
        "3000",
        "--speed-batch",
        "256",
        "--speed-steps",
        "2",
        "--threads",
        "1",
    )
    assert "CESAA speed" in out and "noisy_topk k=2 of 16 (per row)" in out


def test_search_quality_quick_writes_its_report(tmp_path):
    out_dir = tmp_path / "sq"
    run(
        "search_quality.py",
        "--quick",
        "--rows",
        "3000",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--methods",
        "optuna-random,shared_bottom",
        "--threads",
        "1",
        "--output",
        str(out_dir),
        cwd=tmp_path,
    )
    report = (out_dir / "search_quality.md").read_text()
    assert "| optuna-random |" in report and "| shared_bottom |" in report


def test_data_memory_reports_each_phase(tmp_path):
    out = run("data_memory.py", "--rows", "3000", "--workdir", str(tmp_path), cwd=tmp_path)
    phases = re.findall(r"^\| 3,000 \|[^|]*\|[^|]*\| (\w+) \| ([\d,]+) \|[^|]*\| (\d+) \|", out, re.M)
    assert [p for p, _, _ in phases] == ["generate", "convert", "stream"], out
    assert all(int(peak) > 0 for _, _, peak in phases)
    assert [rows for p, rows, _ in phases if p == "convert"] == ["3,000"]


M3OE_REFERENCE = "MDMT_NAS_M3OE_REFERENCE"


def test_reference_m3oe_skips_without_a_checkout():
    out = run("reference_m3oe.py", env={k: v for k, v in os.environ.items() if k != M3OE_REFERENCE})
    assert out.startswith("reference_m3oe: skipped: no M3oE reference checkout given"), out


@pytest.mark.skipif(
    not os.environ.get(M3OE_REFERENCE), reason=f"set {M3OE_REFERENCE} to a checkout of the public M3oE code"
)
def test_reference_m3oe_runs_the_reference_and_ours(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "data"))
    from ml_files import write_recbole

    src = write_recbole(tmp_path / "ml-100k", n_users=60, n_items=40, n=3000)
    out = run(
        "reference_m3oe.py",
        "--reference",
        os.environ[M3OE_REFERENCE],
        "--data-dir",
        str(src),
        "--workdir",
        str(tmp_path / "w"),
        "--epochs",
        "2",
        "--batch",
        "256",
        "--threads",
        "1",
        "--workers",
        "0",
    )
    assert "reference (M3oE code)" in out and "mdmt-nas" in out
    m = re.search(r"speed-up mdmt-nas / reference: ([\d.]+)x\s+FLOPs/row reference / mdmt-nas: ([\d.]+)x", out)
    assert m, out
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in m.groups())
    assert float(m.group(2)) > 1.0  # routing and the composed star layer do less work per row
    assert (tmp_path / "w" / "ml-1m.csv").is_file()


def test_sparse_embedding_compares_dense_and_sparse_tables():
    out = run("sparse_embedding.py", "--vocab", "5000", "--steps", "2", "--batch", "128", "--threads", "1")
    rows = re.findall(
        r"^\s+5,000 (Adam \(dense\)|SparseAdam \(sparse\))\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out, re.M
    )
    assert [r[0] for r in rows] == ["Adam (dense)", "SparseAdam (sparse)"], out
    (_, _, table_d, grad_d, _), (_, _, table_s, grad_s, _) = rows
    assert table_d == table_s and float(grad_s) < float(grad_d)  # a sparse gradient holds only the batch's rows


def test_candidate_overhead_names_each_piece():
    out = run("candidate_overhead.py", "--rows", "2500", "--candidates", "2", "--threads", "1")
    for piece in (
        "train epochs",
        "MLflow logging",
        "AUC heatmap (matplotlib)",
        "AUC + logloss (compute_metrics)",
        "model build",
    ):
        assert re.search(rf"^{re.escape(piece)}\s+[\d.]+\s+[\d.]+%$", out, re.M), (piece, out)
    m = re.search(r"fixed overhead .*: ([\d.]+) s = ([\d.]+)% of the candidate", out)
    assert m and 0 < float(m.group(2)) < 100, out


def test_startup_times_each_command_and_says_what_it_imported():
    out = run("startup.py", "--repeat", "1")
    assert "load average before:" in out and "load average after:" in out, out
    rows = re.findall(r"^\| `mdmt-nas ([^`]+)` \| ([\d.]+) \| [\d.]+ \| 1 \| (\d) \| ([^|]+) \|", out, re.M)
    assert [r[0] for r in rows] == ["--help", "plugins", "spaces show m3oe", "train --config BAD.yaml --no-track"], out
    assert [r[2] for r in rows] == ["0", "0", "0", "2"], out
    assert all(math.isfinite(float(r[1])) for r in rows)
    assert rows[0][3].startswith("none of") and rows[3][3].startswith("none of"), (
        out
    )  # --help and a config error stay light


def test_supernet_step_times_both_supernets_against_the_largest_candidates():
    out = run(
        "supernet_step.py",
        "--rows",
        "3000",
        "--steps",
        "2",
        "--sample",
        "6",
        "--top",
        "2",
        "--batch",
        "128",
        "--threads",
        "1",
    )
    rows = dict(
        re.findall(
            r"^(supernet \S+ \([^)]*\): (?:weight|alpha \+ weight) step)\s+[\d,]+\s+[\d.]+\s+([\d.]+)x$", out, re.M
        )
    )
    assert len(rows) == 4, out  # weight and alpha + weight step of the softmax and the GDAS supernet
    assert all(float(v) > 0 for v in rows.values()), out
    assert len(re.findall(r"^candidate: ", out, re.M)) == 2 and "target: supernet step <= 2.5x" in out, out


def test_scale_trials_counts_the_trials_of_a_shared_postgres_study():
    from scale_servers import need, pg_bin

    need(pg_bin("initdb") is not None, "PostgreSQL server binaries (initdb, pg_ctl)")
    out = run("scale_trials.py", "--trials", "2", "--workers", "1,2", "--executors", "local", "--rows", "2000")
    rows = re.findall(r"^local\s+(\d)\s+[\d.]+\s+[\d.]+\s+(\d+)\s+[\d,]+", out, re.M)
    assert [(w, int(n) >= 2) for w, n in rows] == [("1", True), ("2", True)], out
