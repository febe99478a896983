"""Promotion: the pure decision as a table of cases, and alias moves on a real MLflow registry,
including a champion moved by hand, manual promotion, rollback, and promotions racing."""

import multiprocessing as mp

import pytest

from tasks.core.config import Gates, load_config
from tasks.core.errors import ConfigError, TrackingError
from tasks.core.results import EvaluateResult, RegisterResult
from tasks.promote import compare, decide, promote, promote_version, rollback
from tasks.tracking import client as tracking
from tasks.tracking import version_tags

pytestmark = pytest.mark.integration

# point-estimate gates (confidence null); the certified ones: tests/test_certified.py
ABS = Gates(min={"rougeL": 0.5, "rouge1": 0.5}, max={"gen_len": 30}, min_delta=None, confidence=None)
VS = Gates(primary="rougeL", min_delta=0.01, max_regression={"rouge1": 0.02}, confidence=None)
GOOD = {"rougeL": 0.8, "rouge1": 0.9, "gen_len": 12}


@pytest.mark.parametrize(
    "candidate, champion, gates, promoted, failed",
    [
        # absolute bounds
        (GOOD, None, ABS, True, ()),
        ({"rougeL": 0.5, "rouge1": 0.5, "gen_len": 30}, None, ABS, True, ()),  # bounds are inclusive
        ({"rougeL": 0.49, "rouge1": 0.9, "gen_len": 12}, None, ABS, False, ("min.rougeL",)),
        ({"rougeL": 0.8, "rouge1": 0.9, "gen_len": 31}, None, ABS, False, ("max.gen_len",)),
        ({"rouge1": 0.9, "gen_len": 12}, None, ABS, False, ("min.rougeL",)),  # missing metric fails
        # against the champion
        (GOOD, None, VS, True, ()),  # no champion yet
        ({"rougeL": 0.82, "rouge1": 0.9}, {"rougeL": 0.80, "rouge1": 0.9}, VS, True, ()),
        ({"rougeL": 0.80, "rouge1": 0.9}, {"rougeL": 0.80, "rouge1": 0.9}, VS, False, ("beat_champion",)),  # tie
        (
            {"rougeL": 0.80, "rouge1": 0.9},
            {"rougeL": 0.80, "rouge1": 0.9},
            Gates(primary="rougeL", min_delta=0.0, confidence=None),
            True,
            (),
        ),  # a tie passes at min_delta 0
        ({"rougeL": 0.85, "rouge1": 0.85}, {"rougeL": 0.80, "rouge1": 0.90}, VS, False, ("regression.rouge1",)),
        ({"rougeL": 0.85, "rouge1": 0.89}, {"rougeL": 0.80, "rouge1": 0.90}, VS, True, ()),  # within tolerance
        ({"rouge1": 0.95}, {"rougeL": 0.80, "rouge1": 0.90}, VS, False, ("beat_champion",)),  # candidate lacks primary
        ({"rougeL": 0.9, "rouge1": 0.95}, {"rouge1": 0.90}, VS, True, ()),  # champion lacks primary: skipped
        (
            {"rougeL": 0.70, "rouge1": 0.80},
            {"rougeL": 0.80, "rouge1": 0.90},
            VS,
            False,
            ("beat_champion", "regression.rouge1"),
        ),  # every failed gate is named
    ],
)
def test_decide(candidate, champion, gates, promoted, failed):
    d = decide(candidate, champion, gates)
    assert d.promote is promoted and d.failed == failed, d.reasons


def test_reasons_carry_the_numbers():
    d = decide({"rougeL": 0.805, "rouge1": 0.85}, {"rougeL": 0.80, "rouge1": 0.90}, VS)
    assert "rougeL 0.8050 vs champion 0.8000: +0.0050 < min_delta 0.01" in d.reasons
    assert "rouge1 0.8500 vs champion 0.9000: drop 0.0500 > tolerance 0.02" in d.reasons


def test_no_gates_says_so():
    d = decide({"rougeL": 0.1}, None, Gates(min_delta=None))
    assert d.promote and d.reasons == ("no gates configured: promoted unconditionally",)


# -- against a real registry ------------------------------------------------------------------


