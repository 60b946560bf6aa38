"""Built-in searchers, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from mdmt_nas.plugins import hookimpl
from mdmt_nas.search.nni_search import NNIEvolution, NNIRandom
from mdmt_nas.search.optuna_search import OptunaGrid, OptunaNSGA2, OptunaRandom, OptunaTPE


@hookimpl
def register_searchers(register):
    register(OptunaTPE)
    register(OptunaNSGA2)
    register(OptunaRandom)
    register(OptunaGrid)
    register(NNIRandom)
    register(NNIEvolution)
