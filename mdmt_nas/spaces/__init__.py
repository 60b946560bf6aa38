"""Search spaces: the Space and its assignments (space.py), reading space files (parse.py), checking their components (check.py)."""

from mdmt_nas.spaces.check import check_components
from mdmt_nas.spaces.parse import list_spaces, load_space, load_space_file, parse_space
from mdmt_nas.spaces.space import (
    CHOICE_KEY,
    GROUPS,
    MERGE_KEY,
    OMIT,
    TOP_KINDS,
    ChoicePoint,
    KnownPoint,
    Space,
    auto_labels,
    is_placeholder,
)

__all__ = [
    "CHOICE_KEY",
    "GROUPS",
    "MERGE_KEY",
    "OMIT",
    "TOP_KINDS",
    "ChoicePoint",
    "KnownPoint",
    "Space",
    "auto_labels",
    "check_components",
    "is_placeholder",
    "list_spaces",
    "load_space",
    "load_space_file",
    "parse_space",
]
