"""CSV -> Parquet in bounded memory, so big logs can then be streamed.

The file is cut into blocks of whole lines (`csv_chunks`), each parsed by
pyarrow; parsed blocks are gathered into row groups of `row_group_size` rows
and written out, so peak memory is a block plus one row group whatever the
file size. With a
column mapping only the mapped columns are kept and their types are fixed up
front (categorical columns as strings, dense as float32, labels as float32,
the timestamp as float64), so a column whose first block looks numeric
cannot break a later block.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mdmt_nas.data.encode import ColumnMapping, check_columns
from mdmt_nas.errors import DataError
from mdmt_nas.files import atomic_path


@dataclass
class ConvertReport:
    rows: int
    row_groups: int
    input_bytes: int
    output_bytes: int
    seconds: float
    columns: list[str]


def column_types(mapping: ColumnMapping, keep: list[str] | tuple[str, ...] = ()) -> dict[str, pa.DataType]:
    """Arrow types of the mapped columns (strings for everything categorical)."""

    def raw(c: str) -> str:  # a derived column is stored as its (text) source column
        return mapping.derived[c].first_of if c in mapping.derived else c

    types: dict[str, pa.DataType] = {raw(c): pa.string() for c in [mapping.domain, *mapping.sparse, *keep]}
    types.update({c: pa.float32() for c in mapping.dense if c not in mapping.derived})
    types.update({r.column: pa.float32() for r in mapping.label_rules().values()})
    if mapping.timestamp:
        types[raw(mapping.timestamp)] = pa.float64()
    return types


def read_header(path: Path, separator: str, encoding: str = "utf-8") -> list[str]:
    with open(path, encoding=encoding, errors="replace") as fh:
        line = fh.readline().rstrip("\r\n")
    if not line:
        raise DataError(f"{path}: the file is empty (no header line)")
    return [c.strip().strip('"') for c in line.split(separator)]


def csv_chunks(path: Path, block_size: int) -> Iterator[tuple[bytes, bytes]]:
    """(header line, block of whole lines) pairs, each block about `block_size` bytes.

    We cut the file ourselves instead of using Arrow's streaming reader: that
    reader reads ahead without a bound (into Arrow or Python buffers), so a
    slow consumer ends up holding most of the file. Lines must not contain
    newlines inside quoted values (Arrow's default assumption too).
    """
    with open(path, "rb") as fh:
        header = fh.readline()
        carry = b""
        while True:
            buf = fh.read(block_size)
            if not buf:
                break
            cut = buf.rfind(b"\n")
            if cut < 0:  # a single line longer than the block: keep reading
                carry += buf
                continue
            block, carry = carry + buf[: cut + 1], buf[cut + 1 :]
            yield header, block
        if carry.strip():
            yield header, carry if carry.endswith(b"\n") else carry + b"\n"


# long: one streaming pass (read, encode, write) whose state would otherwise travel between helpers
def csv_to_parquet(
    src: Path,
    dst: Path,
    mapping: ColumnMapping | None = None,
    separator: str = ",",
    keep: list[str] | tuple[str, ...] = (),
    row_group_size: int = 131_072,
    block_size: int = 8 << 20,
    compression: str = "zstd",
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert `src` (CSV) to `dst` (Parquet) chunk by chunk; `progress(rows_so_far)` after each row group."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DataError(f"CSV file not found: {src}")
    if len(separator) != 1:
        raise DataError(
            f"convert reads single-character separators only; got {separator!r} (for '::' files use the ml-1m loader)"
        )
    header = read_header(src, separator)
    include: list[str] | None = None
    types: dict[str, pa.DataType] = {}
    if mapping is not None:
        include = list(dict.fromkeys(mapping.columns() + list(keep)))
        check_columns(header, include, str(src), separator)
        types = column_types(mapping, keep)
    elif keep:
        check_columns(header, keep, str(src), separator)
        include = list(keep)
    t0 = time.perf_counter()

    def parse_error(exc: pa.ArrowInvalid, at: int) -> DataError:
        msg = re.sub(
            r"CSV column #(\d+)",
            lambda m: f"column {header[int(m.group(1))]!r}" if int(m.group(1)) < len(header) else m.group(0),
            str(exc),
        )
        hint = "" if mapping else "; pass a column mapping (--config) so column types are fixed up front"
        return DataError(f"{src}: cannot parse rows {at:,}..: {msg}{hint}")

    rows = groups = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None

    def flush(final: bool) -> None:
        nonlocal pending, pending_rows, rows, groups
        while pending_rows >= row_group_size or (final and pending_rows):
            table = pa.concat_tables(pending)
            take = min(row_group_size, table.num_rows)
            writer.write_table(table.slice(0, take), row_group_size=row_group_size)
            rest = table.slice(take)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
            rows += take
            groups += 1
            if progress:
                progress(rows)

    with atomic_path(dst) as tmp:  # a half-written Parquet file never replaces dst; a full disk is one line naming dst
        try:
            parsed = 0
            for head, block in csv_chunks(src, block_size):
                try:
                    table = pacsv.read_csv(
                        pa.py_buffer(head + block),
                        parse_options=pacsv.ParseOptions(delimiter=separator),
                        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include),
                    )
                except pa.ArrowInvalid as exc:
                    raise parse_error(exc, parsed) from None
                parsed += table.num_rows
                if schema is None:  # without a mapping, the first block's inferred types hold for all
                    schema = table.schema
                    types = types or {f.name: f.type for f in schema}
                    writer = pq.ParquetWriter(tmp, schema, compression=compression)
                elif table.schema != schema:
                    raise DataError(
                        f"{src}: rows {parsed - table.num_rows:,}.. parse to {table.schema} instead of {schema}"
                    )
                pending.append(table)
                pending_rows += table.num_rows
                flush(final=False)
            if writer is None:
                raise DataError(f"{src}: the file has a header but no rows")
            flush(final=True)
            writer.close()
            writer = None
        finally:
            if writer is not None:
                writer.close()
    return ConvertReport(
        rows, groups, src.stat().st_size, dst.stat().st_size, time.perf_counter() - t0, list(schema.names)
    )
