"""The contract kit catches each kind of broken component and names it and the check."""

import random
import subprocess
import sys
import textwrap

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.builtin.basic import MLPExpert, SoftmaxGate, SumFusion
from mdmt_nas.components import Balancer, Expert, Gate, NoParams
from mdmt_nas.testing import Report, check_component, checks_for


class SizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_dim: int = Field(default=8, ge=1)


class GoodExpert(Expert):
    """A linear expert that follows the contract."""

    name = "good_linear"
    Params = SizeParams

    def __init__(self, params, in_dim, num_fields, field_dim, num_domains=1):
        super().__init__(params, in_dim, num_fields, field_dim, num_domains)
        self.lin = nn.Linear(in_dim, params.out_dim)

    @classmethod
    def output_dim(cls, params, in_dim):
        return params.out_dim

    def forward(self, x, ctx):
        return self.lin(x)


class WrongShape(GoodExpert):
    """Returns fewer columns than output_dim promises."""

    name = "wrong_shape"

    def forward(self, x, ctx):
        return self.lin(x)[:, :4]


class Detaching(GoodExpert):
    """Cuts the graph below itself."""

    name = "detaching"

    def forward(self, x, ctx):
        return self.lin(x.detach())


class Unused(GoodExpert):
    """Owns a layer it never uses."""

    name = "unused"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.spare = nn.Linear(3, 3)


class NoDoc(GoodExpert):
    name = "no_doc"


class LooseParams(BaseModel):
    out_dim: int = 8


class Loose(GoodExpert):
    """Params that silently accept typos."""

    name = "loose"
    Params = LooseParams


class RequiredParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_dim: int


class Required(GoodExpert):
    """A param without a default."""

    name = "required"
    Params = RequiredParams


class RandomInit(GoodExpert):
    """Initialised from Python's random module, not torch's RNG."""

    name = "random_init"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        with torch.no_grad():
            self.lin.bias.fill_(random.random())


class EvalNoise(GoodExpert):
    """Adds noise even in eval mode."""

    name = "eval_noise"

    def forward(self, x, ctx):
        return self.lin(x) + torch.randn(x.shape[0], self.out_dim)


class NeedsEveryDomain(GoodExpert):
    """Centres by every domain's mean: NaN when a domain has no rows."""

    name = "needs_every_domain"

    def forward(self, x, ctx):
        h = self.lin(x)
        means = torch.stack([h[ctx.domain == d].mean(0) for d in range(ctx.num_domains)])
        return h - means.sum(0)


class Untraceable(GoodExpert):
    """Claims torchscript but bakes the batch size in as a Python number."""

    name = "untraceable"

    def forward(self, x, ctx):
        return self.lin(x) + float(x.shape[0])


class BatchDependent(GoodExpert):
    """Centres by the batch mean even in eval mode: a row's score depends on the other rows."""

    name = "batch_dependent"
    torchscript = False

    def forward(self, x, ctx):
        h = self.lin(x)
        return h - h.mean(0, keepdim=True)


class NoEmptyRows(GoodExpert):
    """Takes a max over the rows: fails on a batch of 0 rows (a domain absent from a batch)."""

    name = "no_empty_rows"
    torchscript = False

    def forward(self, x, ctx):
        h = self.lin(x)
        return h + 0 * h.abs().amax()  # amax of an empty tensor raises


class ReadsAPythonNumber(GoodExpert):
    """Reads a tensor value into Python (`.item()`): traced as a constant, so the exported graph is wrong."""

    name = "reads_a_python_number"
    torchscript = False

    def forward(self, x, ctx):
        h = self.lin(x)
        return h * (2.0 if float(x.sum().item()) > 0 else 1.0)


class NotExportable(ReadsAPythonNumber):
    """Says so: the export check is skipped."""

    name = "not_exportable"
    exportable = False


class UnnormalisedGate(SoftmaxGate):
    """Weights that do not sum to 1 (twice the softmax): allowed, the mixture is a weighted sum."""

    name = "unnormalised_gate"

    def forward(self, h, ctx):
        return 2.0 * super().forward(h, ctx)


class NotAnExpert(Gate):
    """A gate passed off as an expert."""

    name = "not_an_expert"
    kind = "gate"


class WrongGate(SoftmaxGate):
    """Gate weights with one candidate too many."""

    name = "wrong_gate"

    def forward(self, h, ctx):
        w = super().forward(h, ctx)
        return torch.cat([w, w[..., :1]], dim=-1)


class DetachedBalancer(Balancer):
    """Learned weights that never get a gradient."""

    name = "detached_balancer"
    Params = NoParams

    def __init__(self, params, num_tasks, task_names):
        super().__init__(params, num_tasks, task_names)
        self.w = nn.Parameter(torch.ones(num_tasks))

    def combine(self, task_losses):
        return (self.w.detach() * task_losses).sum()


def test_good_component_passes_and_report_api():
    report = check_component(GoodExpert)
    assert isinstance(report, Report) and report.ok and report.failures == []
    assert [r.check for r in report.results] == list(checks_for(GoodExpert))
    assert report.result("torchscript").status == "pass"
    assert report.as_dict()["ok"] is True
    assert "good_linear" in str(report)


