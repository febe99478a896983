"""`dvc repro` runs the same stages from dvc.yaml in a fresh git clone; a re-run does nothing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, deep_merge, venv_bin

pytestmark = pytest.mark.integration


def project_files() -> list[str]:
    """What a clone of the repo holds: tracked files plus new ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvc") / "clone"
    for rel in project_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipes = yaml.safe_load((root / "pipelines.yaml").read_text())
    pipes["default"]["gates"] = {"min": {"rougeL": 0.0}}
    (root / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    # `python` in dvc.yaml must be this environment's interpreter, activated or not
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("S2S_ROOT", None)
    proc = subprocess.run([venv_bin("dvc"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def ran(proc) -> list[str]:
    return [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]


def test_repro_runs_every_stage_then_nothing(clone):
    first = dvc(clone, "repro")
    assert ran(first) == ["ingest", "validate", "train", "evaluate", "register", "promote"]
    metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"}
    registration = json.loads((clone / "reports" / "registration.json").read_text())
    assert registration["model_name"] == "s2s-default" and registration["version"] == "1"
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    manifest = json.loads((clone / "data" / "processed" / "manifest.json").read_text())
    source_dep = next(d for d in lock["stages"]["ingest"]["deps"] if d["path"] == "data/sample/reports.csv")
    assert manifest["data_version"] == source_dep["md5"]  # the model's data version is DVC's hash

    second = dvc(clone, "repro")
    assert ran(second) == []
    assert "Data and pipelines are up to date" in second.stdout


def test_metrics_show_lists_rouge(clone):
    out = dvc(clone, "metrics", "show").stdout
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"):
        assert name in out


def test_an_evaluate_setting_reruns_only_evaluate_and_after(clone):
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["evaluate"]["num_beams"] = 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = dvc(clone, "repro")
    assert ran(proc) == ["evaluate", "register", "promote"]


def test_changed_raw_data_changes_the_version_and_reruns_downstream(clone):
    manifest = clone / "data" / "processed" / "manifest.json"
    before = json.loads(manifest.read_text())["data_version"]
    raw = clone / "data" / "sample" / "reports.csv"
    original = raw.read_bytes()
    try:
        lines = original.decode().splitlines()
        raw.write_text("\n".join([lines[0], *lines[3:], lines[1], lines[2]]) + "\n")  # same rows, new order
        proc = dvc(clone, "repro")
        assert ran(proc)[0] == "ingest" and "train" in ran(proc)
        after = json.loads(manifest.read_text())["data_version"]
        assert after != before
        registration = json.loads((clone / "reports" / "registration.json").read_text())
        from tasks import tracking
        from tasks.config import load_config

        version = tracking.client(load_config(root=clone)).get_model_version("s2s-default", registration["version"])
        assert version.tags["data_version"] == after  # the new model version carries the new data version
    finally:
        raw.write_bytes(original)


def test_outputs_round_trip_through_a_local_remote(clone, tmp_path):
    dvc(clone, "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    dvc(clone, "repro")
    dvc(clone, "push")
    shutil.rmtree(clone / "data" / "processed")
    shutil.rmtree(clone / "artifacts" / "model")
    shutil.rmtree(clone / ".dvc" / "cache")
    dvc(clone, "pull")
    assert (clone / "artifacts" / "model" / "model.safetensors").is_file()
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
