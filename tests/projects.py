"""Throwaway copies of the project (tests and bench/orchestration.py): no pytest, no side effects."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough to train in seconds on two cores, big enough to run every real code path.
TINY = {
    "ingest": {"max_samples": 400},
    "validate": {"min_rows": {"train": 50, "validation": 10, "test": 10}},
    "train": {
        "scratch": {
            "d_model": 32,
            "d_ff": 64,
            "d_kv": 16,
            "num_heads": 2,
            "num_layers": 1,
            "num_decoder_layers": 1,
            "vocab_size": 300,
        },
        "max_steps": 12,
        "batch_size": 16,
        "lr": 0.003,
    },
    "evaluate": {"max_samples": 24, "generation_max_length": 16, "batch_size": 16},
    # 12 steps teach a tiny model little: it writes blanks or loops, which the degenerate-output
    # gate refuses; tests of the gates and flows around it want their own verdicts (the gate's
    # own tests, and the default run, keep it on)
    "promote": {"degenerate": {"refuse": False}},
}


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def project_files() -> list[str]:
    """What a clone of the repo holds: tracked files plus new ones git does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file() and not f.startswith(("dvc.lock", "reports/"))]


def make_clone(dest: Path, params: dict | None = None, gates: dict | None = None, tiny: bool = True) -> Path:
    """A git + DVC working copy of the project with TINY settings (and ``params``) committed;
    ``tiny=False`` keeps the shipped settings and gates."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    if tiny:
        merged = deep_merge(deep_merge(yaml.safe_load((dest / "params.yaml").read_text()), TINY), params or {})
        (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        pipes = yaml.safe_load((dest / "pipelines.yaml").read_text())
        pipes["default"]["gates"] = gates or {"min": {"rougeL": 0.0}, "primary": "rougeL", "min_delta": None}
        (dest / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=dest, check=True)
    return dest
