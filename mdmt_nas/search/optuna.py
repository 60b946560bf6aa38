"""Optuna searchers: TPE, NSGA-II (multi-objective), random and grid over a Space.

Define-by-run: each trial suggests only the choices that are active under the
values suggested before them, in the space's order (categorical by option
label, int with `suggest_int`, bool as categorical [False, True]). Every
trial's candidate is trained by `ctx.evaluate` (an MLflow child run); the valid
mean AUC is reported after every epoch so the pruner (median, hyperband or none)
can stop a poor candidate early.

Studies live in an RDB storage (default `sqlite:///<output>/study.db`) and are
resumable: running the same search again loads the study and runs until the
budget -- COMPLETE plus PRUNED trials -- is reached. A heartbeat marks a trial
whose process died as FAILED on the next start, and the failed trial is retried
with the same parameters. The MLflow parent run id is a study user attribute,
so a resumed study keeps one parent run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from mdmt_nas.errors import TrialPruned, UserError, check_interrupt
from mdmt_nas.search.base import Candidate, SearchContext, SearchResult, SearchStopped, Searcher, SearcherParams
from mdmt_nas.search.fidelity import make_pruner, rung_config

PARENT_ATTR = "mdmt_nas.mlflow_parent_run_id"
CANDIDATE_ATTR = "mdmt_nas.candidate"
KNOWN_ATTR = "mdmt_nas.known"


class OptunaParams(SearcherParams):
    pruner: Literal["hyperband", "asha", "median", "none"] = Field(default="hyperband", description="multi-fidelity: stop poor candidates from their valid AUC at each rung (single objective only); hyperband, asha (successive halving), median, none")
    reports_per_epoch: int = Field(default=2, ge=1, description="rungs per pass over the training rows: the first rung is 1/N of the rows (search/fidelity.py)")
    n_startup_trials: int | None = Field(default=None, ge=0, description="random trials before TPE models the space / the median pruner prunes (default: budget/3, 3..10)")
    n_warmup_steps: int = Field(default=0, ge=0, description="median pruner: epochs before a trial can be pruned")
    population_size: int | None = Field(default=None, ge=2, description="NSGA-II population (default: budget/2, 4..20)")
    heartbeat_interval: int = Field(default=10, ge=1, description="seconds between heartbeats of a running trial")
    grace_period: int | None = Field(default=None, ge=1, description="seconds without heartbeat before a RUNNING trial counts as dead (default: 3x the interval)")
    max_retry: int = Field(default=2, ge=0, description="retries of a trial whose process died")
    grid_limit: int = Field(default=10_000, ge=1, description="optuna-grid refuses spaces with more architectures")
    parent_wait: float = Field(default=30.0, ge=0, description="seconds a worker joining a just-created shared study waits for its MLflow parent run")


def choice_values(c: Any) -> list[Any]:
    """Assignment values of a choice point: option labels, the ints, or [False, True]."""
    if hasattr(c, "values"):
        return list(c.values())
    if c.type == "int":
        return list(range(c.low, c.high + 1, c.step))
    if c.type == "bool":
        return [False, True]
    return list(c.labels())


def suggest_assignment(trial: Any, space: Any) -> dict[str, Any]:
    """Define-by-run: suggest every active choice in order."""
    assignment: dict[str, Any] = {}
    for c in space.choices:
        if not space.active(assignment, c):
            continue
        if c.type == "int":
            assignment[c.name] = trial.suggest_int(c.name, c.low, c.high, step=c.step)
        elif c.type == "bool":
            assignment[c.name] = trial.suggest_categorical(c.name, [False, True])
        else:
            assignment[c.name] = trial.suggest_categorical(c.name, list(c.labels()))
    return assignment


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings (heartbeats, stale-trial retries) for our own calls."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class _CandidateFailed(Exception):
    """Raised inside the objective so Optuna records a failed candidate's trial as FAIL."""


def _unbeaten_trial_ids(storage: Any, study_id: int, grace: float) -> list[int]:
    """RUNNING trials that never sent a heartbeat and started more than `grace` seconds ago.

    Optuna's stale-trial check skips trials without a heartbeat, so a process killed between creating a
    trial and its first heartbeat would leave it RUNNING forever; these are failed (and retried) too.
    """
    import datetime

    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from optuna.trial import TrialState

        now = datetime.datetime.now()
        with _create_scoped_session(storage.scoped_session) as session:
            rows = (session.query(models.TrialModel).filter(models.TrialModel.state == TrialState.RUNNING)
                    .filter(models.TrialModel.study_id == study_id).all())
            return [t.trial_id for t in rows
                    if not t.heartbeats and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace]
    except Exception:  # noqa: BLE001 - Optuna internals changed: fall back to its own heartbeat check
        return []


