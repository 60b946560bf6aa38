"""DARTS: the relaxed supernet (mixed ops, slot masks, alpha gradients), the architect
(first/second order, Gumbel), discretisation, checkpoint/resume, and a tracked run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mdmt_nas.arch import Architecture
from mdmt_nas.components import Dims
from mdmt_nas.config import ExperimentConfig, TrackingConfig, TrainConfig
from mdmt_nas.errors import ConfigError
from mdmt_nas.model import build_model
from mdmt_nas.search.darts.architect import Architect
from mdmt_nas.search.base import SearchContext
from mdmt_nas.search.darts import DartsParams, DartsSearcher, local_evaluate
from mdmt_nas.search.darts.alphas import AlphaController
from mdmt_nas.search.darts.mixed_ops import MixedExpert, MixedExpertParams, build_supernet
from mdmt_nas.search.darts.relax import discretize, relax
from mdmt_nas.spaces import load_space
from mdmt_nas.tracking import Tracker
from mdmt_nas.steps import task_losses

from test_spaces import SMALL, write


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def small_space(tmp_path):
    return load_space(write(tmp_path, SMALL))


def _loss(model, batch):
    c = model.make_context(batch.sparse, batch.dense, batch.domain, batch.labels)
    _, per_task = task_losses(model.forward_context(c), batch.labels, batch.domain, model.num_domains, "row_mean")
    aux = c.aux.total_loss()
    return per_task.sum() + (aux if aux is not None else 0)


def _ctx(
    space, splits, out: Path, tracking: TrackingConfig | None = None, resume: bool = False, budget: int | None = None
) -> SearchContext:
    cfg = ExperimentConfig(
        train=TrainConfig(epochs=1, batch_size=256, progress=False), tracking=tracking or TrackingConfig(enabled=False)
    )
    return SearchContext(
        space=space,
        splits=splits,
        config=cfg,
        budget=budget,
        timeout=None,
        seed=3,
        output_dir=out,
        tracker=Tracker(cfg.tracking),
        parent_run_id=None,
        evaluate=local_evaluate(splits, cfg.train),
        resume=resume,
    )


# top_k 1: derive the argmax and retrain it (the screening of the top k is tested in test_search_quality.py)
FAST = {
    "epochs": 2,
    "warmup_epochs": 0,
    "rows_per_epoch": 1024,
    "batch_size": 256,
    "eval_rows": 256,
    "retrain": False,
    "top_k": 1,
}


# ------------------------------------------------------------------------------ relaxation
def test_relaxation_of_the_small_space(small_space):
    r = relax(small_space)
    assert set(r.relaxed) == {"expert", "num", "task_module", "task_num", "tower_width"}
    assert r.fixed == {}
    arch = r.arch
    assert arch.shared.experts[0].name == "darts.mixed_expert" and len(arch.shared.experts) == 3  # slots = max count
    assert arch.task is not None and len(arch.task.experts) == 2 and arch.gate_scope == ["shared", "task"]
    assert arch.tower.name == "darts.mixed_tower"
    # slot 2 of the shared experts exists only when num = 3: P(num > 2) = P(num = 3)
    cands = arch.shared.experts[0].params["candidates"]
    slot2 = [[[tuple(f) for f in term] for term in c["terms"][2]] for c in cands]
    assert slot2 == [[[("expert", 0), ("num", 2)]], [[("expert", 1), ("num", 2)]]]
    slot0 = [[[tuple(f) for f in term] for term in c["terms"][0]] for c in cands]
    assert slot0 == [[[("expert", 0)]], [[("expert", 1)]]]  # always there: the count factor sums to 1
    assert Architecture.from_json(arch.to_json()).id == arch.id  # the supernet is plain data


def test_relaxation_keeps_structural_choices_at_their_default():
    m3oe = relax(load_space("m3oe"))
    # not differentiable: the balancer and the structural fields (the domain as an input field, the heads, the gate's stop-gradient, how dense values enter)
    structural = {
        "balancer": "equal",
        "domain_feature": True,
        "heads": "domain_task",
        "gate_detach_input": True,
        "dense_input": "raw",
    }
    assert m3oe.fixed == structural
    assert set(m3oe.relaxed) == {c.name for c in load_space("m3oe").choices} - set(structural)
    ple = relax(load_space("ple"))
    assert ple.fixed == {"levels": 2, "balancer": "equal"} and ple.arch.levels == 2


def test_mixed_expert_pads_and_mixes():
    p = MixedExpertParams(
        candidates=[
            {"spec": {"name": "mlp", "params": {"hidden": [4]}}, "terms": [[[["c", 0]]]]},
            {"spec": {"name": "mlp", "params": {"hidden": [6]}}, "terms": [[[["c", 1]]]]},
            {"spec": None, "terms": [[[["c", 2]]]]},
        ],
        choices={"c": 3},
    )
    m = MixedExpert(p, Dims(in_dim=5, num_fields=1, field_dim=5))
    assert m.out_dim == 6
    from mdmt_nas.testing import make_context

    x = torch.randn(7, 5)
    ctx = make_context(7)
    with torch.no_grad():
        m.alphas["arch_c"].copy_(torch.tensor([30.0, 0.0, 0.0]))
    y = m(x, ctx)
    assert y.shape == (7, 6)
    torch.testing.assert_close(y[:, :4], m.ops[0](x, ctx), atol=1e-5, rtol=1e-4)
    assert torch.allclose(y[:, 4:], torch.zeros(7, 2), atol=1e-6)
    with torch.no_grad():
        m.alphas["arch_c"].copy_(torch.tensor([0.0, 0.0, 30.0]))  # the empty candidate: identity, zero-padded
    torch.testing.assert_close(m(x, ctx), torch.cat([x, torch.zeros(7, 1)], 1), atol=1e-5, rtol=1e-4)


def test_supernet_shapes_and_alpha_gradients(small_space, tiny_splits):
    r = relax(small_space)
    model, ctl = build_supernet(r, tiny_splits.schema)
    alphas = model.arch_parameters()
    assert {id(a) for a in alphas} == {id(a) for a in ctl.parameters()}  # tied: one parameter per choice
    assert {n.rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "arch_" in n} == {
        f"arch_{c}" for c in r.relaxed
    }
    b = next(iter(tiny_splits.valid.batches(64)))
    assert model(b.sparse, b.dense, b.domain).shape == (64, tiny_splits.schema.num_tasks)
    _loss(model, b).backward()
    for c, a in ctl.alphas.items():
        assert a.grad is not None and a.grad.abs().sum() > 0, c


def test_m3oe_supernet_runs_and_alphas_learn(tiny_splits):
    r = relax(load_space("m3oe"))
    model, ctl = build_supernet(r, tiny_splits.schema)
    b = next(iter(tiny_splits.valid.batches(48)))
    _loss(model, b).backward()
    grads = {c: float(a.grad.abs().sum()) for c, a in ctl.alphas.items()}
    assert all(torch.isfinite(torch.tensor(v)) for v in grads.values())
    assert sum(v > 0 for v in grads.values()) >= len(grads) - 1, (
        grads
    )  # gated == sum at init: fusion_no_shared may be flat


def test_discretize_and_rebuild_from_json(small_space, tiny_splits):
    r = relax(small_space)
    _, ctl = build_supernet(r, tiny_splits.schema)
    with torch.no_grad():
        ctl.alphas["expert"].copy_(torch.tensor([0.0, 1.0]))
        ctl.alphas["num"].copy_(torch.tensor([0.0, 2.0, 1.0]))
        ctl.alphas["task_module"].copy_(torch.tensor([0.0, 1.0]))
        ctl.alphas["task_num"].copy_(torch.tensor([1.0, 0.0]))
    assignment, arch = discretize(small_space, ctl.state())
    assert assignment == {"expert": "big", "num": 2, "task_module": True, "task_num": 1, "tower_width": "4"}
    again = Architecture.from_json(arch.to_json())
    assert again.id == arch.id
    torch.manual_seed(0)
    keys = set(build_model(arch, tiny_splits.schema).state_dict())
    assert set(build_model(again, tiny_splits.schema).state_dict()) == keys
    assert not any("darts" in k or "arch_alpha" in k for k in keys)


# ------------------------------------------------------------------------------ architect
@pytest.mark.parametrize("order,gumbel", [("second", False), ("first", True), ("second", True)])
def test_architect_modes_run_one_step(small_space, tiny_splits, order, gumbel):
    torch.manual_seed(0)
    r = relax(small_space)
    model, ctl = build_supernet(r, tiny_splits.schema, mode="gumbel" if gumbel else "softmax", tau=1.0)
    alphas = model.arch_parameters()
    weights = [p for p in model.parameters() if all(p is not a for a in alphas)]
    before_w = [w.detach().clone() for w in weights]
    arch = Architect(alphas, weights, lambda b: _loss(model, b), lr=0.1, order=order, xi=1e-3, new_step=ctl.new_step)
    it = iter(tiny_splits.train.batches(64))
    before = ctl.state()
    loss = arch.step(next(it), next(iter(tiny_splits.valid.batches(64))))
    assert loss > 0
    moved = [c for c in ctl.alphas if not torch.equal(ctl.alphas[c].detach(), before[c])]
    assert moved, "no alpha changed"
    assert all(torch.equal(w, b) for w, b in zip(weights, before_w))  # the unrolled step restores the weights


def test_gumbel_samples_are_hard_and_shared(small_space, tiny_splits):
    r = relax(small_space)
    model, ctl = build_supernet(r, tiny_splits.schema, mode="gumbel", tau=1.0)
    ctl.new_step()
    p1 = ctl.probs()
    p2 = ctl.probs()
    for c in p1:
        assert torch.equal(p1[c].detach(), p2[c].detach())  # one sample per step
        assert sorted(p1[c].detach().tolist())[-1] == 1.0 and p1[c].detach().sum() == 1.0
    # out of training (the supernet's valid score) a sampled choice is its argmax, never an untrained mixture
    with torch.no_grad():
        for a in ctl.alphas.values():
            a.copy_(torch.randn_like(a))
    ctl.training = False
    for c, v in ctl.probs().items():
        assert v.sum() == 1.0 and v.max() == 1.0 and int(v.argmax()) == int(ctl.alphas[c].argmax()), c
    model.eval()
    batch = next(iter(tiny_splits.valid.batches(64)))
    with torch.no_grad():
        out1, out2 = model(batch.sparse, batch.dense, batch.domain), model(batch.sparse, batch.dense, batch.domain)
    assert torch.isfinite(out1).all() and torch.equal(out1, out2)  # deterministic: no sampling out of training


# ------------------------------------------------------------------------------ searcher
def test_darts_search_derives_and_retrains(small_space, tiny_splits, tmp_path):
    s = DartsSearcher(DartsParams(**{**FAST, "retrain": True}))
    res = s.run(_ctx(small_space, tiny_splits, tmp_path))
    assert res.best.id == small_space.to_arch(res.extra["assignment"]).id
    assert (
        len(res.candidates) == 1 and res.candidates[0].state == "finished" and res.candidates[0].arch.id == res.best.id
    )
    assert (tmp_path / "darts" / "checkpoint.pt").exists() and (
        tmp_path / "darts" / "alphas" / "epoch_001.png"
    ).exists()
    assert Architecture.load(tmp_path / "darts" / "derived_arch.json").id == res.best.id
    ck = torch.load(tmp_path / "darts" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2 and set(ck["alphas"]) == set(relax(small_space).relaxed)


def test_resume_gives_the_alphas_of_an_uninterrupted_run(small_space, tiny_splits, tmp_path, monkeypatch):
    full = DartsSearcher(DartsParams(**FAST, order="first")).run(_ctx(small_space, tiny_splits, tmp_path / "a"))

    real_save = DartsSearcher._save_checkpoint

    def save_then_die(self, ctx, net, epoch):
        real_save(self, ctx, net, epoch)
        raise KeyboardInterrupt  # the process is killed right after the first epoch's checkpoint

    monkeypatch.setattr(DartsSearcher, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        DartsSearcher(DartsParams(**FAST)).run(_ctx(small_space, tiny_splits, tmp_path / "b"))
    monkeypatch.setattr(DartsSearcher, "_save_checkpoint", real_save)
    torch.manual_seed(12345)  # whatever the process did since: the checkpoint restores every RNG
    resumed = DartsSearcher(DartsParams(**FAST)).run(_ctx(small_space, tiny_splits, tmp_path / "b", resume=True))
    assert resumed.extra["epochs_run"] == 2
    assert resumed.extra["alphas"] == full.extra["alphas"]
    assert resumed.extra["assignment"] == full.extra["assignment"]


def test_resume_refuses_a_foreign_checkpoint(small_space, tiny_splits, tmp_path):
    DartsSearcher(DartsParams(**{**FAST, "epochs": 1})).run(_ctx(small_space, tiny_splits, tmp_path))
    with pytest.raises(ConfigError, match="another space"):
        DartsSearcher(DartsParams(**FAST)).run(_ctx(load_space("mmoe"), tiny_splits, tmp_path, resume=True))


def test_params_validation():
    with pytest.raises(ValueError):
        DartsParams(tau_min=5, tau_max=1)
    with pytest.raises(ValueError):
        DartsParams(order="third")
    assert DartsSearcher(DartsParams(epochs=3)).budget_for(None, None) == 3


def test_tracked_search_logs_alphas_and_heatmaps(small_space, tiny_splits, tmp_path, mlflow_uri):
    """Through the runner: a supernet child run with alpha metrics and heatmaps, then the derived candidate."""
    from mdmt_nas.config import SearchConfig
    from mdmt_nas.search.runner import run_search

    cfg = ExperimentConfig(
        train=TrainConfig(epochs=1, batch_size=256, progress=False),
        tracking=TrackingConfig(uri=mlflow_uri, experiment="darts-test"),
        search=SearchConfig(
            searcher="darts", budget=2, params={k: v for k, v in FAST.items() if k not in ("epochs", "retrain")}
        ),
    )
    outcome = run_search(cfg, tmp_path / "out", space=small_space, splits=tiny_splits)
    assert outcome.best is not None and outcome.best.state == "finished"
    assert Architecture.load(tmp_path / "out" / "best_arch.json").id == outcome.result.best.id
    tracker = Tracker(cfg.tracking)
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'"
    )
    kinds = {r.data.tags.get("mdmt_nas.kind"): r for r in runs}
    sup = kinds["supernet"]
    hist = tracker.client.get_metric_history(sup.info.run_id, "alpha/expert/big")
    assert [m.step for m in hist] == [0, 1] and all(0 < m.value < 1 for m in hist)
    arts = {a.path for a in tracker.client.list_artifacts(sup.info.run_id, "alphas")}
    assert arts == {"alphas/epoch_000.png", "alphas/epoch_001.png"}
    assert sup.data.tags["derived_arch_id"] == outcome.result.best.id
    assert "retrain" in kinds and kinds["retrain"].data.tags["arch_id"] == outcome.result.best.id
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["searcher_info"]["supernet_run_id"] == sup.info.run_id


def test_derive_never_returns_an_architecture_without_experts():
    from mdmt_nas.search.darts import derive

    space = load_space("m3oe")
    r = relax(space)
    ctl = AlphaController(r.relaxed)
    with torch.no_grad():
        ctl.alphas["shared_module"].copy_(torch.tensor([0.3, 0.0]))  # off by a margin
        ctl.alphas["domain_module"].copy_(torch.tensor([0.01, 0.0]))  # off, barely: flipped
        ctl.alphas["task_module"].copy_(torch.tensor([0.2, 0.0]))
    assert discretize(space, ctl.state())[1].groups() == {}
    assignment, arch, note = derive(space, r, ctl)
    assert (
        assignment["domain_module"] is True
        and assignment["shared_module"] is False
        and assignment["task_module"] is False
    )
    assert set(arch.groups()) == {"domain"} and "domain_module=True" in note
    with torch.no_grad():
        ctl.alphas["domain_module"].copy_(torch.tensor([0.0, 0.5]))
    assert derive(space, r, ctl)[2] == ""
