"""MDMT data layer: schema, in-memory tensors, batching, splits, encoding, built-in datasets."""

from mdmt_nas.data.loading import dataset_class, load_dataset, make_dataset
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.data.tensors import MDMTTensors, RowSource, Splits, iterate_batches

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
]
