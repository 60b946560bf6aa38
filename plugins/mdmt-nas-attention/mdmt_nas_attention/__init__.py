"""mdmt-nas plugin `attention`: the `part_attention` fusion and the `annealed_softmax` gate."""

from mdmt_nas.plugins import hookimpl
from mdmt_nas_attention.components import AnnealedSoftmaxGate, PartAttentionFusion

__all__ = ["AnnealedSoftmaxGate", "PartAttentionFusion"]


@hookimpl
def register_fusions(register):
    register(PartAttentionFusion)


@hookimpl
def register_gates(register):
    register(AnnealedSoftmaxGate)
