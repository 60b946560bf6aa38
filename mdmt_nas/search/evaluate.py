"""Evaluating one candidate of a search: train it (the one training, train.train_architecture), log it, keep the best.

`Evaluator` is the `evaluate` of a SearchContext, used by every searcher (and by
DARTS for its derived architecture): it trains one architecture as an MLflow
child run with every component's output shape checked, and returns a
`Candidate`. A candidate's failure never ends the search: it is recorded (state
failed, with a reason naming the component and plugin at fault) and returned;
a pruned candidate (errors.TrialPruned from the epoch callback) is recorded and
the exception goes back to the searcher. The best candidate's weights are kept
in `<output>/best_candidate/`.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from mdmt_nas.arch import Architecture
from mdmt_nas.config import ExperimentConfig, TrackingConfig, TrainConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import TrialFailed, TrialPruned, UserError, check_interrupt
from mdmt_nas.files import save_torch, write_json, write_text
from mdmt_nas.plugins import describe_component_error
from mdmt_nas.search import report
from mdmt_nas.search.base import Candidate, SearchStopped
from mdmt_nas.search.report import SearchDisplay
from mdmt_nas.tracking import RUN_NAME, Tracker, flatten
from mdmt_nas.train import EpochCallback, TrainResult, measure_latency, train_architecture
from mdmt_nas.training_log import log_training, start_texts, training_params

BEST_DIR = "best_candidate"
#: the reason of a candidate stopped by the search's time limit (--timeout): pruned, with its best epoch's metrics
TIMEOUT_REASON = "search timeout"


def candidate_train_config(config: ExperimentConfig) -> TrainConfig:
    """The training config of one candidate: train.* with search.epochs, without a progress bar of its own."""
    update: dict[str, Any] = {"progress": False}
    if config.search.epochs is not None:
        update["epochs"] = config.search.epochs
    return config.train.model_copy(update=update)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


class Evaluator:
    """The `evaluate` of a SearchContext: train one architecture as an MLflow child run, return a Candidate.

    Calling convention: ``evaluate(arch, label, epoch_callback=None, assignment=None)``; extra
    keywords ``number`` (the searcher's trial number), ``train_config`` (a different TrainConfig,
    e.g. for retraining the winner) and ``kind`` (the run's `mdmt_nas.kind` tag).
    Without an output directory nothing is written; without `max_failures` failures never stop the search.
    """

    def __init__(
        self,
        splits: Splits,
        config: ExperimentConfig,
        tracker: Tracker,
        output_dir: Path | None = None,
        searcher: str = "",
        space: str = "",
        max_failures: int | None = None,
        deadline: float | None = None,
        display: SearchDisplay | None = None,
        registry: Any = None,
    ):
        self.splits, self.config, self.tracker = splits, config, tracker
        self.train_config = candidate_train_config(config)
        self.output_dir = output_dir
        self.searcher, self.space = searcher, space
        self.max_failures = max_failures
        self.deadline = deadline
        self.display = display
        self.registry = registry
        self.parent_run_id: str | None = None
        self.candidates: list[Candidate] = []
        self.failures = 0
        self._next = 0
        self.last_state: tuple[str, dict[str, torch.Tensor]] | None = (
            None  # (arch id, weights) of the latest finished candidate
        )
        #: arch id -> (valid AUC, weights) of the best training of each of the best few architectures (in memory),
        #: so the final stage's winner has its weights without another training
        self.top_states: dict[str, tuple[float, dict[str, torch.Tensor]]] = {}
        self.keep_top = max(4, config.search.final_top_k + 2)
        self.best_valid = self._best_on_disk()

    # -------------------------------------------------------------- best weights on disk
    def _best_on_disk(self) -> float:
        if self.output_dir is None:
            return -math.inf
        meta = self.output_dir / BEST_DIR / "candidate.json"
        try:
            return float(json.loads(meta.read_text())["valid_mean_auc"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:  # a finished search removed best_candidate/: its winner (weights.pt) is the one to beat
            return float(json.loads((self.output_dir / "search.json").read_text())["best"]["valid_mean_auc"])
        except (OSError, ValueError, KeyError, TypeError):
            return -math.inf

    def state_of(self, arch_id: str) -> dict[str, torch.Tensor] | None:
        """The weights of the best training of `arch_id` kept in memory (None if it was not among the best few)."""
        kept = self.top_states.get(arch_id)
        return kept[1] if kept else None

    def _keep_top(self, cand: Candidate, state: dict[str, torch.Tensor]) -> None:
        prev = self.top_states.get(cand.arch.id)
        if prev is None or cand.valid_mean_auc > prev[0]:
            self.top_states[cand.arch.id] = (cand.valid_mean_auc, state)
        if len(self.top_states) > self.keep_top:
            worst = min(self.top_states, key=lambda a: self.top_states[a][0])
            del self.top_states[worst]

    def _keep_if_best(self, cand: Candidate, model: torch.nn.Module) -> None:
        if cand.fidelity < 1.0:  # a screening run: its valid AUC is not comparable to full trainings
            return
        # the model's own (detached) tensors, not a copy: nothing trains a candidate's model after its training
        state = {k: v.detach() for k, v in model.state_dict().items()}
        self.last_state = (cand.arch.id, state)
        self._keep_top(cand, state)
        if not cand.valid_mean_auc > self.best_valid:
            return
        self.best_valid = cand.valid_mean_auc
        if self.output_dir is None:
            return
        d = self.output_dir / BEST_DIR
        save_torch(state, d / "weights.pt")
        cand.arch.save(d / "arch.json")
        write_text(d / "schema.json", self.splits.schema.model_dump_json(indent=2) + "\n")
        write_json(d / "candidate.json", cand.row())

    # -------------------------------------------------------------- the call
    def __call__(
        self,
        arch: Architecture,
        label: str,
        epoch_callback: EpochCallback | None = None,
        assignment: dict[str, Any] | None = None,
        number: int | None = None,
        train_config: TrainConfig | None = None,
        kind: str = "candidate",
        known: str = "",
        fidelity: float = 1.0,
    ) -> Candidate:
        check_interrupt()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SearchStopped(f"time limit of search.timeout={self.config.search.timeout:g}s reached")
        if number is None:
            number = self._next
        self._next = max(self._next, number + 1)
        cfg = self._cfg = train_config or self.train_config
        cand = Candidate(
            number=number, arch=arch, state="failed", assignment=dict(assignment or {}), known=known, fidelity=fidelity
        )
        run_id = cand.run_id = self._open_run(cand, label, kind)
        if self.display:
            self.display.candidate_start(label, arch, cfg.epochs)
        history: list[dict[str, float]] = []

        def per_epoch(epoch: int, record: dict[str, float]) -> None:
            history.append(dict(record))
            self.tracker.log_metrics(run_id, {k: v for k, v in record.items() if k != "epoch"}, step=epoch)
            if self.display:
                self.display.epoch(record)
            if epoch_callback is not None:
                epoch_callback(epoch, record)

        built: list[torch.nn.Module] = []
        t0 = time.perf_counter()
        try:
            result = train_architecture(
                arch,
                self.splits,
                cfg,
                [per_epoch],
                label,
                registry=self.registry,
                guard=True,
                built=built.append,
            )
            self._time_latency(result)
        except (KeyboardInterrupt, SystemExit):
            self.tracker.set_tags(run_id, {"state": "killed", "reason": "interrupted"})
            self.tracker.end_run(run_id, "KILLED")
            raise
        except SearchStopped:  # the time limit before its first epoch ended: nothing to keep
            cand.state, cand.reason, cand.fidelity = "pruned", f"{TIMEOUT_REASON} before its first epoch ended", 0.0
            cand.train_seconds = time.perf_counter() - t0
            self._finish(cand, run_id, "KILLED", label)
            raise
        except BaseException as exc:  # noqa: BLE001 - a candidate's failure must not end the search
            return self._failed(cand, exc, built[0] if built else None, history, time.perf_counter() - t0, label)
        try:
            return self._finished(cand, result, cfg, label, kind)
        except SearchStopped:  # cut by the time limit: its run already ended KILLED, tagged pruned with the reason
            raise
        except (
            BaseException
        ) as exc:  # e.g. the disk filled while its weights were kept: the run ends FAILED with the reason
            self.tracker.end_failed(run_id, exc)
            raise

    def _time_latency(self, result: TrainResult) -> None:
        """With the latency objective, the latency the search minimises is the median of 3 timed passes of its own,
        timed once the tracker's queued writes are in (a write-behind thread writing meanwhile would be timed too);
        otherwise the training's figure stands (Trainer._latency: timed on the evaluation's passes, at no cost)."""
        if "latency" not in self.config.search.objectives:
            return
        self.tracker.flush()
        result.latency_ms_per_1k = measure_latency(result.model, self.splits.valid, repeats=3, warm_up=False)
        result.latency_repeats = 3  # logged beside it (training_log)

    def _open_run(self, cand: Candidate, label: str, kind: str) -> str | None:
        """The candidate's child run (tagged running, with this worker), its params, arch.json and config.json logged:
        now, written (write-behind) while it trains, so the run's end has only the results left to write."""
        arch = cand.arch
        tags = {
            "mdmt_nas.kind": kind,
            "arch_id": arch.id,
            "searcher": self.searcher,
            "space": self.space,
            "number": str(cand.number),
            "state": "running",
            **({"mdmt_nas.known": cand.known} if cand.known else {}),
        }
        run_id = self.tracker.start_child(label, self.parent_run_id, tags)
        params = {"arch_id": arch.id, "label": label, "number": cand.number}
        params.update(flatten(arch.canonical(), "arch"))
        params.update(flatten(cand.assignment, "assignment"))
        config = self.config.model_copy(update={"train": self._cfg})
        params.update(training_params(arch, config))
        self.tracker.log_params(run_id, params)
        self.tracker.log_texts(run_id, start_texts(arch, config))
        return run_id

    def _failed(
        self,
        cand: Candidate,
        exc: BaseException,
        model: Any,
        history: list[dict[str, float]],
        seconds: float,
        label: str,
    ) -> Candidate:
        """A candidate whose training raised: pruned (re-raised to the searcher) or failed, with the culprit named."""
        cand.train_seconds = seconds
        cand.valid_mean_auc = history[-1]["valid_mean_auc"] if history else float("nan")
        if model is not None:
            cand.num_params = int(sum(p.numel() for p in model.parameters()))
        if isinstance(exc, TrialPruned):
            cand.state = "pruned"
            cand.reason = f"pruned after epoch {len(history)}"
            cand.fidelity = len(history) / max(1, self._cfg.epochs)
            self._finish(cand, cand.run_id, "KILLED", label)
            raise exc
        cand.reason = self._reason(exc, model)
        self.tracker.log_text(cand.run_id, "".join(traceback.format_exception(exc)), "error.txt")
        self._fail(cand, cand.run_id, label)
        return cand

    def _finished(
        self, cand: Candidate, result: TrainResult, cfg: TrainConfig, label: str, kind: str = "candidate"
    ) -> Candidate:
        """A trained candidate: its metrics, logged; failed if its valid AUC is undefined; kept if it is the best so far."""
        run_id = cand.run_id
        cand.train_seconds = result.train_seconds
        cand.valid_mean_auc = result.valid.mean_auc
        cand.test_mean_auc = result.test.mean_auc if result.test is not None else float("nan")
        cand.num_params = result.num_params
        cand.latency_ms_per_1k = result.latency_ms_per_1k
        cand.metrics = {
            **result.valid.flat("valid"),
            **(result.test.flat("test") if result.test is not None else {}),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
        }
        if result.stopped:  # cut by the search's time limit: its best epoch so far is its result, and the search stops
            return self._cut(cand, result, cfg, label)
        if not _finite(cand.valid_mean_auc):
            cand.reason = "valid mean AUC is undefined (NaN): every (domain, task) cell of the valid split has a single class or the model output NaN"
            self._fail(cand, run_id, label)
            return cand
        cand.state = "finished"
        # params, arch and config went at the start, the epochs live (per_epoch); log_training adds the results
        # the heatmap (~0.5 s) only for a candidate that leads so far, a retrained model, or with tracking.plots: all
        plot = self.config.tracking.plots == "all" or kind != "candidate" or cand.valid_mean_auc > self.best_valid
        tags = {"state": cand.state, "mlflow.note.content": report.candidate_markdown(cand)}  # its AUC table in the UI
        tags[RUN_NAME] = run_title(label, cand)  # renamed in the same request
        config = self.config.model_copy(update={"train": cfg})
        log_training(self.tracker, run_id, result, config, label=label, plot=plot, tags=tags, params=False, texts=False)
        self._keep_if_best(cand, result.model)
        self._finish(cand, run_id, "FINISHED", label, tagged=True)
        return cand

    def _cut(self, cand: Candidate, result: TrainResult, cfg: TrainConfig, label: str) -> Candidate:
        """A candidate stopped by the time limit: pruned (reason 'search timeout ...'), logged, its weights kept in memory
        (it wins if no candidate finished), then SearchStopped."""
        cand.state = "pruned"
        cand.fidelity = result.epochs_run / max(1, cfg.epochs)
        rounds = (
            f"rounds of {cfg.epoch_rows:,} rows" if cfg.epoch_rows else "epochs"
        )  # a multi-fidelity search reports per part-epoch
        cand.reason = f"{TIMEOUT_REASON}: stopped after {result.epochs_run} of {cfg.epochs:,} {rounds} (best: {result.best_epoch + 1})"
        log_training(
            self.tracker,
            cand.run_id,
            result,
            self.config.model_copy(update={"train": cfg}),
            label=label,
            params=False,
            texts=False,
        )
        if _finite(cand.valid_mean_auc):
            self._keep_top(cand, {k: v.detach().clone() for k, v in result.model.state_dict().items()})
        self._finish(cand, cand.run_id, "KILLED", label)
        raise SearchStopped(result.stopped)

    def _reason(self, exc: BaseException, model: Any) -> str:
        if isinstance(exc, TrialFailed):
            return exc.reason
        if isinstance(exc, UserError):
            return str(exc).replace("\n", "; ")
        try:
            return describe_component_error(exc, model, self.registry)
        except Exception:  # noqa: BLE001 - attribution is best effort
            return f"{type(exc).__name__}: {exc}"

    def _fail(self, cand: Candidate, run_id: str | None, label: str) -> None:
        cand.state = "failed"
        self._finish(cand, run_id, "FAILED", label)
        self.note_failure()

    def note_failure(self) -> None:
        """Count a failed proposal (also a repeat of an architecture that failed before, which is not trained
        again): `search.max_failures` of them stop the search instead of letting a sampler loop on broken points."""
        self.failures += 1
        if self.max_failures is not None and self.failures >= self.max_failures:
            raise SearchStopped(f"{self.failures} candidates failed (search.max_failures={self.max_failures})")

    def _finish(self, cand: Candidate, run_id: str | None, status: str, label: str, tagged: bool = False) -> None:
        """End the run: state, reason, its title (the run name) and for an unfinished one its size and time, in one
        request (a finished candidate's tags and title went with its final metrics)."""
        if not tagged:
            tags = {"state": cand.state, RUN_NAME: run_title(label, cand)}
            if cand.reason:
                tags["reason"] = cand.reason[:5000]
            metrics = (
                {} if cand.state == "finished" else {"num_params": cand.num_params, "train_seconds": cand.train_seconds}
            )
            self.tracker.log_batch(run_id, {}, metrics, tags=tags)
        self.tracker.end_run(run_id, status)
        self.candidates.append(cand)
        if self.display:
            self.display.candidate_end(cand)


def run_title(label: str, cand: Candidate) -> str:
    """A child run's name that reads by itself in the runs list: 'trial-7 · valid 0.8123 · 4x mlp + cross'."""
    from mdmt_nas.training_log import arch_brief

    score = (
        f"valid {cand.valid_mean_auc:.4f}" if cand.state == "finished" and _finite(cand.valid_mean_auc) else cand.state
    )
    return f"{label} · {score} · {arch_brief(cand.arch)}"


def local_evaluate(splits: Splits, train_config: TrainConfig) -> Evaluator:
    """An evaluator without MLflow or output files (tests, library use): train and score one architecture."""
    config = ExperimentConfig(train=train_config, tracking=TrackingConfig(enabled=False))
    return Evaluator(splits, config, Tracker(config.tracking))
