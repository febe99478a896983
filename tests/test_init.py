"""`s2s init DIR` and `s2s train` outside a project: a ready project anywhere, as AutoTrain users
expect; `s2s run` and `dvc status` behave there as they do in the repository."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess

import pytest
from conftest import dvc_env, venv_bin
from docs_text import run_tutorial

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = pytest.mark.integration


def _without_root(env: dict | None = None) -> dict:
    return {"S2S_ROOT": "", **(env or {})}


def _versions(root, name: str) -> list[str]:
    client = tracking.client(load_config(root=root))
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{name}'"))


def test_journey_from_an_empty_folder_to_a_project_that_reruns_and_compares(tmp_path):
    """docs/tutorials/your-data.md, run as written on real text that is not the embedded sample
    (Python functions -> their docstring's first line), in an empty folder: `s2s train` makes a
    project whose settings are its flags and whose data DVC versions; the same `s2s train` again
    trains nothing; `dvc repro` reuses every stage; `dvc exp run -S` trains an experiment whose
    figures `dvc metrics diff` puts beside the baseline's; the registry holds exactly the versions
    the runs announced. About a minute (two trainings and a dozen DVC commands): the one proof
    that the your-data tutorial works as written."""
    from bench import real_text

    real_text.write(real_text.function_docstring_pairs(200, min_chars=100, max_chars=320, seed=3), tmp_path / "fn.csv")
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t"}
    identity["GIT_COMMITTER_EMAIL"] = "t@localhost"
    steps = run_tutorial("your-data.md", tmp_path, {**_without_root(), **identity})
    first, again, _, repro, _, exp, show, diff, plots, compare = steps
    assert first.text.startswith("s2s train --data-path fn.csv") and again.text == first.text
    out = first.stdout + first.stderr
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

    assert "nothing to train" in again.stdout and "docstrings v1" in again.stdout, again.stdout
    assert repro.text == "dvc repro"
    assert "Running stage 'train'" not in repro.stdout and "didn't change, skipping" in repro.stdout
    assert exp.text == "dvc exp run -S train.lr=0.003"
    stages = [line.split("'")[1] for line in exp.stdout.splitlines() if line.startswith("Running stage")]
    stages.remove("guard")  # always runs in a project made by s2s (it records the installed code)
    assert stages[:1] == ["train"] and "ingest" not in stages, exp.stdout  # only train and what follows
    # `-S` rewrote params.yaml (DVC's YAML round trip) and changed the line it set, no other
    edited = subprocess.run(["git", "diff", "-U0", "params.yaml"], cwd=root, capture_output=True, text=True).stdout
    edits = [line for line in edited.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(edits) == 2 and all(line[1:].lstrip().startswith("lr:") for line in edits), edited
    # `dvc exp show`: figures for the baseline commit and the experiment alike, no "!" (not found)
    assert show.text == "dvc exp show" and "rougeL" in show.stdout, show.stdout
    as_csv = subprocess.run(
        [venv_bin("dvc"), "exp", "show", "--csv"], cwd=root, env=dvc_env(), capture_output=True, text=True
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    rouge = next(k for k in rows[0] if k.split(":")[-1] == "rougeL")
    shown_rows = [r for r in rows if r.get("typ") != "workspace"]
    assert len(shown_rows) >= 2 and all(r[rouge] not in ("", "!") for r in shown_rows), rows
    drawn = (root / "dvc_plots" / "index.html").read_text()
    assert plots.text == "dvc plots show" and "vegaEmbed(" in drawn
    assert not re.search(r"<script[^>]*\ssrc\s*=\s*[\"']?(https?:)?//", drawn, re.I)  # offline: no CDN
    for plot in ("train.csv", "eval.csv", "scores.csv"):
        assert plot in drawn, plot
    # both sides of the diff have numbers (the table, and the same read as JSON)
    assert diff.text == "dvc metrics diff --all" and "rougeL" in diff.stdout, diff.stdout
    as_json = subprocess.run(
        [venv_bin("dvc"), "metrics", "diff", "--all", "--json"], cwd=root, env=dvc_env(), capture_output=True, text=True
    )
    rows = json.loads(as_json.stdout)["reports/metrics.json"]
    assert isinstance(rows["rougeL"]["old"], float) and isinstance(rows["rougeL"]["new"], float), rows
    # the experiment left the team's registry alone (register.in_experiments is off)
    assert _versions(root, "docstrings") == announced
    assert compare.text == "s2s compare" and "docstrings" in compare.stdout
