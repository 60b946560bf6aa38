"""Bad input of every kind: exit status 2 (or a failed candidate), a message naming the culprit and the fix,
no traceback unless --debug, and the results already on disk untouched.

One table of cases (`CASES`); each runs the CLI in-process against a temp
directory next to `previous` (a finished search with its study, weights and
MLflow store), whose files are hashed before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bad_helpers import TINY, TINY_SPACE, cli, plugin_dist, plugins_from, tree_hash

MLP_ARCH = "arch:\n  embedding_dim: 4\n  shared: {expert: {name: mlp, params: {hidden: [8]}}, num: 2}\n"
NO_TRACK = ["--no-track"]


def _table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "dom": rng.choice(["a", "b", "c"], n),
            "click": rng.integers(0, 2, n),
            "buy": rng.integers(0, 2, n),
            "u": rng.integers(0, 50, n),
            "x": rng.normal(size=n),
            "part": rng.choice(["train"] * 8 + ["valid", "test"], n),
        }
    )


def _csv_config(tmp: Path, df: pd.DataFrame, split: str = "", sep: str = ",") -> Path:
    df.to_csv(tmp / "data.csv", index=False, sep=sep)
    cfg = tmp / "csv.yaml"
    cfg.write_text(
        f"dataset:\n  name: csv\n  params:\n    path: {tmp / 'data.csv'}\n"
        f"    columns: {{domain: dom, labels: [click, buy], sparse: [u], dense: [x]}}\n{split}" + MLP_ARCH
    )
    return cfg


def _edit(df: pd.DataFrame, fn: Callable[[pd.DataFrame], None]) -> pd.DataFrame:
    fn(df)
    return df


def _space(tmp: Path, text: str, name: str = "space.yaml") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


# -------------------------------------------------------------------------- plugin bodies
BROKEN_IMPORT = "import torch\nraise ImportError('No module named fancy_dep (install mdmt-nas-bad[full])')\n"
RAISING_REGISTRATION = """
from mdmt_nas.plugins import hookimpl
@hookimpl
def register_experts(register):
    raise RuntimeError('registration exploded')
"""
_EXPERT = """
import torch
from mdmt_nas.components import Expert
from mdmt_nas.plugins import hookimpl

class {cls}(Expert):
    name = {name!r}
    @classmethod
    def output_dim(cls, params, in_dim):
        return 8
    def forward(self, x, ctx):
        {forward}
"""
DUPLICATE_NAME = """
from mdmt_nas.components import Expert
from mdmt_nas.plugins import hookimpl

class Other(Expert):
    name = "dup_other"
    @classmethod
    def output_dim(cls, params, in_dim):
        return 8
    def forward(self, x, ctx):
        return x[:, :8]

class Mlp(Other):
    name = "mlp"  # taken by the built-in plugin

@hookimpl
def register_experts(register):
    register(Other)
    register(Mlp)
