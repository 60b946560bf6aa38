"""MLflow models: `train` and `search` log a pyfunc that scores RAW feature rows; `--register-model` registers it;
`mlflow models serve` answers JSON requests with the in-process model's scores."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli
from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401

ARCH = {
    "name": "raw-mmoe",
    "embedding_dim": 4,
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 2},
    "domain": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1},
    "gate_scope": ["shared", "domain"],
    "heads": "domain_task",
    "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
}
COLUMNS = {
    "domain": "site",
    "labels": ["click", "buy"],
    "sparse": ["user", "item"],
    "dense": ["age", "price"],
    "min_count": 2,
}


def raw_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Raw rows as a user's CSV has them: string domains and items, integer users, float dense values."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["web", "app", "tv"], n, p=[0.5, 0.3, 0.2])
    user = rng.integers(0, 60, n)
    item = np.array([f"i{k}" for k in rng.integers(0, 40, n)])
    age = rng.normal(35, 9, n).round(1)
    price = rng.gamma(2.0, 10.0, n).round(2)
    logit = 0.04 * (age - 35) + (user % 3 == 0) - 0.02 * price + (site == "app")
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    buy = (click & (rng.random(n) < 0.5)).astype(int)
    return pd.DataFrame(
        {"site": site, "user": user, "item": item, "age": age, "price": price, "click": click, "buy": buy}
    )


def _config(tmp_path: Path, uri: str, csv: Path) -> Path:
    import yaml

    cfg = {
        "dataset": {"name": "csv", "params": {"path": str(csv), "columns": COLUMNS}},
        "arch": ARCH,
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "progress": False},
        "tracking": {"uri": uri, "experiment": "serving"},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _reference(out: Path, rows: pd.DataFrame, csv: Path) -> np.ndarray:
    """Scores of the trained model in this process: the training encoding applied to raw rows (with labels)."""
    from mdmt_nas.data.loading import load_dataset
    from mdmt_nas.serving.export import load_trained

    model, _, _ = load_trained(out / "arch.json", out / "weights.pt")
    encoder = load_dataset("csv", {"path": str(csv), "columns": COLUMNS}).encoder
    t = encoder.transform(rows.assign(click=0, buy=0) if "click" not in rows else rows)
    with torch.no_grad():
        return torch.sigmoid(model(t.sparse, t.dense, t.domain)).numpy()


def _requests(table: pd.DataFrame) -> pd.DataFrame:
    """40 raw rows without labels, plus rows with values never seen in training (they must score as unknown)."""
    rows = table.drop(columns=["click", "buy"]).iloc[:40].copy()
    unseen = pd.DataFrame(
        {
            "site": ["tv", "web"],
            "user": [10**9, 7],
            "item": ["never-seen", "i3"],
            "age": [80.5, 20.0],
            "price": [0.5, 99.0],
        }
    )
    return pd.concat([rows, unseen], ignore_index=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_registered_model_is_served_over_http_with_the_in_process_scores(tmp_path, mlflow_uri, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from mdmt_nas.cli.ui import stop_group

    monkeypatch.chdir(tmp_path)
    table = raw_table()
    csv = tmp_path / "events.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "train"
    code, text, err = run_cli(
        ["train", "--config", _config(tmp_path, mlflow_uri, csv), "--output", out, "--register-model", "raw-mmoe"],
        capsys,
    )
    assert code == 0, err
    assert "registered as models:/raw-mmoe/1" in text
    enc = json.loads((out / "encoding.json").read_text())
    assert enc["domain"]["column"] == "site" and [f["column"] for f in enc["sparse"]] == ["user", "item"]

    client = MlflowClient(mlflow_uri)
    version = client.get_model_version("raw-mmoe", "1")
    run = client.get_run(version.run_id)
    assert run.data.tags["mdmt_nas.kind"] == "train" and run.info.status == "FINISHED"
    import mlflow

    pyfunc = mlflow.pyfunc.load_model("models:/raw-mmoe/1")
    signature = pyfunc.metadata.get_input_schema()
    assert signature.input_names() == ["site", "user", "item", "age", "price"]
    assert dict(zip(signature.input_names(), [str(t) for t in signature.input_types()])) == {
        "site": "DataType.string",
        "user": "DataType.long",
        "item": "DataType.string",
        "age": "DataType.double",
        "price": "DataType.double",
    }
    assert pyfunc.metadata.get_output_schema().input_names() == ["click", "buy"]
    example = pyfunc.input_example
    assert example is not None and set(example["site"]) == {"web", "app", "tv"}

    requests = _requests(table)
    want = _reference(out, requests, csv)
    got = pyfunc.predict(requests)
    assert list(got.columns) == ["click", "buy"] and np.allclose(got.to_numpy(), want, atol=1e-5, rtol=0)
    # unseen user / item score as the unknown id 0, exactly like a row whose values are unknown in training
    assert np.allclose(got.to_numpy()[-2:], want[-2:], atol=1e-5, rtol=0)

    port = _free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    bin_dir = str(Path(sys.executable).parent)  # mlflow models serve runs `uvicorn` from PATH: this environment's
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [
            exe,
            "models",
            "serve",
            "-m",
            "models:/raw-mmoe/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the model server did not answer /ping within 180 s"
            time.sleep(1)
        records = json.loads(requests.to_json(orient="records"))
        status, body = _post(base + "/invocations", {"dataframe_records": records})
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        assert list(served.columns) == ["click", "buy"]
        assert np.allclose(served.to_numpy(), want, atol=1e-5, rtol=0), float(np.abs(served.to_numpy() - want).max())
        status, body = _post(
            base + "/invocations", {"dataframe_records": [{k: v for k, v in records[0].items() if k != "item"}]}
        )
        assert status == 400 and "item" in body["message"]
        status, body = _post(base + "/invocations", {"dataframe_records": [{**records[0], "site": "radio"}]})
        assert status == 400 and "never trained on" in json.dumps(body) and "radio" in json.dumps(body)
    finally:
        stop_group(proc)
        log.close()
    assert proc.poll() is not None


def test_search_logs_its_best_model_on_the_parent_run(tmp_path, mlflow_uri, splits):
    import mlflow
    from mlflow.tracking import MlflowClient

    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=2)
    cfg = cfg.model_copy(
        update={"tracking": cfg.tracking.model_copy(update={"log_model": True, "register_model": "tiny-best"})}
    )
    outcome = run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    assert outcome.model.logged is not None and outcome.model.logged.version == "1"
    version = MlflowClient(mlflow_uri).get_model_version("tiny-best", "1")
    assert version.run_id == outcome.parent_run_id
    from mdmt_nas.data.synthetic import SyntheticParams, generate_frame

    rows = generate_frame(SyntheticParams(n_rows=3000)).iloc[:50]  # the raw table the `splits` fixture was encoded from
    pyfunc = mlflow.pyfunc.load_model("models:/tiny-best/1")
    got = pyfunc.predict(rows.drop(columns=["task_0", "task_1", "ts"]))
    from mdmt_nas.serving.export import load_trained

    model, _, _ = load_trained(tmp_path / "out" / "arch.json", tmp_path / "out" / "weights.pt")
    t = splits.encoder.transform(rows)
    with torch.no_grad():
        want = torch.sigmoid(model(t.sparse, t.dense, t.domain)).numpy()
    assert np.allclose(got.to_numpy(), want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ the raw encoder alone
def _encoder():
    from mdmt_nas.data.encode import ColumnMapping, fit_encoder
    from mdmt_nas.serving.pyfunc_model import RawEncoder

    rare = pd.DataFrame(
        {"site": ["web"], "user": [999], "item": ["once"], "age": [50.0], "price": [5.0], "click": [1], "buy": [0]}
    )
    table = pd.concat([raw_table(400), rare], ignore_index=True)  # user 999 and item "once" occur once: below min_count
    enc = fit_encoder(table, ColumnMapping(**COLUMNS))
    return enc, RawEncoder(enc.serving_spec()), table


def test_raw_encoder_matches_the_training_encoding():
    enc, raw, table = _encoder()
    t = enc.transform(table)
    sparse, dense, domain = raw.encode(table.drop(columns=["click", "buy"]))
    assert np.array_equal(sparse, t.sparse.numpy()) and np.array_equal(domain, t.domain.numpy())
    assert np.allclose(dense, t.dense.numpy(), atol=0, rtol=0)
    assert sparse[-1].tolist() == [0, 0]  # min_count=2 leaves rare values unknown, as in training


def test_raw_encoder_unknown_values_types_and_errors():
    enc, raw, table = _encoder()
    row = table.iloc[:1].drop(columns=["click", "buy"])
    known_user = int(row["user"].iloc[0])
    other_types = row.assign(user=str(known_user), age=str(row["age"].iloc[0]))  # "17" for 17: matched by text
    assert np.array_equal(raw.encode(other_types)[0], raw.encode(row)[0])
    unseen = row.assign(user=10**9, item=None)
    assert raw.encode(unseen)[0].tolist() == [[0, 0]]
    with pytest.raises(
        ValueError,
        match=r"missing input column\(s\) 'item'.*raw feature columns 'site', 'user', 'item', 'age', 'price'.*'itme'",
    ):
        raw.encode(row.rename(columns={"item": "itme"}))
    with pytest.raises(ValueError, match=r"domain column 'site' has value\(s\) \['radio'\].*known domains"):
        raw.encode(row.assign(site="radio"))
    with pytest.raises(ValueError, match=r"dense column 'age' has 1 missing, infinite or non-numeric"):
        raw.encode(row.assign(age="old"))
    from mdmt_nas.serving.pyfunc_model import input_example

    ex = input_example(enc.serving_spec())
    assert list(ex.columns) == raw.columns and sorted(ex["site"]) == sorted(enc.domain_names)
    raw.encode(ex)  # the input example logged with the model encodes without an error


def test_pre_encoded_data_gets_a_model_over_the_encoded_columns():
    """A dataset without a raw encoding (Splits built directly): the model takes ids, normalised values, domain names."""
    from mdmt_nas.serving.mlflow_model import identity_encoding
    from mdmt_nas.serving.pyfunc_model import RawEncoder, input_example
    from mdmt_nas.testing import make_batch, make_schema

    schema = make_schema()
    enc = identity_encoding(schema)
    raw = RawEncoder(enc)
    sparse, dense, domain, _ = make_batch(6)
    df = pd.DataFrame(
        {
            "domain": [schema.domain_names[d] for d in domain.tolist()],
            **{f.name: sparse[:, j].numpy() for j, f in enumerate(schema.sparse)},
            **{c: dense[:, j].numpy() for j, c in enumerate(schema.dense)},
        }
    )
    s, d, dom = raw.encode(df)
    assert np.array_equal(s, sparse.numpy()) and np.array_equal(dom, domain.numpy()) and np.allclose(d, dense.numpy())
    raw.encode(input_example(enc))


def test_a_model_that_cannot_be_logged_does_not_lose_the_training(tmp_path, mlflow_uri, splits, monkeypatch):
    from mlflow.tracking import MlflowClient

    import mdmt_nas.serving.mlflow_model as mm
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.errors import UserError
    from mdmt_nas.experiment import run_training

    def broken(*a, **k):
        raise RuntimeError("artifact store is read-only")

    monkeypatch.setattr(mm, "log_serving_model", broken)
    base = make_config(mlflow_uri).model_dump()
    base["tracking"]["log_model"] = True
    cfg = ExperimentConfig.model_validate(
        {**base, "arch": ARCH, "train": {"epochs": 1, "batch_size": 512, "threads": 1, "progress": False}}
    )
    outcome = run_training(cfg, splits, tmp_path / "out")
    assert (tmp_path / "out" / "weights.pt").exists() and (tmp_path / "out" / "encoding.json").exists()
    assert outcome.model.logged is None and "RuntimeError: artifact store is read-only" in outcome.model.error
    run = MlflowClient(mlflow_uri).get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and "read-only" in run.data.tags["mdmt_nas.model_error"]
    base["tracking"]["register_model"] = "wanted"
    cfg = ExperimentConfig.model_validate(
        {**base, "arch": ARCH, "train": {"epochs": 1, "batch_size": 512, "threads": 1, "progress": False}}
    )
    with pytest.raises(UserError, match="cannot register the model as 'wanted': RuntimeError"):
        run_training(cfg, splits, tmp_path / "out2")
    assert (tmp_path / "out2" / "weights.pt").exists()  # saved before the model was logged
