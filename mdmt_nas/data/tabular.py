"""The generic `csv` and `parquet` datasets: your own table plus a column mapping.

Both read only the mapped columns, check them before reading the body (a
missing column or a wrong separator is reported with the available
columns), split, then encode (see `encode.py`). `parquet` with
`streaming: true` never loads the table: it returns streaming splits (see
`parquet_stream.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, check_columns, encode_table
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import DataError


class CsvParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    columns: ColumnMapping
    split: SplitConfig = Field(default_factory=SplitConfig)
    separator: str = ","
    encoding: str = "utf-8"
    #: read only the first rows (quick experiments).
    max_rows: int | None = Field(default=None, ge=1)

    @field_validator("separator")
    @classmethod
    def _separator(cls, v: str) -> str:
        """Accept the spellings a shell or YAML leaves behind for a tab."""
        v = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(v, v)
        if not v:
            raise ValueError("separator must not be empty")
        return v


class ParquetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a .parquet file or a directory of them (read in sorted name order).
    path: Path
    columns: ColumnMapping
    split: SplitConfig = Field(default_factory=SplitConfig)
    #: stream row groups instead of loading the table (for data larger than memory).
    streaming: bool = False
    #: streaming: row groups shuffled together in one buffer (memory ~ this x row group size).
    shuffle_buffer: int = Field(default=4, ge=1)


def needed_columns(mapping: ColumnMapping, split: SplitConfig) -> list[str]:
    """Columns to read: the mapping's plus the one the split needs."""
    cols = mapping.columns()
    extra = split.column if split.kind in ("column", "hash", "time") else None
    if split.kind == "time" and not extra:
        extra = mapping.timestamp
    if extra and extra not in cols:
        cols.append(extra)
    return cols


def require_file(path: Path, what: str, hint: str = "") -> Path:
    """DataError if `path` does not exist (naming it and what it should be)."""
    if not path.exists():
        raise DataError(f"{what} not found: {path}" + (f"; {hint}" if hint else ""))
    return path


def read_csv_columns(
    path: Path,
    columns: list[str],
    separator: str = ",",
    encoding: str = "utf-8",
    max_rows: int | None = None,
    where: str | None = None,
) -> pd.DataFrame:
    """Read selected columns of a delimited file, checking the header first."""
    where = where or str(path)
    require_file(path, "CSV file")
    engine = "python" if len(separator) > 1 else "c"
    try:
        header = pd.read_csv(path, sep=separator, nrows=0, encoding=encoding, engine=engine).columns
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where}: cannot decode the file as {encoding} ({exc.reason}); set `encoding` (e.g. latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: the file is empty (no header line)") from None
    check_columns(header, columns, where, separator)
    kw: dict = {"sep": separator, "usecols": columns, "encoding": encoding}
    if max_rows is not None or engine == "python":
        kw.update(nrows=max_rows, engine=engine)
    else:
        kw["engine"] = "pyarrow"
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{where}: cannot parse the file: {str(exc).strip().splitlines()[-1]}") from None


class CsvDataset(Dataset):
    """Your own CSV (or other delimited) file with a column mapping, loaded in memory."""

    name: ClassVar[str] = "csv"
    Params: ClassVar[type[BaseModel]] = CsvParams

    def load(self) -> Splits:
        p: CsvParams = self.params  # type: ignore[assignment]
        df = read_csv_columns(p.path, needed_columns(p.columns, p.split), p.separator, p.encoding, p.max_rows)
        self.info = {"rows": len(df)}
        return encode_table(df, p.columns, p.split, where=str(p.path), separator=p.separator)


class ParquetDataset(Dataset):
    """Your own Parquet file(s) with a column mapping; `streaming: true` for data larger than memory."""

    name: ClassVar[str] = "parquet"
    Params: ClassVar[type[BaseModel]] = ParquetParams

    def load(self) -> Splits:
        p: ParquetParams = self.params  # type: ignore[assignment]
        if p.streaming:
            from mdmt_nas.data.parquet_stream import open_streaming

            splits = open_streaming(p.path, p.columns, p.split, shuffle_buffer=p.shuffle_buffer)
            self.info = {"rows": sum(len(getattr(splits, k)) for k in ("train", "valid", "test")), "streaming": True}
            return splits
        import pyarrow.parquet as pq

        from mdmt_nas.data.parquet_stream import parquet_files

        files = parquet_files(p.path)
        cols = needed_columns(p.columns, p.split)
        check_columns(pq.read_schema(files[0]).names, cols, str(files[0]))
        try:
            table = pq.read_table(files if len(files) > 1 else files[0], columns=cols)
        except Exception as exc:  # pyarrow raises several types for corrupt/incompatible files
            raise DataError(f"{p.path}: cannot read Parquet: {exc}") from None
        self.info = {"rows": table.num_rows}
        return encode_table(table.to_pandas(), p.columns, p.split, where=str(p.path))
