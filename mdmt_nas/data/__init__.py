"""MDMT data layer: schema, in-memory tensors, batching, built-in datasets."""

from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.data.tensors import MDMTTensors, Splits, iterate_batches

__all__ = ["Schema", "SparseField", "MDMTTensors", "Splits", "iterate_batches"]
