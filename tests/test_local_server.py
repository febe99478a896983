"""The temporary Prefect server `s2s run` starts early (flows/local_server.py) uses Prefect's own
ephemeral-server launch: the same app factory and the same private environment settings. If a
Prefect upgrade changes either, these tests fail and say what to update; `S2S_PREFECT_SERVER=prefect`
meanwhile makes `s2s run` let Prefect start its server itself (the public route)."""

from __future__ import annotations

import inspect

import pytest

from flows import local_server

pytestmark = pytest.mark.integration


def test_prefect_still_launches_its_ephemeral_server_the_way_we_copy():
    from prefect.server.api.server import SubprocessASGIServer

    source = inspect.getsource(SubprocessASGIServer._run_uvicorn_command)
    for name, value in local_server.PRIVATE_SETTINGS.items():
        assert f'"{name}": "{value}"' in source, (
            f"Prefect no longer sets {name}={value} for its ephemeral server: update "
            "flows/local_server.PRIVATE_SETTINGS (or run with S2S_PREFECT_SERVER=prefect)"
        )
    assert local_server.APP_FACTORY in source, "Prefect's ephemeral server app factory moved: update APP_FACTORY"


def test_a_flow_runs_against_the_temporary_server(tmp_path, monkeypatch):
    from prefect import flow, get_client

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    server = local_server.TemporaryServer()
    try:
        server.wait()

        @flow(name="ping")
        def ping() -> str:
            from prefect.context import FlowRunContext

            return str(FlowRunContext.get().flow_run.id)

        with local_server.api_settings(server):
            run_id = ping()
            with get_client(sync_client=True) as client:
                assert client.read_flow_run(run_id).state.is_completed()
    finally:
        server.stop()
    assert server.proc.poll() is not None


def test_the_temporary_server_tells_a_ui_its_own_address(tmp_path, monkeypatch):
    """/ui-settings is what Prefect's UI reads for the API address; on any port it is this server's."""
    import json
    import urllib.request

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = local_server.TemporaryServer()
    try:
        server.wait()
        with urllib.request.urlopen(server.url.removesuffix("/api") + "/ui-settings", timeout=10) as response:
            assert json.load(response)["api_url"] == server.url
    finally:
        server.stop()