@pytest.mark.parametrize(
    "cls,check,words",
    [
        (WrongShape, "shapes", ["output shape", "[1, 4]", "[1, 8]"]),
        (Detaching, "gradients", ["no gradient reaches the input"]),
        (Unused, "gradients", ["spare.weight"]),
        (NoDoc, "interface", ["docstring"]),
        (Loose, "params", ["extra='forbid'"]),
        (Required, "params", ["default"]),
        (RandomInit, "determinism", ["initialisation"]),
        (EvalNoise, "determinism", ["eval"]),
        (NeedsEveryDomain, "empty_domain", ["NaN"]),
        (Untraceable, "torchscript", ["traced model does not reproduce"]),
        (BatchDependent, "rows", ["rows 1, 4, 6 changes when they run without the other rows"]),
        (NoEmptyRows, "rows", ["a batch of 0 rows raised", "no row selected an expert"]),
        (ReadsAPythonNumber, "export", ["torch.export failed", ".item()", "exportable = False"]),
        (WrongGate, "shapes", ["weights of shape", "[1, 2, 5]"]),
        (DetachedBalancer, "gradients", ["w"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_broken_component_fails_the_right_check(cls, check, words):
    report = check_component(cls, raise_on_fail=False)
    assert not report.ok
    failed = {r.check: r.message for r in report.failures}
    assert check in failed, str(report)
    for w in words:
        assert w in failed[check], failed[check]
    with pytest.raises(AssertionError) as info:
        check_component(cls, checks=[check])
    text = str(info.value)
    assert repr(cls.name) in text and f"check '{check}'" in text and cls.__qualname__ in text


def test_exportable_false_skips_the_export_check_and_gate_weights_need_not_sum_to_one():
    report = check_component(NotExportable, raise_on_fail=False)
    assert report.result("export").status == "skip" and report.result("export").message == "cls.exportable is False"
    assert check_component(UnnormalisedGate, raise_on_fail=False).ok


def test_export_refuses_a_model_with_an_unexportable_component(tmp_path):
    from mdmt_nas.arch import Architecture
    from mdmt_nas.errors import UserError
    from mdmt_nas.model import build_model
    from mdmt_nas.serving.export import export_loaded
    from mdmt_nas.testing import _registry_with, make_schema

    reg = _registry_with(NotExportable, "expert", "not_exportable")
    arch = Architecture.model_validate({"embedding_dim": 4, "shared": {"expert": "not_exportable", "num": 2}})
    model = build_model(arch, make_schema(), reg)
    with pytest.raises(UserError, match="NotExportable declare exportable = False"):
        export_loaded(model, arch, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_interface_failure_skips_the_rest():
    report = check_component(NotAnExpert, "expert", raise_on_fail=False)
    assert report.failures[0].check == "interface" and "not a subclass" in report.failures[0].message
    assert all(r.status == "skip" for r in report.results[1:])


def test_options_checks_skip_params_and_unknown_check():
    report = check_component(MLPExpert, checks=["shapes", "params"], params={"hidden": [5, 3]}, raise_on_fail=False)
    assert [r.check for r in report.results] == ["params", "shapes"] and report.ok
    report = check_component(MLPExpert, skip=["torchscript", "in_model"], raise_on_fail=False)
    assert "torchscript" not in [r.check for r in report.results]
    with pytest.raises(ValueError, match="unknown check"):
        check_component(MLPExpert, checks=["nope"])
    with pytest.raises(ValueError, match="kind"):
        check_component(int, "searcher")


def test_contract_test_marker_and_fixtures_in_a_pytest_run(tmp_path):
    """The pytest11 plugin is active: contract_test, the marker and the fixtures work in a fresh run."""
    (tmp_path / "test_author.py").write_text(
        textwrap.dedent("""
        import pytest
        from mdmt_nas.builtin.basic import MLPExpert, SumFusion
        from mdmt_nas.testing import contract_test

        test_mlp = contract_test(MLPExpert, skip=["torchscript"])

        @pytest.mark.mdmt_component(component=SumFusion)
        def test_sum(contract_check):
            assert contract_check.status == "pass"

        def test_fixtures(check_component, mdmt_plugin_host):
            import mdmt_nas.builtin.basic as basic
            host = mdmt_plugin_host()
            assert ("expert", "mlp") in host.registry
            assert check_component(basic.IdentityExpert, checks=["shapes"]).ok
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n_mlp = len(checks_for(MLPExpert)) - 1
    n_sum = len(checks_for(SumFusion))
    assert f"{n_mlp + n_sum + 1} passed" in proc.stdout, proc.stdout


def test_mixed_op_runs_inside_the_darts_supernet(monkeypatch):
    from mdmt_nas.testing import checks as kit

    real = kit._supernet()
    if real is None:
        pytest.skip("this build has no DARTS supernet")
    relax, controller = real
    seen = []

    def spy(space):
        seen.append(space)
        return relax(space)

    monkeypatch.setattr(kit, "_supernet", lambda: (spy, controller))
    assert check_component(MLPExpert, checks=["mixed_op"]).ok
    assert len(seen) == 2 and all(
        s.choices[0].name == "c" for s in seen
    )  # as a mixed bottom and as mixed group experts

    def broken(space):
        raise RuntimeError("cannot relax")

    monkeypatch.setattr(kit, "_supernet", lambda: (broken, controller))
    report = check_component(MLPExpert, checks=["mixed_op"], raise_on_fail=False)
    assert "DARTS supernet (mixed bottom) raised RuntimeError: cannot relax" in report.failures[0].message
