"""`dvc repro` runs the same stages from dvc.yaml in a fresh git clone; a re-run does nothing."""

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import dvc_env, make_clone, venv_bin

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("flowed_clone")]  # one worker: one shared flow run


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return make_clone(tmp_path_factory.mktemp("dvc") / "clone")


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [venv_bin("dvc"), *args], cwd=root, env=dvc_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def ran(proc) -> list[str]:
    return [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def reproduced(clone):
    """The clone's first `dvc repro` and a second one right after, before any test changes the
    clone (every test here takes this fixture, so the order the tests run in does not matter).
    Its setup takes about a minute (50-64 s here): every stage in a fresh clone, then a check that
    nothing re-runs. It is shared by the module's tests, and it is the only proof that a clone's
    `dvc repro` equals the flow."""
    return dvc(clone, "repro"), dvc(clone, "repro")


def test_repro_runs_every_stage_reproduces_the_flow_then_does_nothing(clone, flowed_clone, reproduced):
    first, second = reproduced
    assert ran(first) == ["guard", "ingest", "validate", "train", "evaluate", "register", "promote"]
    metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"}
    assert metrics == flowed_clone[1].metrics  # a fresh clone's `dvc repro` = the Prefect flow, to the digit
    registration = json.loads((clone / "reports" / "registration.json").read_text())
    assert registration["model_name"] == "s2s-default" and registration["version"] == "1"
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    manifest = json.loads((clone / "data" / "processed" / "manifest.json").read_text())
    source_dep = next(d for d in lock["stages"]["ingest"]["deps"] if d["path"] == "data/sample/reports.csv")
    assert manifest["data_version"] == source_dep["md5"]  # the model's data version is DVC's hash

    assert ran(second) == []
    assert "Data and pipelines are up to date" in second.stdout


def test_metrics_show_lists_rouge(clone, reproduced):
    out = dvc(clone, "metrics", "show").stdout
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"):
        assert name in out


def test_an_evaluate_setting_reruns_only_evaluate_and_after(clone, reproduced):
    dvc(clone, "repro")  # current first, whatever ran before
    original = (clone / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["num_beams"] = 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = dvc(clone, "repro")
    finally:
        (clone / "params.yaml").write_text(original)
    assert ran(proc) == ["evaluate", "register", "promote"]


@pytest.mark.slow  # make test-slow (CI budget): dvc push / pull through a local remote
def test_outputs_round_trip_through_a_local_remote(clone, tmp_path, reproduced):
    dvc(clone, "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    dvc(clone, "repro")
    dvc(clone, "push")
    shutil.rmtree(clone / "data" / "processed")
    shutil.rmtree(clone / "artifacts" / "model")
    shutil.rmtree(clone / ".dvc" / "cache")
    dvc(clone, "pull")
    assert (clone / "artifacts" / "model" / "model.safetensors").is_file()
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout


@pytest.mark.slow  # make test-slow: make test walks the same path through docs/tutorials/your-data.md
def test_exp_run_metrics_diff_and_plots(clone, reproduced):
    """What a DVC user does: commit a baseline, try a setting with `dvc exp run -S`, compare."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    dvc(clone, "repro")
    subprocess.run([*git, "add", "dvc.lock", "reports"], cwd=clone, check=True)  # what .gitignore lets in
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=clone, check=True)
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=clone, capture_output=True, text=True).stdout.split()
    assert {"reports/metrics.json", "reports/degenerate.json", "reports/plots/scores.csv"} <= set(tracked), tracked
    cfg = load_config(root=clone)
    before = tracking.client(cfg).search_model_versions(f"name='{cfg.register.model_name}'")
    exp = dvc(clone, "exp", "run", "-S", "train.lr=0.01")
    # the team's registry is left alone (register.in_experiments: false), and the reports say why
    after = tracking.client(cfg).search_model_versions(f"name='{cfg.register.model_name}'")
    assert len(after) == len(before), [v.version for v in after]
    promotion = json.loads((clone / "reports" / "promotion.json").read_text())
    assert not promotion["promoted"] and "a DVC experiment" in promotion["reasons"][0], promotion
    assert ran(exp)[:1] == ["train"] and "ingest" not in ran(exp)  # only train and what follows
    assert yaml.safe_load((clone / "params.yaml").read_text())["train"]["lr"] == 0.01
    diff = json.loads(dvc(clone, "metrics", "diff", "--all", "--json").stdout)["reports/metrics.json"]
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"} <= set(diff)
    assert all(set(v) >= {"old", "new"} for v in diff.values())
    assert any(v["old"] != v["new"] for v in diff.values())  # another learning rate, another model
    # `dvc exp show`: figures for the baseline commit and the experiment alike, no "!" (not found)
    rows = list(csv.DictReader(io.StringIO(dvc(clone, "exp", "show", "--csv").stdout)))
    rouge = next(k for k in rows[0] if k.split(":")[-1] == "rougeL")
    shown_rows = [r for r in rows if r.get("typ") != "workspace"]
    assert len(shown_rows) >= 2 and all(r[rouge] not in ("", "!") for r in shown_rows), rows
    plots = json.loads(dvc(clone, "plots", "show", "--json").stdout)["data"]
    assert any("train.csv" in key for key in plots) and any("eval.csv" in key for key in plots)
    assert any("scores.csv" in key for key in plots)
    shown = json.dumps(plots)
    assert "loss" in shown and "rougeL" in shown


@pytest.mark.slow  # make test-slow
def test_changed_raw_data_changes_the_version_and_reruns_downstream(clone, reproduced):
    dvc(clone, "repro")  # current first, whatever ran before
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
        from tasks.core.config import load_config
        from tasks.tracking import client as tracking

        version = tracking.client(load_config(root=clone)).get_model_version("s2s-default", registration["version"])
        assert version.tags["data_version"] == after  # the new model version carries the new data version
    finally:
        raw.write_bytes(original)
