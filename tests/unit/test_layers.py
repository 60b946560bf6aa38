"""The import layers of docs/concepts.md hold: no module imports from a higher layer, and no import circle.

Imports are read from the source (module level and inside functions; `if TYPE_CHECKING:`
blocks excepted, they never run), so a circle hidden in a function counts too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mdmt_nas"
DOC = ROOT / "docs" / "concepts.md"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The mdmt_nas modules `name` imports."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def known(target: str) -> str | None:
        while target and target not in modules:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target or None

    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if target == "mdmt_nas" or target.startswith("mdmt_nas."):
                resolved = known(target)
                if resolved and resolved != name:
                    found.add(resolved)
    return found


def _layers() -> list[tuple[int, str]]:
    """(layer, module prefix) rows of the layer table in docs/concepts.md."""
    text = DOC.read_text()
    section = text[text.index("## Layers") :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            rows += [(int(m.group(1)), mod) for mod in re.findall(r"`([\w.]+)`", m.group(2))]
    assert rows, "docs/concepts.md has no layer table under '## Layers'"
    return rows


def _layer_of(module: str, rows: list[tuple[int, str]]) -> int | None:
    best = None
    for layer, prefix in rows:
        full = "mdmt_nas" if prefix == "mdmt_nas" else f"mdmt_nas.{prefix}"
        if (module == full or module.startswith(full + ".")) and (best is None or len(full) > len(best[1])):
            best = (layer, full)
    return best[0] if best else None


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    modules, rows = _modules(), _layers()
    missing = [m for m in modules if _layer_of(m, rows) is None]
    assert not missing, f"modules in no layer of docs/concepts.md: {missing}"
    upward = []
    for name, path in modules.items():
        mine = _layer_of(name, rows)
        for target in sorted(_imports(name, path, modules)):
            theirs = _layer_of(target, rows)
            if theirs is not None and mine is not None and theirs > mine:
                upward.append(f"{name} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_modules_are_small_and_say_what_they_are():
    """Every module under 500 lines, its docstring's first line alone says its concept, no function over 80 lines
    unless a comment right above it says why."""
    problems = []
    for name, path in _modules().items():
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) >= 500:
            problems.append(f"{name}: {len(lines)} lines")
        tree = ast.parse(text)
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        if not doc or (len(doc) > 1 and doc[1].strip()):
            problems.append(f"{name}: the docstring does not open with one line saying what the module is")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - node.lineno + 1 > 80 and not lines[first - 2].lstrip().startswith("#"):
                    problems.append(
                        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines and no reason beside it"
                    )
    assert not problems, "\n".join(problems)
