"""Reading raw pairs: one file, a folder of split files, a ``save_to_disk`` folder or a hub dataset.

Also the data version: the md5 DVC records for the raw source, so a model version can be traced
to the exact bytes it saw.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.config import Config
from tasks.core.errors import DataError
from tasks.data import formats, json_rows

# Split names people use for the same thing; the first match in a folder or DatasetDict wins.
ALIASES = {"validation": ("validation", "valid", "val", "dev", "eval"), "test": ("test",)}
SLICE = re.compile(r"^(?P<name>[^\[\]]+?)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


# -- data version ---------------------------------------------------------------------------


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dvc_hash(path: Path) -> str:
    """The md5 DVC records for ``path``: the file md5, or for a folder the ``.dir`` hash.

    Matches ``dvc add`` / ``dvc.lock`` (checked against DVC itself in tests), so the version on a
    model can be looked up in the DVC history.
    """
    if path.is_file():
        return _file_md5(path)
    entries = [
        {"md5": _file_md5(p), "relpath": p.relative_to(path).as_posix()} for p in sorted(path.rglob("*")) if p.is_file()
    ]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


# -- reading ----------------------------------------------------------------------------------


@dataclass
class RawSplit:
    """One split as read from the source, before any cleaning."""

    frame: pd.DataFrame
    origin: str  # file name or "<dataset>:<split>", for messages


def parse_split(spec: str) -> tuple[str, str | None, str | None]:
    """``"train[:5000]"`` -> ("train", None, "5000"); ``"train"`` -> ("train", None, None)."""
    m = SLICE.match(spec.strip())
    if not m:
        raise DataError(f"cannot parse split {spec!r}; use a name with an optional slice, e.g. train[:5000]")
    return m["name"].strip(), m["start"], m["stop"]


def _apply_slice(df: pd.DataFrame, start: str | None, stop: str | None) -> pd.DataFrame:
    def pos(v: str | None) -> int | None:
        if v is None:
            return None
        return round(len(df) * int(v[:-1]) / 100) if v.endswith("%") else int(v)

    return df.iloc[pos(start) : pos(stop)]


def _first_bad_utf8(raw: bytes) -> tuple[int, bytes]:
    """Line number and bytes of the first line that is not valid UTF-8 (readers report offsets
    into their own buffers, which are useless to a person)."""
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return number, line[max(exc.start - 10, 0) : exc.end + 10]
    return 0, b""


def read_table(path: Path, delimiter: str | None = None) -> pd.DataFrame:
    """Read one data file (tasks/data/formats.py: delimited text, JSON or Parquet, compressed or
    not) strictly: a file a strict parser of its format would reject is refused with its line
    number, never repaired (a lenient parse can merge two rows into one). Awkward but valid files
    (a byte order mark, CRLF line ends, quoted delimiters and newlines) are read as they are."""
    src = formats.inspect(path, delimiter)
    where = src.where
    if src.kind == "parquet":
        try:
            return pd.read_parquet(path if src.plain else io.BytesIO(src.read()))
        except DataError:
            raise
        except Exception as exc:  # pyarrow's errors (a truncated file, a bad footer) have no common base
            raise DataError(
                f"{where}: not a readable Parquet file ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); re-export it"
            ) from None
    raw = src.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        line, snippet = _first_bad_utf8(raw)
        raise DataError(
            f"{where}: not valid UTF-8 at line {line} (near {snippet!r}); re-export the file as UTF-8"
        ) from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"{where}: a NUL byte on line {line}: a binary file, or a broken export")
    if src.kind == "delimited":
        return _read_csv(where, raw, src.delimiter or ",")
    records = json_rows.json_document(where, raw.decode("utf-8-sig"), lines=src.lines_named)
    if records is None:
        return _read_jsonl(where, raw)
    if not records:
        raise DataError(f"{where} has no records (the JSON array is empty)")
    return pd.DataFrame.from_records(records)


def _read_csv(path: str, raw: bytes, delimiter: str) -> pd.DataFrame:
    import pyarrow as pa

    text = raw.decode("utf-8-sig")
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV at line 1 (the header): {exc}") from None
    check_header(path, header)
    # an unterminated quote swallows the rest of the file into one field; an odd number of quote
    # characters is its sign (escaped quotes come in pairs)
    trouble = raw.count(b'"') % 2 == 1
    if not trouble:
        try:
            return _arrow_csv(raw, header, delimiter, quoted=True)
        except pa.ArrowInvalid:
            trouble = True
    if delimiter == "\t":
        # tab-separated values as IANA defines them have no quoting: a quote is a character
        with contextlib.suppress(pa.ArrowInvalid):
            return _arrow_csv(raw, header, delimiter, quoted=False)
    line, problem = _csv_problem(text, len(header), delimiter)
    kind = "CSV" if delimiter == "," else formats.DELIMITERS.get(delimiter, repr(delimiter)) + "-separated file"
    raise DataError(
        f"{path}: malformed {kind} at line {line}: {problem}; quote fields that contain the delimiter, "
        "quotes or newlines (and double the quotes inside them)"
    )


def _arrow_csv(raw: bytes, header: list[str], delimiter: str, quoted: bool) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        io.BytesIO(raw),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, quote_char='"' if quoted else False, newlines_in_values=quoted
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header}, null_values=[""], strings_can_be_null=True
        ),
    )
    return table.to_pandas()


def _csv_problem(text: str, width: int, delimiter: str = ",") -> tuple[int, str]:
    """Where a strict CSV parser stops, and why (the slow path, only for a file already refused)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    line = 1
    try:
        for record in reader:
            if reader.line_num > 1 and record and len(record) != width:
                return reader.line_num, f"{len(record)} fields where the header has {width}"
            line = reader.line_num
    except csv.Error as exc:
        return max(reader.line_num, line), str(exc)
    return line, "a quote that is never closed"


