"""Batch prediction: a CSV / JSON Lines / Parquet file in, the same rows plus a prediction column out.

Streaming: the input is read ``chunk_rows`` rows at a time, each chunk is predicted, appended to
the output and dropped, so memory stays flat however long the file is. The output appears whole
or not at all: it is written to a temporary file beside it and moved into place at the end.

The model is anything with ``predict(list[str]) -> list[str]`` (the registered MLflow pyfunc).
Blank, missing or NaN texts get an empty prediction and are not sent to the model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.config import suggest
from tasks.core.errors import ConfigError, DataError, PipelineError
from tasks.data import formats, json_rows
from tasks.data.sources import check_header, json_record
from tasks.data.text import is_blank, nfc
from tasks.serving.batch_writers import writer

logger = logging.getLogger(__name__)

# outputs; inputs are every format ingest reads (tasks/data/formats.py: one table for both)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# below this size a CSV/JSONL file is counted up front so the progress bar can show a total
COUNT_BELOW_BYTES = 32 * 2**20


@dataclass(frozen=True)
class BatchSummary:
    """What one ``predict_file`` call did."""

    rows: int
    blanks: int  # rows whose text was blank or missing: empty prediction, nothing generated
    seconds: float
    input: Path
    output: Path
    normalized: int = 0  # texts sent to the model in NFC form because they were not in it

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.rows:,} rows ({self.blanks:,} blank, not generated; {self.normalized:,} normalized to NFC) "
            f"in {self.seconds:.1f} s, "
            f"{self.rows_per_s:,.0f} rows/s -> {self.output}"
        )


def file_format(path: Path, flag: str = "file") -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file's extension."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise ConfigError(
            f"{flag} {path}: unsupported file type {Path(path).suffix or '(none)'!r}; use one of {', '.join(FORMATS)}"
        )
    return kind


def check_paths(input: Path, output: Path) -> None:
    """Refuse what cannot work before anything is read or loaded: unknown formats, a missing
    input, an output folder that does not exist, the output overwriting the input."""
    input, output = Path(input), Path(output)
    if formats.by_name(input) is None:
        raise ConfigError(
            f"--input {input}: unsupported file type {''.join(input.suffixes[-2:]) or '(none)'!r}; "
            f"use {formats.supported()}"
        )
    file_format(output, "--output")
    if not input.is_file():
        raise DataError(f"--input {input}: no such file")
    if output.resolve() == input.resolve() or (output.exists() and os.path.samefile(input, output)):
        raise ConfigError(f"--output {output} is the input file; write the predictions to another file")
    if not output.parent.resolve().is_dir():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file name")


# -- reading --------------------------------------------------------------------------------


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows in order, at most ``chunk_rows`` per DataFrame. A file with a header or a
    schema but no rows gives one empty DataFrame with its columns. Any format ingest reads
    (tasks/data/formats.py), compressed or not; a JSON document (an array) is read whole."""
    path = Path(path)
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows {chunk_rows}: give a positive number of rows")
    src = formats.inspect(path, setting="a .tsv or .psv name")
    if src.kind == "parquet":
        return _parquet_chunks(src, chunk_rows)
    if src.kind == "delimited":
        return _csv_chunks(src, chunk_rows)
    return _json_chunks(src, chunk_rows)


def _bad_utf8_line(src: formats.Source) -> int:
    """Line number of the first line that is not UTF-8 (decoders report offsets into buffers)."""
    with src.open() as fh:
        for number, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _csv_header(src: formats.Source) -> list[str]:
    try:
        with src.open() as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh, delimiter=src.delimiter or ","), None)
    except UnicodeDecodeError:
        raise DataError(f"{src.where}: not valid UTF-8 at line {_bad_utf8_line(src)}; re-export it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{src.where}: malformed CSV at line 1 (the header): {exc}") from None
    check_header(src.where, header)
    return header


