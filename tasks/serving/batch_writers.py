"""The writers of `s2s predict --input`: CSV, JSON Lines and Parquet, appended chunk by chunk with
the input's columns and types kept, and the predictions in their own column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tasks.core.errors import DataError


class _CsvWriter:
    def __init__(self, path: Path):
        self.fh = path.open("w", encoding="utf-8", newline="")
        self.columns: list | None = None

    def write(self, chunk: pd.DataFrame, origin: str) -> None:
        if self.columns is None:
            self.columns = list(chunk.columns)
        else:
            chunk = _fit(chunk, self.columns, origin, "CSV")
        # CRLF record ends (RFC 4180): the csv module then quotes every cell holding "\r" or "\n";
        # with "\n" alone a bare "\r" in a cell would be written unquoted and split its row
        chunk.to_csv(self.fh, header=self.fh.tell() == 0, index=False, lineterminator="\r\n")

    def close(self) -> None:
        self.fh.close()


class _JsonlWriter:
    def __init__(self, path: Path):
        self.fh = path.open("w", encoding="utf-8", newline="\n")

    def write(self, chunk: pd.DataFrame, origin: str) -> None:  # noqa: ARG002 (the writers' interface)
        columns = [str(c) for c in chunk.columns]
        lines = [
            json.dumps(dict(zip(columns, map(_json_value, row))), ensure_ascii=False, default=_json_default)
            for row in chunk.itertuples(index=False, name=None)
        ]
        if lines:
            self.fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self.fh.close()


class _ParquetWriter:
    def __init__(self, path: Path, output_column: str):
        self.path = path
        self.output_column = output_column
        self.writer = None
        self.schema = None

    def write(self, chunk: pd.DataFrame, origin: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.schema is None:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            # fixed from the first chunk; a column with no value yet (null type) becomes text, and
            # the predictions are always text, even in an all-blank first chunk
            fields = [
                pa.field(f.name, pa.string()) if f.name == self.output_column or pa.types.is_null(f.type) else f
                for f in table.schema
            ]
            self.schema = pa.schema(fields, metadata=table.schema.metadata)
            self.writer = pq.ParquetWriter(self.path, self.schema)
        else:
            chunk = _fit(chunk, self.schema.names, origin, "Parquet")
        try:
            table = pa.Table.from_pandas(chunk, schema=self.schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"{origin}: a column changes type after the first chunk, which fixed the Parquet schema "
                f"({str(exc).splitlines()[0][:200]}); write .jsonl or .csv output instead"
            ) from None
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fit(chunk: pd.DataFrame, columns: list, origin: str, kind: str) -> pd.DataFrame:
    """A later chunk in the first chunk's columns (JSON Lines records need not all have every key)."""
    extra = [c for c in chunk.columns if c not in columns]
    if extra:
        raise DataError(
            f"{origin}: key(s) {', '.join(map(repr, extra))} first appear after the first chunk, which fixed "
            f"the {kind} columns; write .jsonl output, or raise --chunk-rows"
        )
    return chunk if list(chunk.columns) == list(columns) else chunk.reindex(columns=columns)


def _json_value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _json_default(v):
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return _json_value(v.item())  # numpy scalars
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def writer(kind: str, path: Path, output_column: str):
    if kind == "csv":
        return _CsvWriter(path)
    if kind == "jsonl":
        return _JsonlWriter(path)
    return _ParquetWriter(path, output_column)
