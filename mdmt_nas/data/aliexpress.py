"""AliExpress (search logs of five countries): domains are the countries.

Published as one folder per country, ``AliExpress_NL/train.csv`` and
``AliExpress_NL/test.csv`` (also accepted: ``NL/train.csv``, or one file per
country ``AliExpress_NL.csv`` / ``NL.csv``). Every file has the columns
``search_id, categorical_1..16, numerical_1..63, click, conversion``.
The country a row came from (its folder or file name) is its domain; tasks
are click and conversion. With train/test files the published test file is
the test split and `valid_from_train` of train becomes valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, encode_table
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tabular import read_csv_columns
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import DataError

CATEGORICAL = [f"categorical_{i}" for i in range(1, 17)]
NUMERICAL = [f"numerical_{i}" for i in range(1, 64)]
LABELS = ["click", "conversion"]
COLUMNS = ["search_id", *CATEGORICAL, *NUMERICAL, *LABELS]


class AliExpressParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path
    #: country codes to load (e.g. [NL, ES]); default: every country found.
    countries: list[str] | None = None
    #: default: published train/test files (+ valid_from_train), else random 80/10/10.
    split: SplitConfig | None = None
    #: with train/test files: fraction of train rows moved to valid (seeded).
    valid_from_train: float = Field(0.1, gt=0, lt=1)
    #: read at most this many rows of each file (quick experiments).
    max_rows: int | None = Field(default=None, ge=1)


def _country(name: str) -> str:
    return name.removeprefix("AliExpress_").removeprefix("aliexpress_")


def discover(d: Path) -> dict[str, dict[str, Path]]:
    """Country -> {"train"/"test"/"all": file} from the folder layout."""
    out: dict[str, dict[str, Path]] = {}
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        files = {part: sub / f"{part}.csv" for part in ("train", "test") if (sub / f"{part}.csv").is_file()}
        if files:
            if set(files) != {"train", "test"}:
                raise DataError(
                    f"{sub}: found only {', '.join(f.name for f in files.values())}; a country folder needs train.csv and test.csv"
                )
            out[_country(sub.name)] = files
    for f in sorted(d.glob("*.csv")):
        out.setdefault(_country(f.stem), {"all": f})
    return out


class AliExpressDataset(Dataset):
    """AliExpress per-country CSVs; domains = countries, tasks = click, conversion."""

    name: ClassVar[str] = "aliexpress"
    Params: ClassVar[type[BaseModel]] = AliExpressParams

    def load(self) -> Splits:
        p: AliExpressParams = self.params  # type: ignore[assignment]
        d = Path(p.dir)
        if not d.is_dir():
            raise DataError(f"AliExpress directory not found: {d}")
        found = discover(d)
        if not found:
            raise DataError(
                f"{d}: no country data; expected folders like AliExpress_NL/ with train.csv and test.csv, or files like NL.csv"
            )
        if p.countries is not None:
            missing = [c for c in p.countries if c not in found]
            if missing:
                raise DataError(f"{d}: countries {missing} not found; available: {sorted(found)}")
            found = {c: found[c] for c in p.countries}
        kinds = {"split" if "train" in files else "single" for files in found.values()}
        if len(kinds) > 1:
            raise DataError(
                f"{d}: mixes country folders (train/test) and single files; use one layout for all countries"
            )
        frames = [
            read_csv_columns(f, COLUMNS, max_rows=p.max_rows).assign(country=country, _split=part)
            for country, files in found.items()
            for part, f in files.items()
        ]
        df = pd.concat(frames, ignore_index=True)
        if p.split is not None:
            split = p.split
        elif kinds == {"split"}:
            split = SplitConfig(kind="column", column="_split", valid_from_train=p.valid_from_train)
        else:
            split = SplitConfig()
        mapping = ColumnMapping(
            domain="country",
            labels=LABELS,
            sparse=CATEGORICAL,
            dense=NUMERICAL,
            domain_names={c: c for c in found},
        )
        self.info = {"rows": len(df), "searches": int(df["search_id"].nunique())}
        return encode_table(df, mapping, split, where=str(d))
