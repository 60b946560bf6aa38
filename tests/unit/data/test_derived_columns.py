"""Column mappings with computed columns: label rules (`click: "rating > 3"`) and first-of-list columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.data import load_dataset
from mdmt_nas.data.convert import csv_to_parquet
from mdmt_nas.data.encode import encode_table
from mdmt_nas.data.mapping import ColumnMapping, FirstOf, LabelRule
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.errors import ConfigError, DataError

MAPPING = {
    "domain": "age",
    "domain_names": {"1": "young", "18": "young", "25": "mid", "35": "old", "56": "old"},
    "labels": {"click": "rating > 3", "like": "rating >= 5"},
    "derived": {"genre": {"first_of": "genres"}},
    "sparse": ["user_id", "genre"],
    "dense": ["age"],
}


def ratings_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genres = np.array(["Drama", "Comedy|Romance", "Action|Adventure|Thriller", "Sci-Fi|Drama", ""])
    return pd.DataFrame({
        "user_id": rng.integers(1, 20, n), "rating": rng.integers(1, 6, n), "genres": genres[rng.integers(0, len(genres), n)],
        "age": np.array([1, 18, 25, 35, 56])[rng.integers(0, 5, n)], "title": "x",
    })  # fmt: skip


def test_csv_with_label_rules_and_a_first_genre_column(tmp_path):
    df = ratings_table()
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    splits = load_dataset("csv", {"path": str(path), "columns": MAPPING, "split": {"kind": "sequential"}})
    assert splits.schema.tasks == ["click", "like"]
    assert splits.schema.domain_names == ["young", "mid", "old"]
    assert [f.name for f in splits.schema.sparse] == ["user_id", "genre"]
    n_train = len(splits.train)
    want = np.stack([df["rating"] > 3, df["rating"] >= 5], axis=1).astype(np.float32)[:n_train]
    np.testing.assert_array_equal(splits.train.labels.numpy(), want)
    # first genres seen in train get ids >= 1; an empty list is unknown (0)
    genre_ids = splits.train.sparse[:, 1].numpy()
    empty = (df["genres"].iloc[:n_train] == "").to_numpy()
    assert (genre_ids[empty] == 0).all() and (genre_ids[~empty] > 0).all()
    first = df["genres"].iloc[:n_train].str.split("|").str[0].to_numpy()
    for g in ("Drama", "Comedy", "Action", "Sci-Fi"):  # one id per first genre: Sci-Fi|Drama is Sci-Fi, not Drama
        assert len(set(genre_ids[first == g])) == 1
    assert len(set(genre_ids[~empty])) == 4


def test_columns_read_are_the_sources():
    m = ColumnMapping(**MAPPING)
    assert m.columns() == ["age", "rating", "user_id", "genres"]
    assert m.frame_columns() == ["age", "click", "like", "user_id", "genre"]
    assert m.tasks() == ["click", "like"]


OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False), min_size=1, max_size=50),
    op=st.sampled_from(sorted(OPS)),
    threshold=st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_label_rule_equals_the_comparison(values, op, threshold, spaces):
    rule = LabelRule.parse(f"{spaces}score{spaces}{op}{spaces}{threshold!r}{spaces}", "t")
    assert (rule.column, rule.op) == ("score", op)
    got = rule.apply(pd.Series(values), "t", "data")
    np.testing.assert_array_equal(
        got, OPS[op](np.asarray(values, dtype=np.float64), float(threshold)).astype(np.float32)
    )


@settings(max_examples=60, deadline=None)
@given(
    lists=st.lists(
        st.lists(st.text("abcXY-' ", min_size=1, max_size=6).filter(lambda t: t.strip()), min_size=1, max_size=4),
        min_size=1,
        max_size=30,
    ),
    sep=st.sampled_from(["|", ",", "::"]),
)
def test_first_of_is_the_first_element(lists, sep):
    got = FirstOf(first_of="g", separator=sep).apply(pd.Series([sep.join(x) for x in lists]))
    assert got.tolist() == [x[0].strip() for x in lists]


def test_first_of_missing_or_empty_is_missing():
    got = FirstOf(first_of="g").apply(pd.Series(["a|b", "", None, "|b"], dtype=object))
    assert got.iloc[0] == "a" and got.iloc[1:].isna().all()


def test_a_plain_column_and_a_renamed_column_are_labels_too():
    df = ratings_table(60)
    df["clicked"] = (df["rating"] > 2).astype(int)
    m = dict(MAPPING, labels={"click": "clicked", "like": "rating > 4"})
    s = encode_table(df, ColumnMapping(**m), SplitConfig(kind="sequential"))
    np.testing.assert_array_equal(s.train.labels[:, 0].numpy(), df["clicked"].to_numpy()[: len(s.train)])


@pytest.mark.parametrize("labels, match", [
    ({"click": "rating >> 3"}, r"labels.click: cannot read the rule 'rating >> 3'; write COLUMN OP NUMBER"),
    ({"click": "rating > three"}, r"labels.click: cannot read the rule"),
    ({"click": "> 3"}, r"labels.click: cannot read the rule"),
    ({"click": " "}, r"labels.click: empty"),
    ({"rating": "rating > 3"}, r"labels.rating: the task name is also a column the mapping reads; name the task differently \(e.g. 'rating_label'\)"),
    ({"user_id": "rating > 3"}, r"columns used in two roles"),
])  # fmt: skip
def test_bad_label_rules_are_config_errors_naming_the_task(tmp_path, labels, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("csv", {"path": str(tmp_path / "r.csv"), "columns": dict(MAPPING, labels=labels)})


@pytest.mark.parametrize("derived, match", [
    ({"genre": {"first_of": "genres"}, "g2": {"first_of": "genre"}}, r"derived.g2: its source 'genre' is itself derived"),
    ({"genre": {"first_of": "genres"}, "rating": {"first_of": "genres"}}, r"derived.rating: 'rating' is also read as a raw column"),
    ({"genre": {"first": "genres"}}, r"derived.genre.first_of: required parameter is missing"),
])  # fmt: skip
def test_bad_derived_columns_are_config_errors(tmp_path, derived, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("csv", {"path": str(tmp_path / "r.csv"), "columns": dict(MAPPING, derived=derived)})


def test_a_rule_on_text_or_missing_values_is_a_data_error(tmp_path):
    df = ratings_table(50).astype({"rating": object})
    df.loc[3, "rating"] = "five"
    df.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(
        DataError,
        match=r"column 'rating' must be numeric for the label rule 'click': rating > 3; found \['five'\] in 1 rows",
    ):
        load_dataset("csv", {"path": str(tmp_path / "r.csv"), "columns": MAPPING})
    df.loc[3, "rating"] = None
    df.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"column 'rating' \(label 'click' = rating > 3\) has 1 missing values"):
        load_dataset("csv", {"path": str(tmp_path / "r.csv"), "columns": MAPPING})


def test_a_missing_source_column_is_named(tmp_path):
    ratings_table(50).drop(columns=["genres"]).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"column 'genres' not found; available columns: user_id, rating, age, title"):
        load_dataset("csv", {"path": str(tmp_path / "r.csv"), "columns": MAPPING})


def test_streaming_parquet_equals_in_memory(tmp_path):
    df = ratings_table(400)
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    pq_path = tmp_path / "r.parquet"
    csv_to_parquet(csv, pq_path, ColumnMapping(**MAPPING), row_group_size=64)
    split = {"kind": "sequential"}
    mem = load_dataset("parquet", {"path": str(pq_path), "columns": MAPPING, "split": split})
    stream = load_dataset("parquet", {"path": str(pq_path), "columns": MAPPING, "split": split, "streaming": True})
    assert mem.schema == stream.schema
    got = [b for b in stream.train.batches(1000)]
    assert len(got) == 1
    assert torch.equal(got[0].labels, mem.train.labels) and torch.equal(got[0].sparse, mem.train.sparse)