class OptunaSearcher(Searcher):
    """Shared machinery of the Optuna searchers; subclasses choose the sampler."""

    Params: ClassVar[type[OptunaParams]] = OptunaParams
    budget_unit: ClassVar[str] = "trials"
    default_budget: ClassVar[int] = 20
    multi_objective: ClassVar[bool] = False
    params: OptunaParams
    _created_study: bool = False  # this process created the study (see existing_parent_run)

    # -------------------------------------------------------------- storage / study
    def storage_url(self, ctx: SearchContext) -> str:
        return ctx.storage or f"sqlite:///{(ctx.output_dir / 'study.db').resolve()}"

    def study_name(self, ctx: SearchContext) -> str:
        return ctx.study_name or f"{ctx.space.name}-{self.name}-{ctx.config.dataset.name}-seed{ctx.seed}"

    def _storage(self, ctx: SearchContext) -> Any:
        import optuna

        p = self.params
        url = self.storage_url(ctx)
        from mdmt_nas.search import storage as stores

        if stores.is_journal(url):  # Optuna's JournalStorage, file backend (search/storage.py)
            return stores.journal_storage(url)
        url = stores.rdb_url(url)  # postgresql:// with the installed driver
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        with _quiet():
            retry_kw = ({"heartbeat_stale_trial_callback": retry_cls(max_retry=p.max_retry)} if retry_cls is not None  # optuna >= 4.9
                        else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=p.max_retry)})
        from mdmt_nas.stores import init_database

        grace = p.grace_period or 3 * p.heartbeat_interval
        try:
            with _quiet():  # several workers creating one study database at once: serialised / retried
                storage = init_database(lambda: optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=p.heartbeat_interval, grace_period=grace, **retry_kw), url)
        except Exception as exc:  # bad URL, missing driver, unreachable server
            raise UserError(f"cannot open the Optuna storage {url!r}: {type(exc).__name__}: {exc}") from None
        stale = storage._get_stale_trial_ids
        storage._get_stale_trial_ids = lambda study_id: stale(study_id) + _unbeaten_trial_ids(storage, study_id, grace)
        return storage

    def existing_parent_run(self, ctx: SearchContext) -> str | None:
        """The MLflow parent run a previous run of this study recorded (None for a new study).

        Checks first that the study fits this search, so a mismatch is refused before any MLflow run is touched.
        """
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = self._storage(ctx)
        with _quiet():
            try:  # creating the study is atomic: of several workers starting at once, one creates it...
                optuna.create_study(storage=storage, study_name=self.study_name(ctx), directions=self.directions(ctx))
                self._created_study = True
                return None  # ... and opens the MLflow parent run, which _open_study records
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=self.study_name(ctx), storage=storage)
        self._check_study(ctx, study)
        # ... the others wait (briefly) for the creator to record its parent run, so all log under one parent
        deadline = time.monotonic() + self.params.parent_wait
        while not ctx.resume and PARENT_ATTR not in study.user_attrs and not study.trials and time.monotonic() < deadline:
            time.sleep(0.5)
        return study.user_attrs.get(PARENT_ATTR)

    def _check_study(self, ctx: SearchContext, study: Any) -> dict[str, str]:
        """UserError if an existing study was made for another space, searcher, dataset or objectives; this search's attrs."""
        attrs = study.user_attrs
        mine = {"mdmt_nas.space": ctx.space.name, "mdmt_nas.searcher": self.name, "mdmt_nas.dataset": ctx.config.dataset.name,
                "mdmt_nas.objectives": ",".join(ctx.objectives)}
        clash = {k: (attrs[k], v) for k, v in mine.items() if k in attrs and attrs[k] != v}
        if clash:
            what = ", ".join(f"{k.split('.', 1)[1]} {old!r} (now {new!r})" for k, (old, new) in clash.items())
            raise UserError(f"Optuna study {study.study_name!r} in {self.storage_url(ctx)} was created for {what}; "
                            "choose another --study-name or --output")
        return mine

    def directions(self, ctx: SearchContext) -> list[str]:
        return ["maximize"]

    def make_sampler(self, ctx: SearchContext) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def candidate_config(self, ctx: SearchContext) -> Any:
        """The training config of a candidate, cut into rungs (search/fidelity.py)."""
        return rung_config(ctx.evaluate.train_config, len(ctx.splits.train), self.params.reports_per_epoch)

    def make_pruner(self, ctx: SearchContext) -> Any:
        kind = "none" if len(self.directions(ctx)) > 1 else self.params.pruner
        return make_pruner(kind, self.candidate_config(ctx).epochs, self._startup(ctx), self.params.n_warmup_steps)

    def _startup(self, ctx: SearchContext) -> int:
        if self.params.n_startup_trials is not None:
            return self.params.n_startup_trials
        return max(3, min(10, (ctx.budget or self.default_budget) // 3))

    def _open_study(self, ctx: SearchContext) -> Any:
        import optuna

        name = self.study_name(ctx)
        storage = self._storage(ctx)
        try:
            study = optuna.create_study(storage=storage, study_name=name, sampler=self.make_sampler(ctx), pruner=self.make_pruner(ctx),
                                        directions=self.directions(ctx), load_if_exists=True)
        except ValueError as exc:
            raise UserError(f"Optuna study {name!r} in {self.storage_url(ctx)} does not fit this search ({exc}); choose another --study-name") from None
        # A sampler seeded as before would propose the points already tried again (repeats are not trained but
        # fill the budget): a resumed study continues from seed + its trial count, a worker joining a shared
        # study mixes in its process id so simultaneous workers explore different points.
        offset = len(study.trials)
        if ctx.storage and not ctx.resume and not self._created_study:
            offset += os.getpid()
        if offset:
            study.sampler = self.make_sampler(dataclasses.replace(ctx, seed=ctx.seed + offset))
        attrs = study.user_attrs
        mine = self._check_study(ctx, study)
        for k, v in mine.items():
            if k not in attrs:
                study.set_user_attr(k, v)
        if ctx.parent_run_id and attrs.get(PARENT_ATTR) != ctx.parent_run_id:
            study.set_user_attr(PARENT_ATTR, ctx.parent_run_id)
        return study

    # -------------------------------------------------------------- objective
    def _objective(self, ctx: SearchContext, study: Any) -> Any:
        import optuna

        multi = len(self.directions(ctx)) > 1
        cfg = self.candidate_config(ctx)
        epochs = cfg.epochs
        budget = ctx.budget or self.default_budget
        cap = [max(100, 10 * budget)]  # proposals in this run, repeats of failed architectures included

        def objective(trial: optuna.Trial) -> Any:
            check_interrupt()  # a SIGINT/SIGTERM received while Optuna sampled or wrote (see errors.deferred_signals)
            cap[0] -= 1
            if cap[0] < 0:
                raise SearchStopped(f"{max(100, 10 * budget)} proposals without reaching the budget (the space may have too few working architectures)")
            assignment = suggest_assignment(trial, ctx.space)
            known = trial.user_attrs.get(KNOWN_ATTR, "")
            arch = ctx.space.to_arch(assignment)
            if known:
                arch = arch.model_copy(update={"name": known})
            trial.set_user_attr("arch_id", arch.id)
            label = f"trial-{trial.number}" + (f"-{known}" if known else "")
            dup = self._duplicate(study, arch.id, trial.number)
            if dup is not None:
                trial.set_user_attr("duplicate_of", dup.number)
                if dup.state == "failed":
                    ctx.evaluate.note_failure()  # counts toward search.max_failures (SearchStopped ends the search)
                    raise _CandidateFailed(f"same architecture as trial {dup.number}, which failed: {dup.reason}")
                return self._values(ctx, dup)

            def report(epoch: int, record: dict[str, float]) -> None:
                if multi:
                    return
                v = record.get("valid_mean_auc", float("nan"))
                if isinstance(v, float) and math.isfinite(v):
                    trial.report(v, epoch)
                # after the last epoch the training is done: keep it; known architectures always train fully
                if epoch + 1 < epochs and not known and trial.should_prune():
                    raise TrialPruned(f"pruned at epoch {epoch + 1} (valid mean AUC {v:.4f})")

            try:
                cand = ctx.evaluate(arch, label, epoch_callback=report, assignment=assignment, number=trial.number,
                                    train_config=cfg, known=known)
            except TrialPruned as exc:  # recorded by the evaluator as pruned; Optuna's own exception marks the trial
                self._record_last(ctx, trial, label)
                raise optuna.TrialPruned(str(exc)) from exc
            except SearchStopped:  # raised after the candidate was recorded (e.g. the max_failures-th failure)
                self._record_last(ctx, trial, label)
                raise
            trial.set_user_attr(CANDIDATE_ATTR, cand.to_record(label))
            if cand.state == "failed":
                raise _CandidateFailed(cand.reason)
            return self._values(ctx, cand)

        return objective

    @staticmethod
    def _record_last(ctx: SearchContext, trial: Any, label: str) -> None:
        """Store the candidate `evaluate` recorded before it raised (pruned, or the search stopped)."""
        cands = ctx.evaluate.candidates
        if cands and cands[-1].number == trial.number:
            trial.set_user_attr(CANDIDATE_ATTR, cands[-1].to_record(label))

    def _values(self, ctx: SearchContext, c: Candidate) -> Any:
        vals = [c.valid_mean_auc]
        for o in ctx.objectives[1:]:
            vals.append(float(c.num_params) if o == "params" else c.latency_ms_per_1k)
        return vals[0] if len(self.directions(ctx)) == 1 else tuple(vals)

    @staticmethod
    def _duplicate(study: Any, arch_id: str, number: int) -> Candidate | None:
        """An earlier finished or failed trial of the same architecture (trials are deterministic: no need to train again)."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if t.number != number and t.user_attrs.get("arch_id") == arch_id and CANDIDATE_ATTR in t.user_attrs and "duplicate_of" not in t.user_attrs:
                return Candidate.from_record(t.user_attrs[CANDIDATE_ATTR])
        return None

    # -------------------------------------------------------------- run
    def counted(self, study: Any) -> int:
        from optuna.trial import TrialState

        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def prepare(self, ctx: SearchContext, study: Any) -> None:
        """Hook before optimisation: the warm-start points go first (the grid searcher enqueues its points after them)."""
        self.enqueue_known(ctx, study)

    @staticmethod
    def enqueue_known(ctx: SearchContext, study: Any) -> None:
        """Enqueue the space's known architectures once per study (a resumed or shared study does not repeat them)."""
        if not ctx.known or study.user_attrs.get("mdmt_nas.known_enqueued"):
            return
        for name, assignment, _arch in ctx.known:
            study.enqueue_trial(assignment, user_attrs={KNOWN_ATTR: name}, skip_if_exists=True)
        study.set_user_attr("mdmt_nas.known_enqueued", len(ctx.known))

    def n_trials(self, ctx: SearchContext, study: Any, remaining: int) -> int | None:
        return None

    def startup_note(self, ctx: SearchContext, study: Any) -> str:
        """A note for the summary when the sampler never left its start-up (random) phase."""
        return ""

    def run(self, ctx: SearchContext) -> SearchResult:
        import optuna
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported by the runner, with their reason
        with _quiet():
            try:
                study = self._open_study(ctx)
                optuna.storages.fail_stale_trials(study)
                self.prepare(ctx, study)
                budget = ctx.budget or self.default_budget
                remaining = budget - self.counted(study)
                stopped = ""
                if remaining > 0:
                    try:
                        study.optimize(
                            self._objective(ctx, study), n_trials=self.n_trials(ctx, study, remaining), timeout=ctx.timeout,
                            catch=(_CandidateFailed,), gc_after_trial=True,
                            callbacks=[MaxTrialsCallback(budget, states=(TrialState.COMPLETE, TrialState.PRUNED))],
                        )
                    except SearchStopped as exc:
                        stopped = str(exc)
                return self.result(ctx, study, stopped)
            finally:
                optuna.logging.set_verbosity(verbosity)

    def result(self, ctx: SearchContext, study: Any, stopped: str = "") -> SearchResult:
        """Every trial of the study (all runs of it) as Candidates; the best by valid AUC."""
        from mdmt_nas.search import report

        cands = [Candidate.from_record(t.user_attrs[CANDIDATE_ATTR]) for t in study.get_trials(deepcopy=False)
                 if CANDIDATE_ATTR in t.user_attrs and "duplicate_of" not in t.user_attrs]
        best = report.best_candidate(cands)
        front = report.pareto_front(cands, ctx.objectives) if len(ctx.objectives) > 1 else None
        extra = {"study_name": study.study_name, "storage": self.storage_url(ctx), "trials": len(study.trials),
                 "duplicates": sum("duplicate_of" in t.user_attrs for t in study.trials),
                 "pruner": self.params.pruner if len(self.directions(ctx)) == 1 else "none",
                 "reports_per_epoch": self.params.reports_per_epoch}
        note = self.startup_note(ctx, study)
        if note:
            extra["note"] = note
        if stopped:
            extra["stopped"] = stopped
        return SearchResult(best=best.arch if best else None, candidates=cands, pareto=front, extra=extra)  # type: ignore[arg-type]


class TPEParams(OptunaParams):
    multivariate: bool = Field(default=False, description="model the choices jointly (multivariate TPE, Falkner et al. 2018 "
                               "as in Optuna) instead of one density per choice; off by default as in Optuna (no gain measured "
                               "yet on these spaces)")
    group: bool = Field(default=True, description="with multivariate: one joint model per set of choices that occur together "
                        "(the conditional choices of a module on/off), as the space is define-by-run")


class OptunaTPE(OptunaSearcher):
    """Tree-structured Parzen estimator (Optuna's default) over the space, with pruning."""

    name = "optuna-tpe"
    Params: ClassVar[type[OptunaParams]] = TPEParams
    params: TPEParams

    def startup_note(self, ctx: SearchContext, study: Any) -> str:
        from optuna.trial import TrialState

        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        startup = self._startup(ctx)
        if done <= startup:
            return (f"the search ended inside TPE's start-up phase ({done} of {startup} start-up trials, warm-start points "
                    "included): every point was sampled at random; raise --budget or lower search.params.n_startup_trials")
        return ""

    def make_sampler(self, ctx: SearchContext) -> Any:
        import optuna

        multivariate = self.params.multivariate
        with _quiet():  # multivariate and group are "experimental" in Optuna's terms (since 2.2; stable in use)
            return optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=self._startup(ctx), multivariate=multivariate,
                                              group=multivariate and self.params.group, constant_liar=True)


class OptunaRandom(OptunaSearcher):
    """Uniform random sampling of the space (conditional choices sampled only when active), with pruning."""

    name = "optuna-random"

    def make_sampler(self, ctx: SearchContext) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)


