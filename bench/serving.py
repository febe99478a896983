"""Serving throughput and latency: `s2s serve` per generation backend, loopback only.

    python -m bench.serving                    # 400 requests per concurrency level (1, 8, 32)
    python -m bench.serving --requests 200     # fewer

A disposable copy of the project runs the default pipeline once (the embedded data, the
default model), then `s2s serve --backend hf` and `--backend ct2` serve its champion on
127.0.0.1 in turn. For each, ``--requests`` POST /invocations requests of one input each
(inputs from the shipped sample data) are sent at concurrency 1, 8 and 32 from a thread pool,
after a warm-up. Prints requests/s, p50 and p99 latency, errors, requests/s per core, and the
ct2/hf throughput ratio per level. Bounded in count and time; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.projects import REPO, make_clone
from tests.services import free_port, stop_group, wait_healthy

LEVELS = (1, 8, 32)


def s2s() -> str:
    return str(Path(sys.executable).with_name("s2s"))


def one(url: str, text: str) -> tuple[float, bool]:
    body = json.dumps({"inputs": [text]}).encode()
    start = time.perf_counter()
    try:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            ok = r.status == 200 and len(json.loads(r.read())["predictions"]) == 1
    except OSError:
        ok = False
    return time.perf_counter() - start, ok


def level(url: str, texts: list[str], n: int, concurrency: int) -> dict:
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: one(url, texts[i % len(texts)]), range(min(n, 4 * concurrency))))  # warm-up
        start = time.perf_counter()
        results = list(pool.map(lambda i: one(url, texts[i % len(texts)]), range(n)))
        wall = time.perf_counter() - start
    lat = sorted(r[0] for r in results)
    return {
        "rps": n / wall,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
        "errors": sum(not ok for _, ok in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per level (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(REPO / "data" / "sample" / "reports.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:500]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_clone(Path(tmp) / "proj", tiny=False)
        env = {**os.environ, "S2S_ROOT": str(root)}
        env.pop("MLFLOW_TRACKING_URI", None)
        print("training the default model once (s2s run) ...", flush=True)
        run = subprocess.run([s2s(), "run"], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
        if run.returncode not in (0, 3):
            print(run.stdout[-3000:] + run.stderr[-3000:])
            return 1
        for backend in ("hf", "ct2"):
            port = free_port()
            log = Path(tmp) / f"serve-{backend}.log"
            proc = subprocess.Popen(
                [s2s(), "serve", "--port", str(port), "--backend", backend, "--alias", "challenger"]
                if run.returncode == 3
                else [s2s(), "serve", "--port", str(port), "--backend", backend],
                cwd=root,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_healthy(f"http://127.0.0.1:{port}/ping", proc, log, timeout=180)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=10) as r:
                    reported = json.loads(r.read())["backend"]
                for c in LEVELS:
                    rows[(backend, c)] = {
                        **level(f"http://127.0.0.1:{port}/invocations", texts, args.requests, c),
                        "reported": reported,
                    }
            finally:
                stop_group(proc)
    print(f"s2s serve, default model, one input per request, {args.requests} requests per level, {cores} cores")
    head = ("conc.", "req/s", "req/s/core", "p50 ms", "p99 ms", "errors")
    print(f"{'backend':8s} " + " ".join(f"{h:>{max(6, len(h))}s}" for h in head))
    for (_, c), r in rows.items():
        print(
            f"{r['reported']:8s} {c:6d} {r['rps']:6.1f} {r['rps'] / cores:10.1f} {r['p50']:6.1f} "
            f"{r['p99']:6.1f} {r['errors']:6d}"
        )
    for c in LEVELS:
        print(f"throughput ct2 / hf at concurrency {c:2d}: {rows[('ct2', c)]['rps'] / rows[('hf', c)]['rps']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
