"""Reading raw pairs: one file, a folder of split files, a ``save_to_disk`` folder or a hub dataset.

Also the data version: the md5 DVC records for the raw source, so a model version can be traced
to the exact bytes it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.config import Config
from tasks.core.errors import DataError

READERS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
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


def _first_bad_utf8(path: Path) -> tuple[int, bytes]:
    """Line number and bytes of the first line that is not valid UTF-8 (readers report offsets
    into their own buffers, which are useless to a person)."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, line[max(exc.start - 10, 0) : exc.end + 10]
    return 0, b""


def read_table(path: Path) -> pd.DataFrame:
    """Read one CSV / JSON Lines / Parquet file, with errors that name the file and line."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        if kind == "csv":
            try:  # Arrow's reader is ~4x faster; fall back to pandas' for its line-level errors
                return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")
            except Exception:
                return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        line, snippet = _first_bad_utf8(path)
        raise DataError(
            f"{path}: not valid UTF-8 at line {line} (near {snippet!r}); re-export the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no rows (not even a header)") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).split("C error: ")[-1].strip()
        raise DataError(
            f"{path}: malformed {kind.upper()}: {detail}; quote fields that contain the delimiter or newlines"
        ) from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot be parsed as {kind}: {str(exc).splitlines()[0]}") from None


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
        found = _find_split(available, name, role)
        if found is None and (spec or role == "train"):
            raise DataError(
                f"{where}: no {role} split named {name or role!r}; found {', '.join(sorted(available)) or 'nothing'}. "
                f"Set ingest.{key} to one of them"
                + (" (a folder needs train.csv, train.jsonl or train.parquet)" if role == "train" else "")
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
        return {"train": RawSplit(sliced(read_table(src), "train"), src.name)}, dvc_hash(src)
    if src.is_dir():
        if _is_hf_disk(src):
            return _read_hf_disk(src, cfg, sliced)
        files = {p.stem: p for p in sorted(src.iterdir()) if p.suffix.lower() in READERS}
        chosen = _select(files, cfg, str(src))
        return (
            {role: RawSplit(sliced(read_table(files[name]), role), files[name].name) for role, name in chosen.items()},
            dvc_hash(src),
        )
    if _looks_like_hub_id(ic.source):
        return _read_hub(ic.source, cfg)
    raise DataError(
        f"ingest.source: {src} does not exist; point it at a CSV/JSONL/Parquet file, a folder of "
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
