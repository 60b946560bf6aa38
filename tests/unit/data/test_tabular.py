"""csv / parquet datasets, CSV -> Parquet conversion and streaming Parquet splits."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from data_helpers import SMALL_MAPPING, small_table
from mdmt_nas.data import load_dataset
from mdmt_nas.data.convert import csv_to_parquet
from mdmt_nas.data.parquet_stream import open_streaming
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tensors import MDMTTensors, RowSource
from mdmt_nas.errors import ConfigError, DataError

COLS = SMALL_MAPPING.model_dump(exclude_none=True)


def _csv(tmp_path, n=300, sep=","):
    f = tmp_path / "t.csv"
    small_table(n).to_csv(f, index=False, sep=sep)
    return f


def test_csv_dataset(tmp_path):
    s = load_dataset("csv", {"path": str(_csv(tmp_path)), "columns": COLS})
    assert (len(s.train), len(s.valid), len(s.test)) == (240, 30, 30)
    assert s.schema.tasks == ["click", "buy"]


def test_csv_other_separator_and_max_rows(tmp_path):
    s = load_dataset("csv", {"path": str(_csv(tmp_path, sep=";")), "columns": COLS, "separator": ";", "max_rows": 100})
    assert len(s.train) + len(s.valid) + len(s.test) == 100


def test_csv_wrong_separator(tmp_path):
    with pytest.raises(
        DataError, match=r"seems to be separated by ';' but was read with separator ','. Set the separator"
    ):
        load_dataset("csv", {"path": str(_csv(tmp_path, sep=";")), "columns": COLS})


def test_csv_missing_file_and_column(tmp_path):
    with pytest.raises(DataError, match=r"CSV file not found: .*nope.csv"):
        load_dataset("csv", {"path": str(tmp_path / "nope.csv"), "columns": COLS})
    bad = dict(COLS, dense=["price", "weight"])
    with pytest.raises(DataError, match=r"column 'weight' not found; available columns: user, item, price, age, scene"):
        load_dataset("csv", {"path": str(_csv(tmp_path)), "columns": bad})


def test_csv_param_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.params.columns.labels: required parameter is missing"):
        load_dataset("csv", {"path": "x.csv", "columns": {"domain": "d", "sparse": ["a"]}})
    with pytest.raises(ConfigError, match=r"dataset.params.split.fractions: .*sum to 1"):
        load_dataset("csv", {"path": "x.csv", "columns": COLS, "split": {"fractions": [0.5, 0.1, 0.1]}})


def test_parquet_in_memory_equals_csv(tmp_path):
    f = tmp_path / "t.parquet"
    small_table().to_parquet(f)
    a = load_dataset("parquet", {"path": str(f), "columns": COLS})
    b = load_dataset("csv", {"path": str(_csv(tmp_path)), "columns": COLS})
    for part in ("train", "valid", "test"):
        x, y = getattr(a, part), getattr(b, part)
        assert torch.equal(x.sparse, y.sparse) and torch.allclose(x.dense, y.dense) and torch.equal(x.labels, y.labels)


def test_convert_keeps_mapped_columns_with_fixed_types(tmp_path):
    out = tmp_path / "t.parquet"
    rep = csv_to_parquet(_csv(tmp_path, n=1000), out, SMALL_MAPPING, row_group_size=128, block_size=4096)
    assert rep.rows == 1000 and rep.row_groups == 8
    meta = pq.ParquetFile(out)
    assert meta.metadata.num_row_groups == 8
    schema = meta.schema_arrow
    assert str(schema.field("user").type) == "string" and str(schema.field("price").type) == "float"
    assert sorted(schema.names) == sorted(SMALL_MAPPING.columns())


def test_convert_errors(tmp_path):
    with pytest.raises(DataError, match="CSV file not found"):
        csv_to_parquet(tmp_path / "none.csv", tmp_path / "o.parquet", SMALL_MAPPING)
    with pytest.raises(DataError, match=r"seems to be separated by '\\t' \(tab"):
        csv_to_parquet(_csv(tmp_path, sep="\t"), tmp_path / "o.parquet", SMALL_MAPPING)
    f = tmp_path / "bad.csv"
    df = small_table(50)
    df["price"] = df["price"].astype(object)
    df.loc[40, "price"] = "n/a?"
    df.to_csv(f, index=False)
    with pytest.raises(
        DataError,
        match=r"bad.csv: cannot parse rows 0..: In column 'price': CSV conversion error to float: invalid value 'n/a\?'",
    ):
        csv_to_parquet(f, tmp_path / "o.parquet", SMALL_MAPPING)
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.parquet.part").exists()


def _converted(tmp_path, n=3000, rg=256):
    out = tmp_path / "s.parquet"
    csv_to_parquet(_csv(tmp_path, n=n), out, SMALL_MAPPING, row_group_size=rg)
    return out


def test_streaming_splits_cover_rows_and_match_in_memory_encoding(tmp_path):
    out = _converted(tmp_path)
    st = load_dataset("parquet", {"path": str(out), "columns": COLS, "streaming": True, "split": {"kind": "hash"}})
    assert isinstance(st.train, RowSource) and not isinstance(st.train, MDMTTensors)
    assert len(st.train) + len(st.valid) + len(st.test) == 3000
    mem = load_dataset("parquet", {"path": str(out), "columns": COLS, "split": {"kind": "hash"}})
    assert st.schema == mem.schema
    for part in ("train", "valid", "test"):
        got = MDMTTensors.concat(list(getattr(st, part).batches(500)))
        want = getattr(mem, part)
        assert torch.equal(got.sparse, want.sparse) and torch.allclose(got.dense, want.dense, atol=1e-6)
        assert torch.equal(got.domain, want.domain) and torch.equal(got.labels, want.labels)


def test_streaming_batches_shuffle_deterministic_and_resumable(tmp_path):
    st = open_streaming(_converted(tmp_path), SMALL_MAPPING, SplitConfig(kind="hash"), shuffle_buffer=3)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    full = list(st.train.batches(128, shuffle=True, generator=g()))
    assert all(len(b) == 128 for b in full[:-1]) and sum(len(b) for b in full) == len(st.train)
    again = list(st.train.batches(128, shuffle=True, generator=g()))
    assert all(torch.equal(a.sparse, b.sparse) for a, b in zip(full, again))
    resumed = list(st.train.batches(128, shuffle=True, generator=g(), start_batch=7))
    assert len(resumed) == len(full) - 7
    assert all(torch.equal(a.dense, b.dense) and torch.equal(a.labels, b.labels) for a, b in zip(full[7:], resumed))
    other = list(st.train.batches(128, shuffle=True, generator=torch.Generator().manual_seed(6)))
    assert not torch.equal(full[0].sparse, other[0].sparse)
    plain = torch.cat([b.dense for b in st.train.batches(128)])
    shuffled = torch.cat([b.dense for b in full])
    assert torch.allclose(plain.sum(0), shuffled.sum(0), atol=1e-2) and not torch.equal(plain, shuffled)


def test_streaming_sequential_and_column_splits(tmp_path):
    out = _converted(tmp_path, n=1000, rg=100)
    st = open_streaming(out, SMALL_MAPPING, SplitConfig(kind="sequential"))
    assert (len(st.train), len(st.valid), len(st.test)) == (800, 100, 100)
    df = small_table(1000)
    df["part"] = np.where(np.arange(1000) % 10 == 0, "test", "train")
    f = tmp_path / "c.parquet"
    df.to_parquet(f, row_group_size=100)
    st = open_streaming(f, SMALL_MAPPING, SplitConfig(kind="column", column="part", valid_from_train=0.1))
    assert len(st.test) == 100 and 40 < len(st.valid) < 140 and len(st.train) + len(st.valid) == 900


def test_streaming_errors(tmp_path):
    out = _converted(tmp_path, n=500)
    with pytest.raises(DataError, match=r"cannot split by time in one pass"):
        open_streaming(out, SMALL_MAPPING, SplitConfig(kind="time"))
    with pytest.raises(DataError, match=r"Parquet file not found"):
        open_streaming(tmp_path / "missing.parquet", SMALL_MAPPING)
    bad = SMALL_MAPPING.model_copy(update={"sparse": ["user", "colour"]})
    with pytest.raises(DataError, match=r"column 'colour' not found; available columns"):
        open_streaming(out, bad)
    df = small_table(500)
    df.loc[499, "click"] = 7
    f = tmp_path / "b.parquet"
    df.to_parquet(f, row_group_size=100)
    with pytest.raises(DataError, match=r"row group 4: label column 'click' must be binary 0/1; found \['7'\]"):
        open_streaming(f, SMALL_MAPPING)


def test_parquet_directory_in_memory_and_streaming(tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    small_table(300, 0).to_parquet(d / "a.parquet")
    small_table(300, 1).to_parquet(d / "b.parquet")
    mem = load_dataset("parquet", {"path": str(d), "columns": COLS, "split": {"kind": "time"}})
    st = load_dataset("parquet", {"path": str(d), "columns": COLS, "streaming": True})
    assert len(mem.train) == 480 and len(st.train) + len(st.valid) + len(st.test) == 600
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no \*.parquet files in this directory"):
        load_dataset("parquet", {"path": str(empty), "columns": COLS})


def test_csv_tab_separator_spellings(tmp_path):
    f = _csv(tmp_path, n=100, sep="\t")
    for sep in ("\t", "\\t", "tab"):
        s = load_dataset("csv", {"path": str(f), "columns": COLS, "separator": sep})
        assert len(s.train) == 80


def test_convert_without_mapping_infers_types_from_the_first_block(tmp_path):
    f = tmp_path / "t.csv"
    small_table(2000).to_csv(f, index=False)
    f.write_bytes(f.read_bytes().rstrip(b"\n"))  # no newline after the last row
    rep = csv_to_parquet(f, tmp_path / "t.parquet", block_size=8192, row_group_size=700)
    assert rep.rows == 2000 and rep.row_groups == 3
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.column_names == list(small_table(1).columns) and str(t.schema.field("user").type) == "int64"
    assert t.column("ts").to_pylist() == small_table(2000)["ts"].tolist()
