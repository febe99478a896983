"""A write that fails for lack of room, for real: the run is started under a file size limit
(RLIMIT_FSIZE, as `ulimit -f` sets it) that the model fits under and its optimizer checkpoint does
not. The run ends with one message naming the limit and the fix, no traceback on the console (the
log file keeps it), and the next run without the limit goes on from what was kept."""

from __future__ import annotations

import os
import resource
import subprocess

import pytest
from conftest import make_project, venv_bin

pytestmark = [pytest.mark.system, pytest.mark.slow]  # make test-slow

# ~7 M parameters: model.safetensors ~28 MB fits under the limit, optimizer.pt ~56 MB does not
WIDE = {
    "train": {
        "scratch": {"d_model": 512, "d_ff": 2048, "d_kv": 64, "num_heads": 8},
        "max_steps": 4,
        "eval_strategy": "no",
        "save_steps": 2,
    }
}
LIMIT = 40_000_000


def test_a_checkpoint_write_over_the_file_size_limit_is_one_message_naming_it(tmp_path):
    root = make_project(tmp_path / "proj", params=WIDE)

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    env = {**os.environ, "S2S_ROOT": str(root)}
    proc = subprocess.run(
        [venv_bin("s2s"), "run"], cwd=root, env=env, capture_output=True, text=True, timeout=600, preexec_fn=limited
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]
    assert f"file size limit (ulimit -f: {LIMIT} bytes)" in error and "raise the limit" in error, error
    logs = sorted((root / ".s2s" / "logs").glob("*-run-*.log"))
    assert logs and "Traceback" in logs[-1].read_text()  # the details are kept, in the log file

    again = subprocess.run([venv_bin("s2s"), "run"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode in (0, 3), (again.stdout + again.stderr)[-3000:]  # 3: the tiny model is not promoted
    assert "removing incomplete checkpoint" in again.stdout + again.stderr  # the half-written one, not kept
