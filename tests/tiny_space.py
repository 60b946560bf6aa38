"""The tiny search space many tests search: one expert choice (MLP widths) times an expert count, 4-node MLP tower.

`tiny_space_yaml(...)` writes it as YAML text; its arguments are what the tests vary.
"""

from __future__ import annotations

import json

#: expert options (label -> MLP hidden sizes) unless a test gives others
MLP_HIDDEN = {"mlp-8": [8], "mlp-16": [16]}


def tiny_space_yaml(name: str = "tiny", description: str = "tiny test space", hidden: dict[str, list[int]] | None = None,
                    high: int = 2, default: tuple[str, int] | None = None, known: str = "") -> str:
    """A space YAML: `expert` over MLPs of `hidden` (label -> sizes), `num_experts` 1..`high`.

    `default`: (expert label, count) defaults of the two choices; `known`: a `known:` section, verbatim.
    """
    options = "\n".join(f"      - {{label: {lab}, value: {{name: mlp, params: {{hidden: {json.dumps(h)}}}}}}}"
                        for lab, h in (hidden or MLP_HIDDEN).items())
    expert_default = f"    default: {default[0]}\n" if default else ""
    num_default = f", default: {default[1]}" if default else ""
    return (f"name: {name}\n"
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
            f"{known}")
