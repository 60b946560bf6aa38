"""Datasets by name through the plugin registry; parameter errors name the field."""

from __future__ import annotations

import pytest

from mdmt_nas.data import ColumnMapping, SplitConfig, dataset_class, describe_splits, load_dataset, make_dataset
from mdmt_nas.data.base import Dataset
from mdmt_nas.errors import ConfigError, UnknownComponentError
from mdmt_nas.plugins import PluginHost, get_registry, hookimpl

BUILTIN = ["aliccp", "aliexpress", "csv", "kuairand", "ml-100k", "ml-100k-original", "ml-1m", "parquet", "synthetic"]


def test_builtins_registered_through_the_hook():
    assert get_registry().names("dataset") == BUILTIN
    for name in BUILTIN:
        cls = dataset_class(name)
        assert issubclass(cls, Dataset) and cls.name == name and (cls.__doc__ or "").strip()
        assert get_registry().entry("dataset", name).plugin == "datasets"


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownComponentError, match=r"dataset.name: unknown dataset 'ml100k' \(did you mean 'ml-100k'"):
        load_dataset("ml100k", {})


@pytest.mark.parametrize(
    "params,message",
    [
        ({"n_rows": 5}, r"dataset.params.n_rows: Input should be greater than or equal to 30 \(got 5\)"),
        (
            {"split": {"kind": "weekly"}},
            r"dataset.params.split.kind: Input should be 'random', 'sequential', 'time', 'column', 'hash' or 'grouped'",
        ),
        ({"num_rows": 10}, r"dataset.params.num_rows: unknown parameter \(did you mean 'n_rows'\?\)"),
        ({"positive_rates": [0.3]}, r"dataset.params: positive_rates has 1 values; num_tasks is 2"),
    ],
)
def test_param_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("synthetic", params)


def test_make_dataset_accepts_params_model_and_info():
    cls = dataset_class("synthetic")
    ds = make_dataset("synthetic", cls.Params(n_rows=500))
    assert ds.info == {}
    s = ds.load()
    assert ds.info["rows"] == 500
    stats = describe_splits(s, ds.info)
    assert stats["rows"]["total"] == 500 and len(stats["domains"]) == 3


def test_a_third_party_dataset_through_the_hook():
    class Tiny(Dataset):
        """A two-row-per-domain toy."""

        name = "tiny"

        def load(self):
            import pandas as pd

            from mdmt_nas.data.encode import encode_table

            df = pd.DataFrame({"d": [0, 1] * 20, "y": [0, 0, 1, 1] * 10, "x": range(40)})
            return encode_table(
                df, ColumnMapping(domain="d", labels=["y"], dense=["x"]), SplitConfig(kind="sequential")
            )

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Tiny)

    host = PluginHost().load(use_entry_points=False, extra=[("tiny-plugin", Plugin())])
    assert "tiny" in host.registry.names("dataset")
    cls = host.registry.get("dataset", "tiny")
    assert len(cls().load().train) == 32
