"""Data-parallel training with `torchrun --nproc_per_node=2` on CPU (gloo): one model, one MLflow
run, registered like any other. The same command runs on N GPUs (NCCL) unchanged."""

import os
import subprocess

import pytest

from conftest import make_project, venv_bin
from tasks.tracking import client as tracking
from tasks.core.config import load_config
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.register import register
from tasks.core.results import TrainResult
from tasks.validate import validate

pytestmark = pytest.mark.integration


def test_torchrun_two_cpu_processes_produce_a_model_that_registers(tmp_path):
    root = make_project(tmp_path / "proj", params={"train": {"max_steps": 10, "eval_strategy": "steps",
                                                              "eval_steps": 5}})
    cfg = load_config(root=root)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    env = {**os.environ, "S2S_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([venv_bin("torchrun"), "--standalone", "--nproc_per_node=2", "-m", "tasks.train"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    trained = TrainResult.load(cfg.path("reports"))
    client = tracking.client(cfg)
    run = client.get_run(trained.run_id)
    assert run.data.tags["device"] == "cpux2/fp32"  # two processes, one run
    assert len(client.search_runs([run.info.experiment_id])) == 1
    registered = register(cfg, trained, evaluate(cfg, trained, ingested), ingested)
    assert client.get_model_version(registered.model_name, registered.version).run_id == trained.run_id
