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

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {"ingest": {"max_samples": 400}, "validate": {"min_rows": {"train": 50, "validation": 10, "test": 10}},
        "train": {"scratch": {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1,
                              "num_decoder_layers": 1, "vocab_size": 300}, "max_steps": 12, "batch_size": 16},
        "evaluate": {"max_samples": 24, "generation_max_length": 16, "batch_size": 16}}
NOOP_FLOW = "from prefect import flow\nnoop = flow(name='noop')(lambda: None)\nnoop()"
DIRECT = """
from tasks.config import load_config
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


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def copy_project(dest: Path, tiny: bool) -> Path:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in listed:
        if rel and (REPO / rel).is_file() and not rel.startswith(("dvc.lock", "reports/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    if tiny:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY), sort_keys=False))
        pipes = yaml.safe_load((dest / "pipelines.yaml").read_text())
        pipes["default"]["gates"] = {"min": {"rougeL": 0.0}, "primary": "rougeL"}
        (dest / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for cmd in (["git", "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


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
        flow_dir = copy_project(work / "flow", args.tiny)
        direct_dir = copy_project(work / "direct", args.tiny)
        timed([sys.executable, "-c", "import torch, transformers, mlflow, prefect, dvc.repo"], REPO, env)  # warm the OS cache
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
    print(f"  once per machine: Prefect creates its database on the first flow run ever ({first_use:.1f} s "
          "for an empty flow); both sides above ran after it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
