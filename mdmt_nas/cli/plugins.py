"""`mdmt-nas plugins`: list plugins and their components, check a plugin, scaffold a new one.

mdmt-nas plugins [--json] [--strict]     every plugin (built-ins too) and every load failure
mdmt-nas plugins list ['*topk*'] [--kind gate] [--json]   the components whose name (or deprecated name) matches
mdmt-nas plugins show NAME [--json]      one component: kind, docstring, plugin, parameters (or their JSON schema)
mdmt-nas plugins check NAME              run the contract kit on each component of a plugin
mdmt-nas plugins new NAME --kind expert  write a ready-to-install plugin package
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mdmt_nas.cli.component_info import KIND_ATTRIBUTES, component_schema, param_rows, qualname
from mdmt_nas.cli.console import make_console
from mdmt_nas.errors import UserError, closest

plugins_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="List installed plugins and their components; check or scaffold a plugin.",
)
console = make_console()
err = make_console(stderr=True)


def _host():
    from mdmt_nas.plugins import get_host

    return get_host()


def _print_failures(host, verbose: bool = False) -> None:
    for f in host.failures:
        err.print(f"[red]{escape(str(f))}[/red]", highlight=False, soft_wrap=True)
        if verbose and f.detail:
            err.print(escape(f.detail), style="dim", highlight=False)
    for w in getattr(host, "warnings", []):
        err.print(f"[yellow]warning: {escape(w)}[/yellow]", highlight=False, soft_wrap=True)


@plugins_app.callback()
def plugins(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: plugins (name, distribution, version, hooks, components) and failures."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 if any plugin failed to load."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the traceback of each failure."),
) -> None:
    """List every plugin: name, distribution, version, hooks and components by kind, then load failures."""
    if ctx.invoked_subcommand is not None:
        return
    host = _host()
    if as_json:
        data = {
            "plugins": [p.as_dict() for p in host.plugins],
            "failures": [f.as_dict() for f in host.failures],
            "warnings": list(getattr(host, "warnings", [])),
        }
        print(json.dumps(data, indent=2))
    else:
        table = Table(title="mdmt-nas plugins", show_lines=True)
        for col in ("plugin", "distribution", "version", "hooks", "components"):
            table.add_column(col, overflow="fold")
        for p in host.plugins:
            by_kind: dict[str, list[str]] = {}
            for kind, name in p.components:
                by_kind.setdefault(kind, []).append(name)
            comps = "\n".join(f"[bold]{k}[/bold]: {escape(', '.join(v))}" for k, v in by_kind.items()) or "-"
            hooks = "\n".join(p.hooks) or "-"
            table.add_row(
                escape(p.name) + (" [dim](built-in)[/dim]" if p.builtin else ""),
                escape(p.dist),
                escape(p.version),
                hooks,
                comps,
            )
        console.print(table)
        n_comp = sum(len(p.components) for p in host.plugins)
        console.print(
            f"{len(host.plugins)} plugin(s), {n_comp} component(s), {len(host.failures)} failure(s)", highlight=False
        )
    _print_failures(host, verbose)
    if strict and host.failures:
        raise SystemExit(1)  # not typer.Exit: main() runs click with standalone_mode=False, which returns its code


@plugins_app.command("list")
def list_cmd(
    patterns: list[str] = typer.Argument(
        None,
        help="Shell-style name patterns, e.g. '*topk*' (quote them); several: any matches. Default: every component.",
    ),
    kind: str = typer.Option(None, "--kind", "-k", help="Only this kind (expert, gate, fusion, adapter, tower, ...)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: kind, name, plugin, distribution, version, summary, deprecated names."
    ),
) -> None:
    """List the components whose name or deprecated name matches a pattern (case-insensitive), with their plugins."""
    _check_kind_option(kind)
    registry = _host().registry
    old_names: dict[tuple[str, str], list[str]] = {}
    for a in registry.aliases(kind):
        old_names.setdefault((a.kind, a.new), []).append(a.old)
    from mdmt_nas.plugins.registry import matches

    rows = [
        e
        for e in registry.entries(kind)
        if matches(e.name, patterns or None)
        or any(matches(o, patterns or None) for o in old_names.get((e.kind, e.name), []))
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "components": [
                        {**e.as_dict(), "deprecated_names": old_names.get((e.kind, e.name), [])} for e in rows
                    ]
                },
                indent=2,
            )
        )
        return
    if not rows:
        what = f"{kind} " if kind else ""
        hint = (
            "; patterns are shell-style: '*' matches anything, e.g. '*topk*'"
            if not any(set("*?[") & set(p) for p in patterns or [])
            else ""
        )
        raise UserError(
            f"no {what}component matches {' or '.join(map(repr, patterns or []))}{hint} (`mdmt-nas plugins list` lists them all)"
        )
    table = Table(title="mdmt-nas components" + (f" matching {' or '.join(patterns)}" if patterns else ""))
    for col in ("kind", "name", "plugin", "distribution", "summary"):
        table.add_column(col, overflow="fold")
    for e in rows:
        olds = old_names.get((e.kind, e.name), [])
        name = escape(e.name) + (f" [dim](was {escape(', '.join(olds))})[/dim]" if olds else "")
        table.add_row(e.kind, name, escape(e.plugin), escape(f"{e.dist} {e.version}"), escape(e.as_dict()["summary"]))
    console.print(table)
    console.print(f"{len(rows)} component(s)", highlight=False)


def find_plugin(host, name: str):
    """A loaded plugin by plugin (entry-point) name or distribution name."""
    norm = name.lower().replace("_", "-")
    for p in host.plugins:
        if p.name == name or p.dist.lower().replace("_", "-") == norm:
            return p
    return None


# ------------------------------------------------------------------------------ show
def _check_kind_option(kind: str | None) -> None:
    from mdmt_nas.plugins.registry import KINDS

    if kind is not None and kind not in KINDS:
        near = closest(kind, KINDS)
        raise UserError(
            f"--kind {kind!r}: unknown kind"
            + (f" (did you mean {near[0]!r}?)" if near else f"; kinds: {', '.join(KINDS)}")
        )


def _find(host, name: str, kind: str | None):
    _check_kind_option(kind)
    found = [e for e in host.registry.entries(kind) if e.name == name]
    renamed = [a for a in host.registry.aliases(kind) if a.old == name]
    if not found and renamed:
        for a in renamed:
            err.print(f"[yellow]{escape(a.message())}[/yellow]", highlight=False, soft_wrap=True)
        found = [e for a in renamed for e in host.registry.entries(a.kind) if e.name == a.new]
    if not found:
        known = sorted({e.name for e in host.registry.entries(kind)})
        near = closest(name, known)
        hint = f"did you mean {', '.join(map(repr, near))}?" if near else "`mdmt-nas plugins` lists every component"
        raise UserError(f"no {kind or 'component'} named {name!r} is registered ({hint})")
    return found


def _show_one(host, entry) -> None:
    import inspect

    obj = entry.obj
    builtin = any(p.builtin and p.name == entry.plugin for p in host.plugins)
    console.print(
        f"[bold]{entry.kind} {escape(entry.name)}[/bold]  plugin {escape(entry.plugin)}, distribution "
        f"{escape(entry.dist)} {escape(entry.version)}" + (" (built-in)" if builtin else ""),
        highlight=False,
    )
    if entry.kind == "space":
        where = getattr(obj, "source", "") or (str(obj) if not hasattr(obj, "choices") else "")
        console.print(escape(f"file {where}" if where else "a search space object"), highlight=False)
        try:
            from mdmt_nas.spaces import load_space_file

            space = obj if hasattr(obj, "choices") else load_space_file(Path(str(obj)), registry=host.registry)
            console.print(
                escape(
                    f"{space.description or '(no description)'} ({space.size()} architectures, "
                    f"{len(space.choices)} choices)"
                ),
                highlight=False,
            )
        except Exception as exc:  # noqa: BLE001 - a broken space file: say so, `plugins check` has the details
            console.print(f"[red]the space does not load: {escape(str(exc).splitlines()[0])}[/red]", highlight=False)
        console.print(f"its choices: mdmt-nas spaces show {escape(entry.name)}", highlight=False)
        return
    console.print(f"class {escape(qualname(obj))}", highlight=False)
    console.print(escape(inspect.getdoc(obj) or "(no docstring)"), highlight=False)
    attrs = [(a, getattr(obj, a)) for a in KIND_ATTRIBUTES.get(entry.kind, ()) if hasattr(obj, a)]
    if attrs:
        console.print("attributes: " + ", ".join(f"{a} = {v!r}" for a, v in attrs), highlight=False)
    rows = param_rows(getattr(obj, "Params", None))
    if not rows:
        console.print("parameters: none", highlight=False)
        return
    table = Table(title=f"parameters of {entry.kind} {escape(entry.name)}", title_justify="left")
    for col in ("name", "type", "default", "bounds", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(escape(r[c]) for c in ("name", "type", "default", "bounds", "description")))
    console.print(table)
    example = {
        "name": entry.name,
        "params": {r["name"]: json.loads(r["default"]) for r in rows[:2] if r["default"] != "(required)"},
    }
    if entry.kind in ("expert", "gate", "fusion", "adapter", "tower", "balancer"):
        console.print(
            escape(f"in an arch file: {json.dumps(example)} (unset params take their defaults)"),
            highlight=False,
            soft_wrap=True,
        )


@plugins_app.command("show")
def show(
    name: str = typer.Argument(
        ..., help="Component name, as `mdmt-nas plugins` lists it (e.g. mlp, softmax, noisy_topk)."
    ),
    kind: str = typer.Option(
        None, "--kind", "-k", help="Only this kind (when a name is registered for several kinds)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the JSON schema (draft 2020-12) of the component's params."
    ),
) -> None:
    """Show one component: kind, docstring, plugin, distribution and version, and its parameter table."""
    host = _host()
    found = _find(host, name, kind)
    if as_json:
        if len(found) > 1:
            raise UserError(
                f"{name!r} is registered as {' and as '.join(e.kind for e in found)}; pass --kind to pick one"
            )
        if found[0].kind == "space":
            raise UserError(f"space {name!r} has no parameters, only choices: `mdmt-nas spaces show {name}`")
        print(json.dumps(component_schema(found[0]), indent=2, default=str))
        return
    for i, entry in enumerate(found):
        if i:
            console.print()
        _show_one(host, entry)


@plugins_app.command("check")
def check(
    name: str = typer.Argument(
        ..., help="Plugin (entry-point) name or distribution name, as `mdmt-nas plugins` shows."
    ),
    component: list[str] = typer.Option(None, "--component", "-c", help="Check only this component name (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Run the contract kit on every component of an installed plugin; exit 1 if a check fails."""
    from mdmt_nas.testing import KINDS as CHECKED_KINDS
    from mdmt_nas.testing import check_component

    host = _host()
    plugin = find_plugin(host, name)
    if plugin is None:
        failed = [
            f
            for f in host.failures
            if f.plugin == name or f.dist.lower().replace("_", "-") == name.lower().replace("_", "-")
        ]
        if failed:
            for f in failed:
                err.print(f"[red]{escape(str(f))}[/red]", highlight=False, soft_wrap=True)
            raise SystemExit(1)  # not typer.Exit: main() runs click with standalone_mode=False, which returns its code
        known = [p.name for p in host.plugins] + [p.dist for p in host.plugins]
        near = closest(name, known)
        hint = f"did you mean {', '.join(repr(n) for n in near)}?" if near else "`mdmt-nas plugins` lists them"
        raise UserError(f"no plugin named {name!r} is loaded ({hint})")
    targets = [(k, n) for k, n in plugin.components if not component or n in component]
    if component and not targets:
        raise UserError(
            f"plugin {plugin.name!r} has no component {', '.join(map(repr, component))}; it has {', '.join(n for _, n in plugin.components)}"
        )
    reports, ok = [], True
    for kind, cname in targets:
        if kind not in CHECKED_KINDS:
            if kind == "space":
                res = _check_space(host, cname)
                reports.append(res)
                ok &= res["ok"]
                if not as_json:
                    _print_simple(res)
            elif not as_json:
                console.print(f"[dim]{kind} {cname!r}: no contract checks for {kind}s[/dim]", highlight=False)
            continue
        cls = host.registry.get(kind, cname)
        if not as_json:
            with console.status(f"checking {kind} {cname!r}..."):
                report = check_component(cls, kind, registry=host.registry, raise_on_fail=False)
        else:
            report = check_component(cls, kind, registry=host.registry, raise_on_fail=False)
        reports.append(report.as_dict())
        ok &= report.ok
        if not as_json:
            _print_report(report)
    if as_json:
        print(
            json.dumps({"plugin": plugin.name, "distribution": plugin.dist, "ok": ok, "components": reports}, indent=2)
        )
    else:
        verdict = "[green]all checks passed[/green]" if ok else "[red]some checks failed[/red]"
        console.print(
            f"plugin {escape(plugin.name)} ({escape(plugin.dist)} {escape(plugin.version)}): {verdict}", highlight=False
        )
    if not ok:
        raise SystemExit(1)  # not typer.Exit: main() runs click with standalone_mode=False, which returns its code


