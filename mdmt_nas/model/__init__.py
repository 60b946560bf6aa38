"""The model: `build_model(arch, schema)` assembles an nn.Module from registered components (build.py; expert groups in groups.py)."""

from mdmt_nas.model.build import MDMTModel, build_balancer, build_model, check_embedding_size, resolve
from mdmt_nas.model.groups import GroupRunner, Level

__all__ = ["GroupRunner", "Level", "MDMTModel", "build_balancer", "build_model", "check_embedding_size", "resolve"]
