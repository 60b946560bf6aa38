"""`mdmt-nas plugins new`: a ready-to-install plugin package (create.py) from file templates (templates.py)."""

from mdmt_nas.scaffold.create import KINDS, Names, Scaffold, create_plugin, render, space_yaml

__all__ = ["KINDS", "Names", "Scaffold", "create_plugin", "render", "space_yaml"]
