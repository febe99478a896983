"""Orchestration cost: the Prefect flow vs the same stage functions called directly.

    python -m bench.orchestration            # the default pipeline as shipped (~2 min a side)
    python -m bench.orchestration --tiny     # a tiny model and data slice (seconds a side)

Each side runs in its own fresh copy of the project (git + DVC, no dvc.lock yet) as a fresh
process, the way a user runs it, so start-up and imports count on both sides:

(a) *ours*: ``s2s run`` (Prefect's temporary server, the flow and its tasks, dvc.lock recorded)
    vs *baseline*: one Python process calling ingest, validate, train, evaluate, register and
    promote from ``tasks/`` in order. Ratio flow / direct (goal: under 1.10).
(b) a no-change re-run of ``s2s run`` (goal: under 10 s) and of ``dvc repro`` (goal: under 2 s)
    in the project the flow just ran.
(c) ``s2s --help`` start-up, best of 5 (goal: under 1 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.projects import make_clone  # the test suite's project copies

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOOP_FLOW = "from prefect import flow\nnoop = flow(name='noop')(lambda: None)\nnoop()"
DIRECT = """
from tasks.core.config import load_config
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote
from tasks.register import register
from tasks.train import train
from tasks.validate import validate

cfg = load_config()
ingested = ingest(cfg)
validate(cfg, ingested)
trained = train(cfg, ingested)
evaluated = evaluate(cfg, trained, ingested)
registered = register(cfg, trained, evaluated, ingested)
print(promote(cfg, registered, evaluated))
"""


def timed(cmd: list[str], cwd: Path, env: dict, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model and data (the shape, not the figure)")
    args = parser.parse_args(argv)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for key in ("S2S_ROOT", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    work = Path(tempfile.mkdtemp(prefix="s2s-bench-orch-"))
    env["PREFECT_HOME"] = str(work / "prefect-home")
    try:
        flow_dir = make_clone(work / "flow", tiny=args.tiny)  # without dvc.lock: every stage runs
        direct_dir = make_clone(work / "direct", tiny=args.tiny)
        timed(
            [sys.executable, "-c", "import torch, transformers, mlflow, prefect, dvc.repo"], REPO, env
        )  # warm the OS cache
        # Prefect creates its database on a machine's first flow run ever; users pay it once
        first_use = timed([sys.executable, "-c", NOOP_FLOW], REPO, env)
        direct = timed([sys.executable, "-c", DIRECT], direct_dir, env)
        flow = timed([str(BIN / "s2s"), "run"], flow_dir, env, ok=(0, 3))  # 3: ran fine, gate said no
        rerun = timed([str(BIN / "s2s"), "run"], flow_dir, env, ok=(0, 3))
        repro = timed([str(BIN / "dvc"), "repro"], flow_dir, env)
        helps = [timed([str(BIN / "s2s"), "--help"], REPO, env) for _ in range(5)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    label = "tiny model and data" if args.tiny else "the default pipeline as shipped"
    print(f"orchestration overhead, {label}, fresh processes, wall time")
    print(f"  (a) stage functions called directly:   {direct:7.1f} s")
    print(f"      s2s run (Prefect flow + tasks):     {flow:7.1f} s")
    print(f"      ratio flow / direct: {flow / direct:.3f} (goal < 1.10)")
    print(f"  (b) no-change re-run, s2s run:          {rerun:7.2f} s (goal < 10 s)")
    print(f"      no-change re-run, dvc repro:        {repro:7.2f} s (goal < 2 s)")
    print(f"  (c) s2s --help, best of 5:              {min(helps):7.2f} s (goal < 1 s)")
    print(
        f"  once per machine: Prefect creates its database on the first flow run ever ({first_use:.1f} s "
        "for an empty flow); both sides above ran after it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
