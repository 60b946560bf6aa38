"""Start-up time of the `mdmt-nas` command line, and whether each command imports torch, MLflow and Optuna.

Each case runs in a fresh interpreter (as a user's shell would) `--repeat` times; the table shows the median
wall time, the fastest, and the heavy modules in `sys.modules` at exit (an atexit hook of a small wrapper that
calls the CLI's `main`). The target is under 1.5 s on an idle machine for `--help` and a config error; the
load average before and after is printed, since a loaded machine makes every figure slower.

    python benchmarks/startup.py [--repeat 5]

Cases: `mdmt-nas --help`, `mdmt-nas plugins`, `mdmt-nas spaces show m3oe`, and `mdmt-nas train --config BAD.yaml`
where BAD.yaml has a misspelt key (exit 2 with 'did you mean'). `plugins` and `spaces show` load the component
registry, whose classes are torch modules, so they import torch by design; the other two must not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "optuna", "pandas", "sqlalchemy")
#: the CLI's main, with an atexit hook writing which heavy modules were imported (to $MDMT_NAS_STARTUP_REPORT)
WRAPPER = f"""
import atexit, json, os, sys
def _report():
    with open(os.environ["MDMT_NAS_STARTUP_REPORT"], "w") as fh:
        json.dump([m for m in {HEAVY!r} if m in sys.modules], fh)
atexit.register(_report)
sys.argv = ["mdmt-nas", *sys.argv[1:]]
from mdmt_nas.cli import main
main()
"""
#: (name, arguments, exit status expected, must not import torch)
CASES = [
    ("--help", ["--help"], 0, True),
    ("plugins", ["plugins"], 0, False),
    ("spaces show m3oe", ["spaces", "show", "m3oe"], 0, False),
    ("config error (misspelt key)", ["train", "--config", "{bad}", "--no-track"], 2, True),
]


def run_once(args: list[str], report: Path, cwd: Path) -> tuple[float, int, list[str], str]:
    """(seconds, exit status, heavy modules imported, output tail) of one fresh `mdmt-nas ARGS`."""
    env = {
        **os.environ,
        "MDMT_NAS_STARTUP_REPORT": str(report),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    report.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    seconds = time.perf_counter() - t0
    imported = json.loads(report.read_text()) if report.exists() else ["?"]
    return seconds, proc.returncode, imported, (proc.stdout + proc.stderr).strip()[-300:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per case (the median is shown)")
    args = ap.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="mdmt-nas-startup-") as tmp:
        tmp_path = Path(tmp)
        bad = tmp_path / "bad.yaml"
        bad.write_text("dataset: {name: synthetic}\ntrian: {epochs: 1}\n")
        report = tmp_path / "imported.json"
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
        print(
            "\n| command | median s | fastest s | runs | exit | imports | torch needed |\n|---|---:|---:|---:|---:|---|---|"
        )
        for name, case_args, want_code, light in CASES:
            case_args = [a.replace("{bad}", str(bad)) for a in case_args]
            times, codes, imported, tail = [], set(), [], ""
            for _ in range(args.repeat):
                seconds, code, imported, tail = run_once(case_args, report, tmp_path)
                times.append(seconds)
                codes.add(code)
            bad_code = codes != {want_code}
            bad_import = light and "torch" in imported
            ok = ok and not bad_code and not bad_import
            print(
                f"| `mdmt-nas {' '.join(a if a != str(bad) else 'BAD.yaml' for a in case_args)}` | {statistics.median(times):.2f} | "
                f"{min(times):.2f} | {len(times)} | {','.join(map(str, sorted(codes)))}{f' (expected {want_code})' if bad_code else ''} | "
                f"{', '.join(imported) or 'none of ' + '/'.join(HEAVY)} | {'no' if light else 'yes (the component registry)'}"
                f"{' -- IMPORTED TORCH' if bad_import else ''} |"
            )
            if bad_code:
                print(f"  output: {tail}")
        print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("target: under 1.5 s for --help and a config error on an idle machine (load average below 0.5)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
