"""Construction: every kind is built as cls(params, dims); a class written for the older positional signature still builds."""

from __future__ import annotations

import warnings

import pytest
import torch

from mdmt_nas.components import Dims, Expert, Gate, NoParams, build, build_bank
from mdmt_nas.components.kinds import output_size


class NewExpert(Expert):
    """Doubles a linear map (the current signature)."""

    name = "new_expert"

    def __init__(self, params, dims):
        super().__init__(params, dims)
        self.lin = torch.nn.Linear(dims.in_dim, 3)

    @classmethod
    def output_dim(cls, params, dims):
        return 3

    def forward(self, x, ctx):
        return self.lin(x)


class OldExpert(Expert):
    """The same, written for the positional sizes of old."""

    name = "old_expert"

    def __init__(self, params, in_dim, num_fields, field_dim, num_domains=1):
        super().__init__(params, in_dim, num_fields, field_dim, num_domains)
        self.lin = torch.nn.Linear(in_dim, 3)

    @classmethod
    def output_dim(cls, params, in_dim):
        return 3

    def forward(self, x, ctx):
        return self.lin(x)


def test_dims_is_frozen_and_copies_with_changes():
    d = Dims(in_dim=4, num_fields=2, field_dim=2, num_domains=3)
    with pytest.raises(AttributeError):
        d.in_dim = 5  # type: ignore[misc]
    e = d.with_(in_dim=8)
    assert (e.in_dim, e.num_domains, d.in_dim) == (8, 3, 4)
    assert Dims.from_args(Expert.legacy_args, (4, 2, 2, 3)) == d
    assert d.args(Expert.legacy_args) == (4, 2, 2, 3)


def test_new_and_old_signatures_build_the_same_expert():
    d = Dims(in_dim=4, num_fields=2, field_dim=2, num_domains=3)
    new = build(NewExpert, NoParams(), d)
    with pytest.warns(
        DeprecationWarning, match="OldExpert takes \\(params, in_dim, num_fields, field_dim, num_domains\\)"
    ):
        old = build(OldExpert, NoParams(), d)
    for m in (new, old):
        assert (m.in_dim, m.num_fields, m.field_dim, m.num_domains, m.out_dim) == (4, 2, 2, 3, 3)
    assert output_size(NewExpert, NoParams(), d) == output_size(OldExpert, NoParams(), d) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bank = build_bank(OldExpert, 2, NoParams(), d)
    assert bank.num_experts == 2 and bank.out_dim == 3


def test_gate_reads_its_sizes_from_dims():
    g = Gate(NoParams(), Dims(in_dim=5, num_experts=4, num_tasks=2, num_domains=3, per_domain=True))
    assert (g.in_dim, g.num_experts, g.num_tasks, g.num_domains, g.per_domain) == (5, 4, 2, 3, True)
