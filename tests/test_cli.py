"""The command line: fast help, config errors before any work, exit statuses a script can use."""

import time

from conftest import run_cli


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
