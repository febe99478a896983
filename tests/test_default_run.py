"""The embedded default really learns: `s2s run` passes the gate; a one-step run fails it.

The slowest test of the suite (two to seven minutes on two cores, by what the other worker runs
meanwhile): it is the promise the README makes, checked the way a user would check it.
"""

import json
import re
from pathlib import Path

import pytest
from conftest import make_project, run_cli

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = pytest.mark.system


def test_default_run_is_promoted_and_a_crippled_run_is_not(tmp_path):
    root = make_project(tmp_path / "proj", tiny=False)
    env = {"S2S_ROOT": str(root)}
    good = run_cli("run", cwd=root, env=env)
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
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
    bad = run_cli("run", "--set", "train.max_steps=1", "--set", "evaluate.max_samples=60", cwd=root, env=env)
    assert bad.returncode == 3, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert "gate         : NOT PROMOTED -> alias 'challenger'" in bad.stdout
    # the refusal says where the bounds live and what this candidate would have needed
    hint = re.search(r"bounds are set in pipelines.yaml \(default: gates: min/max.*candidate needs (.*)", bad.stdout)
    assert hint and "--set promote.gates.min." in hint.group(0), bad.stdout[-3000:]
    assert re.fullmatch(r"(min\.\w+ <= \d\.\d{4}(, )?)+", hint.group(1)), hint.group(1)
    client = tracking.client(load_config(root=root))
    assert client.get_model_version_by_alias("s2s-default", "champion").version == 1
    assert client.get_model_version_by_alias("s2s-default", "challenger").version == 2
