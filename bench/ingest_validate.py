"""Ingest + validate throughput on a generated data set, against a naive row-by-row baseline.

    python -m bench.ingest_validate                 # both data sets below
    python -m bench.ingest_validate --rows 100000 --real-rows 0

Two data sets: *short* rows, the sample generator's news reports (1,000,000 rows by default;
goal: under 30 s), and *real* rows at real lengths, 10,000 Python functions paired with their
docstring's first line, taken from the packages installed here (about 1,800 characters, a few
hundred tokens each; goal: validation under 10 s).

*ours*: the pipeline's ``ingest`` and ``validate`` stage functions, as ``s2s run`` calls them
(Arrow CSV reader, vectorised cleaning, GX 1.x suites with Data Docs, sampled token counts).
*baseline*: the same cleaning and the same checks written the obvious way, one row at a time
in a Python loop (csv module, sets for duplicates and leakage, ``re`` per row, the tokenizer
per sampled row, one JSON line written per row). Both fit the same scratch tokenizer on the
same sample. Each side runs in its own process, timed after imports, so peak memory (max RSS)
is its own. Prints rows/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench._worker import report, run_worker

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"


def dataset(rows: int) -> Path:
    """A generated CSV of ``rows`` distinct pairs (the sample generator, another seed), cached."""
    path = CACHE / f"reports-{rows}.csv"
    if not path.exists():
        from tasks.data.sample import generate, write_csv

        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_csv(generate(rows, seed=7), tmp)
        tmp.rename(path)
    return path


def real_dataset(rows: int) -> Path:
    """Code -> docstring pairs at real lengths (bench/real_text.py), cached."""
    path = CACHE / f"code-docstrings-{rows}.csv"
    if not path.exists():
        from bench.real_text import function_docstring_pairs, write

        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write(function_docstring_pairs(rows), tmp)
        tmp.rename(path)
    return path


# code is not news: no task prefix, longer inputs allowed (what a user of such data sets)
REAL = ["ingest.source_prefix=''", "train.max_seq_length=1024", "validate.max_truncation_rate=0.5"]


def project(csv: Path, workdir: Path):
    from tasks.core.config import load_config

    shutil.copy(REPO / "params.yaml", workdir / "params.yaml")
    shutil.copy(REPO / "pipelines.yaml", workdir / "pipelines.yaml")
    extra = REAL if csv.name.startswith("code-") else []
    return load_config(root=workdir, overrides=[f"ingest.source={csv}", *extra])


def run_ours(csv: Path, workdir: Path) -> dict:
    import great_expectations  # noqa: F401  (imports are not what we measure)
    from transformers import T5Config  # noqa: F401

    from tasks.core.errors import ValidationFailed
    from tasks.ingest import ingest
    from tasks.validate import validate

    cfg = project(csv, workdir)
    start = time.perf_counter()
    ingested = ingest(cfg)
    mid = time.perf_counter()
    try:
        result = validate(cfg, ingested)
    except ValidationFailed as exc:  # a refused data set took its time too
        result = exc.result
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "ingest_s": mid - start,
        "validate_s": end - mid,
        "rows": sum(ingested.rows.values()),
        "passed": result.success,
        "checks": len(result.checks),
    }


def run_baseline(csv: Path, workdir: Path) -> dict:
    """The same work, row by row: what a first script usually looks like."""
    import csv as csvmod
    import random

    from tasks.modeling.models import train_tokenizer

    cfg = project(csv, workdir)
    ic, v, t = cfg.ingest, cfg.validate, cfg.train
    control = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
    start = time.perf_counter()
    rows, seen = [], set()
    with csv.open(newline="", encoding="utf-8") as fh:
        for number, row in enumerate(csvmod.DictReader(fh), 1):
            text, target = row.get(ic.text_column), row.get(ic.target_column)
            text = text.strip() if isinstance(text, str) else text
            target = target.strip() if isinstance(target, str) else target
            if (text, target) in seen:
                continue
            seen.add((text, target))
            if text and text.strip() and not text.startswith(ic.source_prefix):
                text = ic.source_prefix + text
            rows.append((number, text, target))
    rng = random.Random(ic.seed)
    where: dict[str, str] = {}
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for row in rows:
        if row[1] not in where:
            r = rng.random()
            where[row[1]] = (
                "test" if r < ic.test_ratio else "validation" if r < ic.test_ratio + ic.valid_ratio else "train"
            )
        splits[where[row[1]]].append(row)
    out = workdir / "baseline"
    out.mkdir(exist_ok=True)
    for name, part in splits.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for number, text, target in part:
                fh.write(json.dumps({"source_row": number, "text": text, "target": target}) + "\n")
    train_texts = [r[1] for r in splits["train"]]
    sample, chars = [], 0
    for row in random.Random(t.seed).sample(splits["train"], len(splits["train"])):  # up to the same text budget
        if chars + len(row[1] or "") + len(row[2] or "") > t.scratch.tokenizer_chars and sample:
            break
        sample.append(row)
        chars += len(row[1] or "") + len(row[2] or "")
    tokenizer = train_tokenizer([r[1] for r in sample] + [r[2] for r in sample], t.scratch.vocab_size)
    train_set = set(train_texts)
    failures: dict[str, int] = {}
    for name, part in splits.items():
        pairs, token_rows = set(), set(random.Random(ic.seed).sample(range(len(part)), min(len(part), v.token_sample)))
        for i, (_number, text, target) in enumerate(part):
            for col, value, lo, hi, limit in (
                ("text", text, v.min_text_chars, v.max_text_chars, t.max_seq_length),
                ("target", target, v.min_target_chars, v.max_target_chars, t.max_target_length),
            ):
                bad = []
                if value is None:
                    bad.append("null")
                elif not isinstance(value, str):
                    bad.append("type")
                else:
                    if not value.strip():
                        bad.append("blank")
                    if control.search(value):
                        bad.append("encoding")
                    if not lo <= len(value) <= hi:
                        bad.append("size")
                    if i in token_rows and len(tokenizer(value)["input_ids"]) > limit:
                        bad.append("truncation")
                for b in bad:
                    failures[f"{name}.{col}.{b}"] = failures.get(f"{name}.{col}.{b}", 0) + 1
            if (text, target) in pairs:
                failures[f"{name}.duplicate"] = failures.get(f"{name}.duplicate", 0) + 1
            pairs.add((text, target))
            if isinstance(text, str) and text.removeprefix(ic.source_prefix) == target:
                failures[f"{name}.copy"] = failures.get(f"{name}.copy", 0) + 1
            if name != "train" and text in train_set:
                failures[f"{name}.leakage"] = failures.get(f"{name}.leakage", 0) + 1
    (out / "report.json").write_text(json.dumps(failures))
    end = time.perf_counter()
    return {"seconds": end - start, "rows": sum(len(p) for p in splits.values()), "failures": len(failures)}


def worker(kind: str, csv: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_ours if kind == "ours" else run_baseline)(csv, Path(tmp))
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    report(result)


def measure(kind: str, csv: Path) -> dict:
    env = {**os.environ, "S2S_LOG_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "true"}
    return run_worker("bench.ingest_validate", ["--worker", kind, "--csv", str(csv)], env, kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="short rows (0: skip)")
    parser.add_argument("--real-rows", type=int, default=10_000, help="rows at real lengths (0: skip)")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.csv)
        return 0
    for label, rows, csv, goal in (
        ("short rows", args.rows, dataset, ("total", 30)),
        ("real lengths", args.real_rows, real_dataset, ("validate", 10)),
    ):
        if rows <= 0:
            continue
        csv = csv(rows)
        size = csv.stat().st_size
        print(
            f"\ningest + validate, {label}: {rows:,} rows ({size / 1e6:.0f} MB CSV, {size / rows:,.0f} bytes/row), "
            f"{os.cpu_count()} CPUs"
        )
        ours = measure("ours", csv)
        base = measure("baseline", csv)
        print(f"{'':10} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}")
        for name, r in (("ours", ours), ("baseline", base)):
            print(f"{name:10} {r['seconds']:9.1f} {r['rows'] / r['seconds']:10,.0f} {r['peak_rss_gib']:8.2f}G")
        print(
            f"ours: ingest {ours['ingest_s']:.1f}s + validate {ours['validate_s']:.1f}s, "
            f"{ours['checks']} checks, passed={ours['passed']} (GX suites + Data Docs)"
        )
        print(f"speed-up vs row-by-row baseline: {base['seconds'] / ours['seconds']:.2f}x")
        which, limit = goal
        took = ours["seconds"] if which == "total" else ours["validate_s"]
        print(f"goal: {which} under {limit} s -> {took:.1f} s, {'met' if took < limit else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
