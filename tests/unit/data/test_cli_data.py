"""`mdmt-nas data get / describe / convert`, driven through the typer app."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from subprocess import CompletedProcess

import pyarrow.parquet as pq
from typer.testing import CliRunner

from data_helpers import small_table
from ml_files import write_recbole
from mdmt_nas.cli.data import data_app
from mdmt_nas.errors import ConfigError, DataError, UserError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(data_app, list(args), catch_exceptions=True)


def test_describe_ml100k_files(tmp_path):
    d = write_recbole(tmp_path / "ml", n_users=30, n=400)
    r = invoke("describe", "--dataset", "ml-100k", "--set", f"dir={d}")
    assert r.exit_code == 0, r.output
    assert "400 interactions, 30 users" in r.output and "3 domains x 2 tasks" in r.output
    for name in ("under25", "25to34", "35plus", "click", "like"):
        assert name in r.output


def test_describe_json_from_experiment_config(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("dataset:\n  name: synthetic\n  params:\n    n_rows: 3000\n    num_domains: 4\n")
    r = invoke("describe", "--config", str(cfg), "--set", "dataset.params.num_tasks=3", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["dataset"] == "synthetic" and s["rows"] == {"train": 2400, "valid": 300, "test": 300, "total": 3000}
    assert len(s["domains"]) == 4 and s["tasks"] == ["task_0", "task_1", "task_2"]
    assert sum(d["rows"] for d in s["domains"]) == 3000


def test_describe_bare_params_file_and_notes(tmp_path):
    from paper_files import write_kuairand

    d = write_kuairand(tmp_path / "kr")
    cfg = tmp_path / "kr.yaml"
    cfg.write_text(f"dir: {d}\n")
    r = invoke("describe", "-d", "kuairand", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    assert "note: dropped" in r.output


def test_describe_errors():
    r = invoke("describe", "--dataset", "synthetic", "--set", "n_rowz=10")
    assert isinstance(
        r.exception, ConfigError
    ) and "dataset.params.n_rowz: unknown parameter (did you mean 'n_rows'?)" in str(r.exception)
    r = invoke("describe")
    assert isinstance(r.exception, UserError) and "--dataset" in str(r.exception)
    r = invoke("describe", "--dataset", "synthetik")
    assert isinstance(r.exception, UserError) and "did you mean 'synthetic'" in str(r.exception)


def test_get_ml100k_offline(tmp_path, monkeypatch):
    src = write_recbole(tmp_path / "src")

    def fake(req, dest: Path):
        with zipfile.ZipFile(dest / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
            for ext in ("inter", "user", "item"):
                zf.writestr(f"recbole/dataset_example/ml-100k/ml-100k.{ext}", (src / f"ml-100k.{ext}").read_text())
        return CompletedProcess([], 0, "", "")

    monkeypatch.setattr("mdmt_nas.data.fetch.pip_download", fake)
    import mdmt_nas.data.fetch as fetch

    monkeypatch.setitem(
        fetch.FETCHERS, "ml-100k", lambda cache, force=False: fetch.fetch_ml100k(cache, force, downloader=fake)
    )
    r = invoke("get", "ml-100k", "--cache-dir", str(tmp_path / "cache"))
    assert r.exit_code == 0, r.output
    assert "ready in" in r.output and (tmp_path / "cache" / "ml-100k" / "ml-100k.inter").exists()


def test_get_unknown_and_manual():
    r = invoke("get", "ml-1m")
    assert isinstance(
        r.exception, UserError
    ) and "cannot be downloaded by mdmt-nas; get it from https://grouplens.org" in str(r.exception)
    r = invoke("get", "imagenet")
    assert isinstance(r.exception, UserError) and "fetchable: ml-100k" in str(r.exception)


def test_convert_with_config_and_flags(tmp_path):
    csv = tmp_path / "t.csv"
    small_table(500).to_csv(csv, index=False)
    cfg = tmp_path / "m.yaml"
    cfg.write_text("columns:\n  domain: scene\n  labels: [click, buy]\n  sparse: [user, item]\n  keep: [ts]\n")
    out = tmp_path / "t.parquet"
    r = invoke("convert", str(csv), str(out), "--config", str(cfg), "--dense", "price,age", "--row-group-size", "100")
    assert r.exit_code == 0, r.output
    assert "500 rows in 5 row groups" in r.output
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups == 5 and set(f.schema_arrow.names) == {
        "scene",
        "click",
        "buy",
        "user",
        "item",
        "price",
        "age",
        "ts",
    }


def test_convert_flags_only_and_errors(tmp_path):
    csv = tmp_path / "t.csv"
    small_table(100).to_csv(csv, index=False, sep=";")
    out = tmp_path / "t.parquet"
    r = invoke("convert", str(csv), str(out), "--domain", "scene", "--label", "click", "--sparse", "user", "--sep", ";")
    assert r.exit_code == 0, r.output
    r = invoke("convert", str(csv), str(out), "--domain", "scene", "--label", "click", "--sparse", "user")
    assert isinstance(r.exception, DataError) and "separated by ';'" in str(r.exception)
    r = invoke("convert", str(csv), str(out), "--domain", "scene", "--sparse", "user")
    assert isinstance(r.exception, ConfigError) and "columns.labels: required parameter is missing" in str(r.exception)
