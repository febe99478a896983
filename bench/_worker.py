"""Each side of a benchmark runs in a fresh process and prints one ``RESULT {json}`` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def report(result: dict) -> None:
    """What a worker process prints last."""
    print("RESULT " + json.dumps(result))


def run_worker(module: str, args: list[str], env: dict, label: str) -> dict:
    """Run ``python -m module *args`` and return its RESULT (exit with its output on failure)."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{label} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(line[len("RESULT ") :])
