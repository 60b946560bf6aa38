"""docs/writing-plugins.md stays true: the helpers it lists exist with the parameters it shows, and the
attributes it says each base class sets are set."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[3] / "docs" / "writing-plugins.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^##+ {re.escape(title)}\n(.*?)(?=^##+ |\Z)", DOC, flags=re.S | re.M)
    assert m, f"docs/writing-plugins.md has no section {title!r}"
    return m.group(1)


def _helpers() -> list[tuple[str, list[str]]]:
    """(dotted name, parameter names) of each `module.func(args)` in the Test helpers table."""
    out = []
    for call in re.findall(r"^\| `(mdmt_nas\.[\w.]+\([^`]*\))`", _section("Test helpers"), flags=re.M):
        name, args = call.split("(", 1)
        parts, depth, cur = [], 0, ""
        for ch in args[:-1]:  # split at top-level commas: defaults such as (1, 2, 7) stay whole
            depth += ch in "([{" and 1 or (ch in ")]}" and -1 or 0)
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        out.append((name, [a.split("=")[0].strip().lstrip("*") for a in parts if a.strip()]))
    return out


def test_the_helper_table_lists_the_public_helpers():
    names = [n for n, _ in _helpers()]
    for n in (
        "contract_test",
        "check_component",
        "checks_for",
        "make_context",
        "make_schema",
        "make_batch",
        "build_model",
        "load_space_file",
    ):
        assert any(x.endswith("." + n) for x in names), n
    for fixture in ("mdmt_plugin_host", "check_component", "mdmt_component"):
        assert fixture in _section("Test helpers")


@pytest.mark.parametrize("name,params", _helpers(), ids=lambda v: v if isinstance(v, str) else None)
def test_each_listed_helper_exists_with_those_parameters(name, params):
    module, attr = name.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), attr)
    sig = inspect.signature(fn)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for p in params:
        assert p in sig.parameters or (accepts_kwargs and p == "options"), f"{name} has no parameter {p!r}: {sig}"
    listed = [p for p in params if p != "options"]
    assert listed == [p for p in sig.parameters if p in listed], f"{name}: parameters listed out of order ({sig})"


def test_the_example_plugins_use_only_public_helpers():
    root = Path(__file__).resolve().parents[3] / "plugins"
    for f in root.glob("*/tests/*.py"):
        for line in f.read_text().splitlines():
            if line.startswith("from mdmt_nas"):
                assert not re.search(r"import .*\b_\w", line), f"{f.relative_to(root)} imports a private helper: {line}"


BUILTINS = {
    "expert": "mlp",
    "gate": "softmax",
    "fusion": "sum",
    "adapter": "bottleneck",
    "tower": "mlp_tower",
    "balancer": "uncertainty",
}


@pytest.mark.parametrize("kind", list(BUILTINS))
def test_the_attributes_the_doc_says_the_base_class_sets_are_set(kind):
    from mdmt_nas.components import Dims, build
    from mdmt_nas.plugins import get_registry

    row = re.search(r"^\| the base class sets \| (.*) \|$", _section(kind), flags=re.M)
    assert row, f"section {kind!r} has no 'the base class sets' row"
    attrs = re.findall(r"`self\.(\w+)`", row.group(1))
    assert attrs and "params" in attrs
    cls = get_registry().get(kind, BUILTINS[kind])
    dims = Dims(
        in_dim=8,
        num_fields=5,
        field_dim=4,
        num_domains=3,
        num_tasks=2,
        num_experts=3,
        members=("shared", "task"),
        task_names=("a", "b"),
    )
    obj = build(cls, cls.Params(), dims)
    for a in attrs:
        assert hasattr(obj, a), (
            f"{kind} {BUILTINS[kind]!r} has no attribute {a!r} though the doc says the base class sets it"
        )
