"""Promotion: the pure decision as a table of cases, and alias moves on a real MLflow registry."""

import pytest

from tasks import tracking
from tasks.config import Gates, load_config
from tasks.promote import decide, promote
from tasks.results import EvaluateResult, RegisterResult

GATES = Gates(min={"rougeL": 0.5, "rouge1": 0.5}, max={"gen_len": 30})


@pytest.mark.parametrize("candidate, promoted, failed", [
    ({"rougeL": 0.8, "rouge1": 0.9, "gen_len": 12}, True, ()),
    ({"rougeL": 0.5, "rouge1": 0.5, "gen_len": 30}, True, ()),            # bounds are inclusive
    ({"rougeL": 0.49, "rouge1": 0.9, "gen_len": 12}, False, ("min.rougeL",)),
    ({"rougeL": 0.8, "rouge1": 0.9, "gen_len": 31}, False, ("max.gen_len",)),
    ({"rouge1": 0.9, "gen_len": 12}, False, ("min.rougeL",)),             # a missing metric fails
    ({"rougeL": 0.0, "rouge1": 0.0, "gen_len": 0.0}, False, ("min.rouge1", "min.rougeL")),
])
def test_decide(candidate, promoted, failed):
    d = decide(candidate, None, GATES)
    assert d.promote is promoted
    assert d.failed == failed
    assert len(d.reasons) == 3  # one sentence per gate, with the numbers


def test_reasons_carry_the_numbers():
    d = decide({"rougeL": 0.42, "rouge1": 0.9, "gen_len": 12}, None, GATES)
    assert "rougeL 0.4200 < 0.5 (min)" in d.reasons


def test_no_gates_says_so():
    d = decide({"rougeL": 0.1}, None, Gates())
    assert d.promote and d.reasons == ("no gates configured: promoted unconditionally",)


def _version(cfg, client, name):
    from tasks import tracking

    run = client.create_run(tracking.experiment_id(cfg, client))
    return run.info.run_id, str(client.create_model_version(name, source=f"runs:/{run.info.run_id}/model",
                                                        run_id=run.info.run_id).version)


def test_promote_moves_champion_and_keeps_the_previous_one(project):
    cfg = load_config(overrides=["promote.gates={min: {rougeL: 0.5}}"])
    client = tracking.client(cfg)
    name = cfg.register.model_name
    client.create_registered_model(name)
    good = {"rougeL": 0.7}
    run1, v1 = _version(cfg, client, name)
    r1 = promote(cfg, RegisterResult(name, v1, "", run1), EvaluateResult("test", 10, good, ""))
    assert r1.promoted and str(client.get_model_version_by_alias(name, "champion").version) == v1

    run2, v2 = _version(cfg, client, name)
    r2 = promote(cfg, RegisterResult(name, v2, "", run2), EvaluateResult("test", 10, {"rougeL": 0.2}, ""))
    assert not r2.promoted and r2.champion == v1
    assert str(client.get_model_version_by_alias(name, "champion").version) == v1
    assert str(client.get_model_version_by_alias(name, "challenger").version) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.failed_gates"] == "min.rougeL"
    assert "rougeL 0.2000 < 0.5 (min)" in tags["promotion.reasons"]

    run3, v3 = _version(cfg, client, name)
    promote(cfg, RegisterResult(name, v3, "", run3), EvaluateResult("test", 10, good, ""))
    assert str(client.get_model_version_by_alias(name, "champion").version) == v3
    assert str(client.get_model_version_by_alias(name, "previous_champion").version) == v1
