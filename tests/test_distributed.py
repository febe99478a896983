"""Data-parallel training with `torchrun --nproc_per_node=2` on CPU (gloo): one model, one MLflow
run, registered like any other. The same command runs on N GPUs (NCCL) unchanged."""

import os
import subprocess

import pytest
from conftest import make_project, venv_bin
from services import alive, children

from tasks.core.config import load_config
from tasks.core.results import IngestResult, TrainResult
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.register import register
from tasks.tracking import client as tracking
from tasks.validate import validate

pytestmark = [pytest.mark.system, pytest.mark.slow]  # make test-slow


def test_torchrun_resume_loads_the_same_checkpoint_on_every_rank_and_the_model_registers(tmp_path):
    """Two gloo processes are killed (SIGKILL of the process groups) after a checkpoint; the re-run
    resumes on both ranks from it, and the final weights equal an uninterrupted run's, which is
    one MLflow run and registers like any other model."""
    import signal
    import time

    from safetensors.torch import load_file

    from tasks.modeling.checkpoints import complete

    params = {
        "train": {
            "max_steps": 60,
            "eval_strategy": "no",
            "save_steps": 10,
            "save_total_limit": 2,
            "logging_steps": 10,
            "batch_size": 8,
        }
    }
    roots = {name: make_project(tmp_path / name, params=params) for name in ("killed", "reference")}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [venv_bin("torchrun"), "--standalone", "--nproc_per_node=2", "-m", "tasks.train"]
    for root in roots.values():
        cfg = load_config(root=root)
        validate(cfg, ingest(cfg))
    killed = roots["killed"]
    ckpts = killed / "artifacts" / "checkpoints"
    proc = subprocess.Popen(
        command,
        cwd=killed,
        env={**env, "S2S_ROOT": str(killed)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not any(complete(c) for c in ckpts.glob("checkpoint-*")):
        assert proc.poll() is None and time.time() < deadline, "training ended before a checkpoint"
        time.sleep(0.02)
    # torchrun starts each worker in a session of its own: kill the agent's group and every worker's
    workers = children(proc.pid)
    for pid in [proc.pid, *workers]:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for pid in workers:
        while alive(pid):
            time.sleep(0.02)
    done = sorted(int(c.name.split("-")[1]) for c in ckpts.glob("checkpoint-*") if complete(c))
    assert done and done[-1] < 60
    resumed = subprocess.run(
        command, cwd=killed, env={**env, "S2S_ROOT": str(killed)}, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # both ranks said where they resumed from (rank 1 used to start from scratch)
    assert resumed.stderr.count(f"resuming default from {ckpts / f'checkpoint-{done[-1]}'}") == 2, resumed.stderr[
        -4000:
    ]
    reference = subprocess.run(
        command,
        cwd=roots["reference"],
        env={**env, "S2S_ROOT": str(roots["reference"])},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-4000:]
    a = load_file(str(killed / "artifacts" / "model" / "model.safetensors"))
    b = load_file(str(roots["reference"] / "artifacts" / "model" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"

    cfg = load_config(root=roots["reference"])
    trained = TrainResult.load(cfg.path("reports"))
    client = tracking.client(cfg)
    run = client.get_run(trained.run_id)
    assert run.data.tags["device"] == "cpux2/fp32"  # two processes, one run
    assert len(client.search_runs([run.info.experiment_id])) == 1
    ingested = IngestResult.load(cfg.path("data"))
    registered = register(cfg, trained, evaluate(cfg, trained, ingested), ingested)
    assert client.get_model_version(registered.model_name, registered.version).run_id == trained.run_id
