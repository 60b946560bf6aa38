"""The `darts` searcher: differentiable architecture search over a relaxed space.

    relax the space (search/darts/relax.py) -> train the supernet: per batch, one alpha
    step on a valid batch (search/darts/architect.py), then one weight step on a train
    batch -> argmax per active choice (Space.discretize) -> retrain the derived
    architecture from scratch (ctx.evaluate: a child run) -> test metrics

Options: first- or second-order alpha gradients, GDAS-style hard Gumbel-softmax
sampling with an annealed temperature, weight-only warm-up epochs, and a row
budget per epoch (the supernet learns the alphas' ranking on a sample; the
derived architecture is retrained on everything). The balancer and structural
fields (levels, embedding size...) are not differentiable: they keep the space
default (listed in the supernet run's `fixed.json`).

Logged on the supernet child run: params, per-epoch supernet losses and valid
AUC, `alpha/<choice>/<label>` (choice probabilities) and an alpha heatmap
`alphas/epoch_XXX.png`. Every epoch is checkpointed atomically to
`<output>/darts/checkpoint.pt` (weights, alphas, both optimisers, RNG states,
position); `--resume` continues from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdmt_nas.arch import Architecture
from mdmt_nas.checkpoint import rng_state, set_rng_state
from mdmt_nas.errors import ConfigError, DeadlineReached, check_interrupt, search_deadline
from mdmt_nas.files import save_figure, save_torch
from mdmt_nas.model import build_balancer
from mdmt_nas.search.base import Candidate, SearchContext, Searcher, SearchResult
from mdmt_nas.search.darts.alphas import AlphaController, alpha_heatmap, alpha_metrics, alpha_probs  # noqa: F401
from mdmt_nas.search.darts.architect import Architect
from mdmt_nas.search.darts.mixed_ops import build_supernet
from mdmt_nas.search.darts.relax import Relaxation, derive, relax
from mdmt_nas.search.darts.topk import choice_margins, top_k_derived
from mdmt_nas.search.fidelity import rung_config
from mdmt_nas.steps import losses, objective, weight_step
from mdmt_nas.tracking import flatten
from mdmt_nas.train import evaluate as eval_model
from mdmt_nas.train import set_seed

CHECKPOINT_VERSION = 1


class DartsParams(BaseModel):
    """Settings of the `darts` searcher (`search.params` / `--param`)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=6, ge=1, description="supernet epochs (the --budget of darts)")
    warmup_epochs: int = Field(default=1, ge=0, description="first epochs train the weights only (alphas frozen)")
    rows_per_epoch: int | None = Field(default=24_000, ge=1, description="train rows per supernet epoch (a fresh random sample each epoch); null = the whole split")
    eval_rows: int | None = Field(default=4096, ge=1, description="valid rows scored by the supernet after each epoch (logged AUC); null = the whole split")
    batch_size: int = Field(default=1024, ge=2)
    w_lr: float = Field(default=2e-3, gt=0, description="Adam learning rate of the supernet weights")
    w_weight_decay: float = Field(default=0.0, ge=0)
    alpha_lr: float = Field(default=3e-2, gt=0, description="Adam learning rate of the alphas (betas 0.5, 0.999); 3e-3 (DARTS' CIFAR value) left every choice within 0.02 of uniform after the 36 alpha steps of a 12k-row budget")
    alpha_weight_decay: float = Field(default=1e-3, ge=0)
    order: Literal["first", "second"] = Field(default="first", description="first-order, or second-order (unrolled, finite-difference Hessian-vector product)")
    gumbel: bool = Field(default=True, description="GDAS (Dong & Yang, CVPR 2019): hard Gumbel-softmax samples, one op per choice per step, only the "
                         "sampled ops computed (a step costs about one candidate's: benchmarks/supernet_step.py); false = the softmax "
                         "mixture of DARTS, every op on every row (6-15x the largest candidate's step)")
    tau_max: float = Field(default=10.0, gt=0, description="Gumbel temperature at the first alpha epoch (annealed linearly)")
    tau_min: float = Field(default=0.1, gt=0, description="Gumbel temperature at the last epoch")
    grad_clip: float | None = Field(default=5.0, gt=0)
    beta_decay: float = Field(default=0.0, ge=0, description="beta-DARTS regulariser weight (Ye et al., CVPR 2022): lambda * mean logsumexp(alpha), "
                              "ramped up linearly over the alpha epochs; keeps the choice probabilities from collapsing early (against the zero/skip bias)")
    entropy_weight: float = Field(default=0.0, description="weight of the mean entropy of the choice probabilities in the alpha loss, ramped up linearly: "
                                  "> 0 sharpens the alphas towards one value per choice (closes the discretisation gap)")
    presence: Literal["sampled", "soft"] = Field(default="sampled", description="presence flags (module on/off): sampled = a hard Gumbel-softmax "
                                                  "sample per step (GDAS, Dong & Yang 2019) with straight-through gradients, so the alpha "
                                                  "gradient compares the module present vs absent; soft = P(on) scales the module's output, "
                                                  "which the valid loss shrinks towards off (the zero-op bias)")
    min_margin: float = Field(default=0.05, ge=0, le=1, description="a choice whose top-2 probability margin is below this is 'within noise' (search.json, warning)")
    top_k: int = Field(default=3, ge=1, description="derive the k most probable architectures, screen each (and the space's known architectures) briefly, "
                       "retrain the best on valid AUC; 1 = retrain the argmax only")
    screen_fraction: float = Field(default=0.25, gt=0, le=1, description="share of the full training budget (rows x epochs) of each screened architecture")
    retrain_epochs: int | None = Field(default=None, ge=1, description="epochs of the derived architecture's retraining; null = train.epochs")
    retrain: bool = Field(default=True, description="retrain the derived architecture from scratch; false: only derive it (library use: `mdmt-nas search` needs a trained candidate)")

    @model_validator(mode="after")
    def _check(self) -> "DartsParams":
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min={self.tau_min} is above tau_max={self.tau_max}")
        return self


