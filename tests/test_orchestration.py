"""The Prefect flow with DVC as the one caching authority: a no-change re-run computes nothing,
a changed setting re-runs only its stage and what follows, a cached result is not trusted when the
tracking store no longer holds what it names, the retrain flow skips when data and settings are the
champion's. (`dvc repro` reproducing the flow's metrics from a fresh clone: tests/test_dvc.py.)"""

import re
import subprocess

import pytest
import yaml
from conftest import dvc_env, venv_bin

from tasks.core.config import load_config
from tasks.tracking import client as tracking
from tasks.tracking import version_tags

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("flowed_clone")]  # one worker: one shared flow run
STAGES = ["ingest", "validate", "train", "evaluate", "register", "promote"]


@pytest.fixture(scope="module")
def clone(flowed_clone):
    root, _ = flowed_clone
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S2S_ROOT", str(root))
        yield root


def versions(root) -> list[str]:
    cfg = load_config(root=root)
    return [str(v.version) for v in tracking.client(cfg).search_model_versions("name='s2s-default'")]


def test_first_run_runs_every_stage_and_records_them_in_dvc_lock(clone, flowed_clone):
    _, summary = flowed_clone
    assert list(summary.stage_seconds) == STAGES and summary.skipped == []
    assert set(yaml.safe_load((clone / "dvc.lock").read_text())["stages"]) == {"guard", *STAGES}
    proc = subprocess.run([venv_bin("dvc"), "repro"], cwd=clone, env=dvc_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "Running stage" not in proc.stdout  # dvc agrees: nothing to do


def test_each_run_publishes_its_summary_as_a_prefect_artifact(clone, flowed_clone):
    """The run page's Artifacts tab shows the decision and the metrics table, read back from the
    Prefect API (the same server the flow ran on)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    _, summary = flowed_clone
    cfg = load_config(root=clone)
    version = tracking.client(cfg).get_model_version(cfg.register.model_name, summary.version)
    flow_run = UUID(version.tags["prefect_flow_run_id"])  # other tests' runs publish under this key too
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["default-run"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])
            )
        )
    assert found, "no artifact with key default-run for this flow run"
    text = found[-1].data
    assert found[-1].type == "markdown" and found[-1].flow_run_id is not None
    assert f"v{summary.version}: **PROMOTED**" in text
    assert f"| {summary.primary} (primary) | {summary.metrics[summary.primary]:.4f} |" in text
    assert summary.data_version in text


def test_a_second_run_with_nothing_changed_computes_nothing(clone):
    from flows.pipeline import training_pipeline

    before = versions(clone)
    summary = training_pipeline()
    assert summary.skipped == STAGES and summary.stage_seconds == {}
    assert versions(clone) == before  # no retraining, no new model version
    assert "nothing changed since dvc.lock" in summary.format()


def test_a_changed_evaluate_setting_reruns_evaluate_and_after(clone):
    from flows.pipeline import training_pipeline

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["evaluate"]["num_beams"] = 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = training_pipeline()
    assert summary.skipped == ["ingest", "validate", "train"]
    assert list(summary.stage_seconds) == ["evaluate", "register", "promote"]


def test_overrides_and_force_bypass_the_cache_without_touching_dvc_lock(clone):
    from flows.pipeline import training_pipeline

    lock = (clone / "dvc.lock").read_text()
    summary = training_pipeline(overrides=["evaluate.max_samples=8"])
    assert summary.skipped == [] and (clone / "dvc.lock").read_text() == lock


def test_another_tracking_store_is_not_covered_up_by_the_cache(clone, tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI points at another store (or the store was lost): dvc.lock still says
    every stage is current, but the training run, the version and the alias are not in that
    store, so those stages run again, and the summary says what the registry holds."""
    from flows.pipeline import training_pipeline

    training_pipeline()  # everything current
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    summary = training_pipeline()
    assert summary.skipped == ["ingest", "validate"]
    assert list(summary.stage_seconds) == ["train", "evaluate", "register", "promote"]
    assert summary.version == "1" and summary.alias_now == "1" and summary.holds
    assert "(read back: 'champion' = v1)" in summary.format()


def outputs(root) -> dict[str, bytes]:
    """The DVC outputs a skipped retrain must leave alone (the processed splits)."""
    return {p.name: p.read_bytes() for p in sorted((root / "data" / "processed").iterdir()) if p.is_file()}


def dvc_status(root) -> str:
    return subprocess.run(
        [venv_bin("dvc"), "status", "--json"], cwd=root, env=dvc_env(), capture_output=True, text=True
    ).stdout


def skipped_state(state) -> str:
    """A skipped retrain ends Completed, its message says why, and its flow run is tagged."""
    from prefect import get_client

    assert state.is_completed() and state.message.startswith("skipped: "), state
    with get_client(sync_client=True) as client:
        assert "skipped" in client.read_flow_run(state.state_details.flow_run_id).tags
    return state.message


def test_retrain_skips_unchanged_data_and_runs_on_new_data(clone):
    from flows.pipeline import retrain
    from tasks.promote import promote_version

    # an earlier test's run with --set overrides may have been promoted (its scores decide): the
    # champion is put back on the newest version of params.yaml's settings, so the champion has
    # this data and these settings whatever ran before
    cfg = load_config(root=clone)
    c = tracking.client(cfg)
    ours = max(
        (
            v
            for v in c.search_model_versions(f"name='{cfg.register.model_name}'")
            if v.tags.get("params_hash") == cfg.params_hash()
        ),
        key=lambda v: int(v.version),
    )
    if str(c.get_model_version_by_alias(cfg.register.model_name, cfg.promote.alias).version) != str(ours.version):
        promote_version(cfg, str(ours.version), force=True, reason="test precondition: params.yaml's champion")
    before, files, status = versions(clone), outputs(clone), dvc_status(clone)
    message = skipped_state(retrain(return_state=True))  # the champion saw this data and settings
    assert "already tried" in message and "champion now" in message and versions(clone) == before
    raw = clone / "data" / "sample" / "reports.csv"
    original = raw.read_text()
    lines = original.splitlines()
    raw.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")  # new data version, same data
    message = skipped_state(retrain(return_state=True))  # no drift: skipped, saying why
    assert message.startswith("skipped: no drift against champion v") and "settings unchanged" in message
    assert versions(clone) == before
    assert outputs(clone) == files  # the drift check read the data in memory: no DVC output rewritten
    raw.write_text(original)
    assert dvc_status(clone) == status
    raw.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")
    import pandas as pd

    frame = pd.read_csv(raw)
    frame["text"] = frame["text"].str.slice(0, 90)  # inputs cut to their first 90 characters
    frame.to_csv(raw, index=False)
    try:
        summary = retrain()
    finally:
        raw.write_text(original)
    assert summary is not None and summary.skipped == [] and len(versions(clone)) == len(before) + 1
    cfg = load_config(root=clone)
    tags = version_tags.facts(tracking.client(cfg).get_model_version(cfg.register.model_name, summary.version))
    assert float(tags["drift.input_length_psi"]) >= cfg.drift.length_psi, tags


def test_a_settings_change_is_retrained_once_and_never_repeated(clone):
    """params.yaml edited, the data as the champion saw it: the retrain trains (drift does not
    decide a settings change), and saying why; then the same data and settings again are skipped,
    naming that version and how it ended, with nothing re-announced."""
    from flows.pipeline import retrain

    params_file = clone / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    steps = params["train"]["max_steps"]
    params["train"]["max_steps"] = 1
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    before = versions(clone)
    try:
        summary = retrain()
        assert summary is not None and summary.version not in before, summary
        assert len(versions(clone)) == len(before) + 1
        message = skipped_state(retrain(return_state=True))
        outcome = "promoted, champion now" if summary.promoted else "rejected"
        assert f"already tried (v{summary.version}, {outcome})" in message, message
        assert len(versions(clone)) == len(before) + 1
    finally:
        params_file.write_text(original)
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        published = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["default-retrain"]))
        )
    why = [a.data for a in published if f"v{summary.version}" in (a.data or "") and "Why it trained" in a.data]
    assert why and f"train.max_steps: {steps} -> 1" in why[-1], [a.data[:300] for a in published]


