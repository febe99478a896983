"""`s2s init DIR` and `s2s train` outside a project: a ready project anywhere, as AutoTrain users
expect; `s2s run` and `dvc status` behave there as they do in the repository."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import TINY, deep_merge, dvc_env, run_cli, venv_bin

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


def _versions(root, name: str) -> list[str]:
    client = tracking.client(load_config(root=root))
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{name}'"))


def test_journey_from_an_empty_folder_to_a_project_that_reruns_and_compares(tmp_path):
    """Real text that is not the embedded sample (Python functions -> their docstring's first
    line), in an empty folder: `s2s train` makes a project whose settings are its flags and whose
    data DVC versions; the same `s2s train` again trains nothing; `dvc repro` reuses every stage;
    `dvc exp run -S` trains an experiment whose figures `dvc metrics diff` puts beside the
    baseline's; the registry holds exactly the versions the runs announced."""
    from bench import real_text

    real_text.write(real_text.function_docstring_pairs(200, min_chars=100, max_chars=320, seed=3), tmp_path / "fn.csv")
    flags = ("--data-path", "fn.csv", "--project-name", "docstrings", "--epochs", "1", "--batch-size", "16")
    flags += ("--max-seq-length", "384", "--max-target-length", "128", "--source-prefix", "")
    first = run_cli("train", *flags, cwd=tmp_path, env=_without_root())
    out = first.stdout + first.stderr
    assert first.returncode in (0, 3), out[-4000:]  # promoted, or refused by a gate with reasons
    assert "started one in" in first.stderr and "Traceback" not in out
    assert "model: scratch (the default" in first.stderr and "--model NAME" in first.stderr, first.stderr
    assert "prefix:" not in first.stderr  # chosen (none), so not announced
    announced = re.findall(r"model\s+: docstrings version (\d+)", first.stdout)
    assert announced == ["1"], first.stdout[-2000:]
    root = tmp_path / "docstrings"
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir() and not (root / "data" / "sample").exists()
    log_line = next(line for line in first.stdout.splitlines() if line.startswith("log file"))
    assert str(root / ".s2s" / "logs") in log_line
    # the flags are the project's settings, the data is in it and versioned by DVC
    cfg = load_config(root=root)
    assert (cfg.register.model_name, cfg.train.max_seq_length, cfg.ingest.source) == (
        "docstrings",
        384,
        "data/docstrings/fn.csv",
    )
    assert cfg.ingest.source_prefix == "" and not cfg.promote.gates.min  # relative gates on the user's data
    assert (root / "data/docstrings/fn.csv.dvc").is_file()
    assert "run it again: cd" in first.stderr

    again = run_cli("train", *flags, cwd=tmp_path, env=_without_root())
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "nothing to train" in again.stdout and "docstrings v1" in again.stdout, again.stdout

    env = dvc_env()
    repro = subprocess.run([venv_bin("dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage 'train'" not in repro.stdout and "didn't change, skipping" in repro.stdout

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "trained"], cwd=root, check=True)
    exp = subprocess.run(
        [venv_bin("dvc"), "exp", "run", "-S", "train.seed=7"], cwd=root, env=env, capture_output=True, text=True
    )
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    diff = subprocess.run(
        [venv_bin("dvc"), "metrics", "diff", "--all", "--json"], cwd=root, env=env, capture_output=True, text=True
    )
    rows = json.loads(diff.stdout)["reports/metrics.json"]
    assert isinstance(rows["rougeL"]["old"], float) and isinstance(rows["rougeL"]["new"], float), rows
    # the experiment left the team's registry alone (register.in_experiments is off)
    assert _versions(root, "docstrings") == announced
