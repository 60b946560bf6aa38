"""The autoint plugin: contract kit on both experts, registration, and what makes them interaction experts."""

from importlib.metadata import entry_points

import mdmt_nas_autoint
import torch
from mdmt_nas_autoint import AutoIntExpert, FiBiNetExpert

from mdmt_nas.components import Dims
from mdmt_nas.testing import contract_test, make_context

test_autoint_contract = contract_test(AutoIntExpert)
test_autoint_three_layers_contract = contract_test(AutoIntExpert, params={"layers": 3, "heads": 1, "use_input": False})
test_fibinet_contract = contract_test(FiBiNetExpert)
test_fibinet_each_contract = contract_test(FiBiNetExpert, params={"bilinear": "each", "use_input": False})


def test_entry_point_is_installed():
    eps = {ep.name: ep for ep in entry_points(group="mdmt_nas")}
    assert eps["autoint"].value == "mdmt_nas_autoint"
    assert eps["autoint"].dist.name == "mdmt-nas-autoint"


def test_registers_through_the_hooks(mdmt_plugin_host):
    host = mdmt_plugin_host(autoint=mdmt_nas_autoint)
    assert not host.failures
    assert host.registry.get("expert", "autoint") is AutoIntExpert
    assert host.registry.get("expert", "fibinet") is FiBiNetExpert


def test_output_depends_on_field_pairs_not_only_on_x():
    """Without the input projection, the experts still see every field through ctx.fields."""
    torch.manual_seed(0)
    for cls in (AutoIntExpert, FiBiNetExpert):
        m = cls(cls.Params(use_input=False), Dims(in_dim=20, num_fields=5, field_dim=4, num_domains=3)).eval()
        ctx = make_context(4, training=False)
        base = m(torch.zeros(4, 20), ctx)
        ctx.fields = ctx.fields.clone()
        ctx.fields[:, 3] += 1.0
        assert not torch.allclose(base, m(torch.zeros(4, 20), ctx)), cls.name