# ------------------------------------------------------------------------------ helpers
@dataclass
class _Supernet:
    """What one DARTS run trains and checkpoints."""

    relaxation: Relaxation
    model: Any
    ctl: AlphaController
    balancer: Any
    weights: list[torch.nn.Parameter]  # supernet and balancer weights (the weight optimiser's)
    shared: list[torch.nn.Parameter]
    alphas: list[torch.nn.Parameter]
    w_opt: torch.optim.Optimizer
    architect: Architect
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None
    start_epoch: int = 0


# ------------------------------------------------------------------------------ searcher
class DartsSearcher(Searcher):
    """DARTS: a softmax-relaxed supernet trained bi-level (weights on train, alphas on valid), then argmax and retrain."""

    name: ClassVar[str] = "darts"
    Params = DartsParams
    budget_unit: ClassVar[str] = "epochs"
    default_budget: ClassVar[int] = DartsParams().epochs

    params: DartsParams

    def budget_for(self, space: Any, budget: int | None) -> int:
        return budget or self.params.epochs

    def checkpoint_path(self, ctx: SearchContext) -> Path:
        return Path(ctx.output_dir) / "darts" / "checkpoint.pt"

    def existing_parent_run(self, ctx: SearchContext) -> str | None:
        """On resume: the parent MLflow run recorded in the checkpoint (re-opened by the runner)."""
        if not ctx.resume:
            return None
        ck = self._load_checkpoint(ctx)
        return ck.get("parent_run_id") or None if ck else None

    def _load_checkpoint(self, ctx: SearchContext) -> dict[str, Any] | None:
        path = self.checkpoint_path(ctx)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file
            raise ConfigError(f"{path}: cannot read the DARTS checkpoint ({type(exc).__name__}: {exc}); delete it to start over") from None

    # -------------------------------------------------------------- the run
    def run(self, ctx: SearchContext) -> SearchResult:
        epochs = ctx.budget or self.params.epochs
        net = self._build(ctx)
        self._resume_or_open(ctx, net, epochs)
        t0, cpu0 = time.perf_counter(), time.process_time()
        time_limit = None if ctx.timeout is None else 0.5 * ctx.timeout  # leave the rest for the retraining
        stopped = ""
        with ctx.tracker.ending_on_error(net.run_id):
            try:
                with search_deadline(time_limit):  # checked at every batch: one long epoch cannot eat the retraining's half
                    stopped = self._epochs(ctx, net, epochs, t0, time_limit)
            except DeadlineReached:
                stopped = (f"supernet stopped during epoch {len(net.history) + 1} of {epochs} (the alphas as they were): "
                           f"half of search.timeout={ctx.timeout:g}s used")
        return self._derive(ctx, net, stopped, time.perf_counter() - t0, time.process_time() - cpu0)

    def _epochs(self, ctx: SearchContext, net: _Supernet, epochs: int, t0: float, time_limit: float | None) -> str:
        """The supernet epochs from net.start_epoch: each logged and checkpointed. Returns why they stopped early ('' if not)."""
        for epoch in range(net.start_epoch, epochs):
            record = self._epoch(ctx, net, epoch, epochs)
            if getattr(ctx.evaluate, "display", None) is not None:  # a line per epoch in CI logs / through a pipe
                ctx.evaluate.display.supernet_epoch(epoch, epochs, record, time.perf_counter() - t0, net.start_epoch)
            net.history.append({**{k: float(v) for k, v in record.items()}, "alphas": alpha_probs(net.ctl)})
            ctx.tracker.log_metrics(net.run_id, {**{k: v for k, v in record.items() if k != "epoch"},
                                                 **alpha_metrics(net.relaxation, net.ctl)}, step=epoch)
            self._log_heatmap(ctx, net, epoch)
            self._save_checkpoint(ctx, net, epoch + 1)
            if time_limit is not None and time.perf_counter() - t0 > time_limit and epoch + 1 < epochs:
                return f"supernet stopped after epoch {epoch + 1} of {epochs}: half of search.timeout={ctx.timeout:g}s used"
        return ""

    # -------------------------------------------------------------- pieces
    def _build(self, ctx: SearchContext) -> _Supernet:
        """The supernet of the space, its balancer, the two optimisers (weights, alphas), seeded."""
        p, schema, tcfg = self.params, ctx.splits.schema, ctx.config.train
        relaxation = relax(ctx.space)
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        set_seed(ctx.seed)
        flags = [c.name for c in ctx.space.choices if c.type == "bool" and c.name in relaxation.relaxed] if p.presence == "sampled" else []
        model, ctl = build_supernet(relaxation, schema, mode="gumbel" if p.gumbel else "softmax", tau=p.tau_max, sampled=flags)
        balancer = build_balancer(relaxation.arch, schema)
        alphas = [a for a in model.arch_parameters() if a.requires_grad]  # the tied choice alphas plus `arch_*` scalars of components
        alpha_ids = {id(a) for a in alphas}
        model_weights = [w for w in model.parameters() if id(w) not in alpha_ids and w.requires_grad]
        weights = model_weights + [w for w in balancer.parameters() if w.requires_grad]
        w_opt = torch.optim.Adam(weights, lr=p.w_lr, weight_decay=p.w_weight_decay, fused=True)
        architect = Architect(alphas, model_weights, lambda b: objective(*losses(model, b, tcfg.loss_reduction)[1:]) + self._alpha_penalty(ctl),
                              lr=p.alpha_lr, weight_decay=p.alpha_weight_decay, order=p.order, xi=p.w_lr, new_step=ctl.new_step)
        return _Supernet(relaxation, model, ctl, balancer, weights, model.shared_parameters(), alphas, w_opt, architect)

    def _resume_or_open(self, ctx: SearchContext, net: _Supernet, epochs: int) -> None:
        """Continue from the checkpoint (`--resume`) and its supernet run, or open a new supernet run."""
        ck = self._load_checkpoint(ctx) if ctx.resume else None
        if ck is not None:
            if ck.get("supernet_id") != net.relaxation.arch.id or ck.get("version") != CHECKPOINT_VERSION:
                raise ConfigError(f"{self.checkpoint_path(ctx)} belongs to another space or version (supernet {ck.get('supernet_id')}, "
                                  f"this search {net.relaxation.arch.id}); use another --output or delete the checkpoint")
            net.model.load_state_dict(ck["model"])
            net.ctl.load(ck["alphas"])
            net.w_opt.load_state_dict(ck["w_opt"])
            net.architect.opt.load_state_dict(ck["a_opt"])
            if ck.get("balancer"):
                net.balancer.load_state_dict(ck["balancer"])
            set_rng_state(ck["rng"])
            net.start_epoch, net.history = int(ck["epoch"]), list(ck.get("history", []))
            run_id = ck.get("run_id") or None
            net.run_id = run_id if run_id and ctx.tracker.reopen(run_id) else None  # a deleted run: start a new one
        if net.run_id is not None:
            return
        r, tracker = net.relaxation, ctx.tracker
        net.run_id = tracker.start_child("darts-supernet", ctx.parent_run_id, {"mdmt_nas.kind": "supernet", "searcher": self.name,
                                                                                "space": ctx.space.name, "arch_id": r.arch.id})
        tracker.log_params(net.run_id, {**flatten(self.params.model_dump(mode="json"), "darts"), "epochs": epochs, "supernet_arch_id": r.arch.id,
                                        "supernet_params": sum(w.numel() for w in net.weights), "relaxed_choices": ",".join(r.relaxed)})
        tracker.log_dict(net.run_id, {"relaxed": r.relaxed, "fixed": r.fixed, "notes": r.notes}, "fixed.json")
        tracker.log_text(net.run_id, r.arch.to_json(), "supernet_arch.json")

    def _epoch(self, ctx: SearchContext, net: _Supernet, epoch: int, epochs: int) -> dict[str, float]:
        """One supernet epoch (per train batch: an alpha step on a valid batch, then a weight step); its record."""
        p, splits, tcfg = self.params, ctx.splits, ctx.config.train
        n_rows = len(splits.train) if p.rows_per_epoch is None else min(p.rows_per_epoch, len(splits.train))
        steps = max(1, math.ceil(n_rows / p.batch_size))
        net.model.train()
        net.ctl.training = True
        search_alpha = epoch >= p.warmup_epochs
        alpha_epochs = max(1, epochs - p.warmup_epochs)
        k = max(0, epoch - p.warmup_epochs)
        net.ctl.tau = p.tau_max - (p.tau_max - p.tau_min) * (k / max(1, alpha_epochs - 1))
        self._ramp = (k + 1) / alpha_epochs if search_alpha else 0.0
        gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + epoch)
        valid_iter = _cycle(splits.valid, p.batch_size, ctx.seed * 1_000_003 + 500_009 + epoch * 7919)
        t_ep = time.perf_counter()
        sums = {"train_loss": 0.0, "valid_loss": 0.0}
        n_steps = n_alpha = 0
        for i, batch in enumerate(splits.train.batches(p.batch_size, shuffle=True, generator=gen)):
            check_interrupt()
            if i >= steps:
                break
            if search_alpha:
                sums["valid_loss"] += net.architect.step(batch, next(valid_iter))
                n_alpha += 1
            sums["train_loss"] += self._weight_step(net, batch, tcfg.loss_reduction)
            n_steps += 1
        net.ctl.training = False
        valid = eval_model(net.model, _head(splits.valid, p.eval_rows, tcfg.eval_batch_size), splits.schema, tcfg.eval_batch_size)
        record = {"epoch": epoch, "train_loss": sums["train_loss"] / max(n_steps, 1),
                  "valid_mean_auc": valid.mean_auc, "valid_mean_logloss": valid.mean_logloss,
                  "epoch_seconds": time.perf_counter() - t_ep, "tau": net.ctl.tau if p.gumbel else float("nan")}
        if n_alpha:
            record["alpha_valid_loss"] = sums["valid_loss"] / n_alpha
        return record

    _ramp: float = 0.0  # 0 -> 1 over the alpha epochs: the weight of the alpha regularisers

    def _alpha_penalty(self, ctl: AlphaController) -> torch.Tensor | float:
        """beta-DARTS' beta decay and/or an entropy term on the choice alphas (0 when both are off)."""
        p = self.params
        if not (p.beta_decay or p.entropy_weight) or not ctl.alphas or not self._ramp:
            return 0.0
        alphas = list(ctl.alphas.values())
        pen = 0.0
        if p.beta_decay:
            pen = pen + p.beta_decay * torch.stack([torch.logsumexp(a, -1) for a in alphas]).mean()
        if p.entropy_weight:
            ent = torch.stack([-(torch.softmax(a, -1) * torch.log_softmax(a, -1)).sum() for a in alphas]).mean()
            pen = pen + p.entropy_weight * ent
        return self._ramp * pen

    def _weight_step(self, net: _Supernet, batch: Any, reduction: str) -> float:
        """The weight step of the trainer (steps.weight_step), alphas frozen, with this searcher's clip and message."""
        net.ctl.new_step()
        for a in net.alphas:
            a.requires_grad_(False)
        try:
            total, _, _ = weight_step(net.model, net.balancer, net.w_opt, batch, reduction=reduction, shared=net.shared,
                                      all_params=net.weights, step=0, grad_clip=self.params.grad_clip, clip_params=net.weights,
                                      nan_reason=lambda total, _: f"supernet loss became {float(total)}; lower search.params.w_lr")
        finally:
            for a in net.alphas:
                a.requires_grad_(True)
        return float(total)

    def _derive(self, ctx: SearchContext, net: _Supernet, stopped: str, search_seconds: float, search_cpu: float) -> SearchResult:
        """The derived architecture(s) (logged, saved, margins checked), screened, and the best retrained from scratch."""
        tracker, run_id, relaxation, p = ctx.tracker, net.run_id, net.relaxation, self.params
        assignment, arch, adjusted = derive(ctx.space, relaxation, net.ctl)
        arch = arch.model_copy(update={"name": f"{ctx.space.name}-darts"})
        margins = choice_margins(ctx.space, net.ctl, assignment)
        undecided = sorted(c for c, m in margins.items() if m["margin"] < p.min_margin)
        tracker.log_dict(run_id, {"assignment": assignment, "alphas": alpha_probs(net.ctl), "margins": margins}, "derived.json")
        tracker.log_text(run_id, arch.to_json(), "derived_arch.json")
        tracker.set_tags(run_id, {"derived_arch_id": arch.id, "state": "finished"})
        tracker.log_metrics(run_id, {"search_seconds": search_seconds, "search_cpu_seconds": search_cpu,
                                     "undecided_choices": len(undecided), "min_margin": min((m["margin"] for m in margins.values()), default=1.0)})
        if adjusted:
            tracker.set_tags(run_id, {"adjusted": adjusted})
        tracker.end_run(run_id, "FINISHED")
        (Path(ctx.output_dir) / "darts").mkdir(parents=True, exist_ok=True)
        arch.save(Path(ctx.output_dir) / "darts" / "derived_arch.json")
        extra: dict[str, Any] = {"assignment": assignment, "alphas": alpha_probs(net.ctl), "margins": margins, "supernet_run_id": run_id,
                                 "supernet_arch_id": relaxation.arch.id, "fixed": relaxation.fixed, "epochs_run": len(net.history),
                                 "alpha_history": [h.get("alphas", {}) for h in net.history],
                                 "search_seconds": round(search_seconds, 3), "search_cpu_seconds": round(search_cpu, 3)}
        if undecided:
            extra["note"] = (f"{len(undecided)} of {len(margins)} choices are within noise (top-2 margin < {p.min_margin:g}): "
                             f"{', '.join(undecided)}; their picks are close calls" + (", which the top-k screening checks" if p.top_k > 1 else
                                                                                       "; raise search.params.top_k or the supernet budget"))
        if adjusted:
            extra["adjusted"] = adjusted
        if stopped:
            extra["stopped"] = stopped
        candidates: list[Candidate] = []
        if p.retrain:
            t1, cpu1 = time.perf_counter(), time.process_time()
            winner = (assignment, arch, "")
            if p.top_k > 1 or ctx.known:
                screened, winner = self._screen(ctx, net, assignment, arch)
                candidates += screened
                extra["screened"] = [{"arch_id": c.arch.id, "known": c.known, "state": c.state, "valid_mean_auc": c.valid_mean_auc} for c in screened]
            candidates.insert(0, self.retrain(ctx, winner[1], winner[0], winner[2]))
            extra.update(retrain_seconds=round(time.perf_counter() - t1, 3), retrain_cpu_seconds=round(time.process_time() - cpu1, 3))
        return SearchResult(best=candidates[0].arch if candidates else arch, candidates=candidates, extra=extra)

    def _screen(self, ctx: SearchContext, net: _Supernet, assignment: dict[str, Any],
                arch: Architecture) -> tuple[list[Candidate], tuple[dict[str, Any], Architecture, str]]:
        """Brief trainings of the top-k derived and the known architectures; the best on valid AUC wins."""
        p = self.params
        pool: list[tuple[dict[str, Any], Architecture, str]] = [(assignment, arch, "")]
        for a, ar, _lp in top_k_derived(ctx.space, net.relaxation, net.ctl, p.top_k):
            if all(ar.id != x[1].id for x in pool) and len(pool) < p.top_k:
                pool.append((a, ar.model_copy(update={"name": f"{ctx.space.name}-darts"}), ""))
        known_ids = {ar.id: (name, ar) for name, _, ar in ctx.known}
        pool = [(a, known_ids[ar.id][1], known_ids[ar.id][0]) if ar.id in known_ids else (a, ar, n) for a, ar, n in pool]  # a derived known one
        pool += [(a, ar, name) for name, a, ar in ctx.known if all(ar.id != x[1].id for x in pool)]
        full = self._retrain_config(ctx)
        per = 4
        cfg = rung_config(full, len(ctx.splits.train), per)
        cfg = cfg.model_copy(update={"epochs": max(1, round(p.screen_fraction * full.epochs * per)), "patience": 0})
        screened = []
        for i, (a, ar, name) in enumerate(pool):
            c = ctx.evaluate(ar, f"darts-screen-{i}" + (f"-{name}" if name else ""), assignment=a, train_config=cfg, kind="screen",
                             known=name, fidelity=p.screen_fraction)
            screened.append(c)
        ok = [(c, x) for c, x in zip(screened, pool) if c.state == "finished" and math.isfinite(c.valid_mean_auc)]
        winner = max(ok, key=lambda t: t[0].valid_mean_auc)[1] if ok else pool[0]
        return screened, winner

    def _retrain_config(self, ctx: SearchContext) -> Any:
        """train.* with the candidates' search.epochs (--epochs), or search.params.retrain_epochs when set."""
        from mdmt_nas.search.evaluate import candidate_train_config

        cfg = candidate_train_config(ctx.config)
        return cfg.model_copy(update={"epochs": self.params.retrain_epochs}) if self.params.retrain_epochs else cfg

    def candidate_config(self, ctx: SearchContext) -> Any:
        return self._retrain_config(ctx)

    def retrain(self, ctx: SearchContext, arch: Architecture, assignment: dict[str, Any], known: str = "") -> Candidate:
        """Train the chosen architecture from scratch as a child run (the swap point for other evaluators)."""
        return ctx.evaluate(arch, "darts-derived" if not known else f"darts-derived-{known}", assignment=assignment,
                            train_config=self._retrain_config(ctx), kind="retrain", known=known)

    def _save_checkpoint(self, ctx: SearchContext, net: _Supernet, epoch: int) -> None:
        save_torch({
            "version": CHECKPOINT_VERSION,
            "space": ctx.space.name,
            "supernet_id": net.relaxation.arch.id,
            "epoch": epoch,
            "batch": 0,
            "model": net.model.state_dict(),
            "alphas": net.ctl.state(),
            "w_opt": net.w_opt.state_dict(),
            "a_opt": net.architect.opt.state_dict(),
            "balancer": net.balancer.state_dict(),
            "rng": rng_state(),
            "history": net.history,
            "run_id": net.run_id or "",
            "parent_run_id": ctx.parent_run_id or "",
        }, self.checkpoint_path(ctx))

    def _log_heatmap(self, ctx: SearchContext, net: _Supernet, epoch: int) -> None:
        import matplotlib.pyplot as plt

        fig = alpha_heatmap(net.relaxation, net.ctl, f"{ctx.space.name}: choice probabilities after epoch {epoch}")
        try:
            out = Path(ctx.output_dir) / "darts" / "alphas" / f"epoch_{epoch:03d}.png"
            save_figure(fig, out, dpi=110)
            ctx.tracker.log_figure(net.run_id, fig, f"alphas/epoch_{epoch:03d}.png")
        finally:
            plt.close(fig)


def _head(source: Any, rows: int | None, batch_size: int) -> Any:
    """The first `rows` rows of a split (all of it if None or smaller)."""
    if rows is None or len(source) <= rows:
        return source
    from mdmt_nas.data.tensors import MDMTTensors

    if isinstance(source, MDMTTensors):
        return source.index(slice(0, rows))
    parts, n = [], 0
    for b in source.batches(min(batch_size, rows)):
        parts.append(b)
        n += len(b)
        if n >= rows:
            break
    return MDMTTensors.concat(parts).index(slice(0, rows))


def _cycle(source: Any, batch_size: int, seed: int):
    """Endless shuffled batches of a split (a new order per pass, seeded: resumable by epoch)."""
    k = 0
    while True:
        gen = torch.Generator().manual_seed(seed + k)
        got = False
        for b in source.batches(batch_size, shuffle=True, generator=gen):
            got = True
            yield b
        if not got:
            raise ConfigError("the valid split is empty; DARTS needs validation rows for the alpha steps")
        k += 1
