"""The worker side of the Ray executor: `CandidateWorker`, the actor that trains one candidate per call (no Ray import).

An actor holds the data (one `ray.put` copy per node) and an Evaluator of its own without output files. For each
`Job` it logs the candidate's MLflow child run under the search's parent run and, for a trial of a single-objective
study, reports the valid AUC of every rung to that trial in the shared Optuna study, whose pruner (ASHA =
`--pruner asha`, Hyperband by default) decides there whether to stop it. The search's time limit travels with the
job as seconds left, so a training running at the deadline stops at its next batch and keeps its best epoch, as in
the local executor. What comes back (`Outcome`) is the candidate and, when it may win, its weights.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from mdmt_nas.errors import SearchStopped, TrialPruned, search_deadline
from mdmt_nas.search.base import Candidate
from mdmt_nas.search.evaluate import TIMEOUT_REASON


@dataclass
class Job:
    """One training for an actor: a candidate of a trial, or a final-stage run (trial_id None)."""

    arch: Any
    label: str
    number: int
    assignment: dict[str, Any]
    known: str
    train_config: Any
    kind: str = "candidate"
    #: report each rung's valid AUC to this trial of the study (single objective); prune when `prune`
    trial_id: int | None = None
    prune: bool = False
    storage: str = ""
    study_name: str = ""
    pruner: Any = None
    #: seconds left of the search's time limit when the job was sent (None: no limit)
    seconds_left: float | None = None


@dataclass
class Outcome:
    candidate: Candidate
    state: dict[str, Any] | None = None  # its weights, when it finished at full fidelity or was cut by the deadline
    pruned: bool = False
    #: the search's time limit stopped this training (its best epoch is the result) or came before it started
    stopped: str = ""


def open_storage(url: str) -> Any:
    """The study's storage as a worker opens it: no heartbeat of its own (the driver beats for the trials in flight)."""
    import optuna

    from mdmt_nas.search import storage as stores

    if stores.is_journal(url):
        return stores.journal_storage(url)
    url2 = stores.rdb_url(url)
    kw = {"connect_args": {"timeout": 60}} if url2.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url2, engine_kwargs=kw, skip_compatibility_check=True)


class CandidateWorker:
    """A Ray actor: trains candidates on its copy of the data, logs each as an MLflow child run."""

    def __init__(self, splits: Any, config: dict[str, Any], parent_run_id: str | None, searcher: str, space: str):
        from mdmt_nas.config import ExperimentConfig
        from mdmt_nas.search.evaluate import Evaluator
        from mdmt_nas.tracking import Tracker

        cfg = ExperimentConfig.model_validate(config)
        self.ev = Evaluator(splits, cfg, Tracker(cfg.tracking), None, searcher, space)
        self.ev.parent_run_id = parent_run_id
        self._storages: dict[str, Any] = {}

    def ready(self) -> int:
        return os.getpid()

    def _reporter(self, job: Job) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if job.storage not in self._storages:
            self._storages[job.storage] = open_storage(job.storage)
        study = optuna.load_study(study_name=job.study_name, storage=self._storages[job.storage], pruner=job.pruner)
        trial = optuna.trial.Trial(study, job.trial_id)
        epochs = job.train_config.epochs

        def report(epoch: int, record: dict[str, float]) -> None:
            v = record.get("valid_mean_auc", float("nan"))
            if isinstance(v, float) and math.isfinite(v):
                trial.report(v, epoch)
            # after the last rung the training is done: keep it; known architectures always train fully
            if job.prune and epoch + 1 < epochs and trial.should_prune():
                raise TrialPruned(f"pruned at epoch {epoch + 1} (valid mean AUC {v:.4f})")

        return report

    def train(self, job: Job) -> Outcome:
        ev = self.ev
        callback = self._reporter(job) if job.trial_id is not None else None
        pruned, stopped = False, ""
        ev.candidates = []
        try:
            with search_deadline(job.seconds_left):
                cand = ev(
                    job.arch,
                    job.label,
                    epoch_callback=callback,
                    assignment=job.assignment,
                    number=job.number,
                    train_config=job.train_config,
                    kind=job.kind,
                    known=job.known,
                )
        except TrialPruned:
            cand, pruned = ev.candidates[-1], True
        except SearchStopped as exc:  # the deadline: cut (best epoch kept), or before its first epoch / its start
            stopped = str(exc)
            cand = (
                ev.candidates[-1]
                if ev.candidates
                else Candidate(
                    number=job.number,
                    arch=job.arch,
                    state="pruned",
                    reason=f"{TIMEOUT_REASON} before it started",
                    assignment=job.assignment,
                    known=job.known,
                    fidelity=0.0,
                )
            )
        state = None
        if cand.state == "finished" and ev.last_state is not None and ev.last_state[0] == cand.arch.id:
            state = ev.last_state[1]
        elif stopped and cand.arch.id in ev.top_states:
            state = ev.top_states[cand.arch.id][1]
        ev.last_state, ev.candidates = None, []  # the driver keeps what matters; the actor holds no history
        ev.top_states.clear()
        return Outcome(cand, state, pruned, stopped)
