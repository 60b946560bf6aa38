"""mdmt-nas plugin `ppnet`: the `ppnet` expert, the `domain_lora` adapter and the `ppnet` search space."""

from pathlib import Path

from mdmt_nas.plugins import hookimpl
from mdmt_nas_ppnet.components import DomainLoRAAdapter, PPNetExpert

__all__ = ["DomainLoRAAdapter", "PPNetExpert", "SPACE"]

SPACE = Path(__file__).parent / "ppnet.yaml"


@hookimpl
def register_experts(register):
    register(PPNetExpert)


@hookimpl
def register_adapters(register):
    register(DomainLoRAAdapter)


@hookimpl
def register_search_spaces(register):
    register(SPACE)
