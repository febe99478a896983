"""The wheel `make dist` builds, installed outside the clone: the `s2s` command, `s2s init` from the
project files the wheel carries (git, DVC, a first commit), and a run in the new project with the
installed code only, after which `dvc status` finds every stage current."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, deep_merge

pytestmark = pytest.mark.system


def _run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_installs_outside_the_clone_and_starts_a_project_that_runs(tmp_path):
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
        tmp_path,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("s2s_pipeline-*.whl")

    # a fresh environment with the wheel alone; its dependencies are borrowed from this one
    # (installing torch and the rest again would take minutes and prove nothing about the wheel)
    env_dir = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(env_dir)], tmp_path).returncode == 0
    site = Path(
        _run(
            [env_dir / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).stdout.strip()
    )
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [env_dir / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], tmp_path
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("S2S_ROOT", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    version = _run(["s2s", "--version"], outside, env)
    assert version.returncode == 0 and version.stdout.strip() == "s2s 0.1.0", version.stdout + version.stderr
    where = _run(["python", "-c", "import tasks, flows; print(tasks.__file__); print(flows.__file__)"], outside, env)
    assert all(line.startswith(str(env_dir)) for line in where.stdout.split()), where.stdout  # not the clone's code

    init = _run(["s2s", "init", "proj"], outside, env)
    assert init.returncode == 0, init.stdout + init.stderr
    root = outside / "proj"
    for name in ("params.yaml", "pipelines.yaml", "dvc.yaml", ".dvc/plots_template.html", "data/sample/reports.csv"):
        assert (root / name).is_file(), name
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    assert "tasks/" not in (root / "dvc.yaml").read_text()  # the code is the installed package
    # the first commit holds it all: runs name a commit from the start
    log = _run(["git", "log", "--oneline"], root).stdout.splitlines()
    assert len(log) == 1 and "s2s init" in log[0], log
    assert _run(["git", "status", "--porcelain"], root).stdout == ""
    # a second init refuses and changes nothing
    again = _run(["s2s", "init", "proj"], outside, env)
    assert again.returncode != 0 and "already holds a project" in again.stderr and "Traceback" not in again.stderr
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipes = yaml.safe_load((root / "pipelines.yaml").read_text())
    pipes["default"]["gates"] = {"min": {"rougeL": 0.0}, "primary": "rougeL", "min_delta": None}
    (root / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    run = _run(["s2s", "run"], root, env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PROMOTED" in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert (root / "mlflow.db").is_file() and (root / "dvc.lock").is_file()
    status = _run(["python", "-m", "dvc", "status"], root, env)
    assert status.returncode == 0, status.stderr
    changed = [line for line in status.stdout.splitlines() if line and not line.startswith(("\t", " "))]
    assert changed == ["guard:"], status.stdout  # only the always-run guard; every stage's record is current
