"""The files a scaffolded plugin starts from: pyproject, hooks module, a component skeleton per kind, test, README, space."""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A {kind} for mdmt-nas: {plugin}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["mdmt-nas>=0.1"]

[project.optional-dependencies]
# the contract kit runs under pytest; mdmt-nas[plugin-dev] brings pytest and hypothesis
test = ["mdmt-nas[plugin-dev]>=0.1"]

# mdmt-nas finds plugins through this entry-point group; the name on the left is the
# plugin name (`mdmt-nas plugins`, `plugins check`, MDMT_NAS_DISABLE_PLUGINS).
[project.entry-points.mdmt_nas]
{plugin} = "{package}"

[tool.setuptools]
packages = ["{package}"]

[tool.setuptools.package-data]
{package} = ["*.yaml"]
"""

INIT = '''\
"""mdmt-nas plugin `{plugin}`: registers the {kind} `{plugin}` and the search space `{plugin}`.

mdmt-nas imports this module through the entry point in pyproject.toml and calls
the hooks below (see docs/hooks.md of mdmt-nas for every hook).
"""

from pathlib import Path

from mdmt_nas import hookimpl

from {package}.{kind} import {cls}

__all__ = ["{cls}"]


@hookimpl
def register_{hook}(register):
    register({cls})


@hookimpl
def register_search_spaces(register):
    register(Path(__file__).parent / "{plugin}.yaml")
'''

HEADER = '''\
"""The `{plugin}` {kind}. Replace the body of `forward` with your idea; keep the shapes.

`mdmt-nas plugins check {plugin}` (or the test in tests/) runs the contract kit:
output shapes for batch sizes 1..7, gradients to every parameter, determinism
under a seed, a batch in which a domain has no rows, a model built around it, a
DARTS mixed op, and `torch.jit.trace` (while `torchscript = True`).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import {base}, Context, Dims
'''

BODIES = {
    "expert": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default; spaces and arch files set them by name."""

    model_config = ConfigDict(extra="forbid")  # a typo in a space or arch file is an error, not ignored
    hidden: int = Field(default=64, ge=1, description="hidden layer size")
    out_dim: int = Field(default=64, ge=1, description="output size; experts mixed by one gate need equal sizes")
    dropout: float = Field(default=0.0, ge=0, lt=1)


class {cls}(Expert):
    """{title} expert: a residual two-layer perceptron (replace with your own)."""

    name = "{plugin}"  # the name in arch files and search spaces
    Params = {cls}Params
    torchscript = True  # forward has no Python control flow on tensor values

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)
        # dims.in_dim: size of x; ctx.fields is [B, dims.num_fields, dims.field_dim]; rows belong to dims.num_domains domains
        self.inp = nn.Linear(dims.in_dim, params.out_dim)
        self.ffn = nn.Sequential(nn.Linear(params.out_dim, params.hidden), nn.GELU(), nn.Dropout(params.dropout), nn.Linear(params.hidden, params.out_dim))
        self.norm = nn.LayerNorm(params.out_dim)

    @classmethod
    def output_dim(cls, params: {cls}Params, dims: Dims) -> int:
        """The output size, known before construction (the model wires layers with it)."""
        return params.out_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """x [B, in_dim] -> [B, out_dim]. ctx.domain [B], ctx.fields [B, F, E], ctx.aux for extra losses."""
        h = self.inp(x)
        return self.norm(h + self.ffn(h))
''',
    "gate": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=1.0, gt=0, description="softmax temperature")


class {cls}(Gate):
    """{title} gate: a softmax over the candidates per task head (replace with your own)."""

    name = "{plugin}"
    Params = {cls}Params
    torchscript = True
    per_head_input = False  # True if forward also accepts per-head inputs h [B, T, in_dim]

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)
        heads = self.num_tasks * (self.num_domains if self.per_domain else 1)
        self.proj = nn.Linear(self.in_dim, heads * self.num_experts)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """h [B, in_dim] -> mixture weights [B, T, N]; per_domain: each row uses its domain's heads."""
        T, N = self.num_tasks, self.num_experts
        logits = self.proj(h)
        if self.per_domain:
            logits = logits.view(-1, self.num_domains, T, N)
            logits = logits.gather(1, ctx.domain.view(-1, 1, 1, 1).expand(-1, 1, T, N)).squeeze(1)
        return torch.softmax(logits.view(-1, T, N) / self.params.temperature, dim=-1)
