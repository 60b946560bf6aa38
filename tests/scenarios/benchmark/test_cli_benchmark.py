"""`mdmt-nas benchmark --quick`: two fixed models and a 2-trial TPE on tiny synthetic data -> report files and MLflow runs."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from helpers import run_cli, tiny_space_yaml

# a small search space so the TPE candidates train in seconds (the benchmark's default is m3oe)
SPACE = tiny_space_yaml("tiny-bench", "tiny benchmark test space", {"mlp-8": [8], "mlp-16": [16, 8]})


@pytest.fixture(autouse=True)
def _small(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("COLUMNS", "200")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One quick benchmark for every test of this module (it is the slow part)."""
    root = tmp_path_factory.mktemp("bench")
    space = root / "tiny.yaml"
    space.write_text(textwrap.dedent(SPACE))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = root / "report"
    args = [
        "benchmark",
        "--quick",
        "--models",
        "shared_bottom,mmoe,tpe",
        "--space",
        space,
        "--output",
        out,
        "--tracking-uri",
        uri,
        "--set",
        "train.threads=1",
    ]
    return {"root": root, "out": out, "uri": uri, "args": args, "space": space}


@pytest.fixture(scope="module")
def ran(bench):
    import contextlib
    import io

    from mdmt_nas.cli.app import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([str(a) for a in bench["args"]])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return {**bench, "code": code, "stdout": buf.getvalue()}


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("benchmark")
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_report_files_and_sections(ran):
    assert ran["code"] == 0, ran["stdout"]
    out = ran["out"]
    for name in ("report.md", "report.html", "auc_bar.png", "pareto.png", "results.json", "runs.csv", "summary.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for section in (
        "# Benchmark: synthetic (quick run)",
        "## How it was made",
        "## Findings",
        "## Summary",
        "## Test AUC per (domain, task)",
        "## Test logloss per (domain, task)",
        "## Searches",
        "## Search candidates: valid AUC against parameters",
    ):
        assert section in md, section
    # which split, the regenerating command, the machine and the date
    assert (
        "test split** of synthetic — random 80/10/10 split with split seed 0, 2,400 / 300 / 300 train / valid / test rows"
        in md
    )
    assert (
        f"mdmt-nas benchmark --space {ran['space']} --models shared_bottom,mmoe,tpe --output {out}" in md
        and md.count("--quick") == 1
    )
    assert "Candidates and retraining use the `mmoe` example's train section" in md
    assert "Machine: " in md and "thread(s)" in md and "Date: 20" in md and "after the runs" in md
    for label in ("Shared-Bottom", "MMoE", "Optuna TPE"):
        assert f"| {label} |" in md
    # a per-(domain, task) table: one column per cell plus the mean
    head = next(line for line in md.splitlines() if line.startswith("| model | domain_0 / task_0"))
    assert head.count("/") == 6 and head.endswith("| mean |")
    assert "![mean test AUC ± std per model](auc_bar.png)" in md
    html = (out / "report.html").read_text()
    assert (
        html.startswith("<!DOCTYPE html>")
        and html.count("<table>") >= 4
        and '<img src="auc_bar.png"' in html
        and "<h2>Findings</h2>" in html
    )
    csv_lines = (out / "runs.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and "test_auc/domain_0/task_0" in csv_lines[0]
    assert "seed 0 Optuna TPE: test AUC" in ran["stdout"] and "[3/3]" in ran["stdout"]


def test_findings_match_the_numbers(ran):
    from mdmt_nas.benchmark import RunRecord, findings, summarize
    from mdmt_nas.benchmark.stats import search_findings

    data = json.loads((ran["out"] / "results.json").read_text())
    assert data["complete"] is True and [r["model"] for r in data["runs"]] == ["shared_bottom", "mmoe", "tpe"]
    assert all(r["status"] == "finished" and 0 < r["test_mean_auc"] < 1 and len(r["cells"]) == 6 for r in data["runs"])
    recs = [RunRecord.from_dict(r) for r in data["runs"]]
    summaries = summarize(recs)
    expected = findings(summaries)
    extra = search_findings(summaries, recs, data["dataset"].get("bayes"))
    assert data["findings"] == expected + extra
    report = (ran["out"] / "report.md").read_text()
    assert " ".join(expected) in report and " ".join(extra) in report
    # synthetic data knows its Bayes ceiling: the report states it and the gap the search closed
    assert data["dataset"]["bayes"]["test_mean_auc"] > max(r.test_mean_auc for r in recs)
    assert extra[0].startswith("The Bayes ceiling") and "of the gap from" in extra[1]
    assert "| Bayes ceiling | oracle |" in report
    best_fixed = max((r for r in recs if r.kind == "fixed"), key=lambda r: r.test_mean_auc)
    tpe = next(r for r in recs if r.model == "tpe")
    verdict = "beats" if tpe.test_mean_auc > best_fixed.test_mean_auc else "does not beat"
    assert f"Verdict: the searched architecture {verdict} the best fixed baseline ({best_fixed.label})" in " ".join(
        expected
    )
    # the TPE search: 2 candidates, each trained with the full (quick) budget
    tpe_run = data["runs"][2]
    assert tpe_run["search"]["candidates"] == 2 and (ran["out"] / tpe_run["search"]["dir"] / "best_arch.json").is_file()
    assert len([c for c in data["candidates"] if c["model"] == "tpe"]) == 2


def test_mlflow_one_parent_with_the_children(ran):
    runs = _runs(ran["uri"])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 1 and top[0].info.run_name == "benchmark-synthetic" and top[0].info.status == "FINISHED"
    parent = top[0].info.run_id
    data = json.loads((ran["out"] / "results.json").read_text())
    assert data["mlflow"]["parent_run_id"] == parent
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent}
    assert set(children) == {"Shared-Bottom seed0", "MMoE seed0", "search-tiny-bench-optuna-tpe"}
    search = children["search-tiny-bench-optuna-tpe"]
    assert search.data.tags["benchmark.model"] == "tpe" and children["MMoE seed0"].data.tags["benchmark.seed"] == "0"
    nested = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == search.info.run_id)
    # the candidates were trained with the full (quick) budget, so the winner's own run is the benchmark run: no retraining
    assert [n.split(" · ")[0] for n in nested] == ["trial-0", "trial-1"]
    assert all(" · valid 0." in n or " · pruned · " in n for n in nested), nested  # trials named to read by themselves
    assert "test_mean_auc" in children["MMoE seed0"].data.metrics
    assert "report.md" in {
        a.path for a in __import__("mlflow").tracking.MlflowClient(ran["uri"]).list_artifacts(parent)
    }


