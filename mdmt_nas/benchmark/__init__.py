"""The benchmark report: settings (settings.py), statistics and findings (stats.py), the run (run.py), the report (render.py)."""

from mdmt_nas.benchmark.render import write_outputs
from mdmt_nas.benchmark.run import run_benchmark
from mdmt_nas.benchmark.settings import (
    ALL_MODELS,
    BASELINES,
    MODEL_KEYS,
    REFERENCE,
    SEARCHES,
    BenchmarkSettings,
    ModelSpec,
    example_config,
    example_path,
    quick_settings,
)
from mdmt_nas.benchmark.stats import BenchmarkState, ModelSummary, RunRecord, Stat, compare, findings, summarize

__all__ = [
    "ALL_MODELS",
    "BASELINES",
    "MODEL_KEYS",
    "REFERENCE",
    "SEARCHES",
    "BenchmarkSettings",
    "BenchmarkState",
    "ModelSpec",
    "ModelSummary",
    "RunRecord",
    "Stat",
    "compare",
    "example_config",
    "example_path",
    "findings",
    "quick_settings",
    "run_benchmark",
    "summarize",
    "write_outputs",
]