''',
    "fusion": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default."""

    model_config = ConfigDict(extra="forbid")
    init: float = Field(default=0.0, description="initial logit of every part")


class {cls}(Fusion):
    """{title} fusion (level 2): a learned softmax per task over the parts (replace with your own)."""

    name = "{plugin}"
    Params = {cls}Params
    level = 2  # 2: fuse the parts "shared"/"domain"/"task"; 1: fuse the members of a group
    torchscript = True

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)  # self.members: the part names (level 2) or the member count (level 1)
        self.logits = nn.Parameter(torch.full((self.num_tasks, len(self.members)), float(params.init)))

    def forward(self, parts: dict[str, torch.Tensor], ctx: Context) -> torch.Tensor:
        """parts: name -> [B, T, H] (any subset of shared, domain, task) -> [B, T, H]."""
        stacked = torch.stack([parts[m] for m in self.members], dim=2)  # [B, T, P, H]
        w = torch.softmax(self.logits, dim=-1)  # [T, P]
        return torch.einsum("btph,tp->bth", stacked, w)
''',
    "adapter": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default."""

    model_config = ConfigDict(extra="forbid")
    bottleneck: int = Field(default=16, ge=1)


class {cls}(Adapter):
    """{title} adapter: a per-domain scale on a residual bottleneck (replace with your own)."""

    name = "{plugin}"
    Params = {cls}Params
    site = "hidden"  # "hidden": h [B, dim]; "fields": per-field embeddings [B, F, E]
    torchscript = True

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)
        self.down = nn.Linear(self.dim, params.bottleneck)
        self.up = nn.Linear(params.bottleneck, self.dim)
        self.scale = nn.Parameter(torch.full((self.num_domains, 1), 0.1))

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """h [B, dim] -> [B, dim]; ctx.domain [B] picks each row's scale."""
        return h + self.scale[ctx.domain] * self.up(torch.relu(self.down(h)))
''',
    "tower": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default."""

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(default=32, ge=1)


class {cls}(Tower):
    """{title} tower: one small MLP per task head (replace with your own)."""

    name = "{plugin}"
    Params = {cls}Params
    torchscript = True

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)
        heads = self.num_tasks * (self.num_domains if self.per_domain else 1)
        self.w1 = nn.Parameter(torch.randn(heads, self.in_dim, params.hidden) / self.in_dim**0.5)
        self.b1 = nn.Parameter(torch.zeros(heads, params.hidden))
        self.w2 = nn.Parameter(torch.randn(heads, params.hidden) / params.hidden**0.5)
        self.b2 = nn.Parameter(torch.zeros(heads))

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """h [B, T, in_dim] -> logits [B, T]; per_domain: each row uses its domain's heads."""
        T = self.num_tasks
        idx = torch.arange(T, device=h.device).unsqueeze(0)  # [1, T]
        if self.per_domain:
            idx = ctx.domain.unsqueeze(1) * T + idx  # [B, T]
        else:
            idx = idx.expand(h.shape[0], -1)
        z = torch.relu(torch.einsum("bti,btio->bto", h, self.w1[idx]) + self.b1[idx])
        return (z * self.w2[idx]).sum(-1) + self.b2[idx]
''',
    "balancer": '''

class {cls}Params(BaseModel):
    """Params of `{plugin}`: every field needs a default."""

    model_config = ConfigDict(extra="forbid")
    init: float = Field(default=0.0, description="initial log-weight of every task")


class {cls}(Balancer):
    """{title} balancer: learned positive task weights with a log penalty (replace with your own)."""

    name = "{plugin}"
    Params = {cls}Params

    def __init__(self, params: {cls}Params, dims: Dims):
        super().__init__(params, dims)
        self.log_w = nn.Parameter(torch.full((self.num_tasks,), float(params.init)))

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        """task_losses [T] -> the scalar to minimise (backward() adds the components' aux loss)."""
        return (torch.exp(-self.log_w) * task_losses + self.log_w).sum()
''',
}

TEST = '''\
"""Contract tests of the `{plugin}` plugin: one line per component runs every check of the kit."""

import {package}
from mdmt_nas.testing import contract_test

test_{plugin}_contract = contract_test({package}.{cls})


def test_{plugin}_registers_through_the_hooks(mdmt_plugin_host):
    host = mdmt_plugin_host({package})  # an isolated plugin host with built-ins + this module
    assert not host.failures, host.failures
    assert ("{kind}", "{plugin}") in host.registry
    assert ("space", "{plugin}") in host.registry
'''

README = """\
# {dist}

A {kind} for [mdmt-nas](https://github.com/) registered as `{plugin}`, plus the
search space `{plugin}` that uses it.

```bash
pip install -e '.[test]'              # registers the entry point `{plugin}`; [test] = mdmt-nas[plugin-dev]: pytest, hypothesis
mdmt-nas plugins                      # lists it with its components
mdmt-nas plugins show {plugin}        # its docstring and parameter table (--json: the params' JSON schema)
mdmt-nas plugins check {plugin}       # runs the contract kit on it
pytest tests                          # the same checks as tests
mdmt-nas search --space {plugin}      # a search over the space in {package}/{plugin}.yaml
```

Use it in an architecture file by name: `{usage}`.

Edit `{package}/{kind}.py`; `{cls}.Params` lists its parameters (all with defaults).
Set `torchscript = False` on the class if its forward cannot be traced with
`torch.jit.trace`, and `exportable = False` if it cannot be exported with
`torch.export` (what `mdmt-nas export` and the MLflow model of a run use).
What each kind receives, sets and must return: docs/writing-plugins.md in mdmt-nas.
"""

