"""Ali-CCP (Taobao click & conversion), in the widely used preprocessed CSV layout.

One row per impression with columns ``click``, ``purchase``, categorical
feature-field ids named by their field (``101``, ``121``, ..., ``301``,
``109_14``, ...) and dense values ``D109_14``, ``D110_14``, ..., ``D853``
(the layout of torch-rechub's / ESMM's preprocessing). Domains are the
scenario field ``301`` (values 1, 2, 3); tasks are click and purchase.
Give `path` a single CSV (split by `split`) or a directory holding the
published train / val / test files (``*train*.csv``, ``*val*.csv``,
``*test*.csv``), which then are the splits unless `split` says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, check_columns, encode_table
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tabular import read_csv_columns
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import DataError

DOMAIN_FIELD = "301"
LABELS = ("click", "purchase")
_SPARSE = re.compile(r"^\d+(_\d+)?$")
_DENSE = re.compile(r"^D\d+(_\d+)?$")
_FILES = {"train": "*train*.csv", "valid": "*val*.csv", "test": "*test*.csv"}


class AliCCPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a preprocessed CSV, or a directory with train/val/test CSVs.
    path: Path
    #: default: the published files when `path` is a directory, else random 80/10/10.
    split: SplitConfig | None = None
    #: read at most this many rows of each file (quick experiments).
    max_rows: int | None = Field(default=None, ge=1)


def feature_columns(columns: list[str], where: str) -> tuple[list[str], list[str]]:
    """Sparse and dense feature columns of a preprocessed Ali-CCP header (anything else is an error)."""
    check_columns(columns, [*LABELS, DOMAIN_FIELD], where)
    other = [c for c in columns if c not in LABELS and not _SPARSE.match(c) and not _DENSE.match(c)]
    if other:
        raise DataError(
            f"{where}: unexpected column(s) {other[:5]}; a preprocessed Ali-CCP CSV has click, purchase, "
            f"feature-field id columns (101, 121, ..., 301, 109_14, ...) and dense columns (D109_14, ..., D853)"
        )
    sparse = [c for c in columns if _SPARSE.match(c) and c != DOMAIN_FIELD]
    dense = [c for c in columns if _DENSE.match(c)]
    return sparse, dense


def _header(path: Path) -> list[str]:
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


class AliCCPDataset(Dataset):
    """Ali-CCP preprocessed CSV; domains = field 301 (scenarios 1, 2, 3), tasks = click, purchase."""

    name: ClassVar[str] = "aliccp"
    Params: ClassVar[type[BaseModel]] = AliCCPParams

    def load(self) -> Splits:
        p: AliCCPParams = self.params  # type: ignore[assignment]
        path = Path(p.path)
        if path.is_dir():
            files = {}
            for part, pat in _FILES.items():
                found = sorted(path.glob(pat))
                if not found:
                    raise DataError(
                        f"{path}: no {part} file matching {pat!r}; expected ali_ccp_train.csv, ali_ccp_val.csv, ali_ccp_test.csv"
                    )
                files[part] = found[0]
        elif path.is_file():
            files = {"all": path}
        else:
            raise DataError(f"Ali-CCP path not found: {path}")
        first = next(iter(files.values()))
        header = _header(first)
        sparse, dense = feature_columns(header, str(first))
        cols = [*LABELS, DOMAIN_FIELD, *sparse, *dense]
        frames = []
        for part, f in files.items():
            if f != first and _header(f) != header:
                raise DataError(f"{f}: its columns differ from those of {first.name}; all files must share one header")
            frames.append(read_csv_columns(f, cols, max_rows=p.max_rows).assign(_split=part))
        df = pd.concat(frames, ignore_index=True)
        split = p.split or (SplitConfig(kind="column", column="_split") if "all" not in files else SplitConfig())
        mapping = ColumnMapping(
            domain=DOMAIN_FIELD,
            labels=list(LABELS),
            sparse=sparse,
            dense=dense,
            domain_names={"1": "scenario1", "2": "scenario2", "3": "scenario3"},
        )
        self.info = {"rows": len(df)}
        if "101" in sparse:
            self.info["users"] = int(df["101"].nunique())
        return encode_table(df, mapping, split, where=str(path))