class OptunaNSGA2(OptunaSearcher):
    """NSGA-II: maximise valid AUC while minimising parameters and/or latency (--objectives auc,params)."""

    name = "optuna-nsga2"
    multi_objective = True

    def directions(self, ctx: SearchContext) -> list[str]:
        return ["maximize"] + ["minimize"] * (len(ctx.objectives) - 1)

    def make_sampler(self, ctx: SearchContext) -> Any:
        import optuna

        pop = self.params.population_size or max(4, min(20, (ctx.budget or self.default_budget) // 2))
        return optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=pop)


class OptunaGrid(OptunaSearcher):
    """Every architecture of the space once, in enumeration order (budget default: the space's size)."""

    name = "optuna-grid"
    default_budget = 10_000

    def make_sampler(self, ctx: SearchContext) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)  # only used if the queue is empty, which n_trials prevents

    def prepare(self, ctx: SearchContext, study: Any) -> None:
        self.enqueue_known(ctx, study)
        if study.user_attrs.get("mdmt_nas.grid_enqueued"):
            return
        size = ctx.space.size()
        if size > self.params.grid_limit:
            raise UserError(f"optuna-grid: space {ctx.space.name!r} has {size:,} architectures, more than search.params.grid_limit={self.params.grid_limit:,}; use optuna-tpe or optuna-random")
        for assignment, _arch in ctx.space.enumerate(limit=self.params.grid_limit):
            study.enqueue_trial(assignment, skip_if_exists=True)
        study.set_user_attr("mdmt_nas.grid_enqueued", size)

    def budget_for(self, space: Any, requested: int | None) -> int:
        size = space.size()
        return min(requested, size) if requested else size

    def n_trials(self, ctx: SearchContext, study: Any, remaining: int) -> int | None:
        from optuna.trial import TrialState

        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return min(remaining, waiting)


SEARCHERS = (OptunaTPE, OptunaNSGA2, OptunaRandom, OptunaGrid)
