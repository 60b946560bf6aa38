"""NNI searchers: random search and regularized (aging) evolution, with NNI 3.0's own strategies.

The Space becomes an NNI model space: one `nni.mutable.Categorical` per choice
point (option labels, the ints, or [False, True]) in an `ExecutableModelSpace`
whose `random` samples only the choices that are active (inactive ones take a
fixed canonical value, so equal architectures give equal samples) and whose
`freeze` canonicalises a mutated sample the same way. NNI's strategy objects
(`nni.nas.strategy.Random`, `RegularizedEvolution`) explore it on NNI's
in-process `SequentialExecutionEngine`, and a plain-function evaluator
(`FunctionalEvaluator`) trains each frozen model through `ctx.evaluate` and
reports the valid mean AUC to NNI (`nni.report_final_result`).

No NNI manager (the node.js server behind NNI's web UI) is started: the
sequential engine needs none, and a `NasExperiment` would only add it and a
manifest in ~/nni-experiments. NNI's log, the strategy checkpoint and the
candidate records are kept in `<output>/nni/`; a search run again with
`--resume` loads them and continues to the budget. Nothing keeps running after
`run` returns or raises: the engine is shut down and the NNI log handler
removed in a `finally`.

Needs the `nni` extra: ``pip install 'mdmt-nas[nni]'`` (nni 3.0, which also
needs pytorch-lightning and pins filelock<3.12).
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from mdmt_nas.errors import TrialPruned, UserError
from mdmt_nas.search.base import Candidate, SearchContext, SearchResult, SearchStopped, Searcher, SearcherParams
from mdmt_nas.search.fidelity import StandalonePruner, rung_config
from mdmt_nas.search.optuna import choice_values

NNI_DIR = "nni"


def _import_nni(searcher: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nni 3.0 warns about torch classes it does not know
            import nni  # noqa: F401
            import nni.nas.strategy  # noqa: F401
            from nni.nas.execution import SequentialExecutionEngine  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"searcher {searcher!r} needs the nni extra: pip install 'mdmt-nas[nni]' ({type(exc).__name__}: {exc})"
        ) from None
    import nni

    return nni


class NNIParams(SearcherParams):
    dedup: bool = Field(default=True, description="never propose the same sample twice (NNI's deduplication)")
    pruner: Literal["hyperband", "asha", "median", "none"] = Field(
        default="hyperband",
        description="multi-fidelity: Optuna's pruning rules on the candidates' rung results (search/fidelity.py)",
    )
    reports_per_epoch: int = Field(default=2, ge=1, description="rungs per pass over the training rows")
    max_proposals: int | None = Field(
        default=None, ge=1, description="stop after this many proposals, duplicates included (default: 20x the budget)"
    )


class NNIEvolutionParams(NNIParams):
    population_size: int | None = Field(
        default=None, ge=1, description="individuals kept alive (default: budget/2, 2..20)"
    )
    sample_size: int | None = Field(
        default=None, ge=1, description="tournament size (default: population/4, at least 1)"
    )
    mutation_prob: float | None = Field(
        default=None, gt=0, le=1, description="per-choice mutation probability (default: 1/number of choices)"
    )
    crossover: bool = False


def _space_model_class() -> type:
    """The ExecutableModelSpace over a Space (defined lazily: nni is optional)."""
    from nni.mutable import Categorical, MutableDict
    from nni.nas.space import ExecutableModelSpace, ModelStatus

    class SpaceModel(ExecutableModelSpace):
        """A Space as an NNI model space; a frozen instance's `executable_model()` is (assignment, Architecture)."""

        def __init__(
            self, space: Any, evaluator: Any, mutables: Any = None, first: list[dict[str, Any]] | None = None
        ) -> None:
            super().__init__()
            self.space = space
            self.evaluator = evaluator
            #: assignments proposed before any random sample: the warm-start points (NNI's initial population)
            self.first = list(first or [])
            self.mutables = (
                mutables
                if mutables is not None
                else MutableDict({c.name: Categorical(choice_values(c), label=c.name) for c in space.choices})
            )
            self.sample = None

        def canonical(self, sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            """(full sample with inactive choices at their first value, assignment of the active ones)."""
            active: dict[str, Any] = {}
            full: dict[str, Any] = {}
            for c in self.space.choices:
                if self.space.active(active, c):
                    active[c.name] = full[c.name] = sample[c.name]
                else:
                    full[c.name] = choice_values(c)[0]
            return full, active

        def random(self, memo: dict[str, Any] | None = None, random_state: Any = None) -> Any:
            from numpy.random import RandomState

            memo = {} if memo is None else memo
            if self.first:
                full, _ = self.canonical({c.name: choice_values(c)[0] for c in self.space.choices} | self.first.pop(0))
                memo.update(full)
                return self.freeze(memo)
            random_state = random_state if random_state is not None else RandomState()
            active: dict[str, Any] = {}
            for c in self.space.choices:
                if self.space.active(active, c):
                    active[c.name] = self.mutables[c.name].random(memo, random_state)
                else:
                    memo[c.name] = choice_values(c)[0]
            return self.freeze(memo)

        def freeze(self, sample: dict[str, Any]) -> Any:
            if self.status != ModelStatus.Initialized:
                raise RuntimeError("cannot freeze a model that is already frozen")
            self.validate(sample)
            full, _ = self.canonical(sample)
            model = SpaceModel(self.space, self.evaluator, self.mutables)
            model.status = ModelStatus.Frozen
            model.sample = full
            return model

        def check_contains(self, sample: dict[str, Any]) -> Any:
            return self.mutables.check_contains(sample)

        def leaf_mutables(self, is_leaf: Any) -> Any:
            yield from self.mutables.leaf_mutables(is_leaf)

        def executable_model(self) -> Any:
            if self.sample is None:
                raise RuntimeError("the model space is not frozen")
            _, assignment = self.canonical(self.sample)
            return assignment, self.space.to_arch(assignment)

        def extra_repr(self) -> str:
            return f"space={self.space.name!r}, sample={self.sample!r}, status={self.status!r}"

    return SpaceModel


def _engine_class() -> type:
    from nni.nas.execution import SequentialExecutionEngine

    class BudgetEngine(SequentialExecutionEngine):
        """NNI's sequential engine whose budget counts trained candidates (a repeated architecture is free)."""

        def __init__(self, budget_left: Any, max_proposals: int, max_duration: float | None) -> None:
            super().__init__(max_model_count=None, max_duration=max_duration, continue_on_failure=False)
            self.budget_left = budget_left
            self.max_proposals = max_proposals

        def budget_available(self) -> bool:
            return self.budget_left() > 0 and self._model_count < self.max_proposals and super().budget_available()

    return BudgetEngine


class _NNISearcher(Searcher):
    """Shared driver of the NNI strategies."""

    budget_unit: ClassVar[str] = "trials"
    default_budget: ClassVar[int] = 20

    def __init__(self, params: Any = None):
        super().__init__(params)
        _import_nni(self.name)

    def make_strategy(self, ctx: SearchContext) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def candidate_config(self, ctx: SearchContext) -> Any:
        """The training config of a candidate, cut into rungs (search/fidelity.py)."""
        return rung_config(ctx.evaluate.train_config, len(ctx.splits.train), self.params.reports_per_epoch)

    # -------------------------------------------------------------- files
    @staticmethod
    def _dir(ctx: SearchContext) -> Path:
        d = ctx.output_dir / NNI_DIR
        d.mkdir(parents=True, exist_ok=True)
        return d

    def existing_parent_run(self, ctx: SearchContext) -> str | None:
        state = self._load_state(ctx) if ctx.resume else None
        return state.get("parent_run_id") if state else None

    def _load_state(self, ctx: SearchContext) -> dict[str, Any] | None:
        path = ctx.output_dir / NNI_DIR / "state.pkl"
        if not path.exists():
            return None
        with path.open("rb") as fh:
            state = pickle.load(fh)  # our own checkpoint, written by _save_state
        if state.get("searcher") != self.name or state.get("space") != ctx.space.name:
            raise UserError(
                f"{path} belongs to a {state.get('searcher')} search of space {state.get('space')!r}; choose another --output"
            )
        return state

    # -------------------------------------------------------------- run
    def run(self, ctx: SearchContext) -> SearchResult:
        nni = _import_nni(self.name)
        from nni.nas.evaluator import FunctionalEvaluator
        from nni.nas.execution.event import ModelEventType

        from mdmt_nas.search import report

        out = self._dir(ctx)
        budget = ctx.budget or self.default_budget
        state = self._load_state(ctx) if ctx.resume else None
        records: list[str] = list(state["records"]) if state else []
        # arch id -> final metric of an evaluated architecture (None: it failed)
        seen: dict[str, float | None] = dict(state["seen"]) if state else {}
        trained = [len(seen)]
        trained_before = trained[0]
        candidates: list[Candidate] = [Candidate.from_record(r) for r in records]

        known = {a.id: name for name, _, a in ctx.known}
        cfg = self.candidate_config(ctx)
        pruner = StandalonePruner(self.params.pruner, cfg.epochs, ctx.seed)

        def evaluate_model(model: Any) -> None:
            assignment, arch = model
            if arch.id in seen:  # a repeated architecture: same (deterministic) result, no new training
                if seen[arch.id] is not None:
                    nni.report_final_result(seen[arch.id])
                return
            number = len(candidates)
            name = known.get(arch.id, "")
            label = f"{self.name}-{number}" + (f"-{name}" if name else "")
            trial = pruner.start()
            last = [float("nan")]

            def per_epoch(epoch: int, record: dict[str, float]) -> None:
                v = record.get("valid_mean_auc", float("nan"))
                if math.isfinite(v):
                    last[0] = float(v)
                    nni.report_intermediate_result(float(v))
                    # known architectures always train fully; after the last epoch the training is done
                    if not name and epoch + 1 < cfg.epochs and pruner.should_prune(trial, float(v), epoch):
                        raise TrialPruned(f"pruned at epoch {epoch + 1} (valid mean AUC {v:.4f})")

            try:
                cand = ctx.evaluate(
                    arch.model_copy(update={"name": name}) if name else arch,
                    label,
                    epoch_callback=per_epoch,
                    assignment=assignment,
                    number=number,
                    train_config=cfg,
                    known=name,
                )
            except TrialPruned:
                cand = ctx.evaluate.candidates[-1]
                pruner.finish(trial, None)
                candidates.append(cand)
                records.append(cand.to_record(label))
                seen[arch.id] = last[0]
                trained[0] += 1
                nni.report_final_result(last[0])  # the evolution ranks it by how far it got
                return
            pruner.finish(trial, cand.valid_mean_auc if cand.state == "finished" else None)
            candidates.append(cand)
            records.append(cand.to_record(label))
            ok = cand.state == "finished" and math.isfinite(cand.valid_mean_auc)
            seen[arch.id] = float(cand.valid_mean_auc) if ok else None
            trained[0] += 1
            if ok:
                nni.report_final_result(float(cand.valid_mean_auc))

        SpaceModel = _space_model_class()
        first = [a for _, a, arch in ctx.known if arch.id not in seen]
        space_model = SpaceModel(ctx.space, FunctionalEvaluator(evaluate_model), first=first)
        engine = _engine_class()(lambda: budget - trained[0], self.params.max_proposals or 20 * budget, ctx.timeout)
        strategy = self.make_strategy(ctx)

        def save(_event: Any = None) -> None:
            self._save_state(ctx, strategy, seen, records)

        log_handler = self._redirect_logs(out)
        stopped = ""
        try:
            strategy.initialize(space_model, engine)
            if state is not None:
                strategy.load_state_dict(state["strategy"])
            engine.register_model_event_callback(ModelEventType.TrainingEnd, save)
            if trained[0] < budget:
                try:
                    strategy.run()
                except SearchStopped as exc:
                    stopped = str(exc)
        finally:
            engine.shutdown()
            self._restore_logs(log_handler)
            try:
                save()
            except Exception:  # noqa: BLE001 - a checkpoint failure must not hide the real error
                pass
        best = report.best_candidate(candidates)
        session = trained[0] - trained_before
        extra: dict[str, Any] = {
            "nni_dir": str(out),
            "proposals": engine._model_count,
            "repeats": max(0, engine._model_count - session),
        }
        if stopped:
            extra["stopped"] = stopped
        return SearchResult(best=best.arch if best else None, candidates=candidates, extra=extra)  # type: ignore[arg-type]

    def _save_state(self, ctx: SearchContext, strategy: Any, seen: dict[str, float | None], records: list[str]) -> None:
        state = {
            "searcher": self.name,
            "space": ctx.space.name,
            "parent_run_id": ctx.parent_run_id,
            "strategy": strategy.state_dict(),
            "seen": seen,
            "records": records,
        }
        from mdmt_nas.files import atomic_file, write_text

        with atomic_file(ctx.output_dir / NNI_DIR / "state.pkl", "wb") as fh:
            pickle.dump(state, fh)
        write_text(ctx.output_dir / NNI_DIR / "candidates.jsonl", "".join(r + "\n" for r in records))

    @staticmethod
    def _redirect_logs(out: Path) -> tuple[logging.Logger, list[logging.Handler], bool, logging.Handler]:
        logger = logging.getLogger("nni")
        saved = (logger, list(logger.handlers), logger.propagate)
        fh = logging.FileHandler(out / "nni.log")
        fh.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s (%(name)s) %(message)s"))
        logger.handlers = [fh]
        logger.propagate = False
        return (*saved, fh)

    @staticmethod
    def _restore_logs(saved: tuple[logging.Logger, list[logging.Handler], bool, logging.Handler]) -> None:
        logger, handlers, propagate, fh = saved
        fh.close()
        logger.handlers = handlers
        logger.propagate = propagate


class NNIRandom(_NNISearcher):
    """NNI's random strategy (nni.nas.strategy.Random) over the space."""

    name = "nni-random"
    Params: ClassVar[type[NNIParams]] = NNIParams

    def make_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import Random

        return Random(dedup=self.params.dedup, seed=ctx.seed)


class NNIEvolution(_NNISearcher):
    """NNI's regularized (aging) evolution (nni.nas.strategy.RegularizedEvolution, Real et al. 2019)."""

    name = "nni-evolution"
    Params: ClassVar[type[NNIEvolutionParams]] = NNIEvolutionParams

    def make_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import RegularizedEvolution

        p = self.params
        budget = ctx.budget or self.default_budget
        pop = p.population_size or max(2, min(20, budget // 2))
        sample = min(p.sample_size or max(1, pop // 4), pop)
        mutation = p.mutation_prob or 1.0 / max(1, len(ctx.space.choices))
        return RegularizedEvolution(
            population_size=pop,
            sample_size=sample,
            mutation_prob=mutation,
            crossover=p.crossover,
            dedup=p.dedup,
            seed=ctx.seed,
        )


SEARCHERS = (NNIRandom, NNIEvolution)
