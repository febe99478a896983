"""Retraining that runs itself, on a real `prefect server start` and a real `s2s worker` (both on
127.0.0.1, started and stopped here): `s2s deploy` gives the retrain deployment a data-arrival
trigger, a concurrency limit of 1 and the self-healing automations; two data-arrival events at
once give exactly one retrain and one new version (the other run ends Cancelled, superseded);
new data that does not drift is skipped with the reason. The worker-killed-mid-training variant
(waits out the heartbeat window) is `python -m bench.selfheal`."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_clone, stop_group, venv_bin
from test_prefect_server import _client, server  # noqa: F401  (the module's real Prefect server)

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = [pytest.mark.system, pytest.mark.slow]  # make test-slow


def retrain_runs(url: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with _client(url) as client:
        deployment = client.read_deployment_by_name("retrain/default")
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def due_runs(url: str) -> list:
    """The retrain runs that are not tomorrow's cron runs."""
    soon = datetime.now(UTC) + timedelta(seconds=60)
    return [r for r in retrain_runs(url) if not (r.state.name == "Scheduled" and r.expected_start_time > soon)]


def wait_final(url: str, count: int, worker, log: Path, timeout: float = 600) -> list:
    """The retrain runs once ``count`` of them exist and all are final."""
    deadline = time.monotonic() + timeout
    while True:
        found = due_runs(url)
        if len(found) >= count and all(r.state.is_final() for r in found):
            return found
        assert worker.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, [(r.name, r.state.name) for r in found]
        time.sleep(2)


def versions_said(url: str, cfg) -> str:
    """On a failure: each version with its data version and aliases, each run's state and message,
    and the published retrain notes (why each run trained or skipped)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    found = tracking.client(cfg).search_model_versions(f"name='{cfg.register.model_name}'")
    lines = [f"v{v.version} aliases={v.aliases} data={(v.tags or {}).get('data_version')}" for v in found]
    lines += [f"{r.name}: {r.state.name} {r.state.message!r}" for r in retrain_runs(url)]
    with _client(url) as client:
        notes = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["default-retrain"])))
    lines += [a.data[:600] for a in notes]
    return "\n".join(lines)


def s2s(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("s2s"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_data_arrival_triggers_one_retrain_and_no_drift_skips(server, tmp_path):  # noqa: F811
    project = make_clone(tmp_path / "proj")
    # the shipped project as it is: the sample is tracked by git, and `s2s data add` moves it to DVC
    tracked = ["git", "ls-files", "--error-unmatch", "data/sample/reports.csv"]
    assert subprocess.run(tracked, cwd=project, capture_output=True).returncode == 0
    env = {**os.environ, "PREFECT_API_URL": server["url"], "S2S_ROOT": str(project)}
    deployed = s2s("deploy", "default", cwd=project, env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with _client(server["url"]) as client:
        retrain = client.read_deployment_by_name("retrain/default")
        assert retrain.concurrency_limit == 1 or retrain.global_concurrency_limit.limit == 1
        automations = {a.name for a in client.read_automations()}
    assert "s2s: re-run crashed retrain/default" in automations

    worker_env = {k: v for k, v in env.items() if k != "S2S_ROOT"}
    log = Path(server["home"]) / "trigger-worker.log"
    worker = None
    try:
        time.sleep(3)  # the trigger is live once the server's automation cache has it
        # two arrivals at once: `s2s data add PATH` (dvc add + commit) and the same version announced
        added = subprocess.Popen(
            [venv_bin("s2s"), "data", "add", "data/sample/reports.csv"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        from tasks.data.sources import dvc_hash

        version = dvc_hash(project / "data" / "sample" / "reports.csv")
        again = s2s("data", "add", "--version", version, "--pipeline", "default", cwd=project, env=env)
        out, err = added.communicate(timeout=300)
        assert added.returncode == 0 and again.returncode == 0, out + err + again.stderr
        assert (project / "data" / "sample" / "reports.csv.dvc").is_file()
        assert subprocess.run(tracked, cwd=project, capture_output=True).returncode != 0  # git's index: no more
        assert "tracked by git: it is now tracked by DVC" in out + err
        assert (
            "data: data/sample/reports.csv at version"
            in subprocess.run(["git", "log", "-1", "--format=%s"], cwd=project, capture_output=True, text=True).stdout
        )
        # the worker starts once both triggered runs exist: whichever it takes first, the older
        # one ends Cancelled (a newer one waits, runs or is done) and the newer one trains
        deadline = time.monotonic() + 120
        while len(due_runs(server["url"])) < 2:
            assert time.monotonic() < deadline, [(r.name, r.state.name) for r in retrain_runs(server["url"])]
            time.sleep(1)
        with open(log, "w") as out:
            worker = subprocess.Popen(
                [venv_bin("s2s"), "worker", "--pool", "s2s"],
                cwd=server["home"],
                env=worker_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        runs = wait_final(server["url"], 2, worker, log)
        states = sorted(r.state.name for r in runs)
        assert states == ["Cancelled", "Completed"], [(r.name, r.state.name, r.state.message) for r in runs]
        cancelled = next(r for r in runs if r.state.name == "Cancelled")
        assert "superseded by the newer retrain" in (cancelled.state.message or "")
        cfg = load_config(root=project)
        assert len(tracking.client(cfg).search_model_versions("name='s2s-default'")) == 1, versions_said(
            server["url"], cfg
        )

        # the same data in another order: a new data version, no drift: skipped, saying why
        raw = project / "data" / "sample" / "reports.csv"
        lines = raw.read_text().splitlines()
        raw.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")
        third = s2s("data", "add", "data/sample/reports.csv", cwd=project, env=env)
        assert third.returncode == 0, third.stderr
        runs = wait_final(server["url"], 3, worker, log)
        assert len(tracking.client(cfg).search_model_versions("name='s2s-default'")) == 1, versions_said(
            server["url"], cfg
        )
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with _client(server["url"]) as client:
            notes = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["default-retrain"]))
            )
        assert any("skipped" in a.data and "no drift against champion v1" in a.data for a in notes), [
            a.data[:300] for a in notes
        ]
    finally:
        stop_group(worker)
