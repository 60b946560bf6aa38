"""`mdmt-nas spaces`: list search spaces, show one as a tree of choices.

mdmt-nas spaces [list] [--json]      every registered space: name, plugin, size, description
mdmt-nas spaces show NAME|FILE       the choice tree (conditional choices nested) and the size
mdmt-nas spaces show m3oe --sample 3 --seed 0    also print a few sampled architectures
"""

from __future__ import annotations

import json
import random

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from mdmt_nas.cli.console import make_console

spaces_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False, help="List search spaces; show one as a tree of choices."
)
console = make_console()
err = make_console(stderr=True)


def _list(as_json: bool) -> None:
    from mdmt_nas.spaces import list_spaces

    errors: list = []
    rows = list_spaces(errors)
    if as_json:
        data = {
            "spaces": [
                {
                    "name": n,
                    "plugin": p,
                    "size": s.size(),
                    "choices": len(s.choices),
                    "description": s.description,
                    "source": s.source,
                }
                for n, p, s in rows
            ],
            "errors": [{"name": n, "plugin": p, "error": str(e)} for n, p, e in errors],
        }
        print(json.dumps(data, indent=2))
    else:
        table = Table(title="search spaces")
        for col in ("space", "plugin", "architectures", "choices", "description"):
            table.add_column(col, justify="right" if col in ("architectures", "choices") else "left", overflow="fold")
        for n, p, s in rows:
            table.add_row(escape(n), escape(p), f"{s.size():,}", str(len(s.choices)), escape(s.description))
        console.print(table)
    for n, p, e in errors:
        err.print(
            f"[red]space {escape(n)!s} (plugin {escape(p)}) does not load: {escape(str(e))}[/red]",
            highlight=False,
            soft_wrap=True,
        )
    if errors:
        raise SystemExit(1)  # not typer.Exit: main() runs click with standalone_mode=False


@spaces_app.callback()
def spaces(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON: name, plugin, size, choices, description."),
) -> None:
    """List every registered search space with its plugin and number of architectures."""
    if ctx.invoked_subcommand is None:
        _list(as_json)


@spaces_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every registered search space (the same as `mdmt-nas spaces`)."""
    _list(as_json)


def _option_text(value) -> str:
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= 90 else text[:87] + "..."


def choice_tree(space) -> Tree:
    """A rich Tree: each choice with its options; conditional choices under the option that enables them."""
    tree = Tree(f"[bold]{escape(space.name)}[/bold]: {space.size():,} architectures, {len(space.choices)} choices")

    def add(node: Tree, parent: str | None, value) -> None:
        for c in space.children(parent):
            if parent is not None and c.parent_value != value:
                continue
            default = c.default_value()
            head = f"[bold cyan]{escape(c.name)}[/bold cyan] [dim]({c.type}"
            if c.type == "int":
                head += f" {c.low}..{c.high}" + (f" step {c.step}" if c.step != 1 else "")
            head += f", default {escape(str(default).lower() if isinstance(default, bool) else str(default))})[/dim]"
            if c.description:
                head += f" {escape(c.description)}"
            branch = node.add(head)
            if c.type == "categorical":
                for lab, opt in zip(c.labels(), c.options or []):
                    sub = branch.add(f"[green]{escape(lab)}[/green] [dim]{escape(_option_text(opt))}[/dim]")
                    add(sub, c.name, lab)
            elif c.type == "bool":
                for v in (True, False):
                    if space.children(c.name) and any(ch.parent_value == v for ch in space.children(c.name)):
                        add(branch.add(f"[green]{'on' if v else 'off'}[/green]"), c.name, v)
            else:
                for v in c.values():
                    if any(ch.parent_value == v for ch in space.children(c.name)):
                        add(branch.add(f"[green]{v}[/green]"), c.name, v)

    add(tree, None, None)
    return tree


@spaces_app.command("show")
def show(
    name: str = typer.Argument(..., help="A registered space name or a space YAML file."),
    sample: int = typer.Option(0, "--sample", "-n", min=0, help="Also print this many sampled architectures."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the choices as JSON (name, type, labels, parent, default)."
    ),
) -> None:
    """Print a space's choice tree (conditional choices nested under their option) and its size."""
    from mdmt_nas.spaces import load_space

    space = load_space(name)
    if as_json:
        print(
            json.dumps(
                {
                    "name": space.name,
                    "description": space.description,
                    "size": space.size(),
                    "source": space.source,
                    "choices": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "labels": c.labels(),
                            "parent": c.parent,
                            "parent_value": c.parent_value if c.parent else None,
                            "default": c.default_value(),
                            "description": c.description,
                        }
                        for c in space.choices
                    ],
                    "default_assignment": space.default_assignment(),
                },
                indent=2,
                default=str,
            )
        )
        return
    if space.description:
        console.print(escape(space.description), highlight=False)
    console.print(choice_tree(space))
    console.print(f"{space.size():,} distinct architectures ({space.source or 'in memory'})", highlight=False)
    rng = random.Random(seed)
    for i in range(sample):
        assignment, arch = space.sample(rng)
        console.print(
            f"\n[bold]sample {i}[/bold] {escape(json.dumps(assignment, default=str))}", highlight=False, soft_wrap=True
        )
        console.print(escape(arch.summary()), highlight=False)
