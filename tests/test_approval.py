"""Human approval on a real Prefect server: a candidate that passed the gates pauses the flow run
with a form; resuming it through the API with an answer moves (or does not move) the champion,
and the answer lands in the champion history. No answer within the timeout: gates.on_timeout."""

import threading
import time

import pytest

from tasks.core.config import load_config
from tasks.tracking import client as tracking
from tasks.tracking import history

pytestmark = pytest.mark.system


def _resume_when_paused(answer: dict, seen: list, timeout: float = 300) -> threading.Thread:
    """A person, in another thread: waits for a Paused flow run, then resumes it via the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName
    from prefect.flow_runs import resume_flow_run

    def person():
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
                    )
                )
                if paused:
                    seen.append(paused[0])
                    resume_flow_run(paused[0].id, run_input=answer)
                    return
                time.sleep(0.5)

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    return thread


def test_approval_pauses_the_flow_and_the_answer_decides(project, prefect_server):
    from flows.pipeline import training_pipeline

    gates = (
        "promote.gates={min: {rougeL: 0.0}, primary: rougeL, min_delta: null, "
        "approval: required, approval_timeout_s: 600}"
    )
    seen: list = []
    person = _resume_when_paused({"approve": True, "reason": "reviewed the samples", "approver": "alice"}, seen)
    summary = training_pipeline(overrides=[gates])
    person.join(5)
    assert seen, "the flow run never paused"
    assert summary.promoted and summary.alias_now == summary.version, summary.reasons
    assert summary.reasons[-1] == "approved by alice: reviewed the samples"
    cfg = load_config(overrides=[gates])
    name = cfg.register.model_name
    tags = tracking.client(cfg).get_model_version(name, summary.version).tags
    assert tags["promotion.approved_by"] == "alice" and tags["promotion.decision"] == "promoted"
    ops = [(e["op"], e["champion_after"]) for e in history.entries(cfg, name)]
    assert ops == [("await", None), ("approve", summary.version)]
    assert "pending_approval" not in tracking.client(cfg).get_registered_model(name).aliases

    # no answer within the timeout: on_timeout (reject) decides, the champion stays
    short = gates.replace("approval_timeout_s: 600", "approval_timeout_s: 3")
    second = training_pipeline(overrides=[short, "train.seed=7"], force=True)
    assert not second.promoted and second.alias_now == summary.version
    assert "no answer within 3 s: reject (gates.on_timeout)" in second.reasons[-1]
    assert [e["op"] for e in history.entries(cfg, name)][-2:] == ["await", "reject"]
    assert history.verify(cfg, name) == []
