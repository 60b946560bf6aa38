"""The ppnet plugin: contract kit on its components, its search space, registration."""

from importlib.metadata import entry_points

import mdmt_nas_ppnet
import torch
from mdmt_nas_ppnet import SPACE, DomainLoRAAdapter, PPNetExpert

from mdmt_nas.components import Dims
from mdmt_nas.model import build_model
from mdmt_nas.spaces import load_space_file
from mdmt_nas.testing import contract_test, make_batch, make_context, make_schema

test_ppnet_contract = contract_test(PPNetExpert)
test_ppnet_no_detach_contract = contract_test(PPNetExpert, params={"hidden": [16], "detach_gate_input": False})
test_domain_lora_contract = contract_test(DomainLoRAAdapter)


def test_entry_point_is_installed():
    eps = {ep.name: ep for ep in entry_points(group="mdmt_nas")}
    assert eps["ppnet"].value == "mdmt_nas_ppnet"


def test_space_file_ships_with_the_package():
    assert SPACE.is_file()


def test_registers_components_and_space(mdmt_plugin_host):
    host = mdmt_plugin_host(ppnet=mdmt_nas_ppnet)
    assert not host.failures
    assert host.registry.get("expert", "ppnet") is PPNetExpert
    assert host.registry.get("adapter", "domain_lora") is DomainLoRAAdapter
    assert host.registry.get("space", "ppnet") == SPACE


def test_every_point_of_the_space_builds_and_runs(mdmt_plugin_host):
    host = mdmt_plugin_host(ppnet=mdmt_nas_ppnet)
    space = load_space_file(SPACE, registry=host.registry)
    assert space.size() == 72  # 2 bottoms x 2 experts x 3 counts x 3 adapters x 2 heads
    names = set()
    for assignment, arch in space.enumerate():
        model = build_model(arch, make_schema(), host.registry)
        assert model(*make_batch(5)[:3]).shape == (5, 2)
        names |= {e.name for g in arch.groups().values() for e in g.experts}
        if arch.adapter is not None:
            names.add(arch.adapter.name)
    assert {"ppnet", "domain_lora"} <= names


def test_lora_adapter_starts_as_identity_and_is_per_domain():
    a = DomainLoRAAdapter(DomainLoRAAdapter.Params(rank=2), Dims(in_dim=6, num_fields=5, field_dim=4, num_domains=3))
    h, ctx = torch.randn(6, 6), make_context(6)
    assert torch.equal(a(h, ctx), h)
    with torch.no_grad():
        a.up[1].fill_(1.0)
    changed = ~torch.isclose(a(h, ctx), h).all(dim=1)
    assert torch.equal(changed, ctx.domain == 1)
