"""Shared fixtures: a throwaway copy of the project with tiny settings, real services only.

Every test that runs stages gets its own project folder (params.yaml, pipelines.yaml, dvc.yaml
and the sample data copied from the repo, with a tiny model and a small slice), its own SQLite
MLflow store inside that folder, and S2S_ROOT pointing at it. Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Test processes are entry points: isolate Prefect's home and silence telemetry before any import.
_PREFECT_HOME = tempfile.mkdtemp(prefix="s2s-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

# Small enough to train in seconds on two cores, big enough to run every real code path.
TINY = {
    "ingest": {"max_samples": 400},
    "validate": {"min_rows": {"train": 50, "validation": 10, "test": 10}},
    "train": {
        "scratch": {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1,
                    "num_decoder_layers": 1, "vocab_size": 300},
        "max_steps": 12,
        "batch_size": 16,
        "lr": 0.003,
    },
    "evaluate": {"max_samples": 24, "generation_max_length": 16, "batch_size": 16},
}


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_project(dest: Path, params: dict | None = None, pipelines: dict | None = None, tiny: bool = True) -> Path:
    """Copy the project's config and sample data to ``dest`` with ``params`` merged over TINY
    (or over the real defaults when ``tiny`` is false)."""
    dest.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    merged = deep_merge(deep_merge(base, TINY) if tiny else base, params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    pipes = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    if pipelines:
        pipes = deep_merge(pipes, pipelines)
    (dest / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    (dest / "data" / "sample").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "data" / "sample" / "reports.csv", dest / "data" / "sample" / "reports.csv")
    return dest


def project_files() -> list[str]:
    """What a clone of the repo holds: tracked files plus new ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file() and not f.startswith(("dvc.lock", "reports/"))]


def make_clone(dest: Path, params: dict | None = None, gates: dict | None = None) -> Path:
    """A git + DVC working copy of the project with TINY settings (and ``params``) committed."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
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


def dvc_env() -> dict:
    """`python` in dvc.yaml must be this environment's interpreter, activated or not."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("S2S_ROOT", None)
    return env


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A tiny project folder; S2S_ROOT points at it for the duration of the test."""
    root = make_project(tmp_path / "proj")
    monkeypatch.setenv("S2S_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (real API, SQLite) shared by the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def venv_bin(name: str) -> str:
    """A console script of the test interpreter's environment (works without an activated venv)."""
    return str(Path(sys.executable).with_name(name))


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed ``s2s`` console script in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([venv_bin("s2s"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