def test_promotion_flow(clone):
    from flows.pipeline import promotion

    cfg = load_config(root=clone)
    client = tracking.client(cfg)
    held = client.get_model_version_by_alias("s2s-default", "champion")
    champion = str(held.version)
    others = [v for v in versions(clone) if v != champion]
    if not others:  # run on its own: a second version of the champion's model, registered for real
        others = [str(client.create_model_version("s2s-default", held.source, held.run_id).version)]
    other = others[0]
    result = promotion(version=other, force=True, reason="test")
    assert result["promoted"] and str(client.get_model_version_by_alias("s2s-default", "champion").version) == other


@pytest.mark.slow  # make test keeps the browser check of the same views (tests/test_mlflow_ui.py)
def test_lineage_in_mlflows_own_views(clone, flowed_clone, tmp_path):
    """The run's datasets carry the data version as digest and the DVC path as source; the logged
    model holds the evaluation metrics linked to the test dataset; the experiment opens in
    model-training mode. Then the same, as headless Chromium renders `mlflow ui`."""
    import json

    from test_mlflow_ui import CHROMIUM, ui_dom

    from tasks.tracking import lineage

    _, summary = flowed_clone
    cfg = load_config(root=clone)
    c = tracking.client(cfg)
    exp = c.get_experiment_by_name(cfg.experiment_name())
    assert exp.tags[lineage.KIND_TAG] == "custom_model_development" and exp.tags[lineage.PRIMARY_TAG] == "rougeL"
    run = c.get_run(summary.run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert {d.dataset.digest for d in inputs.values()} == {summary.data_version}
    assert json.loads(inputs["test"].dataset.source)["path"] == cfg.ingest.source
    # later tests re-register from the same run: the first model of the run is this summary's
    models = [m for m in c.search_logged_models([exp.experiment_id]) if m.source_run_id == summary.run_id]
    model = min(models, key=lambda m: m.creation_timestamp)
    linked = {m.key: (m.value, m.dataset_name, m.dataset_digest) for m in model.metrics}
    assert linked["rougeL"] == (summary.metrics["rougeL"], "test", summary.data_version)
    if CHROMIUM is None:
        return
    model_page, run_page = ui_dom(
        cfg.tracking_uri(),
        [
            f"experiments/{exp.experiment_id}/models/{model.model_id}",
            f"experiments/{exp.experiment_id}/runs/{run.info.run_id}",
        ],
        tmp_path,
    )
    text = re.sub(r"<[^>]+>", " ", model_page)
    assert "rougeL" in text and "test" in text, text[:3000]
    assert summary.data_version[:8] in run_page or "train" in re.sub(r"<[^>]+>", " ", run_page)


def test_a_failed_run_leaves_no_earlier_decision_that_reads_as_its_own(clone):
    """Rejected data after a completed run: the evaluation, registration and promotion results of
    the run before are gone (the registry and `s2s history` keep what was decided); the training
    result stays (its stage is not what failed). Last in the module: it changes the shared clone."""
    from flows.pipeline import training_pipeline
    from tasks.core.errors import ValidationFailed
    from tasks.core.results import DECISIONS, TrainResult

    reports = clone / "reports"
    assert all((reports / r.FILE).is_file() for r in DECISIONS)
    rows = ["text,target"] + [f"report {i} on the weather in Lyon,summary {i}" for i in range(100)]
    rows[7] = "a report whose summary is missing,"
    raw = clone / "data" / "sample" / "reports.csv"  # the default source: the run writes reports/
    original = raw.read_bytes()
    raw.write_text("\n".join(rows) + "\n")
    try:
        with pytest.raises(ValidationFailed):
            training_pipeline()
    finally:
        raw.write_bytes(original)
    assert [r.FILE for r in DECISIONS if (reports / r.FILE).exists()] == []
    assert (reports / TrainResult.FILE).is_file()