def _print_report(report) -> None:
    style = {"pass": "green", "fail": "red", "skip": "yellow"}
    console.print(f"[bold]{escape(report.component)}[/bold]", highlight=False, soft_wrap=True)
    for r in report.results:
        msg = f": {escape(r.message)}" if r.message else ""
        console.print(
            f"  [{style[r.status]}]{r.status.upper():4}[/{style[r.status]}] {r.check} [dim]{r.seconds:.2f}s[/dim]{msg}",
            highlight=False,
            soft_wrap=True,
        )


def _check_space(host, name: str) -> dict:
    """A contributed search space must load, name only registered components, and build its default point."""
    from pathlib import Path as _Path

    from mdmt_nas.spaces import Space, check_components, load_space_file

    obj = host.registry.get("space", name)
    head = {"component": f"space {name!r}", "kind": "space", "name": name}
    try:
        if isinstance(obj, Space):
            check_components(obj, host.registry)
            space = obj
        else:
            space = load_space_file(_Path(str(obj)), registry=host.registry)
        from mdmt_nas.model import build_model
        from mdmt_nas.testing import make_schema

        build_model(space.to_arch(space.default_assignment()), make_schema(), host.registry)
    except Exception as exc:  # a broken space file is the plugin's fault
        return {
            **head,
            "ok": False,
            "checks": [{"check": "loads", "status": "fail", "message": f"{type(exc).__name__}: {exc}"}],
        }
    return {
        **head,
        "ok": True,
        "checks": [{"check": "loads", "status": "pass", "message": f"{space.size()} architectures"}],
    }