#: how an architecture uses the component, per kind
USAGE = {
    "expert": "shared: {{expert: {plugin}, num: 4}}",
    "gate": "gate: {plugin}",
    "fusion": "fusion: {plugin}",
    "adapter": "adapter: {plugin}, adapter_sites: [experts]",
    "tower": "tower: {plugin}",
    "balancer": "balancer: {plugin}",
}

HOOKS = {
    "expert": "experts",
    "gate": "gates",
    "fusion": "fusions",
    "adapter": "adapters",
    "tower": "towers",
    "balancer": "balancers",
}


SPACE_HEAD = """\
# Search space `{plugin}` (format: docs/search-spaces.md): {summary}.
# `mdmt-nas search --space {plugin}` searches it; edit the choices freely.
name: {plugin}
description: {summary}
"""

MLP = "{{name: mlp, params: {{hidden: [64, 32]}}}}"

#: the template and choices of the space, per kind: the new component against a built-in
SPACE_BODY = {
    "expert": """\
template:
  embedding_dim: 8
  shared: {{expert: {{choice: expert}}, num: {{choice: num_experts}}}}
  gate: {{choice: gate}}
  tower: {{name: mlp_tower, params: {{hidden: [32]}}}}
choices:
  expert:
    default: {plugin}
    options:
      - {{name: {plugin}, params: {{hidden: 64, out_dim: 32}}}}
      - {{label: mlp, value: {{name: mlp, params: {{hidden: [64, 32]}}}}}}
  num_experts: {{type: int, low: 2, high: 4, step: 2, default: 2}}
  gate: {{options: [softmax, uniform]}}
""",
    "gate": """\
template:
  embedding_dim: 8
  shared: {{expert: """
    + MLP
    + """, num: {{choice: num_experts}}}}
  gate: {{choice: gate}}
  tower: {{name: mlp_tower, params: {{hidden: [32]}}}}
choices:
  gate: {{default: {plugin}, options: [{plugin}, softmax]}}
  num_experts: {{type: int, low: 2, high: 4, step: 2, default: 2}}
""",
    "fusion": """\
template:
  embedding_dim: 8
  shared: {{expert: """
    + MLP
    + """, num: 2}}
  domain: {{expert: """
    + MLP
    + """, num: 1}}
  task: {{expert: """
    + MLP
    + """, num: 1}}
  fusion: {{choice: fusion}}
  tower: {{name: mlp_tower, params: {{hidden: [32]}}}}
choices:
  fusion: {{default: {plugin}, options: [{plugin}, sum, gated]}}
""",
    "adapter": """\
template:
  embedding_dim: 8
  shared: {{expert: """
    + MLP
    + """, num: 2}}
  adapter: {{name: {plugin}}}
  adapter_sites: {{choice: sites}}
  tower: {{name: mlp_tower, params: {{hidden: [32]}}}}
choices:
  sites:
    default: towers
    options:
      - {{label: towers, value: [towers]}}
      - {{label: experts, value: [experts]}}
      - {{label: experts-towers, value: [experts, towers]}}
""",
    "tower": """\
template:
  embedding_dim: 8
  shared: {{expert: """
    + MLP
    + """, num: 2}}
  heads: {{choice: heads}}
  tower: {{choice: tower}}
choices:
  tower: {{default: {plugin}, options: [{plugin}, mlp_tower]}}
  heads: {{options: [task, domain_task]}}
""",
    "balancer": """\
template:
  embedding_dim: 8
  shared: {{expert: """
    + MLP
    + """, num: 2}}
  tower: {{name: mlp_tower, params: {{hidden: [32]}}}}
  balancer: {{choice: balancer}}
choices:
  balancer: {{default: {plugin}, options: [{plugin}, equal]}}
""",
}

SUMMARY = {
    "expert": "MMoE with 2 or 4 shared experts, each {plugin} or mlp, under a softmax or uniform gate",
    "gate": "MMoE with 2 or 4 mlp experts under the {plugin} or the softmax gate",
    "fusion": "shared, per-domain and per-task experts fused by {plugin}, sum or gated",
    "adapter": "MMoE with the {plugin} adapter at the towers, the experts or both",
    "tower": "MMoE with {plugin} or mlp_tower heads, per task or per (domain, task)",
    "balancer": "MMoE trained with the {plugin} or the equal-weights balancer",
}
