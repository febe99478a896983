"""A training run killed with SIGKILL continues from its last complete checkpoint: same MLflow
run, same data order (the final weights equal an uninterrupted run's), and a checkpoint left
half-written by the kill does not block the resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import make_project
from safetensors.torch import load_file

from tasks.core import paths
from tasks.core.config import load_config
from tasks.core.results import TrainResult
from tasks.ingest import ingest
from tasks.modeling.checkpoints import complete
from tasks.tracking import client as tracking
from tasks.train import train
from tasks.validate import validate

pytestmark = pytest.mark.system

PARAMS = {
    "train": {
        "max_steps": 160,
        "eval_strategy": "steps",
        "eval_steps": 10,
        "save_total_limit": 2,
        "logging_steps": 10,
        "early_stopping_patience": 0,
        "load_best_model_at_end": False,
        "batch_size": 8,
    }
}
# a model whose checkpoints take long enough to write (~40 MB with the optimizer) that a kill can
# land in the middle of one
BIG = {
    "train": {
        **PARAMS["train"],
        "max_steps": 80,
        "scratch": {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 1, "num_decoder_layers": 1},
    }
}


def prepared(root):
    cfg = load_config(root=root)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    return cfg, ingested


def steps(folder):
    return sorted(int(c.name.split("-")[1]) for c in folder.glob("checkpoint-*") if complete(c))


@pytest.mark.slow  # make test-slow
def test_sigkill_while_a_checkpoint_is_written_then_resume_matches_an_uninterrupted_run(tmp_path):
    root = make_project(tmp_path / "killed", params=BIG)
    cfg, _ = prepared(root)
    env = {**os.environ, "S2S_ROOT": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.train"],
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = cfg.path("checkpoints")

    def being_written():  # a checkpoint folder whose trainer state (written last) is not there yet
        return [
            c
            for c in ckpts.glob("checkpoint-*")
            if not (c / "trainer_state.json").exists() and int(c.name.split("-")[1]) >= 20
        ]

    deadline = time.time() + 300
    while not being_written():
        assert proc.poll() is None and time.time() < deadline, "training finished before a kill landed mid-save"
        time.sleep(0.0005)  # yield the core training needs; a save lasts several milliseconds
    os.killpg(proc.pid, signal.SIGKILL)  # in the middle of writing that checkpoint
    proc.wait()
    (half,) = being_written()
    assert not complete(half)  # the kill really left a half-written checkpoint behind
    done = steps(ckpts)
    assert done and done[-1] < int(half.name.split("-")[1]), done
    last = done[-1]
    killed_run = (ckpts / "s2s_run.json").read_text()

    resumed = subprocess.run(
        [sys.executable, "-m", "tasks.train"], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removing incomplete checkpoint" in resumed.stderr
    assert f"resuming default from {ckpts / f'checkpoint-{last}'}" in resumed.stderr
    result = TrainResult.load(cfg.path("reports"))
    assert result.metrics["train_steps"] == 80
    assert result.run_id in killed_run  # the same MLflow run continued
    run = tracking.client(cfg).get_run(result.run_id)
    assert run.data.tags["resumed_from"] == f"checkpoint-{last}"
    # lost at most one checkpoint interval: the curve starts again right after the checkpoint
    history = tracking.client(cfg).get_metric_history(result.run_id, "train_loss")
    assert max(m.step for m in history) == 80

    ref_root = make_project(tmp_path / "reference", params=BIG)
    ref_cfg, ref_ingested = prepared(ref_root)
    reference = train(ref_cfg, ref_ingested)
    a = load_file(os.path.join(cfg.resolve(result.model_dir), "model.safetensors"))
    b = load_file(os.path.join(ref_cfg.resolve(reference.model_dir), "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"


def test_changed_settings_do_not_resume_foreign_checkpoints(tmp_path):
    root = make_project(tmp_path / "proj", params=PARAMS)
    cfg, ingested = prepared(root)
    ckpts = paths.mark(cfg.path("checkpoints"))  # an earlier run's, with other settings
    (ckpts / "s2s_run.json").write_text('{"fingerprint": "other-settings", "run_id": "x"}')
    (ckpts / "checkpoint-50").mkdir()
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("max_steps: 160", "max_steps: 5"))
    result = train(load_config(root=root), ingested)
    assert result.metrics["train_steps"] == 5 and not ckpts.exists()
