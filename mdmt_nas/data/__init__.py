"""MDMT data layer: schema, in-memory tensors, batching, splits, encoding, built-in datasets.

Light to import: the pandas/pyarrow-based parts (`SplitConfig`, `ColumnMapping`,
`encode_table`, `describe_splits`) load on first use.
"""

from mdmt_nas.data.loading import dataset_class, load_dataset, make_dataset
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.data.tensors import MDMTTensors, RowSource, Splits, iterate_batches

_LAZY = {
    "SplitConfig": "mdmt_nas.data.split",
    "ColumnMapping": "mdmt_nas.data.encode",
    "encode_table": "mdmt_nas.data.encode",
    "describe_splits": "mdmt_nas.data.describe",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdmt_nas.data' has no attribute {name!r}")


__all__ = [
    "Schema",
    "SparseField",
    "MDMTTensors",
    "RowSource",
    "Splits",
    "iterate_batches",
    "load_dataset",
    "make_dataset",
    "dataset_class",
    *_LAZY,
]
