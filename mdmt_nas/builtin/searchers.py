"""Built-in searchers, registered through the same hook a third-party plugin uses.

Also registers the DARTS supernet's mixed operations (`darts.mixed_*`): ordinary
components, so a supernet architecture is plain data that `build_model` builds.
"""

from __future__ import annotations

from mdmt_nas.plugins import hookimpl
from mdmt_nas.search.darts import DartsSearcher
from mdmt_nas.search.nni import NNIEvolution, NNIRandom
from mdmt_nas.search.optuna import OptunaGrid, OptunaNSGA2, OptunaRandom, OptunaTPE


@hookimpl
def register_searchers(register):
    register(DartsSearcher)
    register(OptunaTPE)
    register(OptunaNSGA2)
    register(OptunaRandom)
    register(OptunaGrid)
    register(NNIRandom)
    register(NNIEvolution)


# ---- DARTS mixed operations (search/darts/relax.py)
@hookimpl
def register_experts(register):
    from mdmt_nas.search.darts.mixed_ops import MixedExpert

    register(MixedExpert)


@hookimpl
def register_gates(register):
    from mdmt_nas.search.darts.mixed_ops import MixedGate

    register(MixedGate)


@hookimpl
def register_fusions(register):
    from mdmt_nas.search.darts.mixed_ops import MixedFusion, MixedGroupFusion

    register(MixedFusion)
    register(MixedGroupFusion)


@hookimpl
def register_adapters(register):
    from mdmt_nas.search.darts.mixed_ops import MixedAdapter, MixedInputAdapter

    register(MixedAdapter)
    register(MixedInputAdapter)


@hookimpl
def register_towers(register):
    from mdmt_nas.search.darts.mixed_ops import MixedTower

    register(MixedTower)
