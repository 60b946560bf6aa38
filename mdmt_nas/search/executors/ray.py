"""The Ray executor: an Optuna search whose candidates train as calls on Ray actors (`--executor ray`).

A thin driver of our own over Ray actors, not Ray Tune: the study, its sampler, its pruner, the MLflow parent run,
the warm start, the final stage and the outputs stay exactly those of the local executor, and only the training
of a candidate moves to a worker (ray_worker.py). The driver (this process)

* opens the study as the local executor does (the known architectures enqueued first, stale trials failed and
  retried), asks the sampler for a trial, and sends the candidate to an idle actor; at most `--workers` train at
  once, and it sends no more than the budget needs: COMPLETE + PRUNED trials end exactly at `--budget`;
* sends a heartbeat for every trial in flight, so a driver killed with SIGKILL leaves trials that the next
  `--resume` fails and retries with the same parameters (RDB storages), as for a killed local worker; on Ctrl-C /
  SIGTERM it stops the actors first, then ends the trials in flight FAIL and their child runs KILLED;
* records what comes back in the study (values, pruned, failed) and in the runner's Evaluator (leaderboard,
  best weights, the final stage's pool).

The actors report every rung to the shared study, whose pruner stops poor candidates early (`--pruner asha`:
asynchronous successive halving, a trial compared with the rungs the others reached so far; `hyperband` the
default). A candidate whose training raises is a failed candidate, as locally; an actor that dies (segfault,
os._exit, OOM kill) fails only the candidate it held: its trial ends FAIL, its child run FAILED with the reason,
and a new actor takes its place. `--timeout` reaches the actors as seconds left: a training running at the
deadline stops at its next batch keeping its best epoch, and nothing new starts. The final stage trains on the
actors too (`RemoteEvaluate`); the rare retraining of a winner whose weights were not kept runs in this process.
The actors, and a local Ray this driver started, stop when the search ends (the runner's exit stack).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from mdmt_nas.errors import (
    UserError,
    check_interrupt,
    deadline_message,
    deadline_passed,
    seconds_left,
    suspended_deadline,
)
from mdmt_nas.search.base import Candidate, SearchContext, SearchResult, SearchStopped
from mdmt_nas.search.executors.checks import INSTALL, check_executor
from mdmt_nas.search.executors.ray_worker import CandidateWorker, Job, Outcome


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray: {INSTALL}") from None
    return ray


def init_ray(ray: Any, address: str | None, workers: int, cpus_per_trial: float) -> bool:
    """Join the cluster at `address`, else start a local Ray (loopback only) with room for `workers` candidates at
    once. True if this call started Ray (the caller shuts it down)."""
    if ray.is_initialized():
        return False
    import logging

    kw: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    try:
        if address:
            ray.init(address=address, **kw)
        else:  # a small machine is oversubscribed as N local processes would be
            ray.init(
                num_cpus=max(os.cpu_count() or 1, math.ceil(workers * cpus_per_trial)),
                _node_ip_address="127.0.0.1",
                **kw,
            )
    except Exception as exc:  # noqa: BLE001 - unreachable cluster, version mismatch
        first = " ".join(str(exc).split())[:300]
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise UserError(f"--executor ray: cannot start {where}: {type(exc).__name__}: {first}") from None
    return True


class _Weights:
    """What Evaluator._keep_if_best needs of a model: its state dict (weights that came back from a worker)."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


# ------------------------------------------------------------------------------ the pool
class Pool:
    """`workers` CandidateWorker actors; a dead one is replaced."""

    def __init__(self, ray: Any, ctx: SearchContext, workers: int, cpus_per_trial: float):
        self.ray = ray
        tracking = ctx.config.tracking
        if (
            tracking.enabled
        ):  # the workers log where the driver logs (a file URI is resolved here, for workers on this host)
            tracking = tracking.model_copy(update={"uri": ctx.tracker.tracking_uri})
        config = ctx.config.model_copy(update={"tracking": tracking}).model_dump(mode="json")
        self.threads = max(1, int(cpus_per_trial))
        self._cls = ray.remote(num_cpus=cpus_per_trial, max_restarts=0)(CandidateWorker)
        self._args = (ray.put(ctx.splits), config, ctx.parent_run_id, ctx.evaluate.searcher, ctx.evaluate.space)
        self.actors = [self._new() for _ in range(workers)]
        self.idle = list(self.actors)
        self.closed = False

    def _new(self) -> Any:
        return self._cls.remote(*self._args)

    def replace(self, actor: Any) -> None:
        """Swap a dead actor for a new one (and kill it, in case it only hangs)."""
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        new = self._new()
        self.actors = [new if a is actor else a for a in self.actors]
        self.idle = [a for a in self.idle if a is not actor]
        self.idle.append(new)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - Ray already shut down
                pass
        self._args = ()  # the data's object-store copy is released with the last reference


