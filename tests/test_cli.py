"""The command line: fast help, config errors before any work, exit statuses a script can use."""

import time

import pytest
from conftest import run_cli

pytestmark = pytest.mark.system


def test_help_is_fast_and_lists_the_commands(tmp_path):
    start = time.perf_counter()
    proc = run_cli("--help", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    assert "run" in proc.stdout and "predict" in proc.stdout
    assert elapsed < 5  # generous for CI noise; bench/ measures the real figure


def test_bad_setting_fails_before_anything_starts(project):
    proc = run_cli("run", "--set", "train.epoch=3", cwd=project)
    assert proc.returncode == 2
    assert "train.epoch: unknown setting (did you mean 'epochs'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "data" / "processed").exists()


def test_missing_params_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("S2S_ROOT", raising=False)
    proc = run_cli("run", cwd=tmp_path)
    assert proc.returncode == 2 and "no params.yaml found" in proc.stderr


def test_stage_entry_point_reports_missing_inputs(project):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tasks.train"], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "manifest.json is missing: run the ingest stage first" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_promote_rollback_commands(project):
    from test_promote import new_version

    from tasks.core.config import load_config

    cfg = load_config()
    _, v1 = new_version(cfg, 0.7)
    _, v2 = new_version(cfg, 0.9)
    env = {"S2S_ROOT": str(project)}
    assert run_cli("promote", v1, cwd=project, env=env).returncode == 0
    proc = run_cli("promote", v2, cwd=project, env=env)
    assert proc.returncode == 0 and "PROMOTED" in proc.stdout
    table = run_cli("compare", cwd=project, env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[1].split()[:6] == ["version", "aliases", "rouge1", "rouge2", "rougeL", "gen_len"]
    assert lines[3].split()[:2] == [v2, "champion"] and lines[4].split()[:2] == [v1, "previous_champion"]
    back = run_cli("rollback", cwd=project, env=env)
    assert back.returncode == 0 and f"champion v{v2} -> v{v1}" in back.stdout
    refused = run_cli("promote", v2, cwd=project, env={**env})
    assert refused.returncode == 0  # v2 beats the restored v1 again
    forced = run_cli("promote", v1, "--force", "--reason", "test", cwd=project, env=env)
    assert forced.returncode == 0 and "forced by" in forced.stdout