def _csv_chunks(src: formats.Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    _csv_header(src)  # pandas would rename a repeated column ("a.1") instead of refusing it
    try:
        # object dtype, no NA parsing: every cell is the exact text in the file, as a plain str
        with (
            src.open() as fh,
            pd.read_csv(
                fh,
                sep=src.delimiter or ",",
                chunksize=chunk_rows,
                dtype=object,
                keep_default_na=False,
                encoding="utf-8",
            ) as reader,
        ):
            yield from formats.guarded(src.where, src.compression, reader)
    except UnicodeDecodeError:
        raise DataError(f"{src.where}: not valid UTF-8 at line {_bad_utf8_line(src)}; re-export it as UTF-8") from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{src.where}: malformed CSV ({str(exc).strip()}); quote fields that contain the delimiter, "
            "quotes or newlines (and double the quotes inside them)"
        ) from None


def _json_chunks(src: formats.Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with src.open() as fh:
        head = formats.guard(src.where, src.compression, fh.read, formats.SNIFF_BYTES)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"[") or (body.startswith(b"{") and not src.lines_named):
        text = src.read().decode("utf-8-sig", errors="strict") if _utf8(src) else ""
        records = json_rows.json_document(src.where, text, lines=src.lines_named)
        if records is not None:
            if not records:
                raise DataError(f"{src.where} has no records (the JSON array is empty)")
            for start in range(0, len(records), chunk_rows):
                yield _frame(records[start : start + chunk_rows])
            return
    yield from _jsonl_chunks(src, chunk_rows)


def _utf8(src: formats.Source) -> bool:
    try:
        src.read().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{src.where}: line {_bad_utf8_line(src)} is not valid UTF-8; re-export it as UTF-8") from None
    return True