def _died(exc: BaseException) -> str:
    first = " ".join(str(exc).split())[:400]
    return f"the Ray worker training it died or raised outside the training ({type(exc).__name__}: {first})"


def _end_child(tracker: Any, parent: str | None, number: int, status: str, state: str, reason: str) -> None:
    """End the child run a dead or interrupted worker left RUNNING (found by its parent and number)."""
    if not tracker.enabled or not parent:
        return
    try:
        runs = tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string=(
                f"tags.mlflow.parentRunId = '{parent}' and tags.number = '{number}' and attributes.status = 'RUNNING'"
            ),
        )
        for r in runs:
            tracker.set_tags(r.info.run_id, {"state": state, "reason": reason[:5000]})
            tracker.end_run(r.info.run_id, status)
    except Exception:  # noqa: BLE001 - never mask what ended the worker
        pass


class RemoteEvaluate:
    """`ctx.evaluate` while the Ray executor runs: a training goes to an actor, its result into the runner's Evaluator.

    Used by the final stage (blocking, one at a time); anything else (attributes, `note_failure`, ...) is the local
    Evaluator's. A call with an epoch callback, or a screening run, trains locally: the callback lives in this process.
    """

    def __init__(self, local: Any, pool: Pool, tracker: Any, parent_run_id: str | None):
        self.local, self.pool, self.tracker, self.parent_run_id = local, pool, tracker, parent_run_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def __call__(
        self,
        arch: Any,
        label: str,
        epoch_callback: Any = None,
        assignment: dict[str, Any] | None = None,
        number: int | None = None,
        train_config: Any = None,
        kind: str = "candidate",
        known: str = "",
        fidelity: float = 1.0,
    ) -> Candidate:
        ev = self.local
        if epoch_callback is not None or fidelity != 1.0:
            return ev(
                arch,
                label,
                epoch_callback=epoch_callback,
                assignment=assignment,
                number=number,
                train_config=train_config,
                kind=kind,
                known=known,
                fidelity=fidelity,
            )
        check_interrupt()
        if ev.deadline is not None and time.monotonic() > ev.deadline:
            raise SearchStopped(f"time limit of search.timeout={ev.config.search.timeout:g}s reached")
        if number is None:
            number = ev._next
        ev._next = max(ev._next, number + 1)
        job = Job(
            arch,
            label,
            number,
            dict(assignment or {}),
            known,
            self.config_for(train_config or ev.train_config),
            kind,
            seconds_left=seconds_left(),
        )
        actor = self.pool.idle.pop(0)
        if ev.display:
            ev.display.candidate_start(label, arch, job.train_config.epochs)
        try:
            out = self.pool.ray.get(actor.train.remote(job))
        except self.pool.ray.exceptions.RayError as exc:
            out = Outcome(self.dead(job, exc, actor))
        else:
            self.pool.idle.append(actor)
        cand = self.adopt(out)
        if out.stopped:  # the time limit stopped it: the runner ranks the trainings done so far
            raise SearchStopped(out.stopped)
        return cand

    def config_for(self, cfg: Any) -> Any:
        return cfg if cfg.threads else cfg.model_copy(update={"threads": self.pool.threads})

    def dead(self, job: Job, exc: BaseException, actor: Any) -> Candidate:
        """The candidate of an actor that died (or raised outside the Evaluator): failed; the actor replaced."""
        reason = _died(exc)
        _end_child(self.tracker, self.parent_run_id, job.number, "FAILED", "failed", reason)
        if isinstance(exc, self.pool.ray.exceptions.RayTaskError):
            self.pool.idle.append(actor)  # the actor lives: only its call raised
        else:
            self.pool.replace(actor)
        return Candidate(
            number=job.number, arch=job.arch, state="failed", reason=reason, assignment=job.assignment, known=job.known
        )

    def adopt(self, out: Outcome) -> Candidate:
        """Record a worker's candidate as the local Evaluator would have (may raise SearchStopped: max_failures)."""
        ev, cand = self.local, out.candidate
        ev.candidates.append(cand)
        if out.state is not None and out.stopped:  # cut by the deadline: kept in memory (it wins if nothing finished)
            ev._keep_top(cand, out.state)
        elif out.state is not None:
            ev._keep_if_best(cand, _Weights(out.state))
        if ev.display:
            ev.display.candidate_end(cand)
        if cand.state == "failed":
            ev.note_failure()
        return cand


