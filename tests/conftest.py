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
from projects import REPO, TINY, deep_merge, make_clone  # noqa: F401  (shared with bench/orchestration.py)
from services import FaultProxy, MlflowServer, free_port, stop_group, wait_healthy  # noqa: F401  (shared with bench/)

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
# `pytest -n 2` runs two workers on the two cores: one compute thread each (and in every process
# they start), instead of two workers fighting with two OpenMP threads each
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")


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


def dvc_env() -> dict:
    """`python` in dvc.yaml must be this environment's interpreter, activated or not."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("S2S_ROOT", None)
    return env


@pytest.fixture(autouse=True)
def _tracking_uri_stays_with_its_test():
    """``mlflow.set_tracking_uri`` (the serving tests, in-process CLI calls) writes
    MLFLOW_TRACKING_URI into this worker's environment; a later test's child `s2s` would inherit
    it and use another test's store (the store check refuses it by name). Each test leaves the
    environment as it found it."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {k: os.environ.get(k) for k in keys}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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


@pytest.fixture(scope="session")
def flowed_clone(tmp_path_factory, prefect_server):
    """A git + DVC clone with TINY settings after one `training_pipeline()` run: (root, summary).
    test_orchestration carries on from it; test_dvc checks `dvc repro` reproduces its metrics."""
    from flows.pipeline import training_pipeline

    root = make_clone(tmp_path_factory.mktemp("flowed") / "clone")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S2S_ROOT", str(root))
        summary = training_pipeline()
    return root, summary


@pytest.fixture(scope="session")
def served_project(tmp_path_factory, prefect_server):
    """A tiny project after one `training_pipeline()` run, its model registered as v1 and
    `champion`: (root, summary). For the serving and batch-prediction tests; mark them
    ``pytest.mark.xdist_group("served")`` so one worker runs the pipeline once. Tests may register
    and promote more versions; none may delete v1."""
    from flows.pipeline import training_pipeline

    open_gate = {"default": {"gates": {"min": {"rouge1": 0.0, "rougeL": 0.0}, "max": {"gen_len": 100}}}}
    # trained long enough to say something (12 steps give empty strings): comparisons of outputs
    # then compare text, not blanks
    learns = {"train": {"max_steps": 80, "lr": 0.01}}
    root = make_project(tmp_path_factory.mktemp("served") / "proj", params=learns, pipelines=open_gate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S2S_ROOT", str(root))
        summary = training_pipeline()
    return root, summary


def small_trained(arch: str, rows: list[dict], vocab: int, d_model: int):
    """(tokenizer, model): a T5-style (our scratch builder) or BART-style model of width
    ``d_model``, trained 6 epochs on the first 640 of ``rows`` so that, generating, rows stop
    at different lengths (and some not at all)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from tasks.core.config import Scratch
    from tasks.modeling import models as modeling

    tok = modeling.train_tokenizer([r["text"] for r in rows] + [r["target"] for r in rows], vocab)
    torch.manual_seed(0)
    if arch == "t5":
        half = d_model // 2
        spec = Scratch(d_model=d_model, d_ff=2 * d_model, d_kv=half, num_heads=2, num_layers=1, num_decoder_layers=1)
        model = modeling.build_scratch(spec, tok, seed=0)
    else:
        model = BartForConditionalGeneration(
            BartConfig(
                vocab_size=len(tok),
                d_model=d_model,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=2 * d_model,
                decoder_ffn_dim=2 * d_model,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=1,
                decoder_start_token_id=1,
                forced_eos_token_id=None,
            )
        )
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(6):
        for i in range(0, 640, 32):
            enc = tok([r["text"] for r in rows[i : i + 32]], return_tensors="pt", padding=True)
            labels = tok(text_target=[r["target"] for r in rows[i : i + 32]], return_tensors="pt", padding=True)[
                "input_ids"
            ]
            model(**enc, labels=labels.masked_fill(labels == 0, -100)).loss.backward()
            opt.step()
            opt.zero_grad()
    return tok, model.eval()


def venv_bin(name: str) -> str:
    """A console script of the test interpreter's environment (works without an activated venv)."""
    return str(Path(sys.executable).with_name(name))


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed ``s2s`` console script in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [venv_bin("s2s"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


# -- servers the tests start (Prefect, MLflow): see services.py -------------------------------


def pytest_collection_modifyitems(items):
    """Every test not marked integration or system is a unit test (`pytest -m unit`, `make test-fast`)."""
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("integration", "system")):
            item.add_marker(pytest.mark.unit)
