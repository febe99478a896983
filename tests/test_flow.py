"""The whole pipeline through the real Prefect flow on a tiny slice, checked through MLflow."""

import json
import subprocess
import sys

import pytest
from conftest import make_project, run_cli

from tasks.core.config import load_config
from tasks.core.errors import ValidationFailed
from tasks.tracking import client as tracking
from tasks.tracking import version_tags

pytestmark = pytest.mark.integration

# The tiny model cannot learn the task in 12 steps: a zero gate lets it through so that the
# alias move is exercised; the gate logic itself is covered in test_promote / test_default_run.
OPEN_GATE = {"default": {"gates": {"min": {"rouge1": 0.0, "rougeL": 0.0}, "max": {"gen_len": 100}}}}


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, prefect_server):
    from flows.pipeline import training_pipeline

    root = make_project(tmp_path_factory.mktemp("flow") / "proj", pipelines=OPEN_GATE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S2S_ROOT", str(root))
        summary = training_pipeline()
    return root, summary


def test_flow_registers_a_tagged_version_with_the_champion_alias(flow_run):
    root, summary = flow_run
    cfg = load_config(root=root)
    client = tracking.client(cfg)
    version = client.get_model_version_by_alias("s2s-default", "champion")
    assert str(version.version) == summary.version == "1"
    tags = version.tags
    for key in ("data_version", "git_commit", "params_hash", "pipeline", "prefect_flow_run_id", "registration_key"):
        assert tags.get(key), key
    assert len(tags) <= 8, sorted(tags)  # a version page that reads at a glance
    assert version.run_id and "metric.rougeL" not in tags  # the scores are metrics, not tags
    assert (
        tags["data_version"]
        == summary.data_version
        == json.loads((root / "data" / "processed" / "manifest.json").read_text())["data_version"]
    )
    assert version_tags.metrics_of(cfg, version)["rougeL"] == summary.metrics["rougeL"]
    assert tags["promotion.decision"] == "promoted"
    assert version_tags.facts(version)["promotion.champion_before"] == "none"
    # the Prefect flow run id on the version is a real flow run of the server
    import anyio
    from prefect import get_client

    async def flow_run_name():
        async with get_client() as pc:
            return (await pc.read_flow_run(tags["prefect_flow_run_id"])).state.type.value

    assert anyio.run(flow_run_name) in ("COMPLETED", "RUNNING")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "train_loss"} <= set(run.data.metrics)


def test_summary_reports_every_stage(flow_run):
    _, summary = flow_run
    assert list(summary.stage_seconds) == ["ingest", "validate", "train", "evaluate", "register", "promote"]
    text = summary.format()
    assert "data version" in text and "PROMOTED" in text and "mlflow ui --backend-store-uri sqlite:///" in text


def test_outputs_are_measured_logged_and_flagged(flow_run):
    """The degenerate-output figures: beside the scores (metrics.json keeps the scores alone), in
    MLflow, and a line of the summary; the tiny project runs with the gate off (TINY), so the
    summary says so when its 12-step model's outputs are degenerate."""
    root, summary = flow_run
    reports = root / "reports"
    figures = json.loads((reports / "degenerate.json").read_text())
    assert json.loads((reports / "evaluation.json").read_text())["degenerate"]["figures"] == figures
    assert set(json.loads((reports / "metrics.json").read_text())) == {
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "gen_len",
    }
    logged = tracking.client(load_config(root=root)).get_run(summary.run_id).data.metrics
    assert {k: logged[k] for k in figures} == figures
    line = next(x for x in summary.format().splitlines() if x.startswith("outputs      : "))
    assert line.endswith("(promote.degenerate.refuse is off)") if "DEGENERATE" in line else "empty" in line


