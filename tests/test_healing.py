"""Clean healing, for real: `s2s run` against a real Prefect server is SIGKILLed (its whole process
group) mid-training, then run again. The re-run resumes from the checkpoint and leaves no debris:
the crashed flow run's task runs no longer show Running, the MLflow run it finished carries no
"killed" end reason and names both flow runs, and its summary says it resumed and from where."""

from __future__ import annotations

import os
import signal
from uuid import UUID

import pytest
from conftest import make_clone, run_cli
from test_faults import LONG, checkpoints, runs, start_run, wait_for

from tasks.core.config import load_config
from tasks.tracking.run import END_REASON, FLOW_RUN, FLOW_RUNS

pytestmark = pytest.mark.system


def test_a_run_killed_in_training_is_healed_without_debris(tmp_path, prefect_server):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL

    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}  # the shared real server, not a temporary one
    root = make_clone(tmp_path / "proj", params=LONG)
    cfg = load_config(root=root)
    proc, log = start_run(root, env=env)
    wait_for(lambda: checkpoints(root), 300, "a checkpoint", proc, log)
    os.killpg(proc.pid, signal.SIGKILL)  # a dead machine: no handler runs
    proc.wait(timeout=30)
    (killed,) = runs(cfg)
    crashed_flow = killed.data.tags[FLOW_RUN]

    again = run_cli("run", cwd=root, env={**env, "S2S_ROOT": str(root)}, timeout=900)
    assert again.returncode in (0, 3), again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed      : training resumed from checkpoint-" in again.stdout, again.stdout
    assert f"of flow run {crashed_flow} (it crashed; closed)" in again.stdout
    assert "missing keys" not in again.stdout + again.stderr

    (healed,) = runs(cfg)  # the same MLflow run, taken over and finished
    tags = healed.data.tags
    assert healed.info.run_id == killed.info.run_id and healed.info.status == "FINISHED"
    assert END_REASON not in tags and "killed" in tags["s2s.previous_end"]
    first, second = tags[FLOW_RUNS].split(",")
    assert first == crashed_flow and second == tags[FLOW_RUN] != crashed_flow
    assert tags["resumed_from"].startswith("checkpoint-")

    with get_client(sync_client=True) as client:
        old = client.read_flow_run(UUID(crashed_flow))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[old.id])))
        new = client.read_flow_run(UUID(second))
    assert old.state.type == StateType.CRASHED and "resumed its work" in (old.state.message or "")
    train = [t for t in tasks if t.name.startswith("train")]
    assert train and all(t.state.type not in (StateType.RUNNING, StateType.PENDING) for t in tasks), [
        (t.name, t.state.type) for t in tasks
    ]
    assert new.state.type == StateType.COMPLETED


@pytest.mark.slow  # make test keeps the SIGKILL mid-training healed without debris
def test_a_training_finished_when_the_run_was_killed_is_kept_not_redone(tmp_path):
    """kill -9 right after the training saved its result, before the flow recorded the stage in
    dvc.lock: the next run keeps that model (same settings and data) and trains nothing."""
    import time

    import yaml

    root = make_clone(tmp_path / "proj")
    cfg = load_config(root=root)
    result = root / "reports" / "training.json"

    def recorded_train():
        lock = root / "dvc.lock"
        return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get("train") if lock.is_file() else None

    lock_before = recorded_train()
    proc, log = start_run(root)
    deadline = time.monotonic() + 600
    while not result.is_file():  # polled tightly: the window before dvc.lock records it is short
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "timed out waiting for the training to finish"
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert recorded_train() == lock_before, "the kill came after the stage was recorded: not the window under test"
    trained_in = __import__("json").loads(result.read_text())["run_id"]

    again = run_cli("run", cwd=root, env={"S2S_ROOT": str(root)}, timeout=900)
    out = again.stdout + again.stderr
    assert again.returncode in (0, 3), out[-3000:]
    assert "train: finished for these settings and data before its run was stopped: kept" in out, out[-3000:]
    assert "train: running" not in out, out[-3000:]
    assert "training resumed from its finished model" in again.stdout
    (run,) = runs(cfg)  # no second training run
    assert run.info.run_id == trained_in and run.info.status == "FINISHED"
    assert recorded_train() not in (None, lock_before)  # now recorded