def _jsonl_chunks(src: formats.Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    records: list[dict] = []
    yielded = False  # a file with no records at all has no columns either: refused below
    path = src.where
    with src.open() as fh:
        for number, raw in enumerate(formats.guarded(path, src.compression, fh), 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: line {number} is not valid UTF-8; re-export it as UTF-8") from None
            if not line.strip():
                continue
            records.append(json_record(path, number, line))
            if len(records) == chunk_rows:
                yield _frame(records)
                records, yielded = [], True
    if not records and not yielded:
        raise DataError(f"{path} has no records (JSON objects, one per line)")
    if records:
        yield _frame(records)


def _frame(records: list[dict]) -> pd.DataFrame:
    # object dtype: values stay as parsed (1 stays 1, not 1.0 in a column with gaps)
    return pd.DataFrame(records, dtype=object)


def _parquet_chunks(src: formats.Source, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(src.path if src.plain else io.BytesIO(src.read()))
        # Arrow-backed columns, so types survive the trip to the output (ints with nulls stay ints)
        yielded = False
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yielded = True
            yield batch.to_pandas(types_mapper=pd.ArrowDtype)
        if not yielded:
            yield pf.schema_arrow.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError derive from these
        raise DataError(
            f"{src.where}: not a readable Parquet file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None


def count_rows(path: Path) -> int | None:
    """Rows in the file when that is cheap to know (Parquet metadata, a small CSV/JSONL), else None."""
    path = Path(path)
    named = formats.by_name(path)
    if named is None or named[2] is not None or named[0] not in ("delimited", "parquet") or path.suffix == ".json":
        return None  # compressed, or a JSON document: the bar shows no total
    kind = (
        {"delimited": "csv", "parquet": "parquet"}[named[0]]
        if path.suffix.lower() not in (".jsonl", ".ndjson")
        else "jsonl"
    )
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError):
            return None  # the reader reports it
    if path.stat().st_size > COUNT_BELOW_BYTES:
        return None
    raw = path.read_bytes()
    if kind == "jsonl":
        return sum(1 for line in raw.splitlines() if line.strip())
    if b'"' not in raw:  # no quoted newlines: one row per non-blank line after the header
        return max(sum(1 for line in raw.splitlines() if line.strip()) - 1, 0)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return max(sum(1 for record in csv.reader(fh) if record) - 1, 0)
    except (UnicodeDecodeError, csv.Error):
        return None


# -- writing --------------------------------------------------------------------------------


# -- predicting ---------------------------------------------------------------------------


def _text(v) -> str:
    """A cell as model input: text as is, missing values as "", anything else through str()."""
    if isinstance(v, str):
        return v
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def predict_texts(model, texts: list[str]) -> tuple[list[str], int]:
    """Predictions for ``texts`` in order, and how many were blank: nothing visible, see
    tasks/data/text.py (those get "" and are not sent)."""
    todo = [i for i, t in enumerate(texts) if not is_blank(t)]
    out = [""] * len(texts)
    if todo:
        # the form ingest trained on (NFC); blank (nothing visible) is never generated
        predictions = list(model.predict([nfc(texts[i]) for i in todo]))
        if len(predictions) != len(todo):
            raise PipelineError(f"the model returned {len(predictions)} predictions for {len(todo)} inputs")
        for i, prediction in zip(todo, predictions):
            out[i] = str(prediction)
    return out, len(texts) - len(todo)


def _check_columns(chunk: pd.DataFrame, input: Path, column: str, output_column: str, first: bool = True) -> None:
    if first and column not in chunk.columns:
        have = [str(c) for c in chunk.columns]
        raise DataError(
            f"--column {column!r}: {input} has no such column{suggest(column, have)}; "
            f"its columns are {', '.join(map(repr, have)) or '(none)'}"
        )
    if output_column in chunk.columns:
        raise ConfigError(
            f"--output-column {output_column!r}: {input} already has a column of that name; "
            "choose another name with --output-column"
        )


def preflight(
    input: Path, output: Path, column: str = "text", output_column: str = "prediction", chunk_rows: int = 1024
) -> None:
    """Every check ``predict_file`` makes before its first prediction, without a model: paths,
    formats and the first chunk's columns. For callers that load a model next."""
    check_paths(input, output)
    chunks = read_chunks(Path(input), chunk_rows)
    try:
        _check_columns(next(chunks), Path(input), column, output_column)
    finally:
        chunks.close()


def predict_file(
    model,
    input: Path,
    output: Path,
    column: str = "text",
    output_column: str = "prediction",
    chunk_rows: int = 1024,
    progress: bool | None = None,
) -> BatchSummary:
    """Write ``output``: every row and column of ``input`` in order, plus ``output_column`` with
    the model's prediction for ``column``. ``progress``: None shows a bar on a terminal only.

    On any error (or Ctrl-C) nothing is left behind and an existing ``output`` is untouched."""
    from tqdm.auto import tqdm

    input, output = Path(input), Path(output)
    check_paths(input, output)
    chunks = read_chunks(input, chunk_rows)  # checks chunk_rows
    started = time.perf_counter()
    try:
        fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write in {output.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    rows = blanks = normalized = 0
    bar = tqdm(unit="row", unit_scale=True, desc=input.name, disable=None if progress is None else not progress)
    try:
        if not bar.disable:
            bar.total = count_rows(input)
            bar.refresh()
        out = writer(file_format(output), tmp, output_column)
        try:
            for number, chunk in enumerate(chunks):
                # later chunks too: a JSON Lines key may first appear anywhere
                _check_columns(chunk, input, column, output_column, first=number == 0)
                texts = [_text(v) for v in chunk[column].tolist()] if column in chunk.columns else [""] * len(chunk)
                predictions, blank = predict_texts(model, texts)
                chunk[output_column] = predictions
                out.write(chunk, f"{input} (rows {rows + 1}-{rows + len(chunk)})")
                rows += len(chunk)
                blanks += blank
                normalized += sum(1 for t in texts if not t.isascii() and nfc(t) != t)
                bar.update(len(chunk))
        finally:
            chunks.close()
            out.close()
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; the output gets the usual mode
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        bar.close()
    summary = BatchSummary(rows, blanks, time.perf_counter() - started, input, output, normalized)
    logger.info("batch predict: %s", summary.line())
    return summary


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
