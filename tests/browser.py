"""Headless Chromium for the tests that look at pages as a user's browser renders them, and the
screenshots the docs site uses: with S2S_SCREENSHOTS set to a folder, those tests save PNGs there
(`S2S_SCREENSHOTS=/tmp/shots pytest tests/test_mlflow_ui.py tests/test_dvc_plots.py
tests/test_default_run.py tests/test_prefect_server.py`; docs/img/ holds them scaled to 960 px)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def shots_dir() -> Path | None:
    """Where to save screenshots, when asked for (S2S_SCREENSHOTS)."""
    folder = os.environ.get("S2S_SCREENSHOTS")
    if not folder or CHROMIUM is None:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def chromium(
    url: str, profile: Path, *output: str, window: str = "1280,800", offline: bool = False, budget_ms: int = 15000
):
    """Headless Chromium on ``url`` with a fresh ``profile``, what ``output`` asks for
    (``--dump-dom``, ``--screenshot=FILE``); with ``offline`` every request goes to the discard
    port of 127.0.0.1, so a page that needs the network shows it."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            # every frame drawn before virtual time moves on: without it the runs' chart grid
            # (laid out from a measured width) was sometimes dumped with no chart in it
            "--run-all-compositor-stages-before-draw",
            *(["--proxy-server=127.0.0.1:9"] if offline else []),
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            f"--virtual-time-budget={budget_ms}",
            *output,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def screenshot(url: str, out: Path, profile: Path, window: str = "1280,800", offline: bool = False) -> None:
    """Save ``url`` as headless Chromium renders it."""
    chromium(url, profile, f"--screenshot={out}", window=window, offline=offline)
