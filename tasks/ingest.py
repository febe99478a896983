"""Stage 1, ingest: read the raw pairs, map columns, clean, split, and write versioned splits.

``ingest(cfg) -> IngestResult`` is the stage; ``main()`` is the ``dvc repro`` entry point. The
data version recorded on the MLflow run and the model version is the DVC hash of the raw source
(the same md5 that ``dvc.lock`` records for the stage dependency), so a registered model can be
traced back to the exact bytes it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.config import Config
from tasks.errors import DataError
from tasks.results import SPLITS, IngestResult

logger = logging.getLogger(__name__)

READERS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


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
        {"md5": _file_md5(p), "relpath": p.relative_to(path).as_posix()}
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


# -- reading ----------------------------------------------------------------------------------


def _resolve_source(cfg: Config) -> Path:
    src = Path(cfg.ingest.source).expanduser()
    src = src if src.is_absolute() else cfg.root / src
    if not src.exists():
        raise DataError(f"ingest.source: {src} does not exist; point ingest.source at a CSV, JSONL or Parquet file")
    return src


def read_table(path: Path) -> pd.DataFrame:
    """Read one CSV / JSON Lines / Parquet file as strings, with errors that name the file."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 at byte {exc.start}; re-export the file as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot be parsed as {kind}: {exc}") from None


# -- the stage --------------------------------------------------------------------------------


def clean(df: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map columns to ``text``/``target``, trim, prefix, de-duplicate; count what each step did."""
    ic = cfg.ingest
    missing = [c for c in (ic.text_column, ic.target_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"column(s) {', '.join(map(repr, missing))} not found; the data has columns "
            f"{', '.join(map(repr, map(str, df.columns)))}; set ingest.text_column / ingest.target_column"
        )
    # source_row: 1-based data row in the raw file, so every later error can point at it.
    out = pd.DataFrame(
        {"text": df[ic.text_column], "target": df[ic.target_column], "source_row": np.arange(1, len(df) + 1)}
    )
    counts = {"read": len(out)}
    if ic.max_samples is not None and len(out) > ic.max_samples:
        out = out.iloc[: ic.max_samples]
        counts["max_samples_dropped"] = counts["read"] - len(out)
    # Trim only real strings: NaN and numbers pass through untouched for validation to report.
    for col in ("text", "target"):
        is_str = out[col].map(lambda v: isinstance(v, str))
        out.loc[is_str, col] = out.loc[is_str, col].str.strip()
    if ic.dedup:
        before = len(out)
        out = out.drop_duplicates(subset=["text", "target"], keep="first")
        counts["duplicates_dropped"] = before - len(out)
    if ic.source_prefix:
        is_str = out["text"].map(lambda v: isinstance(v, str))
        out.loc[is_str, "text"] = ic.source_prefix + out.loc[is_str, "text"]
    counts["kept"] = len(out)
    return out.reset_index(drop=True), counts


def split(df: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """Seeded shuffle, then test / validation / train slices by the configured ratios.

    Rows with the same input text go to the same split, so exact inputs never leak from train
    into the held-out splits.
    """
    ic = cfg.ingest
    keys = df["text"].astype(str)
    uniq = keys.drop_duplicates().to_numpy()
    rng = np.random.default_rng(ic.seed)
    order = rng.permutation(len(uniq))
    n_test = int(round(len(uniq) * ic.test_ratio))
    n_val = int(round(len(uniq) * ic.valid_ratio))
    assign = np.empty(len(uniq), dtype=object)
    assign[order[:n_test]] = "test"
    assign[order[n_test : n_test + n_val]] = "validation"
    assign[order[n_test + n_val :]] = "train"
    which = keys.map(dict(zip(uniq, assign)))
    return {name: df[which == name].reset_index(drop=True) for name in SPLITS}


def ingest(cfg: Config) -> IngestResult:
    """Read ``ingest.source``, clean and split it, write JSONL splits + manifest to ``paths.data``."""
    src = _resolve_source(cfg)
    df = read_table(src)
    cleaned, counts = clean(df, cfg)
    parts = split(cleaned, cfg)
    out_dir = cfg.path("data")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, part in parts.items():
        path = out_dir / f"{name}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        part.to_json(tmp, orient="records", lines=True, force_ascii=False)
        tmp.replace(path)  # never leave a half-written split behind
        files[name] = path.name
    result = IngestResult(
        data_dir=str(out_dir),
        splits=files,
        rows={k: len(v) for k, v in parts.items()},
        data_version=dvc_hash(src),
        source=str(src),
        counts=counts,
    )
    result.save(out_dir)
    logger.info(
        "ingest: %d rows read, %d kept (%s); train/validation/test = %d/%d/%d; data version %s",
        counts["read"], counts["kept"],
        ", ".join(f"{k}={v}" for k, v in counts.items() if k.endswith("dropped")) or "nothing dropped",
        result.rows["train"], result.rows["validation"], result.rows["test"], result.data_version,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_support import stage_main

    return stage_main("ingest", ingest, argv)


if __name__ == "__main__":
    raise SystemExit(main())
