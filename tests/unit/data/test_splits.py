"""SplitConfig: reproducible, disjoint, covering; empty splits are explained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mdmt_nas.data.split import SplitConfig, hash_uniform, split_indices
from mdmt_nas.errors import DataError


def _check_partition(parts, n):
    allidx = np.concatenate(parts)
    assert len(allidx) == n
    assert len(np.unique(allidx)) == n


@settings(max_examples=40, deadline=None)
@given(n=st.integers(30, 2000), seed=st.integers(0, 10**6), kind=st.sampled_from(["random", "sequential", "hash"]))
def test_partition_and_reproducible(n, seed, kind):
    cfg = SplitConfig(kind=kind, seed=seed)
    a = split_indices(n, cfg)
    b = split_indices(n, cfg)
    _check_partition(a, n)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_random_exact_fractions_and_seed_changes_assignment():
    a = split_indices(1000, SplitConfig(seed=1))
    b = split_indices(1000, SplitConfig(seed=2))
    assert [len(p) for p in a] == [800, 100, 100]
    assert not np.array_equal(a[0], b[0])


def test_sequential_is_file_order():
    tr, va, te = split_indices(10, SplitConfig(kind="sequential", fractions=(0.6, 0.2, 0.2)))
    assert tr.tolist() == list(range(6)) and va.tolist() == [6, 7] and te.tolist() == [8, 9]


def test_time_split_orders_by_timestamp():
    df = pd.DataFrame({"t": [5, 1, 4, 2, 3, 0, 9, 8, 7, 6]})
    tr, va, te = split_indices(10, SplitConfig(kind="time", column="t", fractions=(0.6, 0.2, 0.2)), df)
    assert sorted(df.t[tr]) == [0, 1, 2, 3, 4, 5] and sorted(df.t[te]) == [8, 9]


def test_time_split_uses_mapping_timestamp_by_default():
    df = pd.DataFrame({"when": np.arange(20)[::-1]})
    tr, _, te = split_indices(20, SplitConfig(kind="time"), df, timestamp="when")
    assert df.when[tr].max() < df.when[te].min()


def test_column_split_and_valid_from_train():
    df = pd.DataFrame({"s": ["train"] * 80 + ["val"] * 10 + ["test"] * 10})
    tr, va, te = split_indices(100, SplitConfig(kind="column", column="s"), df)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    df2 = pd.DataFrame({"s": ["train"] * 90 + ["test"] * 10})
    tr, va, te = split_indices(100, SplitConfig(kind="column", column="s", valid_from_train=0.2), df2)
    assert len(te) == 10 and len(va) > 5 and len(tr) + len(va) == 90


def test_column_split_unknown_value_is_named():
    df = pd.DataFrame({"s": ["train", "holdout", "test"] * 5})
    with pytest.raises(DataError, match="holdout"):
        split_indices(15, SplitConfig(kind="column", column="s"), df)


def test_hash_split_by_id_keeps_ids_together():
    df = pd.DataFrame({"user": np.repeat(np.arange(200), 5)})
    parts = split_indices(1000, SplitConfig(kind="hash", column="user"), df)
    owners = [set(df.user[p]) for p in parts]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2])


def test_hash_uniform_is_deterministic_and_uniformish():
    u = hash_uniform(np.arange(100_000), 3)
    assert np.array_equal(u, hash_uniform(np.arange(100_000), 3))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01


def test_empty_split_has_hint():
    with pytest.raises(DataError, match=r"the valid split is empty .*add rows"):
        split_indices(5, SplitConfig(fractions=(0.9, 0.05, 0.05)))


def test_missing_time_column_is_named():
    with pytest.raises(DataError, match="'stamp'.*available columns: a"):
        split_indices(3, SplitConfig(kind="time", column="stamp"), pd.DataFrame({"a": [1, 2, 3]}))


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"fractions": (0.8, 0.3, 0.1)}, "sum to 1"),
        ({"fractions": (1.0, 0.0, 0.0)}, "must be > 0"),
        ({"kind": "column"}, "needs `column`"),
    ],
)
def test_config_validation(kw, msg):
    with pytest.raises(ValidationError, match=msg):
        SplitConfig(**kw)


def test_grouped_split_keeps_groups_out_of_training():
    """grouped: ordered by the id column (numeric ids as numbers, file order inside a group), cut in that order."""
    import pandas as pd

    from mdmt_nas.data.split import SplitConfig, split_indices

    users = np.array([10, 2, 2, 33, 10, 1, 2, 33, 9, 1] * 30)
    frame = pd.DataFrame({"user": users.astype(str), "row": np.arange(len(users))})
    tr, va, te = split_indices(len(frame), SplitConfig(kind="grouped", column="user"), frame)
    order = np.concatenate([tr, va, te])
    keys = users[order]
    assert (np.diff(keys) >= 0).all()  # ascending ids, numerically (2 < 9 < 10 < 33)
    for u in np.unique(users):
        pos = order[keys == u]
        assert (np.diff(pos) > 0).all()  # file order inside a group
    seen = set(users[tr])
    assert len(set(users[te]) - seen) >= 1 and not (set(users[te]) & set(users[tr]) - {users[tr][-1]})
    with pytest.raises(ValueError, match="grouped.*needs `column`"):
        SplitConfig(kind="grouped")
