"""mdmt-nas plugin `autoint`: the `autoint` and `fibinet` field-interaction experts."""

from mdmt_nas.plugins import hookimpl
from mdmt_nas_autoint.experts import AutoIntExpert, FiBiNetExpert

__all__ = ["AutoIntExpert", "FiBiNetExpert"]


@hookimpl
def register_experts(register):
    register(AutoIntExpert)
    register(FiBiNetExpert)
