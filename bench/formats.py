"""What a format or a compression costs ingest's reader: the sample reports, repeated to 60,000
rows, written as each input a user may have, read with ``read_table`` (best of 3); ratios
against the plain CSV baseline.

    python -m bench.formats [--rows 60000]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tasks.data.sources import read_table

REPO = Path(__file__).resolve().parents[1]


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buf.getvalue()


def files(frame: pd.DataFrame) -> dict[str, bytes]:
    csv_bytes = frame.to_csv(index=False).encode()
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return {
        "d.csv": csv_bytes,
        "d.tsv": frame.to_csv(sep="\t", index=False).encode(),
        "d.jsonl": frame.to_json(orient="records", lines=True, force_ascii=False).encode(),
        "d.json": frame.to_json(orient="records", force_ascii=False).encode(),
        "d.parquet": buf.getvalue(),
        "d.csv.gz": gzip.compress(csv_bytes),
        "d.csv.bz2": bz2.compress(csv_bytes),
        "d.csv.xz": lzma.compress(csv_bytes),
        "d.csv.zst": _zstd(csv_bytes),
        "d.zip": _zip("d.csv", csv_bytes),
        "d.utf16.csv": csv_bytes.decode().encode("utf-16"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args(argv)
    sample = pd.read_csv(REPO / "data" / "sample" / "reports.csv")
    frame = pd.concat([sample] * (args.rows // len(sample) + 1), ignore_index=True).iloc[: args.rows]
    frame["text"] = frame["text"] + " #" + frame.index.astype(str)
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for name, data in files(frame).items():
            path = Path(tmp) / name
            path.write_bytes(data)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                rows = len(read_table(path))
                best = min(best, time.perf_counter() - started)
            assert rows == args.rows, (name, rows)
            timings[name] = (best, len(data))
    base = timings["d.csv"][0]
    print(f"{'file':<14}{'MB':>8}{'read s':>9}{'vs .csv':>9}   ({args.rows:,} rows, best of 3)")
    for name, (seconds, size) in timings.items():
        print(f"{name:<14}{size / 1e6:>8.2f}{seconds:>9.3f}{seconds / base:>8.1f}x")


if __name__ == "__main__":
    main()
