"""Human approval on a real Prefect server: a candidate that passed the gates pauses the flow run
with a form; resuming it through the API with an answer moves (or does not move) the champion,
and the answer lands in the champion history. No answer within the timeout: gates.on_timeout."""

import logging
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, venv_bin

from tasks.core.config import load_config
from tasks.tracking import client as tracking
from tasks.tracking import history, version_tags

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
    tags = version_tags.facts(tracking.client(cfg).get_model_version(name, summary.version))
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
    assert history.verify(cfg, name)[0] == []


# -- `s2s approve` finds the waiting version itself and never answers for another -------------

OPEN_APPROVAL = {"min": {"rougeL": 0.0}, "primary": "rougeL", "min_delta": None, "approval": "required"}


class _Lines(logging.Handler):
    """The stage lines (tasks.progress) as the console shows them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _aliases(cfg, name):
    return {a: str(v) for a, v in tracking.client(cfg).get_registered_model(name).aliases.items()}


def _shell(command: str, cwd) -> subprocess.CompletedProcess:
    """``command`` exactly as a person pastes it into a shell (s2s on the PATH)."""
    env = {**os.environ, "PATH": f"{Path(venv_bin('s2s')).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # make test-slow
def test_approve_finds_the_waiting_version_across_pipelines(project, prefect_server):
    """The issue's case: pipeline `other` pauses on its v1 while `default` has a champion v1 and a
    v2 of its own waiting. `s2s approve` with both waiting refuses and lists them; `--list` shows
    both; the console hint's reject command, pasted verbatim, rejects `other` v1 and resumes its
    flow run; default's aliases never move; then a bare `s2s approve` answers the one left."""
    from test_promote import evaluated, new_version

    from flows.pipeline import training_pipeline
    from tasks.core import logs
    from tasks.core.results import RegisterResult
    from tasks.promote import promote, promote_version

    pipes = yaml.safe_load((project / "pipelines.yaml").read_text())
    pipes["other"] = {"model_name": "s2s-other", "gates": {**OPEN_APPROVAL, "approval_timeout_s": 300}}
    (project / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))

    default = load_config()
    _, d1 = new_version(default, 0.9)
    assert promote_version(default, d1).promoted  # s2s-default v1: champion, decided, not waiting
    on_hold = load_config(overrides=["promote.gates={primary: rougeL, min_delta: 0.0, approval: required}"])
    run2, d2 = new_version(default, 0.95)
    assert promote(on_hold, RegisterResult("s2s-default", d2, "", run2), evaluated(0.95)).awaiting
    default_before = _aliases(default, "s2s-default")
    assert default_before == {"champion": d1, "pending_approval": d2}
    default_history = len(history.entries(default, "s2s-default"))

    lines = _Lines()
    progress = logging.getLogger(logs.PROGRESS)
    level = progress.level
    progress.setLevel(logging.INFO)  # unconfigured in tests: the root's WARNING would drop them
    progress.addHandler(lines)
    seen: dict = {}

    def person():
        """Waits for the paused flow run, then does what a person at a terminal does."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName
        from prefect.flow_runs import resume_flow_run

        flt = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"])))
        deadline = time.monotonic() + 600
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline and not (paused := client.read_flow_runs(flow_run_filter=flt)):
                time.sleep(0.5)
        env = {"S2S_ROOT": str(project)}
        try:
            seen["bare"] = run_cli("approve", "--reject", "--reason", "no", cwd=project, env=env)
            seen["list"] = run_cli("approve", "--list", cwd=project, env=env)
            seen["not_waiting"] = run_cli("approve", d1, "--pipeline", "default", "--reject", cwd=project, env=env)
            hint = next(line for line in lines.lines if "waits for a person's approval" in line)
            seen["hint"] = hint
            seen["reject"] = _shell(re.search(r"reject: `([^`]+)`", hint).group(1), project)
        except Exception as exc:  # the test fails on what is missing; the flow must not wait out its timeout
            seen["error"] = repr(exc)
            resume_flow_run(paused[0].id, run_input={"approve": False, "reason": "test broke", "approver": "test"})

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    try:
        summary = training_pipeline(pipeline="other")
    finally:
        progress.removeHandler(lines)
        progress.setLevel(level)
    thread.join(60)
    assert "reject" in seen, f"the flow run never paused or the person never answered: {seen}, {lines.lines}"

    # with two pipelines waiting, a bare answer goes nowhere and names both, with their commands
    bare = seen["bare"]
    assert bare.returncode == 2, bare.stderr
    assert "2 versions await approval: name one with its --pipeline (nothing changed)" in bare.stderr
    assert "pipeline 'other': s2s-other v1 since" in bare.stderr and "s2s approve 1 --pipeline other" in bare.stderr
    assert f"pipeline 'default': s2s-default v{d2} since" in bare.stderr

    listed = seen["list"]
    assert listed.returncode == 0, listed.stderr
    assert "2 version(s) await approval:" in listed.stdout
    other_block = next(b for b in listed.stdout.split("\n") if b.startswith("other: s2s-other v1"))
    assert "waiting since 20" in other_block and "champion none" in other_block
    assert f"default: s2s-default v{d2}  waiting since 20" in listed.stdout and f"champion v{d1}" in listed.stdout
    assert "is paused until 20" in listed.stdout  # other's flow run, read back from Prefect
    assert "no flow run waits: only `s2s approve` answers it" in listed.stdout  # default's, put on hold directly
    assert "gate     : rougeL" in listed.stdout and "metrics  : " in listed.stdout
    assert "reject   : s2s approve 1 --pipeline other --reject" in listed.stdout
    assert "waits    : passed the gates: awaiting approval of pipeline 'other' by a person" in listed.stdout
    assert "unanswered by 20" in listed.stdout and ": reject (gates.on_timeout)" in listed.stdout

    # a version that is not waiting: exit 2, no alias moved, no history entry
    refused = seen["not_waiting"]
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"v{d1} is not awaiting approval" in refused.stderr and "promoted; holds champion" in refused.stderr
    assert "PROMOTED" not in refused.stdout

    # the hint: names the model, the pipeline, what the champion does; its command works verbatim
    hint = seen["hint"]
    assert "s2s-other v1 of pipeline 'other' passed the gates and waits for a person's approval" in hint
    assert "champion stays none meanwhile" in hint
    assert 'approve: `s2s approve 1 --pipeline other --reason "..."`' in hint
    rejected = seen["reject"]
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert "pipeline 'other': s2s-other v1: REJECTED as asked" in rejected.stdout
    assert "was resumed with this answer" in rejected.stdout

    # the stage line said what waited on whom while it waited
    stage = next(line for line in lines.lines if line.startswith("[6/6] promote: done"))
    assert "AWAITING APPROVAL: v1 passed the gates and waits for a person" in stage, stage
    assert "failed: none" not in stage

    # the flow resumed with that answer: other v1 rejected, no champion; default untouched
    assert not summary.promoted and summary.alias_now is None, summary.reasons
    assert summary.reasons[-1].startswith("rejected by ") and summary.reasons[-1].endswith(": ...")
    other = load_config("other")
    assert _aliases(other, "s2s-other") == {"challenger": "1"}
    assert tracking.client(other).get_model_version("s2s-other", "1").tags["promotion.decision"] == "rejected"
    assert _aliases(default, "s2s-default") == default_before
    assert len(history.entries(default, "s2s-default")) == default_history
    assert [e["op"] for e in history.entries(other, "s2s-other")] == ["await", "reject"]

    # one left waiting: a bare `s2s approve` finds it and answers it
    env = {"S2S_ROOT": str(project)}
    last = run_cli("approve", "--reason", "read the samples", cwd=project, env=env)
    assert last.returncode == 0, last.stdout + last.stderr
    assert f"pipeline 'default': s2s-default v{d2}: PROMOTED" in last.stdout
    assert "meanwhile" not in last.stdout  # the waiting is over: its reason is not carried on
    assert _aliases(default, "s2s-default") == {"champion": d2, "previous_champion": d1}
    shown = run_cli("history", "--pipeline", "default", cwd=project, env=env).stdout
    assert f"await    v{d2} awaits a person's approval (champion stays v{d1} meanwhile)" in shown
    assert f"approve  champion v{d1} -> v{d2}" in shown
    assert "v- -> v-" not in shown
    none_left = run_cli("approve", "--list", cwd=project, env=env)
    assert none_left.returncode == 0 and "nothing awaits approval (pipelines: default," in none_left.stdout


def test_approve_of_a_version_not_waiting_is_an_error_that_changes_nothing(project):
    """`s2s approve N [--reject]` of a promoted, a rejected or an unknown version: exit 2, saying
    what became of it; no alias moves, no tag changes, no history entry."""
    from test_promote import evaluated, new_version

    from tasks.core.errors import ConfigError
    from tasks.core.results import RegisterResult
    from tasks.promote import approve, promote, promote_version

    cfg = load_config(overrides=["promote.gates={primary: rougeL, min_delta: 0.0, confidence: null}"])
    name = cfg.register.model_name
    _, v1 = new_version(cfg, 0.9)
    promote_version(cfg, v1)
    run2, v2 = new_version(cfg, 0.5)
    assert not promote(cfg, RegisterResult(name, v2, "", run2), evaluated(0.5)).promoted
    before = (_aliases(cfg, name), history.entries(cfg, name), tracking.client(cfg).get_model_version(name, v1).tags)
    env = {"S2S_ROOT": str(project)}

    for args, says in [
        ((v1, "--reject", "--reason", "x"), f"s2s-default v{v1}: promoted; holds champion"),
        (
            (v2, "--pipeline", "default"),
            f"in pipeline(s) default: nothing changed\n  s2s-default v{v2}: rejected; holds challenger",
        ),
        (("9",), "v9 is not awaiting approval in pipeline(s) default, summarization, translation"),
        ((), "nothing awaits approval in pipeline(s) default, summarization, translation: nothing changed"),
    ]:
        proc = run_cli("approve", *args, cwd=project, env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert says in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "PROMOTED" not in proc.stdout, args
    with pytest.raises(ConfigError, match=rf"v{v1} \(pipeline 'default'\) is not awaiting approval \(promoted"):
        approve(cfg, v1, False, "x", expect_waiting=True)
    after = (_aliases(cfg, name), history.entries(cfg, name), tracking.client(cfg).get_model_version(name, v1).tags)
    assert after == before
    listed = run_cli("approve", "--list", cwd=project, env=env)
    assert listed.returncode == 0 and "nothing awaits approval" in listed.stdout
