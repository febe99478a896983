"""Prefect's temporary local server for `s2s run` when no Prefect API is configured.

The same app, settings and database Prefect starts for a flow when no server is configured,
launched first thing, so it boots on the second core while the CLI imports Prefect and the
stages (~3 s off every run). It runs in its own session, so a Ctrl-C or a ``timeout`` aimed at
the run's process group does not take it down before the run has reported its final state, and
it dies with its parent even on SIGKILL (PR_SET_PDEATHSIG).

This uses Prefect's private ephemeral-server settings (``PREFECT__SERVER_EPHEMERAL``,
``PREFECT__SERVER_FINAL``) and its app factory; tests/test_local_server.py fails loudly if a
Prefect upgrade renames them.
"""

from __future__ import annotations

import os
import signal
import sys

from tasks.core import signals
from tasks.core.errors import PipelineError

APP_FACTORY = "prefect.server.api.server:create_app"
PRIVATE_SETTINGS = {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TemporaryServer:
    """A Prefect API on a free port of 127.0.0.1 for the life of one command."""

    def __init__(self) -> None:
        import importlib.util
        import socket
        import subprocess

        spec = importlib.util.find_spec("prefect")
        app_dir = os.path.dirname(os.path.dirname(spec.origin))  # site-packages, as Prefect passes it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # the API address its /ui-settings hands a UI: by default PREFECT_API_URL, else the
            # default port 4200 (uvicorn's --port is not a Prefect setting), never this port
            "PREFECT_SERVER_UI_API_URL": self.url,
            **PRIVATE_SETTINGS,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                app_dir,
                "--factory",
                APP_FACTORY,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        signals.add_child(self.proc)

    def wait(self, timeout: float = 120.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PipelineError(
                    f"the temporary Prefect server did not start (exit status {self.proc.returncode}); "
                    "run `prefect server start` and set PREFECT_API_URL instead"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            # what Prefect does before stopping its own: let the log and event workers finish
            if "prefect.logging.handlers" in sys.modules:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                for worker in (APILogWorker, EventsWorker):
                    worker.drain_all(timeout=5)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        signals.remove_child(self.proc)


def api_settings(server: TemporaryServer | None):
    """Settings for the run: our temporary server's URL, without heartbeats (they let a
    long-lived server mark crashed runs; stopping their thread costs a second per run)."""
    import contextlib

    if server is None:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: server.url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