def new_version(cfg, rougeL, rouge1=None):
    """A registered version whose run's metrics are ``rougeL`` / ``rouge1`` (no weights needed)."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    client = tracking.client(cfg)
    name = cfg.register.model_name
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass
    run = client.create_run(tracking.experiment_id(cfg, client))
    scores = {"rougeL": rougeL, "rouge1": rouge1 if rouge1 is not None else rougeL, "rouge2": rougeL, "gen_len": 18.0}
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in scores.items()])
    v = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return run.info.run_id, str(v.version)


def evaluated(rougeL, rouge1=None, champion=None):
    return EvaluateResult(
        "test", 10, {"rougeL": rougeL, "rouge1": rouge1 if rouge1 is not None else rougeL}, "", champion=champion
    )


def champion_of(cfg, alias="champion"):
    return str(tracking.client(cfg).get_model_version_by_alias(cfg.register.model_name, alias).version)


@pytest.fixture
def cfg(project):
    return load_config(
        overrides=[
            "promote.gates={min: {rougeL: 0.5}, primary: rougeL, min_delta: 0.0, max_regression: {rouge1: 0.02}}"
        ]
    )


def test_promote_moves_champion_and_keeps_the_previous_one(cfg):
    name = cfg.register.model_name
    run1, v1 = new_version(cfg, 0.7)
    assert promote(cfg, RegisterResult(name, v1, "", run1), evaluated(0.7)).promoted
    assert champion_of(cfg) == v1

    run2, v2 = new_version(cfg, 0.2)
    r2 = promote(
        cfg,
        RegisterResult(name, v2, "", run2),
        evaluated(0.2, champion={"version": v1, "metrics": {"rougeL": 0.7, "rouge1": 0.7}}),
    )
    assert not r2.promoted and r2.champion == v1 and champion_of(cfg) == v1
    assert champion_of(cfg, "challenger") == v2
    tags = version_tags.facts(tracking.client(cfg).get_model_version(name, v2))
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.failed_gates"] == "min.rougeL,beat_champion,regression.rouge1"
    assert "rougeL 0.2000 < 0.5 (min)" in tags["promotion.reasons"]
    assert tags["promotion.compared_on"] == f"champion v{v1} re-scored on the same 10 test rows"

    run3, v3 = new_version(cfg, 0.8)
    promote(
        cfg,
        RegisterResult(name, v3, "", run3),
        evaluated(0.8, champion={"version": v1, "metrics": {"rougeL": 0.7, "rouge1": 0.7}}),
    )
    assert champion_of(cfg) == v3 and champion_of(cfg, "previous_champion") == v1


def test_a_champion_moved_by_hand_is_respected(cfg):
    """Someone moves the alias in the MLflow UI while a run evaluates against the old champion."""
    name = cfg.register.model_name
    _, v1 = new_version(cfg, 0.6)
    _, v2 = new_version(cfg, 0.9)
    client = tracking.client(cfg)
    client.set_registered_model_alias(name, "champion", v1)
    run3, v3 = new_version(cfg, 0.8)
    client.set_registered_model_alias(name, "champion", v2)  # the hand move, after v3 was evaluated against v1
    result = promote(
        cfg,
        RegisterResult(name, v3, "", run3),
        evaluated(0.8, champion={"version": v1, "metrics": {"rougeL": 0.6, "rouge1": 0.6}}),
    )
    assert not result.promoted and champion_of(cfg) == v2
    tags = version_tags.facts(client.get_model_version(name, v3))
    assert tags["promotion.champion_before"] == v2
    assert "changed during this run" in tags["promotion.compared_on"]


def test_manual_promotion_goes_through_the_gates_unless_forced(cfg):
    name = cfg.register.model_name
    _, v1 = new_version(cfg, 0.8)
    _, v2 = new_version(cfg, 0.7)
    assert promote_version(cfg, v1).promoted and champion_of(cfg) == v1
    refused = promote_version(cfg, v2)
    assert not refused.promoted and "beat_champion" in refused.failed and champion_of(cfg) == v1
    forced = promote_version(cfg, v2, force=True, reason="hotfix for a bad champion")
    assert forced.promoted and champion_of(cfg) == v2
    tags = version_tags.facts(tracking.client(cfg).get_model_version(name, v2))
    assert tags["promotion.forced"] == "true" and tags["promotion.forced_reason"] == "hotfix for a bad champion"
    again = promote_version(cfg, v2)  # already the champion: a no-op that says so
    assert again.promoted and "already holds the 'champion' alias: nothing to do" in again.reasons[0]
    assert champion_of(cfg) == v2 and champion_of(cfg, "previous_champion") == v1
    with pytest.raises(ConfigError, match="has no version 99"):
        promote_version(cfg, "99")


def test_rollback_and_compare(cfg):
    with pytest.raises(TrackingError, match="no previous_champion alias"):
        rollback(cfg)
    _, v1 = new_version(cfg, 0.7)
    _, v2 = new_version(cfg, 0.9)
    promote_version(cfg, v1)
    promote_version(cfg, v2)
    assert rollback(cfg) == (v2, v1)
    assert champion_of(cfg) == v1 and champion_of(cfg, "previous_champion") == v2
    rows = compare(cfg)
    assert [r["version"] for r in rows] == [v2, v1]
    assert rows[1]["aliases"] == "champion" and rows[0]["aliases"] == "previous_champion"
    assert rows[0]["rougeL"] == 0.9


def _race(root, version, run_id, score, barrier):
    import os

    os.environ["S2S_ROOT"] = root
    from tasks.core.config import load_config as load
    from tasks.core.results import EvaluateResult as Ev
    from tasks.core.results import RegisterResult as Reg
    from tasks.promote import promote as do_promote

    cfg = load(overrides=["promote.gates={primary: rougeL, min_delta: 0.0}", "promote.lock_timeout_s=120"])
    barrier.wait()  # everyone reaches the registry at once
    do_promote(
        cfg, Reg(cfg.register.model_name, version, "", run_id), Ev("test", 10, {"rougeL": score, "rouge1": score}, "")
    )


def test_concurrent_promotions_leave_the_best_model_champion(cfg, project):
    """Six runs finish together. Without the lock, each can read the same old champion, pass, and
    the last writer wins; with it, the champion only ever moves up and ends on the best model."""
    scores = [0.61, 0.95, 0.72, 0.88, 0.66, 0.80]
    versions = [new_version(cfg, s) for s in scores]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(scores))
    procs = [
        ctx.Process(target=_race, args=(str(project), v, run, s, barrier)) for (run, v), s in zip(versions, scores)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    best = versions[scores.index(max(scores))][1]
    assert champion_of(cfg) == best
    client = tracking.client(cfg)
    facts = {v: version_tags.facts(client.get_model_version(cfg.register.model_name, v)) for _, v in versions}
    promoted = [
        (int(facts[v]["promotion.champion_before"]) if facts[v]["promotion.champion_before"] != "none" else 0, s)
        for (_, v), s in zip(versions, scores)
        if facts[v]["promotion.decision"] == "promoted"
    ]
    # every promotion beat the champion it replaced: the chain of champions is increasing
    by_version = dict(zip((int(v) for _, v in versions), scores))
    assert all(s >= by_version.get(before, 0.0) for before, s in promoted)


@pytest.mark.slow  # make test-slow
def test_concurrent_promotions_in_threads_three_rounds(tmp_path):
    """Twelve promotions at once, three times over (threads race harder than processes: without
    the lock this ends on the wrong champion in most rounds)."""
    import random
    import threading

    from conftest import make_project

    for round_ in range(3):
        root = make_project(tmp_path / f"round{round_}")
        cfg = load_config(root=root, overrides=["promote.gates={primary: rougeL, min_delta: 0.0}"])
        rng = random.Random(round_)
        scores = [round(rng.uniform(0.5, 0.95), 3) for _ in range(12)]
        versions = [new_version(cfg, s) for s in scores]
        barrier = threading.Barrier(len(versions))

        def go(run, version, score, barrier=barrier, cfg=cfg):
            barrier.wait()
            promote(cfg, RegisterResult(cfg.register.model_name, version, "", run), evaluated(score))

        threads = [threading.Thread(target=go, args=(run, v, s)) for (run, v), s in zip(versions, scores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert champion_of(cfg) == versions[scores.index(max(scores))][1], f"round {round_}"
