"""The chaos harness (bench/chaos.py) with one fault, so CI runs it: a SIGKILL of the run's
process group during training, a recovery run and every invariant. (A SIGTERM, a SIGKILL between
two alias writes and a tracking outage each have their own test in test_faults.py.) Long runs
(many faults per mode) are for `python -m bench.chaos`; their figures are in the README."""

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.system, pytest.mark.slow]  # make test-slow


def test_a_sigkill_in_training_leaves_every_invariant_holding():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--faults",
            "1",
            "--seed",
            "3",
            "--mode",
            "kill",
            "--stages",
            "train",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 1 and "FAIL" not in proc.stdout
    assert "violations: 0" in proc.stdout and "probe predictions equal" in proc.stdout
