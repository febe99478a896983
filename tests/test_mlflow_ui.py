"""The MLflow UI is where people compare and promote, rendered by a real headless Chromium (a
fresh profile per page) against `mlflow ui` on 127.0.0.1: the registered model's page lists the
champion version; the addresses the project gives out open the experiment in model-training mode
with the metrics as columns, the logged model named after its version, the model and version pages.

With S2S_SCREENSHOTS set to a folder, the pages are also saved there as 1280x800 PNGs."""

import contextlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium
from conftest import venv_bin
from test_promote import new_version

from tasks import metrics
from tasks.core.config import load_config
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote_version
from tasks.register import register
from tasks.tracking import client as tracking
from tasks.tracking import lineage
from tasks.train import train
from tasks.validate import validate

pytestmark = pytest.mark.system


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


@contextlib.contextmanager
def mlflow_ui(tracking_uri: str) -> Iterator[int]:
    """`mlflow ui` over ``tracking_uri`` on a free port of 127.0.0.1, for the block: its port."""
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
        yield port
    finally:
        server.terminate()
        server.wait(30)


def render(port: int, route: str, profile: Path, window: str = "1280,800", screenshot: Path | None = None) -> str:
    """The DOM of ``#/route`` as headless Chromium renders it in a ``window``-sized window, with a
    browser profile of its own (saved as a PNG too with ``screenshot``)."""
    shot = [f"--screenshot={screenshot}"] if screenshot else []
    return chromium(
        f"http://127.0.0.1:{port}/#/{route}", profile, *shot, "--dump-dom", window=window, budget_ms=20000
    ).stdout


def ui_dom(tracking_uri: str, routes: list[str], tmp_path) -> list[str]:
    """The DOM of each ``#/route`` of `mlflow ui` (on 127.0.0.1) as headless Chromium renders it."""
    with mlflow_ui(tracking_uri) as port:
        return [render(port, route, tmp_path / "chromium") for route in routes]


def text_of(dom: str) -> str:
    """The page's visible text, whitespace collapsed."""
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)).replace("&amp;", "&")


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (make system-deps)"
)


GENAI_ONLY = ("Overview", "Agent versions", "Judges", "Sessions", "Evaluation runs", "Prompts & versions")


@needs_chromium
def test_project_addresses_open_the_model_training_ui(project, tmp_path):
    cfg = load_config()
    name = cfg.register.model_name
    _, v1 = new_version(cfg, 0.7)  # so the pipeline's model is version 2, not the default 1
    ingested = ingest(cfg)
    validate(cfg, ingested)
    trained = train(cfg, ingested)
    v2 = register(cfg, trained, evaluate(cfg, trained, ingested), ingested).version
    assert v2 == str(int(v1) + 1)
    promote_version(cfg, v1)  # after evaluate: v1 has no weights to compare with
    promote_version(cfg, v2, force=True, reason="UI test")
    c = tracking.client(cfg)
    exp_id = tracking.experiment_id(cfg, c)
    (logged,) = [m for m in c.search_logged_models([exp_id]) if m.source_run_id == trained.run_id]
    assert logged.name == f"{name}-v{v2}"
    assert json.loads(logged.tags[lineage.MODEL_VERSIONS_TAG]) == [{"name": name, "version": int(v2)}]

    pages = {
        "experiment": lineage.experiment_page(exp_id),
        "charts": lineage.compare_page(exp_id),
        "logged-models": f"experiments/{exp_id}/models?workflowType={lineage.WORKFLOW_TYPE}",
        "registered-model": lineage.model_page(name),
        "version": lineage.model_page(name, v2),
    }
    shots = os.environ.get("S2S_SCREENSHOTS")
    with mlflow_ui(cfg.tracking_uri()) as port:
        # wide enough that the grid renders every metric column (it leaves out those off screen)
        dom = {key: render(port, route, tmp_path / f"dom-{key}", window="1920,1080") for key, route in pages.items()}
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            for key, route in pages.items():
                render(port, route, tmp_path / f"shot-{key}", screenshot=Path(shots) / f"mlflow-{key}.png")
    text = {key: text_of(d) for key, d in dom.items()}

    runs = text["experiment"]
    assert "Runs" in runs and "Models" in runs, runs[:2000]
    assert not [w for w in GENAI_ONLY if w in runs], runs[:2000]  # not the GenAI experiment pages
    for metric in metrics.metrics(cfg.evaluate.metrics):
        assert f'col-id="metrics.`{metric}`"' in dom["experiment"], metric
    assert f"Sort: {cfg.primary_metric}" in runs and "matching run" in runs

    # MLflow's run comparison (the chart view) opens on parallel coordinates ending in the primary
    # metric, not on the first metric a run logged (data_rows_train), then a bar chart per score
    cards = re.split(r'data-testid="experiment-view-compare-runs-card"', dom["charts"])[1:]
    assert cards, text["charts"][:2000]
    axes = re.findall(r'<text[^>]*class="label"[^>]*>([^<]*)<', cards[0])  # plotly's axis titles
    assert "Parallel Coordinates" in text_of("<div " + cards[0]), text_of("<div " + cards[0])[:500]
    assert axes[-1:] == [cfg.primary_metric] and "train.lr" in axes and "data_rows_train" not in axes, axes
    scores = list(metrics.metrics(cfg.evaluate.metrics))
    assert [text_of("<div " + c).split()[0] for c in cards[1:3]] == scores[:2], text["charts"][:2000]

    models = text["logged-models"]
    assert f"{name}-v{v2}" in models and "Agent versions" not in models, models[:2000]

    for key in ("registered-model", "version"):  # the registry's pages, in the model-training navigation
        assert "Model registry" in text[key] and "AI Gateway" not in text[key], text[key][:2000]
    assert aliases_by_version(dom["registered-model"]) == {v2: {"champion"}, v1: {"previous_champion"}}
    version = text["version"]
    assert f"Version {v2}" in version and "champion" in version and cfg.primary_metric in version, version[:3000]