def check_header(path, header: list[str] | None) -> None:
    """A CSV header must name its columns, each once (the ingest reader and batch prediction)."""
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path} has no header line (the column names)")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(
            f"{path}: line 1 names column(s) {', '.join(map(repr, dupes))} more than once; "
            "rename them so each column has one name"
        )


def json_record(path, number: int, line: str) -> dict:
    """Line ``number`` of a JSON-lines file as an object, strictly (no NaN/Infinity), or a
    DataError naming the line (the ingest reader and batch prediction alike)."""
    try:
        obj = json_rows.loads(line)
    except ValueError as exc:
        raise DataError(f"{path}: line {number} is not valid JSON ({exc}); each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: line {number} is a JSON {type(obj).__name__}, not an object; "
            'each line must be one object like {"text": ..., "target": ...}'
        )
    return obj


def _read_jsonl(path: str, raw: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.json as pajson

    lenient = any(token in raw for token in (b"NaN", b"Infinity"))  # Arrow accepts them; JSON does not
    if not lenient:
        try:
            return pajson.read_json(io.BytesIO(raw.removeprefix(b"\xef\xbb\xbf"))).to_pandas()
        except pa.ArrowInvalid:
            pass  # a parse error or a column of mixed types: the strict path below says which
    records = []
    # JSON Lines end at "\n" (or "\r\n") only: str.splitlines() would also cut at U+0085, U+2028
    # and other characters a JSON string may hold unescaped
    for number, line in enumerate(raw.decode("utf-8-sig").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        records.append(json_record(path, number, line))
    if not records:
        raise DataError(f"{path} has no records")
    return pd.DataFrame.from_records(records)


def _is_hf_disk(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _find_split(available: dict[str, object], wanted: str | None, role: str) -> str | None:
    if wanted:
        return wanted if wanted in available else None
    for alias in ALIASES.get(role, (role,)):
        if alias in available:
            return alias
    return None


def _select(available: dict, cfg: Config, where: str) -> dict[str, str]:
    """Map roles (train/validation/test) to the source's split names; explicit names must exist."""
    ic = cfg.ingest
    chosen: dict[str, str] = {}
    for role, spec, key in (
        ("train", ic.train_split, "train_split"),
        ("validation", ic.valid_split, "valid_split"),
        ("test", ic.test_split, "test_split"),
    ):
        name = parse_split(spec)[0] if spec else None
        # a split already given another role is not taken again by default (AutoTrain's
        # `valid_split: test` must not also become the frozen test split)
        unclaimed = available if spec else {k: v for k, v in available.items() if k not in chosen.values()}
        found = _find_split(unclaimed, name, role)
        if found is None and (spec or role == "train"):
            raise DataError(
                f"{where}: no {role} split named {name or role!r}; found {', '.join(sorted(available)) or 'nothing'}. "
                f"Set ingest.{key} to one of them"
                + (
                    " (a folder needs a train file: train.csv, train.jsonl, train.parquet, train.csv.gz...)"
                    if role == "train"
                    else ""
                )
            )
        if found is not None:
            chosen[role] = found
    return chosen


def read_source(cfg: Config) -> tuple[dict[str, RawSplit], str]:
    """The source's splits by role, and its data version."""
    ic = cfg.ingest
    src = cfg.source_path()
    specs = {"train": ic.train_split, "validation": ic.valid_split, "test": ic.test_split}

    def sliced(df: pd.DataFrame, role: str) -> pd.DataFrame:
        spec = specs.get(role)
        if not spec:
            return df
        _, start, stop = parse_split(spec)
        return _apply_slice(df, start, stop)

    if src.is_file():
        return {"train": RawSplit(sliced(read_table(src, ic.delimiter), "train"), src.name)}, dvc_hash(src)
    if src.is_dir():
        if _is_hf_disk(src):
            return _read_hf_disk(src, cfg, sliced)
        files = {formats.stem(p): p for p in sorted(src.iterdir()) if p.is_file() and formats.by_name(p)}
        chosen = _select(files, cfg, str(src))
        return (
            {
                role: RawSplit(sliced(read_table(files[name], ic.delimiter), role), files[name].name)
                for role, name in chosen.items()
            },
            dvc_hash(src),
        )
    if _looks_like_hub_id(ic.source):
        return _read_hub(ic.source, cfg)
    raise DataError(
        f"ingest.source: {src} does not exist; point it at a data file ({formats.supported()}), a folder of "
        "train/validation/test files, a save_to_disk folder or a hub dataset name"
    )


def _read_hf_disk(src: Path, cfg: Config, sliced) -> tuple[dict[str, RawSplit], str]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(src))
    except Exception as exc:
        raise DataError(f"{src}: cannot be read with datasets.load_from_disk: {exc}") from None
    if isinstance(ds, Dataset):
        ds = DatasetDict({"train": ds})
    chosen = _select(dict(ds), cfg, str(src))
    return (
        {role: RawSplit(sliced(ds[name].to_pandas(), role), f"{src.name}:{name}") for role, name in chosen.items()},
        dvc_hash(src),
    )


def _looks_like_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", source)) and not Path(source).suffix


def _read_hub(name: str, cfg: Config) -> tuple[dict[str, RawSplit], str]:
    """A hub dataset, split slicing done by ``datasets`` itself. Needs network (or its cache)."""
    from datasets import load_dataset

    ic = cfg.ingest
    out: dict[str, RawSplit] = {}
    fingerprints = []
    for role, spec in (("train", ic.train_split), ("validation", ic.valid_split), ("test", ic.test_split)):
        if not spec:
            continue
        try:
            ds = load_dataset(name, ic.dataset_config, split=spec)
        except Exception as exc:
            error = DataError(
                f"ingest.source: cannot load hub dataset {name!r} split {spec!r} "
                f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}). Without network access, "
                "save it where you have network (Dataset.save_to_disk) and point ingest.source at that folder"
            )
            # the hub being unreachable may pass; offline mode or a wrong name will not
            error.transient = isinstance(exc, (ConnectionError, TimeoutError)) and not (
                os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            )
            raise error from None
        fingerprints.append(f"{spec}={ds._fingerprint}")
        out[role] = RawSplit(ds.to_pandas(), f"{name}:{spec}")
    version = "hub:" + hashlib.md5(f"{name}|{ic.dataset_config}|{'|'.join(fingerprints)}".encode()).hexdigest()
    return out, version
