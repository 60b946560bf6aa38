"""The component contract kit: `check_component(cls)` runs every check its kind needs.

In the spirit of scikit-learn's `check_estimator`: a plugin author calls it on
each component class (or writes `test_x = contract_test(MyExpert)` in a pytest
module, one line per component) and `mdmt-nas plugins check NAME` runs it on
every component of an installed plugin. Checks, per kind:

  interface     subclass of the kind's base, `name`, docstring, class attributes
  params        default params validate, JSON round-trip, unknown keys rejected
  construct     instances build for the standard shapes
  shapes        output shapes for batch sizes 1, 2, 7 (train and eval mode)
  dtype         float32 out for float32 in, finite values
  gradients     every requires_grad parameter and the input receive gradients
  determinism   same seed -> same init and same output; eval forward repeatable
  empty_domain  a batch in which a domain has no rows (and one with one domain)
  rows          a batch of 0 rows works (train and eval); in eval mode a row's output does not
                depend on the other rows of its batch (routing runs components on row subsets)
  bank          (experts) `cls.bank` evaluates n experts, ranges, per-expert inputs and forward_each
  in_model      `build_model` with small architectures using it; forward, backward
  mixed_op      in a softmax-weighted mix, and in the DARTS supernet (mdmt_nas.search.darts.relax)
                against another candidate: the mixing weights receive gradients
  torchscript   (if `cls.torchscript`) `torch.jit.trace` of models using it reproduces outputs
  export        (if `cls.exportable`) `torch.export` of a model using it (static routing, dynamic
                batch size; what `mdmt-nas export` and the logged MLflow model use) reproduces outputs

A failed check raises `AssertionError` naming the component and the check
(`raise_on_fail=False` returns the `Report` instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from mdmt_nas.components import NEURAL_KINDS
from mdmt_nas.testing.checks import GATING, _Checker, _Skip, checks_for
from mdmt_nas.testing.world import _describe_exc

#: the kinds the kit checks (the neural kinds of the kinds table)
KINDS = NEURAL_KINDS


class ContractError(AssertionError):
    """A component failed one or more contract checks; the message names it and each check."""


@dataclass
class CheckResult:
    check: str
    status: str  # pass | fail | skip
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class Report:
    """Outcome of `check_component`: one `CheckResult` per check."""

    component: str
    kind: str
    name: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    def result(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "kind": self.kind,
            "name": self.name,
            "ok": self.ok,
            "checks": [
                {"check": r.check, "status": r.status, "message": r.message, "seconds": round(r.seconds, 3)}
                for r in self.results
            ],
        }

    def __str__(self) -> str:
        lines = [f"{self.component}: {'ok' if self.ok else 'FAILED'}"]
        for r in self.results:
            lines.append(f"  {r.status.upper():4} {r.check}" + (f": {r.message}" if r.message else ""))
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.ok:
            detail = "\n".join(f"  - check '{r.check}': {r.message}" for r in self.failures)
            raise ContractError(f"{self.component} failed {len(self.failures)} contract check(s):\n{detail}")


def component_label(cls: type, kind: str | None = None) -> str:
    kind = kind or getattr(cls, "kind", "component")
    name = getattr(cls, "name", "") or "?"
    where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
    try:
        from mdmt_nas.plugins import get_registry

        reg = get_registry()
        if (kind, name) in reg and reg.get(kind, name) is cls:
            e = reg.entry(kind, name)
            return f"{kind} {name!r} ({where}, plugin {e.plugin!r}, distribution {e.dist} {e.version})"
    except Exception:
        pass
    return f"{kind} {name!r} ({where})"


def check_component(
    cls: type,
    kind: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    batch_sizes: tuple[int, ...] = (1, 2, 7),
    seed: int = 0,
    registry: Any = None,
    raise_on_fail: bool = True,
) -> Report:
    """Run the contract checks of `cls` (kind defaults to `cls.kind`).

    params: params to check with besides the defaults (a dict, as in an arch file).
    checks / skip: run only these / not these checks (see `checks_for(cls)`).
    registry: where the other components of the test models come from (default:
      the loaded plugins); `cls` is added under its name if it is not there.
    raise_on_fail: raise ContractError (an AssertionError) naming the component and
      every failed check; False returns the Report with `.ok` and `.failures`.
    """
    kind = kind or getattr(cls, "kind", None)
    if kind not in KINDS:
        raise ValueError(f"cannot check {cls!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    all_checks = checks_for(cls, kind)
    wanted = [c for c in all_checks if (checks is None or c in set(checks)) and c not in set(skip)]
    unknown = set(checks or ()) - set(all_checks)
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)} for a {kind}; checks: {', '.join(all_checks)}")
    checker = _Checker(cls, kind, params, tuple(batch_sizes), seed, registry)
    report = Report(component_label(cls, kind), kind, checker.name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost (and oversubscribe parallel test runs)
    try:
        _run_checks(checker, kind, wanted, report)
    finally:
        torch.set_num_threads(threads)
    if raise_on_fail:
        report.raise_for_failures()
    return report


def _run_checks(checker: _Checker, kind: str, wanted: list[str], report: Report) -> None:
    blocked = ""
    for name in wanted:
        t0 = time.perf_counter()
        if blocked:
            report.results.append(CheckResult(name, "skip", f"not run: {blocked}"))
            continue
        method = getattr(
            checker, ("bcheck_" if kind == "balancer" and hasattr(checker, f"bcheck_{name}") else "check_") + name
        )
        try:
            with torch.random.fork_rng(devices=[]):
                method()
        except _Skip as why:
            report.results.append(CheckResult(name, "skip", str(why), time.perf_counter() - t0))
        except AssertionError as exc:
            report.results.append(CheckResult(name, "fail", str(exc) or "assertion failed", time.perf_counter() - t0))
        except Exception as exc:
            report.results.append(CheckResult(name, "fail", _describe_exc(exc), time.perf_counter() - t0))
        else:
            report.results.append(CheckResult(name, "pass", "", time.perf_counter() - t0))
        if report.results[-1].status == "fail" and name in GATING:
            blocked = f"'{name}' failed"


def run_check(cls: type, kind: str | None, check: str, **options: Any) -> CheckResult:
    """One contract check as one pytest item: its result if it passed, pytest.skip if skipped, ContractError if failed."""
    import pytest

    report = check_component(cls, kind, checks=[check], raise_on_fail=False, **options)
    result = report.result(check)
    if result.status == "skip":
        pytest.skip(result.message)
    if result.status == "fail":
        raise ContractError(f"{report.component} failed contract check '{check}': {result.message}")
    return result


def contract_test(cls: type, kind: str | None = None, **options: Any) -> Callable[..., None]:
    """A pytest test function that runs each contract check of `cls` as its own test item.

    from mdmt_nas.testing import contract_test
    test_my_expert = contract_test(MyExpert)
    """
    import pytest

    names = [c for c in checks_for(cls, kind) if c not in set(options.get("skip", ()))]

    @pytest.mark.parametrize("check", names)
    def test_contract(check: str) -> None:
        run_check(cls, kind, check, **{k: v for k, v in options.items() if k != "skip"})

    test_contract.__name__ = f"test_contract_{getattr(cls, 'name', 'component')}"
    return test_contract
