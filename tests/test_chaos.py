"""The chaos harness (bench/chaos.py) with a couple of faults, so CI runs it: a SIGKILL during
training and a SIGTERM during promotion, each followed by a recovery run and every invariant.
Long runs (40 faults per mode) are for `python -m bench.chaos`; their figures are in the README."""

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.system


def test_two_faults_leave_every_invariant_holding():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--faults",
            "2",
            "--seed",
            "3",
            "--mode",
            "mixed",
            "--stages",
            "train,promote",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 2 and "FAIL" not in proc.stdout
    assert "violations: 0" in proc.stdout and "probe predictions equal" in proc.stdout
