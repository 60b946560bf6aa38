"""Helpers the test folders share: the tiny search space many tests search, and the in-process CLI runner.

`tiny_space_yaml(...)` writes the space as YAML text (one expert choice over MLP
widths times an expert count, an 8-unit MLP tower); its arguments are what the tests
vary. `run_cli(args, capsys)` runs `mdmt-nas ARGS` in this process.
"""

from __future__ import annotations

import json

#: expert options (label -> MLP hidden sizes) unless a test gives others
MLP_HIDDEN = {"mlp-8": [8], "mlp-16": [16]}


def tiny_space_yaml(
    name: str = "tiny",
    description: str = "tiny test space",
    hidden: dict[str, list[int]] | None = None,
    high: int = 2,
    default: tuple[str, int] | None = None,
    known: str = "",
) -> str:
    """A space YAML: `expert` over MLPs of `hidden` (label -> sizes), `num_experts` 1..`high`.

    `default`: (expert label, count) defaults of the two choices; `known`: a `known:` section, verbatim.
    """
    options = "\n".join(
        f"      - {{label: {lab}, value: {{name: mlp, params: {{hidden: {json.dumps(h)}}}}}}}"
        for lab, h in (hidden or MLP_HIDDEN).items()
    )
    expert_default = f"    default: {default[0]}\n" if default else ""
    num_default = f", default: {default[1]}" if default else ""
    return (
        f"name: {name}\n"
        f"description: {description}\n"
        "template:\n"
        "  embedding_dim: 4\n"
        "  shared: {expert: {choice: expert}, num: {choice: num_experts}}\n"
        "  tower: {name: mlp_tower, params: {hidden: [8]}}\n"
        "choices:\n"
        "  expert:\n"
        f"{expert_default}"
        "    options:\n"
        f"{options}\n"
        f"  num_experts: {{type: int, low: 1, high: {high}{num_default}}}\n"
        f"{known}"
    )


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    """`mdmt-nas ARGS` in-process (arguments as str): (exit status, stdout, stderr)."""
    from mdmt_nas.cli.app import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