def test_resume_keeps_finished_runs(ran, capsys):
    before = len(_runs(ran["uri"]))
    code, text, err = run_cli([*ran["args"], "--resume"], capsys)
    assert code == 0, err
    assert "resuming: 3 of 3 runs already done" in text
    assert len(_runs(ran["uri"])) == before  # no new training, the same parent run re-opened
    data = json.loads((ran["out"] / "results.json").read_text())
    assert len(data["runs"]) == 3 and data["complete"] is True
    assert (
        len(data["segments"]) == 1 and "continued with `--resume`" not in (ran["out"] / "report.md").read_text()
    )  # only re-rendered


def test_resume_in_another_tracking_store_names_the_old_parent(ran, tmp_path, capsys):
    """A report moved to another machine (its mlflow.db left behind) and resumed there: the runs still
    missing are trained under a new parent, and the report says where the earlier parts were logged."""
    import shutil

    out = tmp_path / "report"
    shutil.copytree(ran["out"], out)
    data = json.loads((out / "results.json").read_text())
    old_parent = data["mlflow"]["parent_run_id"]
    data["runs"] = [r for r in data["runs"] if r["model"] != "shared_bottom"]
    (out / "results.json").write_text(json.dumps(data))
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    args = [str(a) for a in ran["args"]]
    args[args.index("--output") + 1], args[args.index("--tracking-uri") + 1] = str(out), uri
    code, text, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert f"parent run {old_parent} is not in" in text
    data = json.loads((out / "results.json").read_text())
    new_parent = data["mlflow"]["parent_run_id"]
    assert new_parent != old_parent and data["mlflow"]["unreachable_parent_run_ids"] == [old_parent]
    assert len(data["runs"]) == 3 and [s.get("parent_run_id") for s in data["segments"]][1:] == [new_parent]
    assert [r.info.run_name for r in _runs(uri) if r.data.tags.get("mlflow.parentRunId") == new_parent] == [
        "Shared-Bottom seed0"
    ]
    md = (out / "report.md").read_text()
    assert (
        f"parent run `{new_parent}`" in md
        and f"parent run(s) `{old_parent}`, which the `--resume` could not re-open" in md
    )


def test_usage_errors_exit_2_before_any_output(tmp_path, capsys):
    code, _, err = run_cli(["benchmark", "--models", "mmoe,dartz", "--output", tmp_path / "a", "--no-track"], capsys)
    assert code == 2 and "unknown model 'dartz'" in err and "darts" in err
    assert not (tmp_path / "a").exists()
    code, _, err = run_cli(
        ["benchmark", "--models", "tpe", "--space", "no-such-space", "--output", tmp_path / "b", "--no-track"], capsys
    )
    assert code == 2 and not (tmp_path / "b").exists()
    code, _, err = run_cli(["benchmark", "--seeds", "0", "--output", tmp_path / "c", "--no-track"], capsys)
    assert code == 2 and "--seeds" in err
    code, _, err = run_cli(
        ["benchmark", "--models", "tpe", "--search-train", "mmeo", "--output", tmp_path / "d", "--no-track"], capsys
    )
    assert code == 2 and "mmeo" in err and not (tmp_path / "d").exists()


def test_searches_train_like_the_fixed_baselines_by_default():
    """The default search train section is the one the fixed baselines share (all but M3oE's), so a searched
    architecture is compared with them under the same training; --search-train picks another example."""
    from collections import Counter

    from mdmt_nas.benchmark.settings import BASELINES, BenchmarkSettings, example_config

    sections = Counter(example_config(b.source).train.model_dump_json() for b in BASELINES)
    shared, n = sections.most_common(1)[0]
    assert n >= len(BASELINES) - 1
    assert example_config(BenchmarkSettings().search_train).train.model_dump_json() == shared