# ------------------------------------------------------------------------------ the driver
@dataclass
class _Flight:
    trial: Any
    job: Job
    actor: Any
    started: float = field(default_factory=time.monotonic)


def run_on_ray(searcher: Any, ctx: SearchContext, cleanup: contextlib.ExitStack) -> SearchResult:
    """The Optuna search of `searcher` with its candidates on Ray actors (see the module docstring).

    The actors live on for the final stage, which the runner runs after this returns; `cleanup` (the runner's exit
    stack) stops them, and shuts down a local Ray started here, when the search ends.
    """
    # library use (the CLI checked before any work), now with the resolved study and tracking URIs
    check_executor(
        type(searcher),
        ctx.config,
        ctx.storage or searcher.storage_url(ctx),
        ctx.tracker.tracking_uri if ctx.tracker.enabled else None,
    )
    ray = require_ray()
    ex = ctx.config.search.executor
    if init_ray(ray, ex.address, ex.workers, ex.cpus_per_trial):
        cleanup.callback(ray.shutdown)
    pool = Pool(ray, ctx, ex.workers, ex.cpus_per_trial)
    cleanup.callback(pool.close)  # runs first (last in, first out)
    remote = RemoteEvaluate(ctx.evaluate, pool, ctx.tracker, ctx.parent_run_id)
    ctx.evaluate = remote  # the final stage trains on the actors too
    return _Driver(searcher, ctx, remote, pool).run()


