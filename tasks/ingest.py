"""Stage 1, ingest: read the raw pairs, map columns, clean, split, and write versioned splits.

Sources (``ingest.source``):

* one CSV, JSON Lines or Parquet file;
* a folder of ``train.*`` / ``validation.*`` / ``test.*`` files (AutoTrain's layout);
* a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict);
* a hub dataset name (``cnn_dailymail``), where the network allows.

Split names may carry a slice, as in ``datasets``: ``train[:5000]``, ``train[10%:20%]``. With no
validation (or test) split the rows are split by ``valid_ratio`` / ``test_ratio`` on a hash of
their input seeded with ``ingest.seed``: the same input always lands in the same split, in this
data version and the next (appending or reordering rows moves no row).

The data version recorded on the MLflow run and the model version is the md5 DVC records for the
raw source (``dvc.lock`` / ``dvc add``), so a model can be traced to the exact bytes it saw.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pandas as pd

from tasks.core import paths
from tasks.core.config import Config
from tasks.core.errors import DataError
from tasks.core.results import SPLITS, IngestResult
from tasks.data import rowkey
from tasks.data.sources import read_source
from tasks.data.text import blank_mask, nfc_column

logger = logging.getLogger(__name__)

# -- the stage --------------------------------------------------------------------------------


def clean(df: pd.DataFrame, cfg: Config, origin: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map columns to ``text``/``target``, trim, NFC-normalize, de-duplicate, prefix; count what
    each step did.

    Values that are not strings (numbers, JSON objects or lists, booleans) are kept as their text
    form with their original type recorded beside them (``text_type``, ``target_type``), so
    validation reports them with their row numbers: ingest never drops or coerces a row silently.
    """
    ic = cfg.ingest
    df = _flatten_dotted(df, (ic.text_column, ic.target_column))
    missing = [c for c in (ic.text_column, ic.target_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"{origin}: column(s) {', '.join(map(repr, missing))} not found; the data has columns "
            f"{', '.join(map(repr, map(str, df.columns)))}; set ingest.text_column / ingest.target_column"
        )
    # source_row: 1-based data row in the raw file, so every later message can point at it.
    # Series, not .to_numpy(): that would turn Arrow strings into a million Python objects and
    # send every step below down pandas' slow object path.
    out = pd.DataFrame(
        {
            "text": df[ic.text_column].reset_index(drop=True),
            "target": df[ic.target_column].reset_index(drop=True),
            "source_row": np.arange(1, len(df) + 1, dtype=np.int64),
        }
    )
    for col in ("text", "target"):
        out[f"{col}_type"] = _types(out[col])
        out[col] = _as_text(out[col])
    counts = {"read": len(out)}
    if ic.max_samples is not None and len(out) > ic.max_samples:
        out = out.iloc[: ic.max_samples]
        counts["max_samples_dropped"] = counts["read"] - len(out)
    if ic.strip:
        counts["trimmed"] = _strip(out)
    # one Unicode form, so "é" typed two ways is one token sequence and one duplicate
    normalized = 0
    for col in ("text", "target"):
        out[col], changed = nfc_column(out[col])
        normalized += changed
    counts["normalized"] = normalized
    if ic.dedup:
        before = len(out)
        out = out[~_duplicate_pairs(out["text"], out["target"])]
        counts["duplicates_dropped"] = before - len(out)
    if ic.source_prefix:
        counts["already_prefixed"] = _prefix(out, ic.source_prefix)
    counts["kept"] = len(out)
    return out.reset_index(drop=True), counts


def _strip(out: pd.DataFrame) -> int:
    """Trim both columns' strings in place (other values as they are); returns how many changed."""
    trimmed = 0
    for col in ("text", "target"):
        values = out[col]
        if values.dtype != object:  # an all-string column: whole-column Arrow kernels
            stripped = values.str.strip()
            trimmed += int(stripped.ne(values).fillna(False).sum())
            out[col] = stripped
            continue
        is_str = values.map(type).eq(str)
        if is_str.any():
            stripped = values[is_str].astype(str).str.strip()
            trimmed += int(stripped.ne(values[is_str].astype(str)).sum())
            out.loc[is_str, col] = stripped
    return trimmed


def _prefix(out: pd.DataFrame, prefix: str) -> int:
    """Put ``prefix`` before every non-blank input that lacks it, in place; returns how many had it."""
    text = out["text"]
    is_str = text.map(type).eq(str) if text.dtype == object else text.notna()
    strings = text.where(is_str).astype("str")
    has = strings.str.startswith(prefix).fillna(False).astype(bool)
    # blank inputs stay blank: a prefix would hide them from the emptiness check
    todo = is_str & ~has & ~_blank(strings)
    if text.dtype != object:
        out["text"] = text.where(~todo, prefix + strings)
    else:
        out.loc[todo, "text"] = prefix + strings[todo]
    return int(has.sum())


def _duplicate_pairs(text: pd.Series, target: pd.Series) -> np.ndarray:
    """Exact (text, target) duplicates after the first, like ``drop_duplicates`` but on integer
    pair keys from one factorisation per column (half the string hashing)."""
    t_codes, _ = pd.factorize(text, use_na_sentinel=False)
    g_codes, _ = pd.factorize(target, use_na_sentinel=False)
    key = t_codes.astype(np.int64) * (int(g_codes.max(initial=0)) + 1) + g_codes
    return pd.Series(key).duplicated(keep="first").to_numpy()


def _blank(values: pd.Series) -> pd.Series:
    """True where a string shows nothing (tasks/data/text.py: empty, whitespace, invisible)."""
    return pd.Series(blank_mask(values), index=values.index)


def _flatten_dotted(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``translation.en`` selects key ``en`` of a column of records (as hub translation sets store
    pairs), when the data has no column by that literal name."""
    for col in columns:
        parent, _, key = col.partition(".")
        if col in df.columns or not key or parent not in df.columns:
            continue
        df = df.assign(**{col: df[parent].map(lambda d, key=key: d.get(key) if isinstance(d, dict) else None)})
    return df


def split(df: pd.DataFrame, cfg: Config, roles: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Split ``df`` into train plus the ``roles`` the source did not provide.

    A row's split is a function of its input alone (a hash seeded with ``ingest.seed`` of the
    normalized input, tasks/data/rowkey.py): appending, deleting or reordering rows never moves
    an existing input to another split, and inputs that differ only in case, whitespace or
    Unicode composition always share one.
    """
    ic = cfg.ingest
    codes, uniques = pd.factorize(df["text"], sort=False, use_na_sentinel=False)
    texts = ["" if _is_missing(u) else str(u) for u in uniques]
    assign = rowkey.roles(
        rowkey.unit(texts, ic.seed),
        ic.test_ratio if "test" in roles else 0.0,
        ic.valid_ratio if "validation" in roles else 0.0,
    )
    which = assign[codes]
    parts = {"train": df[which == 0]}
    if "validation" in roles:
        parts["validation"] = df[which == 1]
    if "test" in roles:
        parts["test"] = df[which == 2]
    return {k: v.reset_index(drop=True) for k, v in parts.items()}


@dataclasses.dataclass
class Prepared:
    """The splits as ingest makes them, in memory, before anything is written."""

    frames: dict[str, pd.DataFrame]
    counts: dict[str, dict[str, int]]
    origins: dict[str, str]
    version: str
    split_by_seed: tuple[str, ...]


def prepare(cfg: Config) -> Prepared:
    """Read ``ingest.source``, clean and split it; write nothing."""
    raw, version = read_source(cfg)
    frames: dict[str, pd.DataFrame] = {}
    counts: dict[str, dict[str, int]] = {}
    for role, part in raw.items():
        frames[role], counts[role] = clean(part.frame, cfg, part.origin)
    missing_roles = tuple(
        r
        for r, ratio in (("validation", cfg.ingest.valid_ratio), ("test", cfg.ingest.test_ratio))
        if r not in frames and ratio > 0
    )
    if missing_roles:
        frames.update(split(frames["train"], cfg, missing_roles))
    for role in SPLITS:
        frames.setdefault(role, frames["train"].iloc[:0])
    return Prepared(frames, counts, {role: part.origin for role, part in raw.items()}, version, missing_roles)


def training_inputs(cfg: Config) -> pd.DataFrame:
    """The training split as the next ingest would write it (the drift check reads it; no DVC
    output is touched)."""
    return prepare(cfg).frames["train"]


def ingest(cfg: Config) -> IngestResult:
    """Read ``ingest.source``, clean and split it, write Parquet splits + manifest to ``paths.data``."""
    prepared = prepare(cfg)
    frames, counts, version, missing_roles = prepared.frames, prepared.counts, prepared.version, prepared.split_by_seed

    out_dir = cfg.path("data")
    staging = paths.temp_sibling(out_dir)  # the splits and their manifest appear together or not at all
    staging.mkdir(parents=True)
    try:
        files = {}
        for name in SPLITS:
            path = staging / f"{name}.parquet"
            # mixed columns (strings with stray numbers) are stored as text; validation still sees
            # the original types through the `*_type` columns
            frames[name].to_parquet(path, index=False)
            files[name] = path.name
        result = IngestResult(
            data_dir=cfg.relative(out_dir),
            splits=files,
            rows={k: len(frames[k]) for k in SPLITS},
            data_version=version,
            source=str(cfg.ingest.source),
            counts={f"{role}.{k}": v for role, c in counts.items() for k, v in c.items()},
            origins=prepared.origins,
        )
        result.save(staging)
        paths.replace_dir(staging, out_dir)
    except BaseException:  # a stop or a failure while writing: no half-written folder is left
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result._folder = out_dir
    for role, c in counts.items():
        logger.info("ingest %s (%s): %s", role, prepared.origins[role], ", ".join(f"{k}={v}" for k, v in c.items()))
    logger.info(
        "ingest: train/validation/test = %d/%d/%d rows (%s); data version %s",
        result.rows["train"],
        result.rows["validation"],
        result.rows["test"],
        "provided: "
        + ", ".join(prepared.origins)
        + ("; split by seed: " + ", ".join(missing_roles) if missing_roles else ""),
        version,
    )
    return result


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _type_name(v) -> str:
    if _is_missing(v):
        return "NoneType"
    if isinstance(v, np.ndarray):
        return "list"
    return type(v.item() if isinstance(v, np.generic) else v).__name__


def _types(values: pd.Series) -> pd.Series:
    """Name of each value's Python type ('str', 'NoneType' for missing, 'int', 'dict', ...) as a
    categorical, for the type check."""
    if values.dtype != object and pd.api.types.is_string_dtype(values):  # only str or missing
        codes = values.isna().to_numpy().astype(np.int8)
        return pd.Series(pd.Categorical.from_codes(codes, categories=["str", "NoneType"]), index=values.index)
    return values.map(_type_name).astype("category")


def _text_of(v):
    if isinstance(v, str) or _is_missing(v):
        return v
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    return str(v.item() if isinstance(v, np.generic) else v)


def _as_text(values: pd.Series) -> pd.Series:
    """Strings stay strings, missing stays missing, anything else becomes its text form (JSON for
    objects and lists, so an unhashable value never reaches de-duplication)."""
    if values.dtype != object and pd.api.types.is_string_dtype(values):
        return values.astype("str")
    return values.map(_text_of).astype("str")


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    return stage_main("ingest", lambda cfg, _owner: ingest(cfg), argv)


if __name__ == "__main__":
    raise SystemExit(main())