def _print_simple(res: dict) -> None:
    style = {"pass": "green", "fail": "red", "skip": "yellow"}
    console.print(f"[bold]{escape(res['component'])}[/bold]", highlight=False)
    for c in res["checks"]:
        msg = f": {escape(c['message'])}" if c["message"] else ""
        console.print(
            f"  [{style[c['status']]}]{c['status'].upper():4}[/{style[c['status']]}] {c['check']}{msg}",
            highlight=False,
            soft_wrap=True,
        )


@plugins_app.command("new")
def new(
    name: str = typer.Argument(
        ..., help="Plugin name, e.g. my-expert: distribution mdmt-nas-my-expert, component my_expert."
    ),
    kind: str = typer.Option(
        "expert", "--kind", "-k", help="Component kind: expert, gate, fusion, adapter, tower or balancer."
    ),
    directory: Path = typer.Option(Path("."), "--dir", "-d", help="Where to create the package folder."),
    force: bool = typer.Option(False, "--force", help="Overwrite files in an existing folder."),
) -> None:
    """Write a ready-to-install plugin package: pyproject, component skeleton, test, README, search space."""
    from mdmt_nas.scaffold import create_plugin

    result = create_plugin(name, kind, directory, force=force)
    console.print(f"created plugin [bold]{escape(result.dist)}[/bold] in {escape(str(result.root))}:", highlight=False)
    for f in result.files:
        console.print(f"  {escape(str(f.relative_to(result.root)))}", highlight=False)
    console.print("next steps:", highlight=False)
    for step in result.next_steps():
        console.print(f"  {escape(step)}", highlight=False)
