"""DARTS: a space relaxed into a supernet of mixed ops, trained bi-level, then discretised and retrained.

relax.py (relax, discretize, derive) -> mixed_ops.py (the supernet's ops) + alphas.py (their shared
alphas) -> architect.py (the alpha step) -> searcher.py (the search loop, checkpoints, retraining).
"""

from mdmt_nas.search.darts.relax import derive, discretize, relax
from mdmt_nas.search.darts.searcher import DartsParams, DartsSearcher
from mdmt_nas.search.evaluate import local_evaluate

__all__ = ["DartsParams", "DartsSearcher", "derive", "discretize", "local_evaluate", "relax"]
