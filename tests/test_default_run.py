"""The embedded default really learns: `s2s run` passes the gate; a one-step run fails it.

The slowest test of the suite (two to seven minutes on two cores, by what the other worker runs
meanwhile): it is the promise the README makes, checked the way a user would check it, by
running the first-run tutorial (docs/tutorials/first-run.md) as written.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import screenshot, shots_dir
from conftest import make_project
from docs_text import code_block, run_tutorial

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = pytest.mark.system


def test_default_run_is_promoted_and_a_crippled_run_is_not(tmp_path):
    root = make_project(tmp_path / "proj", tiny=False)
    env = {"S2S_ROOT": str(root)}
    good, bad, compare = run_tutorial("first-run.md", root, env)
    assert (good.text, compare.text) == ("s2s run", "s2s compare")
    assert "gate         : PROMOTED -> alias 'champion'" in good.stdout
    # a quiet console: stage lines, the bar, the summary (at most 40 lines); the log file has the rest
    console = (good.stdout + good.stderr).splitlines()
    assert len(console) <= 40, "\n".join(console)
    for noise in ("Traceback", "View at", "Concurrency limits", "missing keys", "INFO"):
        assert noise not in good.stdout + good.stderr, noise
    log_file = Path(next(line for line in console if line.startswith("log file")).split(":", 1)[1].strip())
    logged = log_file.read_text()
    assert re.search(r"step \d+: \{.*'loss'", logged), "the per-step dicts belong in the log file"
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    gates = load_config(root=root).promote.gates
    assert all(metrics[m] >= v for m, v in gates.min.items()), metrics

    # one training step (scored on 60 test rows: a model that has not learned scores ~0 on any)
    assert "train.max_steps=1" in bad.text and bad.returncode == 3
    assert "gate         : NOT PROMOTED -> alias 'challenger'" in bad.stdout
    # the refusal says where the bounds live and what this candidate would have needed
    hint = re.search(r"bounds are set in pipelines.yaml \(default: gates: min/max.*candidate needs (.*)", bad.stdout)
    assert hint and "--set promote.gates.min." in hint.group(0), bad.stdout[-3000:]
    assert re.fullmatch(r"(min\.\w+ <= \d\.\d{4}(, )?)+", hint.group(1)), hint.group(1)
    client = tracking.client(load_config(root=root))
    assert client.get_model_version_by_alias("s2s-default", "champion").version == 1
    assert client.get_model_version_by_alias("s2s-default", "challenger").version == 2
    aliases = {
        words[0]: words[1] for words in map(str.split, compare.stdout.splitlines()) if words[:1] in (["1"], ["2"])
    }
    assert aliases == {"1": "champion", "2": "challenger"}, compare.stdout

    (report,) = root.glob("runs/default.*/reports/promotion_report.html")  # the refused candidate's
    assert "challenger" in report.read_text() or "NOT PROMOTED" in report.read_text().upper()
    if shots := shots_dir():  # the docs' picture of a decision
        screenshot(report.as_uri(), shots / "promotion-report.png", tmp_path / "chromium", window="1280,1600")

    # the page's Python, in a fresh process, on this project's store
    snippet = code_block("first-run.md", "python").replace(
        "sqlite:////path/to/repo/mlflow.db", f"sqlite:///{root}/mlflow.db"
    )
    loaded = subprocess.run([sys.executable, "-c", snippet], cwd=root, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    said = eval(loaded.stdout.strip().splitlines()[-1])  # the printed list of predictions
    assert isinstance(said, list) and len(said) == 1 and said[0].strip(), loaded.stdout
