"""Against a real `prefect server start` on 127.0.0.1 with its own home folder: `s2s deploy`
creates the deployments with the cron schedules of pipelines.yaml, a triggered run of the
default deployment is picked up by `s2s worker`, runs to completion, and the model version it
registers carries the Prefect flow run id."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from browser import screenshot, shots_dir
from conftest import free_port, make_clone, stop_group, venv_bin, wait_healthy
from docs_text import run_tutorial

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


def _client(url: str):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        return get_client(sync_client=True)


def test_the_nightly_tutorial_runs_as_written(tmp_path):
    """docs/tutorials/nightly.md as written, on a tiny copy of the project: its own Prefect
    server; `s2s deploy` creates every pipeline's deployments with their cron schedules (the
    server's scheduler turns them into runs at the cron's times, a second deploy updates in
    place); a flow run of training-pipeline/default requested through Prefect's CLI is run by
    `s2s worker --run-once`, and the version it registered names that flow run. About a minute
    (a Prefect server, a deploy twice, a worker and a tiny training): the one run of a deployment
    through a real worker in `make test`."""
    # for the docs' pictures (S2S_SCREENSHOTS), a model that learned something: 80 steps, not 12
    project = make_clone(tmp_path / "proj", params={"train": {"max_steps": 80, "lr": 0.01}} if shots_dir() else None)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "S2S_ROOT": ""}
    env["PREFECT_UI_ENABLED"] = "true" if shots_dir() else "false"  # the UI only for the docs' picture
    steps = run_tutorial(
        "nightly.md",
        project,
        env,
        subs={"4200": str(port)},
        checks=lambda ran: _while_the_server_runs(ran, url, project, tmp_path),
    )
    requested, worked, compare = steps[-3:]
    assert requested.text == "prefect deployment run training-pipeline/default"
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", requested.stdout)[1]
    assert worked.text == "s2s worker --pool s2s --run-once"

    found = tracking.client(load_config(root=project)).search_model_versions("name='s2s-default'")
    assert len(found) == 1, worked.stdout[-3000:] + worked.stderr[-3000:]
    assert found[0].tags["prefect_flow_run_id"] == flow_run_id
    assert found[0].tags["pipeline"] == "default"
    assert compare.stdout.splitlines()[3].split()[:2] == ["1", "champion"], compare.stdout
    # offline: no telemetry attempts, no failed sends in the worker's output or the server's log
    server_log = Path(steps[1].stdout).read_text()  # the background server's output
    for text in (server_log, worked.stdout + worked.stderr):
        assert "telemetry" not in text.lower() and "Traceback" not in text


def _while_the_server_runs(steps, url: str, project: Path, tmp_path: Path) -> None:
    """What the tutorial made, read from its server while it still runs: the deployments, and
    (with S2S_SCREENSHOTS) the flow run's page in the Prefect UI, for the docs."""
    _deployed(steps, url, project)
    if shots := shots_dir():
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", steps[-3].stdout)[1]
        ui = url.removesuffix("/api")
        screenshot(f"{ui}/runs/flow-run/{flow_run_id}", shots / "prefect-run.png", tmp_path / "run", window="1280,800")
        # the run's summary: its markdown artifact (key `<pipeline>-run`), on the artifact's own page
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with _client(url) as client:
            keyed = ArtifactFilter(key=ArtifactFilterKey(any_=["default-run"]))
            (artifact,) = client.read_artifacts(artifact_filter=keyed)
        page = f"{ui}/artifacts/artifact/{artifact.id}"
        screenshot(page, shots / "prefect-summary.png", tmp_path / "artifact", window="1280,1300")


def _deployed(steps, url: str, project: Path) -> None:
    """What `s2s deploy` (a step of the tutorial) created, read from the server while it runs."""
    deploy = next(s for s in steps if s.text == "s2s deploy")
    # one table for every deployment, not Prefect's table per deployment
    headers = [line for line in deploy.stdout.splitlines() if line.split()[:1] == ["deployment"]]
    assert len(headers) == 1 and "Successfully created" not in deploy.stdout + deploy.stderr, deploy.stdout
    pipes = yaml.safe_load((project / "pipelines.yaml").read_text())
    with _client(url) as client:
        for name, spec in pipes.items():
            for flow_name in ("retrain", "training-pipeline", "promotion"):
                assert f"{flow_name}/{name}" in deploy.stdout
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
    with _client(url) as client:
        retrain = client.read_deployment_by_name("retrain/default")
        while True:
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain.id]))
            )
            if upcoming or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert upcoming, "the scheduler created no runs for retrain/default"
    assert all(r.state.is_scheduled() for r in upcoming)
    assert {(r.expected_start_time.hour, r.expected_start_time.minute) for r in upcoming} == {(3, 0)}
    # a second deploy updates in place (no duplicates)
    env = {**os.environ, "PREFECT_API_URL": url, "S2S_ROOT": str(project)}
    again = subprocess.run(
        [venv_bin("s2s"), "deploy", "default"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    with _client(url) as client:
        names = [d.name for d in client.read_deployments() if d.name == "default"]
        assert len(names) == 3


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
