"""`mdmt-nas plugins new`: write a ready-to-install plugin package.

    mdmt-nas-my-expert/
      pyproject.toml                entry point `my_expert` in group `mdmt_nas`
      README.md
      mdmt_nas_my_expert/
        __init__.py                 the hooks: register the component and the space
        expert.py                   the component, a documented skeleton that passes the kit
        my_expert.yaml              the search space `my_expert`, which uses it
      tests/test_my_expert.py       the contract kit, one line per component

The skeleton passes `mdmt-nas plugins check my_expert` as written; edit
`forward` and keep the checks green.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mdmt_nas.components import NEURAL_KINDS, base_of
from mdmt_nas.errors import UserError
from mdmt_nas.files import write_text
from mdmt_nas.scaffold.templates import (
    BODIES,
    HEADER,
    HOOKS,
    INIT,
    PYPROJECT,
    README,
    SPACE_BODY,
    SPACE_HEAD,
    SUMMARY,
    TEST,
    USAGE,
)

KINDS = NEURAL_KINDS  # the kinds a plugin can be scaffolded for (the neural kinds of the kinds table)


@dataclass
class Names:
    """Every name derived from the one the user gives."""

    plugin: str  # entry-point / plugin name and component name: my_expert
    dist: str  # distribution: mdmt-nas-my-expert
    package: str  # import package: mdmt_nas_my_expert
    cls: str  # component class: MyExpert
    kind: str

    @classmethod
    def from_name(cls, raw: str, kind: str) -> Names:
        name = raw.strip().lower()
        for prefix in ("mdmt-nas-", "mdmt_nas_"):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if not re.fullmatch(r"[a-z][a-z0-9]*([-_][a-z0-9]+)*", name):
            raise UserError(
                f"plugin name {raw!r} must start with a letter and use lowercase letters, digits, '-' or '_' (e.g. my-expert)"
            )
        if kind not in KINDS:
            raise UserError(f"unknown --kind {kind!r}; choose one of {', '.join(KINDS)}")
        slug = name.replace("-", "_")
        camel = "".join(p.capitalize() for p in slug.split("_"))
        if not camel.lower().endswith(kind):
            camel += kind.capitalize()
        return cls(
            plugin=slug, dist=f"mdmt-nas-{slug.replace('_', '-')}", package=f"mdmt_nas_{slug}", cls=camel, kind=kind
        )


@dataclass
class Scaffold:
    root: Path
    names: Names
    files: list[Path] = field(default_factory=list)

    @property
    def dist(self) -> str:
        return self.names.dist

    def next_steps(self) -> list[str]:
        n = self.names
        return [
            f"pip install -e {self.root}",
            f"mdmt-nas plugins check {n.plugin}",
            f"pytest {self.root / 'tests'}",
            f"mdmt-nas search --space {n.plugin}",
        ]


def space_yaml(n: Names) -> str:
    """A small search space that pits the new component against a built-in in its slot."""
    summary = SUMMARY[n.kind].format(plugin=n.plugin)
    return SPACE_HEAD.format(plugin=n.plugin, summary=summary) + SPACE_BODY[n.kind].format(plugin=n.plugin)


def render(n: Names) -> dict[str, str]:
    """Relative path -> file text of the package."""
    fmt = dict(
        plugin=n.plugin,
        dist=n.dist,
        package=n.package,
        cls=n.cls,
        kind=n.kind,
        hook=HOOKS[n.kind],
        base=base_of(n.kind).__name__,
        title=n.plugin.replace("_", " ").capitalize(),
    )
    fmt["usage"] = USAGE[n.kind].format(**fmt)
    return {
        "pyproject.toml": PYPROJECT.format(**fmt),
        "README.md": README.format(**fmt),
        f"{n.package}/__init__.py": INIT.format(**fmt),
        f"{n.package}/{n.kind}.py": HEADER.format(**fmt) + BODIES[n.kind].format(**fmt),
        f"{n.package}/{n.plugin}.yaml": space_yaml(n),
        f"tests/test_{n.plugin}.py": TEST.format(**fmt),
    }


def create_plugin(name: str, kind: str = "expert", directory: str | Path = ".", force: bool = False) -> Scaffold:
    """Write the package `mdmt-nas-NAME/` under `directory`; refuses to overwrite unless `force`."""
    n = Names.from_name(name, kind)
    root = Path(directory) / n.dist
    files = render(n)
    if root.exists() and not force:
        clash = [p for p in files if (root / p).exists()]
        if clash:
            raise UserError(f"{root} already has {', '.join(clash)}; pass --force to overwrite or choose another --dir")
    out = Scaffold(root, n)
    for rel, text in files.items():
        path = root / rel
        write_text(path, text)
        out.files.append(path)
    return out
