"""Real services for tests and benchmarks, on 127.0.0.1 only: an MLflow tracking server that can be
stopped and started again, and an HTTP proxy in front of it that answers 503/403, hangs, or runs
a hook (stop the server) in the middle of a chosen call. No pytest in here: bench/ uses it too."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Poll ``url`` until it answers 200; fail with the end of ``log`` if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")
        time.sleep(0.3)


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def bin_path(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class MlflowServer:
    """``mlflow server`` on a SQLite store and a served artifact folder; stop() and start() again
    keep the same port and data, as a restarted production server would."""

    def __init__(self, folder: Path, admin_password: str | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port, self.proc = folder, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        self.admin_password = admin_password  # set: MLflow's basic-auth app, user "admin"

    def start(self) -> MlflowServer:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        auth: list[str] = []
        if self.admin_password:
            ini = self.folder / "basic-auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.folder / 'auth.db'}\n"
                f"admin_username = admin\nadmin_password = {self.admin_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret-key")
            auth = ["--app-name", "basic-auth"]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [
                    bin_path("mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.folder / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.folder / "artifacts"),
                    "--serve-artifacts",
                    *auth,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_healthy(f"{self.url}/health", self.proc, self.log, timeout=120)
        return self

    def stop(self) -> None:
        stop_group(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``target``. ``fault(pattern, action)`` makes every
    request whose ``"METHOD /path body"`` matches the regex ``pattern`` get ``action``: an int status
    answered by the proxy itself (503, 403, ...), ``"hang"`` (held until :meth:`clear`), or a
    callable run before forwarding (stop the server in the middle of the call). The rest pass.
    A held request is dropped when released: it never reaches the server."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.rules: list[tuple[re.Pattern, object]] = []
        self.hits: dict[str, int] = {}
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = f"{self.command} {self.path} {body.decode(errors='replace')}"
                for pattern, action in list(proxy.rules):
                    if pattern.search(key):
                        proxy.hits[pattern.pattern] = proxy.hits.get(pattern.pattern, 0) + 1
                        if action == "hang":  # held until clear(), then dropped: it never reaches the server
                            proxy._released.wait()
                            return self._reply(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}')
                        elif isinstance(action, int):
                            return self._reply(
                                action,
                                b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the test proxy"}',
                            )
                        elif callable(action):
                            action()
                        break
                host, port = proxy.target.split("://", 1)[1].split(":")
                try:
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self._reply(response.status, data, response.getheader("Content-Type", "application/json"))
                except OSError:
                    self._reply(502, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "upstream down"}')

            def _reply(self, status: int, data: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fault(self, pattern: str, action: int | str | Callable[[], None]) -> FaultProxy:
        self._released.clear()
        self.rules.append((re.compile(pattern), action))
        return self

    def clear(self) -> None:
        self.rules.clear()
        self._released.set()

    def close(self) -> None:
        self.clear()
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A webhook receiver on 127.0.0.1 (a real HTTP server in a thread): records each POSTed JSON
    body; answers ``fail_first`` requests with ``fail_status`` before it starts accepting."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503):
        self.events: list[dict] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if outer.requests <= fail_first:
                    self.send_response(fail_status)
                    self.end_headers()
                    return
                outer.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN-123"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
