"""DARTS: a space relaxed into a supernet of mixed ops, trained bi-level, then discretised and retrained."""

from mdmt_nas.search.darts.relax import derive
from mdmt_nas.search.darts.searcher import DartsParams, DartsSearcher, local_evaluate

__all__ = ["DartsParams", "DartsSearcher", "derive", "local_evaluate"]
