"""Against a real `prefect server start` on 127.0.0.1 with its own home folder: `s2s deploy`
creates the deployments with the cron schedules of pipelines.yaml, a triggered run of the
default deployment is picked up by `s2s worker`, runs to completion, and the model version it
registers carries the Prefect flow run id."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port, make_clone, stop_group, venv_bin, wait_healthy

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [venv_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(f"{url}/health", proc, home / "server.log")
        yield {"url": url, "home": home, "log": home / "server.log"}
    finally:
        stop_group(proc)
        log.close()
    assert proc.returncode is not None  # stopped


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_clone(tmp_path_factory.mktemp("deployed") / "proj")


def _client(url: str):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        return get_client(sync_client=True)


def test_deploy_creates_deployments_with_the_cron_schedules(server, project):
    env = {**os.environ, "PREFECT_API_URL": server["url"], "S2S_ROOT": str(project)}
    proc = subprocess.run(
        [venv_bin("s2s"), "deploy"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # one table for every deployment, not Prefect's table per deployment
    headers = [line for line in proc.stdout.splitlines() if line.split()[:1] == ["deployment"]]
    assert len(headers) == 1 and "Successfully created" not in proc.stdout + proc.stderr, proc.stdout
    pipes = yaml.safe_load((project / "pipelines.yaml").read_text())
    with _client(server["url"]) as client:
        for name, spec in pipes.items():
            for flow_name in ("retrain", "training-pipeline", "promotion"):
                assert f"{flow_name}/{name}" in proc.stdout
            retrain = client.read_deployment_by_name(f"retrain/{name}")
            assert [s.schedule.cron for s in retrain.schedules] == [spec["schedule"]["cron"]]
            assert [s.schedule.timezone for s in retrain.schedules] == [spec["schedule"]["timezone"]]
            assert retrain.work_pool_name == spec["work_pool"]
            on_demand = client.read_deployment_by_name(f"training-pipeline/{name}")
            assert on_demand.schedules == [] and on_demand.parameters == {"pipeline": name}
        pools = {p.name: p.type for p in client.read_work_pools()}
        assert pools["s2s"] == "process" and pools["gpu"] == "process"
    # the server's scheduler turns the cron schedule into upcoming runs at the cron's times
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + 120
    with _client(server["url"]) as client:
        retrain = client.read_deployment_by_name("retrain/default")
        while True:
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain.id]))
            )
            if upcoming or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert upcoming, "the scheduler created no runs for retrain/default"
    cron = pipes["default"]["schedule"]["cron"]  # "0 3 * * *" UTC
    assert all(r.state.is_scheduled() for r in upcoming)
    assert {(r.expected_start_time.hour, r.expected_start_time.minute) for r in upcoming} == {(3, 0)}, cron
    # a second deploy updates in place (no duplicates)
    again = subprocess.run(
        [venv_bin("s2s"), "deploy", "default"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    with _client(server["url"]) as client:
        names = [d.name for d in client.read_deployments() if d.name == "default"]
        assert len(names) == 3


@pytest.mark.slow  # make test-slow
def test_a_worker_runs_the_triggered_default_deployment(server, project):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # deployed here too: this test may run on another xdist worker (another server) than the one above
    deployed = subprocess.run(
        [venv_bin("s2s"), "deploy", "default"],
        cwd=project,
        env={**os.environ, "PREFECT_API_URL": server["url"], "S2S_ROOT": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with _client(server["url"]) as client:
        deployment = client.read_deployment_by_name("training-pipeline/default")
        flow_run = client.create_flow_run_from_deployment(deployment.id)
    env = {**os.environ, "PREFECT_API_URL": server["url"]}
    env.pop("S2S_ROOT", None)  # the deployment's job variables say where the project is
    log_path = Path(server["home"]) / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [venv_bin("s2s"), "worker", "--pool", "s2s"],
            cwd=server["home"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        with _client(server["url"]) as client:
            while True:
                state = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))[
                    0
                ].state
                if state.is_final():
                    break
                assert worker.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, f"flow run still {state.name} after 600 s"
                time.sleep(2)
    finally:
        stop_group(worker)
    assert state.is_completed(), f"{state.name}: {state.message}\n{log_path.read_text()[-4000:]}"

    cfg = load_config(root=project)
    found = tracking.client(cfg).search_model_versions("name='s2s-default'")
    assert len(found) == 1
    assert found[0].tags["prefect_flow_run_id"] == str(flow_run.id)
    assert found[0].tags["pipeline"] == "default"
    # offline: no telemetry attempts, no failed sends in the server's or the worker's logs
    for text in (server["log"].read_text(), log_path.read_text()):
        assert "telemetry" not in text.lower() and "Traceback" not in text


def test_deploy_and_worker_without_a_server_say_how_to_start_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    for command in (["deploy"], ["worker", "--pool", "s2s"]):
        proc = subprocess.run(
            [venv_bin("s2s"), *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        assert "prefect server start" in proc.stderr and "PREFECT_API_URL" in proc.stderr
        assert "Traceback" not in proc.stderr
