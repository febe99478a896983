"""The MLflow UI is where people compare and promote: the registered model's page, rendered by
a real headless Chromium against `mlflow ui` on 127.0.0.1, lists the champion version."""

import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import venv_bin
from test_promote import new_version

from tasks.core.config import load_config
from tasks.promote import promote_version

pytestmark = pytest.mark.system
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aliases_by_version(dom: str) -> dict[str, set[str]]:
    """Version number -> the alias pills shown in its row (rows are role="row"; alias pills are
    tags titled with the alias)."""
    starts = [m.start() for m in re.finditer(r'role="row"', dom)] + [len(dom)]
    out = {}
    for a, b in zip(starts, starts[1:]):
        row = dom[a:b]
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))
        if m := re.search(r"Version (\d+)", text):
            out[m.group(1)] = set(re.findall(r'title="([^"]+)"[^>]*aliases_modelversionaliastag', row))
    return out


def ui_dom(tracking_uri: str, routes: list[str], tmp_path) -> list[str]:
    """The DOM of each ``#/route`` of `mlflow ui` (on 127.0.0.1) as headless Chromium renders it."""
    port = free_port()
    server = subprocess.Popen(
        [venv_bin("mlflow"), "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow ui did not come up on 127.0.0.1")
        return [
            subprocess.run(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium'}",
                    "--virtual-time-budget=20000",
                    "--dump-dom",
                    f"http://127.0.0.1:{port}/#/{route}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            for route in routes
        ]
    finally:
        server.terminate()
        server.wait(30)


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (make system-deps)"
)


@needs_chromium
def test_model_page_lists_the_champion_version(project, tmp_path):
    cfg = load_config()
    _, v1 = new_version(cfg, 0.7)
    _, v2 = new_version(cfg, 0.9)
    promote_version(cfg, v1)
    promote_version(cfg, v2)
    (dom,) = ui_dom(cfg.tracking_uri(), [f"models/{cfg.register.model_name}"], tmp_path)
    assert aliases_by_version(dom) == {v2: {"champion"}, v1: {"previous_champion"}}