class _Driver:
    def __init__(self, searcher: Any, ctx: SearchContext, remote: RemoteEvaluate, pool: Pool):
        self.searcher, self.ctx, self.remote, self.pool, self.ray = searcher, ctx, remote, pool, pool.ray
        self.flights: dict[Any, _Flight] = {}

    def run(self) -> SearchResult:
        import optuna

        from mdmt_nas.search.optuna import _quiet

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            with _quiet(), warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Heartbeat of storage"
                )  # ask/tell: the driver sends them itself
                study = self.searcher._open_study(self.ctx)
                optuna.storages.fail_stale_trials(study)
                self.searcher.prepare(self.ctx, study)
                stopped = self._loop(study)
                return self.searcher.result(self.ctx, study, stopped)
        finally:
            optuna.logging.set_verbosity(verbosity)

    # -------------------------------------------------------------- the loop
    def _loop(self, study: Any) -> str:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        s, ctx = self.searcher, self.ctx
        budget = ctx.budget or s.default_budget
        limit = s.n_trials(ctx, study, budget - s.counted(study))  # the grid: only its enqueued points
        proposals = max(100, 10 * budget)
        t0 = time.monotonic()
        beat = is_heartbeat_enabled(study._storage)
        interval = float(s.params.heartbeat_interval)
        last_beat = 0.0
        stopped = ""
        try:
            while True:
                with suspended_deadline():  # Ctrl-C / SIGTERM raise here; the deadline only stops new candidates,
                    check_interrupt()  # those in flight stop themselves at their next batch (Job.seconds_left)
                if not stopped and deadline_passed():
                    stopped = deadline_message()
                timed_out = ctx.timeout is not None and time.monotonic() - t0 > ctx.timeout
                while (
                    not stopped
                    and not timed_out
                    and self.pool.idle
                    and (limit is None or limit > 0)
                    and s.counted(study) + len(self.flights) < budget
                ):
                    if proposals <= 0:
                        stopped = f"{max(100, 10 * budget)} proposals without reaching the budget (the space may have too few working architectures)"
                        break
                    proposals -= 1
                    if limit is not None:
                        limit -= 1
                    try:
                        self._dispatch(study)
                    except SearchStopped as exc:
                        stopped = str(exc)
                if not self.flights:
                    return stopped
                if beat and time.monotonic() - last_beat > interval / 2:
                    for f in self.flights.values():
                        study._storage.record_heartbeat(f.trial._trial_id)
                    last_beat = time.monotonic()
                ready, _ = self.ray.wait(list(self.flights), num_returns=1, timeout=min(1.0, interval / 2))
                for ref in ready:
                    try:
                        self._land(study, ref)
                    except (
                        SearchStopped
                    ) as exc:  # max_failures, the deadline: no new candidates; those in flight finish
                        stopped = stopped or str(exc)
        except BaseException:
            self._abandon(study)
            raise

    def _dispatch(self, study: Any) -> None:
        """Ask the sampler for a trial and send its candidate to an idle actor (a repeat is answered at once)."""
        from mdmt_nas.search.optuna import KNOWN_ATTR, suggest_assignment

        s, ctx = self.searcher, self.ctx
        trial = study.ask()
        assignment = suggest_assignment(trial, ctx.space)
        known = trial.user_attrs.get(KNOWN_ATTR, "")
        arch = ctx.space.to_arch(assignment)
        if known:
            arch = arch.model_copy(update={"name": known})
        trial.set_user_attr("arch_id", arch.id)
        label = f"trial-{trial.number}" + (f"-{known}" if known else "")
        dup = s._duplicate(study, arch.id, trial.number)
        if dup is not None:  # trials are deterministic: an architecture seen before is not trained again
            trial.set_user_attr("duplicate_of", dup.number)
            if dup.state == "failed":
                study.tell(trial, state=_state("FAIL"))
                ctx.evaluate.note_failure()
            else:
                study.tell(trial, s._values(ctx, dup))
            return
        single = len(s.directions(ctx)) == 1
        cfg = self.remote.config_for(s.candidate_config(ctx))
        job = Job(
            arch,
            label,
            trial.number,
            assignment,
            known,
            cfg,
            trial_id=trial._trial_id if single else None,
            prune=single and not known,
            storage=s.storage_url(ctx),
            study_name=study.study_name,
            pruner=s.make_pruner(ctx) if single else None,
            seconds_left=seconds_left(),
        )
        actor = self.pool.idle.pop(0)
        ev = self.remote.local
        ev._next = max(ev._next, trial.number + 1)
        if ev.display:
            ev.display.candidate_start(label, arch, cfg.epochs)
        self.flights[actor.train.remote(job)] = _Flight(trial, job, actor)

    def _land(self, study: Any, ref: Any) -> None:
        """A worker answered: record its candidate in the study and the leaderboard."""
        from mdmt_nas.search.optuna import CANDIDATE_ATTR

        f = self.flights.pop(ref)
        try:
            out = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            out = Outcome(self.remote.dead(f.job, exc, f.actor))
        else:
            self.pool.idle.append(f.actor)
        cand = out.candidate
        f.trial.set_user_attr(CANDIDATE_ATTR, cand.to_record(f.job.label))
        if out.pruned:
            study.tell(f.trial, state=_state("PRUNED"))
        elif (
            cand.state == "failed" or out.stopped
        ):  # a candidate cut by the deadline ends FAIL, as in the local executor
            study.tell(f.trial, state=_state("FAIL"))
        else:
            study.tell(f.trial, self.searcher._values(self.ctx, cand))
        self.remote.adopt(out)  # may raise SearchStopped (max_failures) once the trial is recorded
        if out.stopped:
            raise SearchStopped(out.stopped)

    def _abandon(self, study: Any) -> None:
        """Interrupted (Ctrl-C, SIGTERM) or broken: the actors stop first (so none writes after this), then the
        in-flight trials end FAIL and their child runs KILLED."""
        self.pool.close()
        for f in list(self.flights.values()):
            try:
                study.tell(f.trial, state=_state("FAIL"))
            except Exception:  # noqa: BLE001 - the storage is unreachable: the next start's stale check fails it
                pass
            _end_child(
                self.ctx.tracker,
                self.ctx.parent_run_id,
                f.job.number,
                "KILLED",
                "killed",
                "the search was interrupted while this candidate trained",
            )
        self.flights.clear()


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return getattr(TrialState, name)
