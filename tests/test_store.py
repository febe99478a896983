"""The tracking store a project owns (tasks/tracking/store.py): a copied or moved project never
writes into the original; an emptied, replaced or damaged store is refused by name, at once."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import make_project, run_cli

pytestmark = pytest.mark.system
OPEN_GATE = {"default": {"gates": {"min": {"rouge1": 0.0, "rougeL": 0.0}}}}  # every run promotes


def _run(root: Path, *args: str, timeout: int = 600):
    # the project's own store: MLflow's set_tracking_uri (an earlier test in this worker) leaves
    # MLFLOW_TRACKING_URI in os.environ, which would point the child at another project's store
    return run_cli(*args, cwd=root, env={"S2S_ROOT": str(root), "MLFLOW_TRACKING_URI": ""}, timeout=timeout)


def _fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` (git's own folder too) by content hash, and every folder."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _locations(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT artifact_location FROM experiments").fetchall()
        rows += con.execute("SELECT artifact_uri FROM runs").fetchall()
        rows += con.execute("SELECT source FROM model_versions").fetchall()
        rows += con.execute("SELECT storage_location FROM model_versions").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows if r[0]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny project after one `s2s run` (v1 champion), kept as the original of every copy."""
    root = make_project(tmp_path_factory.mktemp("store") / "original", pipelines=OPEN_GATE)
    proc = _run(root, "run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


@pytest.mark.slow  # make test-slow (CI budget): a whole training in a copy
def test_a_copied_project_runs_in_the_copy_and_leaves_the_original_byte_for_byte(trained, tmp_path):
    before = _fingerprint(trained)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(trained, copy, symlinks=True)
    # a settings change, so the copy trains, logs and registers (a new version) for real
    proc = _run(copy, "run", "--set", "train.max_steps=13")
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 3), out[-3000:]  # registered; promoted or not (exit 3) as the gates say
    assert f"moved or copied from {trained}" in out and "version 2" in out
    assert _fingerprint(trained) == before, "the run in the copy changed the original folder"
    locations = _locations(copy / "mlflow.db")
    assert locations and not [x for x in locations if str(trained) in x], locations
    assert any(str(copy / "mlartifacts") in x for x in locations)
    # what the copy registered is in the copy, and the copy's history holds both versions
    assert list((copy / "mlartifacts").rglob("MLmodel"))
    verify = _run(copy, "history", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow  # make test-slow (CI budget): with it, the module's training fixture leaves make test
def test_a_store_copied_without_its_artifacts_is_refused_with_the_fix(trained, tmp_path):
    """Only mlflow.db came along: the models are still in the original; nothing may point there."""
    copy = make_project(tmp_path / "half")
    shutil.copy2(trained / "mlflow.db", copy / "mlflow.db")
    before = _fingerprint(trained)
    proc = _run(copy, "compare")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "outside this project's artifact folder" in out, out
    assert f"copy {trained / 'mlartifacts'}" in out and "s2s registry relocate" in out
    assert "Traceback" not in out
    shutil.copytree(trained / "mlartifacts", copy / "mlartifacts")
    fixed = _run(copy, "registry", "relocate")
    assert fixed.returncode == 0 and "relocated" in fixed.stdout, fixed.stdout + fixed.stderr
    shown = _run(copy, "compare")
    assert shown.returncode == 0 and "champion" in shown.stdout, shown.stdout + shown.stderr
    assert _fingerprint(trained) == before


@pytest.mark.slow  # make test-slow
def test_an_emptied_replaced_or_damaged_store_is_refused_by_name(trained, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(trained, copy, symlinks=True)
    db = copy / "mlflow.db"
    good = db.read_bytes()
    assert _run(copy, "compare").returncode == 0

    db.write_bytes(b"")  # emptied: a new registry would silently start at "version 1"
    for args in (("compare",), ("history", "--verify"), ("run",)):
        proc = _run(copy, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, (args, out[-2000:])
        assert "is not this project's registry: it is empty" in out and "s2s registry adopt" in out, out[-2000:]
        assert "Traceback" not in out and db.stat().st_size == 0, args  # refused before MLflow wrote to it

    other = make_project(tmp_path / "other")  # another project's store, put in its place
    assert _run(other, "compare").returncode == 0
    shutil.copy2(other / "mlflow.db", db)
    proc = _run(copy, "compare")
    assert proc.returncode == 1 and "another one (replaced)" in proc.stdout + proc.stderr

    for damage, says in ((good[:5000], "SQLite cannot read it"), (b"<html>not a db</html>", "not an SQLite database")):
        db.write_bytes(damage)
        proc = _run(copy, "history")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "is damaged" in out and says in out, out[-2000:]
        assert "Traceback" not in out and "retrying" not in out  # not transient: no retries

    db.write_bytes(good)
    assert _run(copy, "compare").returncode == 0
    db.unlink()  # a new store on purpose: adopt it, and it is the project's from then on
    adopted = _run(copy, "registry", "adopt")
    assert adopted.returncode == 0 and "this project's registry is now" in adopted.stdout
    proc = _run(copy, "compare")
    assert proc.returncode == 0 and "no registered versions yet" in proc.stdout
    shown = _run(copy, "registry", "show")
    assert shown.returncode == 0 and "this project's registry, sound" in shown.stdout