def test_champion_loads_and_predicts_in_a_fresh_process(flow_run):
    root, _ = flow_run
    code = (
        "import json, mlflow, sys\n"
        f"mlflow.set_tracking_uri({load_config(root=root).tracking_uri()!r})\n"
        "m = mlflow.pyfunc.load_model('models:/s2s-default@champion')\n"
        "out = m.predict(['Forecasters expect a sunny Monday in Bergen.', 'Lyon council met on Friday.'])\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(s, str) for s in out)


def test_s2s_predict_uses_the_champion(flow_run):
    root, _ = flow_run
    proc = run_cli("predict", "Forecasters expect a sunny Monday in Bergen.", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1  # one output line per input (the tiny model may say "")


def test_invalid_data_stops_at_validation_and_registers_nothing(tmp_path, monkeypatch, prefect_server):
    from flows.pipeline import training_pipeline

    root = make_project(tmp_path / "proj", pipelines=OPEN_GATE)
    rows = ["text,target"] + [f"report {i} on the weather in Lyon,summary {i}" for i in range(100)]
    rows[7] = "a report whose summary is missing,"
    (root / "data" / "bad.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("S2S_ROOT", str(root))
    with pytest.raises(ValidationFailed, match="row 7"):
        training_pipeline(overrides=["ingest.source=data/bad.csv"])
    cfg = load_config(root=root)
    client = tracking.client(cfg)
    assert client.search_model_versions("name='s2s-default'") == []
    assert not (root / "artifacts" / "model").exists()
    runs = client.search_runs([client.get_experiment_by_name("s2s-default").experiment_id])
    assert [r.data.tags.get("failed_stage") for r in runs] == ["validate"]
    assert runs[0].info.status == "FAILED"
    logged = [a.path for a in client.list_artifacts(runs[0].info.run_id, "validation")]
    assert logged == ["validation/data_docs", "validation/validation.json"]  # JSON report + GX Data Docs
    docs = [a.path for a in client.list_artifacts(runs[0].info.run_id, "validation/data_docs")]
    assert "validation/data_docs/index.html" in docs


def test_second_run_scores_the_champion_on_the_same_rows(flow_run, monkeypatch):
    from flows.pipeline import training_pipeline

    root, first = flow_run
    monkeypatch.setenv("S2S_ROOT", str(root))
    second = training_pipeline(overrides=["train.max_steps=4"])
    reports = load_config(root=root, overrides=["train.max_steps=4"]).path("reports")  # runs/default.<hash>/
    evaluation = json.loads((reports / "evaluation.json").read_text())
    assert evaluation["champion"]["version"] == first.version  # re-scored by this run, same rows
    assert set(evaluation["champion"]["metrics"]) == set(evaluation["metrics"])
    cfg = load_config(root=root)
    client = tracking.client(cfg)
    run = client.get_run(second.run_id)
    assert run.data.tags["compared_with_champion"] == first.version
    assert "champion_rougeL" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(second.run_id, "plots")}
    assert {"plots/candidate_vs_champion.png", "plots/score_by_input_length.png", "plots/loss.png"} <= plots
    evaluation_files = {a.path for a in client.list_artifacts(second.run_id, "evaluation")}
    assert {"evaluation/predictions_table.json", "evaluation/generation_config.json"} <= evaluation_files
    version = client.get_model_version("s2s-default", second.version)
    assert len(version.tags) <= 8, sorted(version.tags)
    compared_on = version_tags.facts(version)["promotion.compared_on"]
    assert compared_on.startswith(f"champion v{first.version} re-scored on the same ")
    assert f"same {evaluation['champion']['rows']} test rows" in compared_on
    assert "## Evaluation" in version.description and "data version" in version.description
    # the promotion report: a page on the run, the decision in the version's description, the same as text
    rows = [json.loads(line) for line in (reports / "predictions.jsonl").read_text().splitlines()]
    paired = [r for r in rows if "champion_rougeL" in r]
    assert len(paired) == evaluation["champion"]["rows"] and all("champion_prediction" in r for r in paired)
    page = (reports / "promotion_report.html").read_text()
    decision = json.loads((reports / "promotion.json").read_text())
    for needle in ("<h2>Gates</h2>", f"Against champion v{first.version}", "Where it loses most", "paired interval"):
        assert needle in page, needle
    assert page.count("<tr><td>") >= len(decision["reasons"])  # every reason is a row of the gate table
    assert "promotion/promotion_report.html" in {a.path for a in client.list_artifacts(second.run_id, "promotion")}
    description = version.description
    assert description.count("## Promotion decision") == 1
    assert ("**PROMOTED**" if decision["promoted"] else "**NOT PROMOTED**") in description
    assert f"/runs/{second.run_id}/artifactPath/promotion/promotion_report.html" in description
    proc = run_cli("compare", "--with", "champion", "--set", "train.max_steps=4", cwd=root, env={"S2S_ROOT": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"vs champion v{first.version} on the same {evaluation['champion']['rows']} test rows" in proc.stdout
    assert "paired interval" in proc.stdout and "decision: " in proc.stdout, proc.stdout


def test_registered_model_carries_a_model_card(flow_run):
    import mlflow

    root, summary = flow_run
    cfg = load_config(root=root)
    version = tracking.client(cfg).get_model_version("s2s-default", summary.version)
    card = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{version.source}/README.md", tracking_uri=cfg.tracking_uri()
    )
    text = open(card).read()
    for needle in ("# s2s-default", "## Intended use", "base model: `scratch`", summary.data_version, "| rougeL |"):
        assert needle in text
