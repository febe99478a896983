"""Batch prediction's I/O path (``s2s predict --input/--output``) against reading the whole file.

    python -m bench.batch_predict                       # 1,000,000 rows, CSV in and out
    python -m bench.batch_predict --rows 100000 --to parquet

The input is the sample generator's news reports (bench/ingest_validate.py's cached CSV, about
175 bytes a row). The model is a trivial real object (the first 60 characters of each text), so
the figures are the cost of reading, chunking, writing and the atomic replace, not of generation.

*ours*: ``tasks.serving.batch.predict_file`` (streamed in ``--chunk-rows`` chunks, temporary file
moved into place). *baseline*: ``pandas.read_csv`` of the whole file, the model on every text,
``DataFrame.to_csv`` / ``to_parquet`` / ``to_json``. Each side runs in its own process, timed after
imports, so peak memory (max RSS) is its own. Prints rows/s, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._worker import REPO, report, run_worker
from bench.ingest_validate import dataset


class Headline:
    """A model in the pyfunc protocol that costs next to nothing: the first 60 characters."""

    def predict(self, texts: list[str]) -> list[str]:
        return [t[:60] for t in texts]


def run_ours(csv: Path, out: Path, chunk_rows: int) -> dict:
    from tasks.serving.batch import predict_file

    start = time.perf_counter()
    summary = predict_file(Headline(), csv, out, column="text", chunk_rows=chunk_rows, progress=False)
    return {"seconds": time.perf_counter() - start, "rows": summary.rows, "blanks": summary.blanks}


def run_baseline(csv: Path, out: Path, chunk_rows: int) -> dict:
    """The whole file in memory: what a first script usually looks like."""
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    texts = frame["text"].tolist()
    todo = [i for i, t in enumerate(texts) if t.strip()]
    predictions = [""] * len(texts)
    for i, p in zip(todo, Headline().predict([texts[i] for i in todo])):
        predictions[i] = p
    frame["prediction"] = predictions
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif out.suffix == ".jsonl":
        frame.to_json(out, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(out, index=False)
    return {"seconds": time.perf_counter() - start, "rows": len(frame), "blanks": len(texts) - len(todo)}


def worker(kind: str, csv: Path, to: str, chunk_rows: int) -> None:
    import pandas  # noqa: F401  (imports are not what we measure)
    import pyarrow.parquet  # noqa: F401
    import tqdm.auto  # noqa: F401

    import tasks.serving.batch  # noqa: F401

    imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"out.{to}"
        result = (run_ours if kind == "ours" else run_baseline)(csv, out, chunk_rows)
        result["output_mb"] = out.stat().st_size / 1e6
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["imports_rss_gib"] = imports
    report(result)


def measure(kind: str, csv: Path, to: str, chunk_rows: int) -> dict:
    env = {**os.environ, "S2S_LOG_LEVEL": "WARNING"}
    args = ["--worker", kind, "--csv", str(csv), "--to", to, "--chunk-rows", str(chunk_rows)]
    return run_worker("bench.batch_predict", args, env, kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="input rows (default: %(default)s)")
    parser.add_argument("--to", choices=["csv", "jsonl", "parquet"], default="csv", help="output format")
    parser.add_argument("--chunk-rows", type=int, default=1024, help="ours: rows per chunk (default: %(default)s)")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.csv, args.to, args.chunk_rows)
        return 0
    # generated in a child process: Linux carries a process's peak RSS over to the programs it
    # starts, so a parent that built 1M rows in memory would inflate both workers' figures
    subprocess.run(
        [sys.executable, "-c", f"from bench.ingest_validate import dataset; dataset({args.rows})"], cwd=REPO, check=True
    )
    csv = dataset(args.rows)
    size = csv.stat().st_size
    print(
        f"\nbatch predict, CSV -> {args.to}: {args.rows:,} rows ({size / 1e6:.0f} MB CSV, "
        f"{size / args.rows:,.0f} bytes/row), chunks of {args.chunk_rows:,} rows, {os.cpu_count()} CPUs"
    )
    ours = measure("ours", csv, args.to, args.chunk_rows)
    base = measure("baseline", csv, args.to, args.chunk_rows)
    if ours["rows"] != base["rows"] or ours["blanks"] != base["blanks"]:
        raise SystemExit(f"the two sides disagree: ours {ours}, baseline {base}")
    print(f"{'':10} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9} {'imports':>9} {'output':>9}")
    for name, r in (("ours", ours), ("baseline", base)):
        print(
            f"{name:10} {r['seconds']:9.1f} {r['rows'] / r['seconds']:10,.0f} {r['peak_rss_gib']:8.2f}G "
            f"{r['imports_rss_gib']:8.2f}G {r['output_mb']:7.0f}MB"
        )
    work = {k: r["peak_rss_gib"] - r["imports_rss_gib"] for k, r in (("ours", ours), ("baseline", base))}
    print(
        f"peak memory, baseline / ours: {base['peak_rss_gib'] / ours['peak_rss_gib']:.1f}x "
        f"(above the imports: {work['baseline'] * 1024:,.0f} MB vs {work['ours'] * 1024:,.0f} MB)"
    )
    print(f"time, ours / baseline: {ours['seconds'] / base['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