"""
MISSPELT_HOOK = (
    _EXPERT.format(cls="Typo", name="typo_expert", forward="return x[:, :8]")
    + "\n@hookimpl\ndef register_expert(register):\n    register(Typo)\n"
)
RAISING_FORWARD = (
    _EXPERT.format(cls="Boom", name="boom_expert", forward="raise RuntimeError('boom: forward always fails')")
    + "\n@hookimpl\ndef register_experts(register):\n    register(Boom)\n"
)


@dataclass
class Case:
    id: str
    argv: list[str]
    needles: list[str]
    setup: Callable[[Path, Path], None] | None = None  # (tmp, prev) -> None
    exit: int = 2
    plugin: str | None = None  # body of a throwaway plugin distribution
    plugin_name: str = ""


def _cfg(text: str) -> Callable[[Path, Path], None]:
    return lambda tmp, prev: (tmp / "c.yaml").write_text(text)


def _csv(df_fn: Callable[[], pd.DataFrame], split: str = "", sep: str = ",") -> Callable[[Path, Path], None]:
    return lambda tmp, prev: _csv_config(tmp, df_fn(), split, sep)


TRAIN = ["train", "--config", "{tmp}/c.yaml", *TINY, *NO_TRACK, "--output", "{tmp}/out"]
TRAIN_CSV = [
    "train",
    "--config",
    "{tmp}/csv.yaml",
    "--set",
    "train.epochs=1",
    "--set",
    "train.progress=false",
    *NO_TRACK,
    "--output",
    "{tmp}/out",
]
SEARCH = [
    "search",
    "--space",
    "{prev}/tiny.yaml",
    "--searcher",
    "optuna-random",
    "--budget",
    "1",
    *TINY,
    "--output",
    "{tmp}/out",
]
COLUMN_SPLIT = "    split: {kind: column, column: part}\n"

CASES = [
    # ------------------------------------------------------------------ configs
    Case("config-wrong-type", TRAIN, ["train.lr", "valid number"], _cfg("train:\n  lr: fast\n" + MLP_ARCH)),
    Case(
        "config-unknown-top-key",
        TRAIN,
        ["trian", "unknown key", "did you mean 'train'"],
        _cfg("trian:\n  lr: 0.1\n" + MLP_ARCH),
    ),
    Case(
        "config-unknown-nested-key", TRAIN, ["train.lrr", "did you mean 'lr'"], _cfg("train:\n  lrr: 0.1\n" + MLP_ARCH)
    ),
    Case(
        "config-negative-batch",
        [
            "train",
            "--config",
            "{tmp}/c.yaml",
            "--set",
            "dataset.params.n_rows=3000",
            *NO_TRACK,
            "--output",
            "{tmp}/out",
        ],
        ["train.batch_size", "greater than or equal to 1"],
        _cfg("train:\n  batch_size: -3\n" + MLP_ARCH),
    ),
    Case(
        "config-negative-hidden",
        TRAIN,
        ["arch.shared.experts[0].params", "hidden sizes must be positive", "-8"],
        _cfg("arch:\n  shared: {expert: {name: mlp, params: {hidden: [-8]}}, num: 2}\n"),
    ),
    Case(
        "config-zero-embedding",
        TRAIN,
        ["arch.embedding_dim", "greater than or equal to 1"],
        _cfg("arch:\n  embedding_dim: 0\n  shared: {expert: mlp, num: 2}\n"),
    ),
    Case(
        "config-zero-experts",
        TRAIN,
        ["arch.shared", "num must be a positive integer"],
        _cfg("arch:\n  shared: {expert: mlp, num: 0}\n"),
    ),
    Case(
        "config-unknown-component",
        TRAIN,
        ["arch.shared.experts[0].name", "'mlp'"],
        _cfg("arch:\n  shared: {expert: mpl, num: 2}\n"),
    ),
    Case(
        "config-unknown-component-param",
        TRAIN,
        ["arch.gate.params", "unknown parameter", "temperature"],
        _cfg("arch:\n  shared: {expert: mlp}\n  gate: {name: softmax, params: {temperatur: 2}}\n"),
    ),
    Case("config-invalid-yaml", TRAIN, ["c.yaml:", "invalid YAML"], _cfg("train: [1, 2\n")),
    Case(
        "config-python-tag",
        TRAIN,
        ["c.yaml:1", "the Python tag !!python/object/apply:os.system is not allowed", "plain YAML"],
        _cfg("train: !!python/object/apply:os.system ['echo pwned > {tmp}/pwned']\n"),
    ),
    Case("config-top-level-list", TRAIN, ["expected a mapping at the top level"], _cfg("- train\n- arch\n")),
    Case("config-missing-file", ["train", "--config", "{tmp}/nope.yaml", *NO_TRACK], ["nope.yaml", "file not found"]),
    Case("config-no-arch", ["train", *TINY, *NO_TRACK, "--output", "{tmp}/out"], ["no architecture", "--arch"]),
    Case(
        "config-bad-set",
        ["train", "--config", "{tmp}/c.yaml", "--set", "train.lr", *NO_TRACK],
        ["train.lr", "expected KEY=VALUE"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "config-set-into-scalar",
        ["train", "--config", "{tmp}/c.yaml", "--set", "train.lr.x=1", *NO_TRACK],
        ["train.lr", "valid number (got {'x': 1})"],
        _cfg(MLP_ARCH),
    ),
    Case("search-budget-zero", [*SEARCH[:6], "0", *SEARCH[7:]], ["search.budget", "greater than or equal to 1"]),
    Case("search-negative-timeout", [*SEARCH, "--timeout", "-5"], ["search.timeout", "greater than 0"]),
    Case(
        "search-no-space",
        ["search", "--searcher", "optuna-random", *TINY, "--output", "{tmp}/out"],
        ["no search space", "--space"],
    ),
    Case(
        "search-unknown-space",
        ["search", "--space", "mooe", "--searcher", "optuna-random", *TINY, "--output", "{tmp}/out"],
        ["mooe", "mmoe"],
    ),
    Case(
        "search-unknown-searcher",
        [*SEARCH[:4], "optuna-tpee", *SEARCH[5:]],
        ["unknown searcher 'optuna-tpee'", "optuna-tpe"],
    ),
    Case(
        "search-unknown-searcher-param",
        [*SEARCH, "--set", "search.params.prunr=median"],
        ["search.params.prunr", "unknown parameter", "pruner"],
    ),
    Case(
        "search-objectives-single-objective-searcher",
        [*SEARCH, "--objectives", "auc,params"],
        ["optimises valid AUC only", "optuna-nsga2"],
    ),
    Case(
        "search-objectives-without-auc",
        [*SEARCH[:4], "optuna-nsga2", *SEARCH[5:], "--objectives", "params"],
        ["objectives must start with 'auc'", "[auc, params]"],
    ),
    Case(
        "search-grid-too-large",
        [
            "search",
            "--space",
            "m3oe",
            "--searcher",
            "optuna-grid",
            *TINY,
            "--set",
            "search.params.grid_limit=5",
            *NO_TRACK,
            "--output",
            "{tmp}/out",
        ],
        ["more than search.params.grid_limit=5", "optuna-tpe"],
    ),
    Case(
        "space-no-choices",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["space.yaml", "no choices"],
        lambda tmp, prev: _space(tmp, "name: empty\ntemplate:\n  shared: {expert: mlp}\nchoices: {}\n"),
    ),
    Case(
        "space-empty-options",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["choices.expert", "needs at least one option"],
        lambda tmp, prev: _space(
            tmp, "name: e\ntemplate:\n  shared: {expert: {choice: expert}}\nchoices:\n  expert: {options: []}\n"
        ),
    ),
    Case(
        "space-empty-int-range",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["empty range", "low=4 > high=2"],
        lambda tmp, prev: _space(
            tmp,
            "name: e\ntemplate:\n  shared: {expert: mlp, num: {choice: n}}\nchoices:\n  n: {type: int, low: 4, high: 2}\n",
        ),
    ),
    Case(
        "space-unknown-choice",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["unknown choice 'expret'"],
        lambda tmp, prev: _space(
            tmp, "name: e\ntemplate:\n  shared: {expert: {choice: expret}}\nchoices:\n  expert: {options: [mlp]}\n"
        ),
    ),
    Case(
        "space-unknown-component",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["unknown expert 'mpl'", "'mlp'"],
        lambda tmp, prev: _space(
            tmp, "name: e\ntemplate:\n  shared: {expert: {choice: expert}}\nchoices:\n  expert: {options: [mlp, mpl]}\n"
        ),
    ),
    # ------------------------------------------------------------------ data
    Case(
        "data-missing-column",
        TRAIN_CSV,
        ["data.csv", "column 'buy' not found", "available columns"],
        _csv(lambda: _table().drop(columns=["buy"])),
    ),
    Case("data-wrong-separator", TRAIN_CSV, ["single column", "separator: ';'"], _csv(_table, sep=";")),
    Case(
        "data-nan-feature",
        TRAIN_CSV,
        ["dense column 'x'", "NaN/inf", "fill them"],
        _csv(lambda: _edit(_table(), lambda d: d.__setitem__("x", d["x"].where(d.index != 5)))),
    ),
    Case(
        "data-inf-feature",
        TRAIN_CSV,
        ["dense column 'x'", "NaN/inf"],
        _csv(lambda: _edit(_table(), lambda d: d.loc.__setitem__((7, "x"), np.inf))),
    ),
    Case(
        "data-non-binary-label",
        TRAIN_CSV,
        ["label column 'click'", "must be binary 0/1", "'3'"],
        _csv(lambda: _edit(_table(), lambda d: d.loc.__setitem__((7, "click"), 3))),
    ),
    Case(
        "data-missing-label",
        TRAIN_CSV,
        ["label column 'buy'", "missing values"],
        _csv(lambda: _edit(_table(), lambda d: d.__setitem__("buy", d["buy"].where(d.index != 3)))),
    ),
    Case(
        "data-non-numeric-dense",
        TRAIN_CSV,
        ["dense column 'x'", "non-numeric", "sparse"],
        _csv(lambda: _edit(_table(), lambda d: d.__setitem__("x", d["x"].astype(object).where(d.index != 9, "abc")))),
    ),
    Case(
        "data-unseen-domain-at-eval",
        TRAIN_CSV,
        ["test split", "['zzz']", "do not occur in the train split"],
        _csv(lambda: _edit(_table(), lambda d: d.loc.__setitem__((d.part == "test", "dom"), "zzz")), COLUMN_SPLIT),
    ),
    Case(
        "data-empty-split",
        TRAIN_CSV,
        ["the test split is empty"],
        _csv(lambda: _edit(_table(), lambda d: d.__setitem__("part", d.part.replace("test", "train"))), COLUMN_SPLIT),
    ),
    Case(
        "data-missing-domain",
        TRAIN_CSV,
        ["domain column 'dom'", "missing values"],
        _csv(lambda: _edit(_table(), lambda d: d.loc.__setitem__((4, "dom"), None))),
    ),
    Case(
        "data-empty-file",
        TRAIN_CSV,
        ["data.csv", "empty"],
        lambda tmp, prev: (_csv_config(tmp, _table()), (tmp / "data.csv").write_text("")),
    ),
    Case(
        "data-file-not-found",
        TRAIN_CSV,
        ["CSV file not found", "data.csv"],
        lambda tmp, prev: (_csv_config(tmp, _table()), (tmp / "data.csv").unlink()),
    ),
    Case(
        "data-huge-vocabulary",
        [
            *TRAIN,
            "--set",
            "dataset.params.num_sparse=1",
            "--set",
            "dataset.params.num_interactions=0",
            "--set",
            "dataset.params.vocab_sizes=[3000000000]",
        ],
        ["vocab size 3,000,000,000", "csv/parquet"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "data-unknown-dataset",
        [*TRAIN, "--dataset", "synthtic"],
        ["unknown dataset 'synthtic'", "'synthetic'"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "data-unknown-param",
        [*TRAIN, "--set", "dataset.params.nrows=5"],
        ["dataset.params.nrows", "did you mean 'n_rows'"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "data-too-few-rows",
        [*TRAIN, "--set", "dataset.params.n_rows=5"],
        ["dataset.params.n_rows", "30"],
        _cfg(MLP_ARCH),
    ),
    # ------------------------------------------------------------------ plugins
    Case(
        "plugin-failing-import",
        [*TRAIN],
        [
            'Error importing plugin "badimport"',
            "fancy_dep",
            "MDMT_NAS_DISABLE_PLUGINS=badimport",
            "unknown expert 'typo_expert'",
        ],
        _cfg("arch:\n  shared: {expert: typo_expert}\n"),
        plugin=BROKEN_IMPORT,
        plugin_name="badimport",
    ),
    Case(
        "plugin-raising-registration",
        [*TRAIN],
        ['Error registering plugin "badregister"', "registration exploded", "unknown expert 'typo_expert'"],
        _cfg("arch:\n  shared: {expert: typo_expert}\n"),
        plugin=RAISING_REGISTRATION,
        plugin_name="badregister",
    ),
    Case(
        "plugin-duplicate-name",
        [*TRAIN],
        [
            'Name conflict in plugin "badduplicate"',
            "c.yaml: arch.shared.experts[0].name: expert 'mlp' is registered by 2 plugins",
            "mdmt-nas-badduplicate",
            "MDMT_NAS_PREFER=expert:mlp=badduplicate",
        ],
        _cfg("arch:\n  shared: {expert: mlp}\n"),
        plugin=DUPLICATE_NAME,
        plugin_name="badduplicate",
    ),
    Case(
        "plugin-misspelt-hook",
        [*TRAIN],
        ['Invalid hook in plugin "badmisspelt"', "'register_expert'", "did you mean 'register_experts'"],
        _cfg("arch:\n  shared: {expert: typo_expert}\n"),
        plugin=MISSPELT_HOOK,
        plugin_name="badmisspelt",
    ),
    Case(
        "plugin-component-raises-in-search",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:], *NO_TRACK],
        [
            "no candidate finished",
            "expert 'boom_expert' from plugin 'badforward'",
            "boom: forward always fails",
            "MDMT_NAS_DISABLE_PLUGINS=badforward",
        ],
        lambda tmp, prev: _space(
            tmp,
            "name: boom\ntemplate:\n  embedding_dim: 4\n  shared: {expert: {choice: expert}}\n"
            "choices:\n  expert: {options: [boom_expert]}\n",
        ),
        plugin=RAISING_FORWARD,
        plugin_name="badforward",
    ),
    # ------------------------------------------------------------------ CLI misuse
    Case("cli-unknown-option", [*SEARCH, "--budgett", "3"], ["No such option", "--budget"]),
    Case(
        "cli-bad-tracking-uri",
        ["train", "--config", "{tmp}/c.yaml", *TINY, "--tracking-uri", "foo://bar", "--output", "{tmp}/out"],
        ["MLflow tracking URI 'foo://bar'", "--no-track"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "cli-tracking-uri-not-a-database",
        [*SEARCH, "--tracking-uri", "sqlite:///{prev}/out/best_arch.json/x.db"],
        ["MLflow tracking URI", "sqlite:///mlflow.db"],
    ),
    # --------------------------------------------- blamed on the right source, found before any data is read
    Case(
        "config-set-bad-value-blames-the-flag",
        ["train", "--config", "{tmp}/c.yaml", "--set", "train.epochs=abc", *NO_TRACK],
        ["--set train.epochs=abc", "train.epochs", "valid integer"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "config-set-unknown-key-blames-the-flag",
        ["train", "--config", "{tmp}/c.yaml", "--set", "nosuch.key=1", *NO_TRACK],
        ["--set nosuch.key=1", "unknown key"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "config-relative-path-is-not-the-shipped-example",
        ["train", "--config", "shared_bottom.yaml", *NO_TRACK],
        ["shared_bottom.yaml: file not found", "pass --config shared_bottom"],
    ),
    Case(
        "config-unknown-component-before-the-data",
        ["train", "--config", "{tmp}/c.yaml", *NO_TRACK],
        ["c.yaml: arch.shared.experts[0].name", "unknown expert 'mpl'", "'mlp'"],
        _cfg(
            "dataset:\n  name: csv\n  params: {path: /nonexistent/data.csv, columns: {domain: d, labels: [y], sparse: [u]}}\n"
            "arch:\n  shared: {expert: mpl, num: 2}\n"
        ),
    ),
    Case(
        "space-choice-inside-params-misspelt-key",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        [
            "space.yaml: template.shared.expert.params.hiden",
            "unknown parameter of expert 'mlp'",
            "when choice 'width' is 4",
        ],
        lambda tmp, prev: _space(
            tmp,
            "name: e\ntemplate:\n  shared: {expert: {name: mlp, params: {hiden: [{choice: width}]}}, num: 2}\n"
            "choices:\n  width: {type: int, low: 4, high: 8, step: 4}\n",
        ),
    ),
    Case(
        "space-choice-inside-params-out-of-bounds",
        [*SEARCH[:2], "{tmp}/space.yaml", *SEARCH[3:]],
        ["space.yaml: template.shared.expert.params.dropout", "less than 1", "when choice 'drop' is 1.5"],
        lambda tmp, prev: _space(
            tmp,
            "name: e\ntemplate:\n  shared: {expert: {name: mlp, params: {hidden: [8], dropout: {choice: drop}}}}\n"
            "choices:\n  drop: {type: categorical, options: [0.0, 1.5]}\n",
        ),
    ),
    Case(
        "cli-storage-url-typo",
        [*SEARCH, *NO_TRACK, "--storage", "sqlte:///{tmp}/x.db"],
        ["unknown scheme 'sqlte'", "did you mean 'sqlite:///"],
    ),
    Case(
        "cli-tracking-server-unreachable",
        ["train", "--config", "{tmp}/c.yaml", *TINY, "--tracking-uri", "http://127.0.0.1:1", "--output", "{tmp}/out"],
        ["http://127.0.0.1:1 is unreachable", "--no-track"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "cli-bad-storage-url",
        [*SEARCH, *NO_TRACK, "--storage", "nosuchdb://host/x"],
        ["cannot open the Optuna storage 'nosuchdb://host/x'"],
    ),
    Case(
        "cli-storage-not-a-database",
        [*SEARCH, *NO_TRACK, "--storage", "sqlite:///{prev}/out/best_arch.json"],
        ["cannot open the Optuna storage", "best_arch.json"],
    ),
    Case(
        "cli-unwritable-output",
        ["train", "--config", "{tmp}/c.yaml", *TINY, *NO_TRACK, "--output", "{prev}/out/best_arch.json/sub"],
        ["best_arch.json/sub", "not writable", "--output"],
        _cfg(MLP_ARCH),
    ),
    Case(
        "cli-existing-output-without-resume",
        [*SEARCH[:-1], "{prev}/out", "--tracking-uri", "sqlite:///{prev}/mlflow.db"],
        ["already exists and is not empty", "--resume"],
    ),
    Case(
        "cli-resume-with-another-space",
        [
            *SEARCH[:2],
            "{tmp}/space.yaml",
            *SEARCH[3:-1],
            "{prev}/out",
            "--resume",
            "--tracking-uri",
            "sqlite:///{prev}/mlflow.db",
            "--study-name",
            "tiny-optuna-random-synthetic-seed0",
        ],
        ["was created for space 'tiny'", "--study-name"],
        lambda tmp, prev: _space(tmp, TINY_SPACE.replace("name: tiny", "name: other")),
    ),
]


def _format(argv: list[str], tmp: Path, prev: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)).replace("{prev}", str(prev)) for a in argv]


def run_case(case: Case, tmp: Path, prev: Path, debug: bool = False):
    if case.setup is not None:
        case.setup(tmp, prev)
    if (tmp / "c.yaml").exists():
        (tmp / "c.yaml").write_text((tmp / "c.yaml").read_text().replace("{tmp}", str(tmp)))
    argv = _format(case.argv, tmp, prev)
    if debug:
        argv = ["--debug", *argv]
    site = plugin_dist(tmp / "site", case.plugin_name, case.plugin) if case.plugin else None
    with plugins_from(site) if site is not None else _nothing():
        return cli(*argv, cwd=tmp)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_reported_and_nothing_is_lost(case: Case, tmp_path: Path, previous: Path):
    before = tree_hash(previous)
    r = run_case(case, tmp_path, previous)
    assert r.code == case.exit, f"exit {r.code}, expected {case.exit}\n{r.text}"
    for needle in case.needles:
        assert needle in r.text, f"{needle!r} not in the output:\n{r.text}"
    assert "Traceback" not in r.text and "internal error" not in r.text, r.text
    assert not (tmp_path / "pwned").exists()
    assert tree_hash(previous) == before, "a bad command changed the files of an earlier search"


DEBUG_CASES = [
    "config-negative-hidden",
    "data-unseen-domain-at-eval",
    "cli-bad-tracking-uri",
    "plugin-component-raises-in-search",
]


@pytest.mark.parametrize("case_id", DEBUG_CASES)
def test_debug_lets_the_exception_through(case_id: str, tmp_path: Path, previous: Path):
    case = next(c for c in CASES if c.id == case_id)
    r = run_case(case, tmp_path, previous, debug=True)
    assert r.code == "raised" and "Traceback" in r.err, r.text
    assert any(n in r.err for n in case.needles)


def test_real_process_prints_no_traceback_unless_debug(tmp_path: Path):
    """What a terminal shows: one error line and exit 2; with --debug the Python traceback (both processes at once)."""
    import os
    import subprocess
    import sys

    (tmp_path / "c.yaml").write_text("train:\n  batch_size: -3\n" + MLP_ARCH)
    env = {**os.environ, "COLUMNS": "200"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mdmt_nas", *pre, "train", "--config", "c.yaml", "--no-track"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pre in ([], ["--debug"])
    ]
    (plain_out, plain_err), (debug_out, debug_err) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 2 and "train.batch_size" in plain_err and "Traceback" not in plain_err + plain_out, (
        plain_err
    )
    assert (
        procs[1].returncode == 1 and "Traceback (most recent call last)" in debug_err and "ConfigError" in debug_err
    ), debug_err


def test_embedding_table_larger_than_memory_is_refused_before_allocation():
    """A schema with a huge vocabulary (e.g. raw user ids of a big table) fails with a ConfigError, not an OOM kill."""
    from mdmt_nas.arch import Architecture
    from mdmt_nas.data.schema import Schema, SparseField
    from mdmt_nas.errors import ConfigError
    from mdmt_nas.model import build_model

    schema = Schema(
        sparse=[SparseField(name="user_id", vocab_size=5_000_000_000), SparseField(name="item", vocab_size=10)],
        dense=[],
        domain="d",
        domain_names=["a", "b"],
        tasks=["click"],
    )
    arch = Architecture.model_validate({"embedding_dim": 16, "shared": {"expert": "mlp"}})
    with pytest.raises(ConfigError, match=r"'user_id' \(5,000,000,000 ids\).*max_vocab"):
        build_model(arch, schema)


def test_a_domain_without_positives_trains_and_reports_na(tmp_path: Path):
    """Not an error: the (domain, task) cell has no defined AUC; it shows n/a and stays out of the means."""
    df = _table()
    df.loc[df.dom == "b", "click"] = 0
    _csv_config(tmp_path, df)
    r = cli(*_format(TRAIN_CSV, tmp_path, tmp_path), cwd=tmp_path)
    assert r.code == 0, r.text
    rows = [line for line in r.out.splitlines() if "│ b " in line and "click" in line]
    assert rows and "n/a" in rows[0], r.out
