"""encode_table: train-only fitting, unseen -> 0, precise errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_helpers import SMALL_MAPPING, small_table
from mdmt_nas.data.encode import ColumnMapping, EncoderStats, check_columns, encode_table, fit_encoder
from mdmt_nas.data.split import SplitConfig, split_indices
from mdmt_nas.errors import DataError


def test_shapes_dtypes_and_schema(table, mapping):
    s = encode_table(table, mapping)
    assert s.schema.tasks == ["click", "buy"]
    assert s.schema.domain_names == ["1", "2", "3"]
    assert [f.name for f in s.schema.sparse] == ["user", "item"]
    assert s.train.sparse.dtype == torch.int64 and s.train.dense.dtype == torch.float32
    assert s.train.domain.dtype == torch.int64 and s.train.labels.dtype == torch.float32
    assert len(s.train) + len(s.valid) + len(s.test) == len(table)


def test_fitted_on_train_only(table, mapping):
    cfg = SplitConfig(seed=3)
    s = encode_table(table, mapping, cfg)
    tr, _, _ = split_indices(len(table), cfg)
    train = table.iloc[tr]
    # dense normalised with train statistics: train mean ~0, std ~1
    assert torch.allclose(s.train.dense.mean(0), torch.zeros(2), atol=1e-4)
    assert s.train.dense.std(0, unbiased=False).sub(1).abs().max() < 1e-3
    # vocabulary = train values only; most frequent gets id 1
    assert s.schema.sparse[0].vocab_size == train.user.nunique() + 1
    top = train.item.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    assert (s.train.sparse[:, 1][torch.from_numpy((train.item == top).to_numpy().copy())] == 1).all()


def test_unseen_category_maps_to_zero():
    df = pd.DataFrame({"d": ["x"] * 10, "y": [0, 1] * 5, "c": ["a"] * 8 + ["new", "a"], "t": range(10)})
    m = ColumnMapping(domain="d", labels=["y"], sparse=["c"])
    s = encode_table(df, m, SplitConfig(kind="sequential", fractions=(0.8, 0.1, 0.1)))
    assert s.schema.sparse[0].vocab_size == 2
    assert s.valid.sparse[0, 0].item() == 0 and s.test.sparse[0, 0].item() == 1


def test_min_count_and_max_vocab():
    df = pd.DataFrame({"d": 1, "y": [0, 1] * 50, "c": ["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["z"]})
    enc = fit_encoder(df, ColumnMapping(domain="d", labels=["y"], sparse=["c"], min_count=5))
    assert list(enc.vocabs["c"]) == ["a", "b", "c"]
    enc = fit_encoder(df, ColumnMapping(domain="d", labels=["y"], sparse=["c"], max_vocab=2))
    assert list(enc.vocabs["c"]) == ["a", "b"]
    t = enc.transform(df)
    assert t.sparse[-1, 0].item() == 0 and t.sparse[0, 0].item() == 1


def test_domain_names_mapping_groups_values_in_given_order():
    df = small_table()
    m = ColumnMapping(**{**SMALL_MAPPING.model_dump(), "domain_names": {3: "big", 1: "small", 2: "small"}})
    s = encode_table(df, m)
    assert s.schema.domain_names == ["big", "small"]
    full = torch.cat([s.train.domain, s.valid.domain, s.test.domain])
    assert set(full.tolist()) == {0, 1}


def test_chunked_stats_equal_whole_table(table, mapping):
    whole = fit_encoder(table, mapping)
    stats = EncoderStats(mapping)
    for chunk in np.array_split(np.arange(len(table)), 7):
        stats.update(table.iloc[chunk])
    chunked = stats.finish()
    assert np.allclose(whole.mean, chunked.mean) and np.allclose(whole.std, chunked.std)
    for c in mapping.sparse:
        assert list(whole.vocabs[c]) == list(chunked.vocabs[c])


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=30, max_size=80),
    seed=st.integers(0, 1000),
)
def test_property_ids_in_range_and_consistent(values, seed):
    n = len(values)
    df = pd.DataFrame({"d": 0, "y": np.arange(n) % 2, "c": values, "x": np.arange(n, dtype=float)})
    s = encode_table(df, ColumnMapping(domain="d", labels=["y"], sparse=["c"], dense=["x"]), SplitConfig(seed=seed))
    vs = s.schema.sparse[0].vocab_size
    for part in (s.train, s.valid, s.test):
        assert int(part.sparse.min()) >= 0 and int(part.sparse.max()) < vs
    assert int(s.train.sparse.min()) >= 1  # every train value is in the vocabulary


# ----------------------------------------------------------------------------- errors


def test_missing_column_names_it_and_lists_available(table):
    m = ColumnMapping(domain="scene", labels=["click"], sparse=["usr"])
    with pytest.raises(DataError, match=r"column 'usr' not found; available columns: user, item, price"):
        encode_table(table, m)


@pytest.mark.parametrize("sep,shown", [(",", ","), (";", ";"), ("\t", r"\\t' \(tab"), ("::", "::")])
def test_wrong_separator_detected(sep, shown):
    header = sep.join(["scene", "click", "user"])
    with pytest.raises(DataError, match=rf"seems to be separated by '{shown}"):
        check_columns([header], ["scene", "click", "user"], "f.csv", separator="|")


def test_non_binary_labels_show_values(table, mapping):
    table.loc[3, "click"] = 5
    table.loc[7, "click"] = 2
    with pytest.raises(DataError, match=r"label column 'click' must be binary 0/1; found \['2', '5'\]"):
        encode_table(table, mapping)


def test_nan_in_dense_named_with_count(table, mapping):
    table["price"] = table["price"].astype(float)
    table.loc[[1, 2, 3], "price"] = np.nan
    with pytest.raises(DataError, match=r"dense column 'price' has [0-9] missing .*fill them"):
        encode_table(table, mapping)


def test_nan_in_labels_and_domain(table, mapping):
    t2 = table.copy()
    t2["buy"] = t2["buy"].astype(float)
    t2.loc[0, "buy"] = np.nan
    with pytest.raises(DataError, match=r"label column 'buy' has 1 missing"):
        encode_table(t2, mapping, SplitConfig(kind="sequential"))
    t3 = table.copy()
    t3["scene"] = t3["scene"].astype(float)
    t3.loc[0, "scene"] = np.nan
    with pytest.raises(DataError, match=r"domain column 'scene' has 1 missing"):
        encode_table(t3, mapping, SplitConfig(kind="sequential"))


def test_domain_unseen_in_train_is_named(table, mapping):
    table["scene"] = np.where(np.arange(len(table)) < 270, table["scene"], 9)
    with pytest.raises(DataError, match=r"domain value\(s\) \['9'\] .* do not occur in the train split"):
        encode_table(table, mapping, SplitConfig(kind="sequential"))


def test_domain_value_missing_from_names(table):
    m = ColumnMapping(**{**SMALL_MAPPING.model_dump(), "domain_names": {"1": "a", "2": "b"}})
    with pytest.raises(DataError, match=r"values not listed in domain_names: \['3'\]"):
        encode_table(table, m)


def test_mapping_validation():
    with pytest.raises(ValueError, match="two roles"):
        ColumnMapping(domain="d", labels=["y"], sparse=["y"])
    with pytest.raises(ValueError, match="at least one sparse or dense"):
        ColumnMapping(domain="d", labels=["y"])


def test_pyarrow_table_input(table, mapping):
    import pyarrow as pa

    s = encode_table(pa.Table.from_pandas(table), mapping)
    assert len(s.train) == 240
