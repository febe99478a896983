"""`s2s init DIR` and `s2s train` outside a project: a ready project anywhere, as AutoTrain users
expect; `s2s run` and `dvc status` behave there as they do in the repository."""

from __future__ import annotations

import csv
import subprocess

import pytest
import yaml
from conftest import REPO, TINY, deep_merge, dvc_env, run_cli, venv_bin

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = pytest.mark.integration


def _without_root(env: dict | None = None) -> dict:
    return {"S2S_ROOT": "", **(env or {})}


def test_init_then_run_then_dvc_sees_everything_current(tmp_path):
    proc = run_cli("init", "proj", cwd=tmp_path, env=_without_root())
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "proj"
    for name in ("params.yaml", "pipelines.yaml", "dvc.yaml", ".git", ".dvc", "data/sample/reports.csv"):
        assert (root / name).exists(), name
    assert "tasks/" not in (root / "dvc.yaml").read_text()  # the code is the installed package
    # the first commit holds it all: runs name a commit from the start
    log = subprocess.run(["git", "log", "--oneline"], cwd=root, capture_output=True, text=True).stdout.splitlines()
    assert len(log) == 1 and "s2s init" in log[0], log
    assert subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout == ""
    # a second init refuses and changes nothing
    again = run_cli("init", "proj", cwd=tmp_path, env=_without_root())
    assert again.returncode != 0 and "already holds a project" in again.stderr and "Traceback" not in again.stderr

    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipes = yaml.safe_load((root / "pipelines.yaml").read_text())
    pipes["default"]["gates"] = {"min": {"rougeL": 0.0}, "primary": "rougeL", "min_delta": None}
    (root / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    run = run_cli("run", cwd=root, env=_without_root())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (root / "mlflow.db").is_file() and (root / "dvc.lock").is_file()
    status = subprocess.run([venv_bin("dvc"), "status"], cwd=root, env=dvc_env(), capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    changed = [line for line in status.stdout.splitlines() if line and not line.startswith(("\t", " "))]
    assert changed == ["guard:"], status.stdout  # only the always-run guard; every stage's record is current


def test_train_outside_a_project_starts_one(tmp_path):
    with (REPO / "data" / "sample" / "reports.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:200]
    with (tmp_path / "my.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "target"])
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli(
        "train", "--data-path", "my.csv", "--project-name", "demo", "--epochs", "1", cwd=tmp_path, env=_without_root()
    )
    # one epoch does not pass the shipped gates: registered, not promoted (exit 3)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NOT PROMOTED" in proc.stdout
    assert "started one in" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    # nobody chose the model or the prefix: both are said, with how to choose
    assert "model: scratch (the default" in proc.stderr and "--model NAME" in proc.stderr, proc.stderr
    assert "prefix: 'summarize: ' is put before every input" in proc.stderr, proc.stderr
    root = tmp_path / "demo"
    assert (root / "params.yaml").is_file() and (root / ".git").is_dir() and (root / ".dvc").is_dir()
    assert not (root / "data" / "sample").exists()  # the user's data, not the sample
    log_line = next(line for line in proc.stdout.splitlines() if line.startswith("log file"))
    assert (root / ".s2s" / "logs").is_dir() and str(root / ".s2s" / "logs") in log_line
    client = tracking.client(load_config(root=root))
    assert [str(v.version) for v in client.search_model_versions("name='demo'")] == ["1"]
