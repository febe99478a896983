"""The champion history on a real MLflow registry: every alias move is one hash-chained entry;
`s2s history --at` answers what served at a time and why; `--verify` catches an edited,
removed or replaced entry."""

import json
import time
from datetime import datetime

import pytest
from conftest import run_cli
from test_promote import evaluated, new_version

from tasks.core.config import load_config
from tasks.core.results import RegisterResult
from tasks.promote import promote, promote_version, rollback
from tasks.tracking import client as tracking
from tasks.tracking import history

pytestmark = pytest.mark.integration


@pytest.fixture
def moved(project):
    """v1 promoted, v2 rejected, v3 forced, then a rollback: four entries."""
    cfg = load_config(overrides=["promote.gates={min: {rougeL: 0.5}, primary: rougeL, min_delta: 0.0}"])
    name = cfg.register.model_name
    run1, v1 = new_version(cfg, 0.7)
    promote(cfg, RegisterResult(name, v1, "", run1), evaluated(0.7))
    time.sleep(0.05)
    run2, v2 = new_version(cfg, 0.2)
    promote(cfg, RegisterResult(name, v2, "", run2), evaluated(0.2))
    time.sleep(0.05)
    _, v3 = new_version(cfg, 0.6)
    promote_version(cfg, v3, force=True, reason="hotfix")
    time.sleep(0.05)
    rollback(cfg)
    return cfg, name, (v1, v2, v3)


def test_every_alias_move_is_one_chained_entry(moved):
    cfg, name, (v1, v2, v3) = moved
    chain = history.entries(cfg, name)
    assert [(e["seq"], e["op"], e["champion_before"], e["champion_after"]) for e in chain] == [
        (1, "promote", None, v1),
        (2, "reject", v1, v1),
        (3, "force", v1, v3),
        (4, "rollback", v3, v1),
    ]
    assert all(e["prev"] == p["hash"] for p, e in zip(chain, chain[1:])) and chain[0]["prev"] == ""
    assert "rougeL 0.2000 < 0.5 (min)" in chain[1]["reasons"]
    assert chain[2]["reasons"][0].startswith("forced by") and chain[2]["reasons"][0].endswith("hotfix")
    assert all(e["who"] and e["time"] and e["data_version"] == "" for e in chain)  # these versions carry no data tag
    assert history.verify(cfg, name)[0] == []
    client = tracking.client(cfg)  # kept off the registered model's page, in its own experiment
    assert not any(k.startswith(history.PREFIX) for k in client.get_registered_model(name).tags)
    assert client.get_experiment_by_name(history.store_name(name)).tags[history.HEAD] == history.head_of(chain[-1])


def test_a_history_an_older_version_kept_on_the_model_is_read_then_moved_whole(moved):
    """Stores written before the history had its own experiment hold it as registered-model
    tags: it is read from there, verifies, and the next alias change moves it (then appends)."""
    cfg, name, (v1, v2, v3) = moved
    client = tracking.client(cfg)
    exp_id = history.store_id(cfg, name)
    old = {k: v for k, v in client.get_experiment(exp_id).tags.items() if k.startswith(history.PREFIX)}
    for k, v in old.items():  # the layout of a store an older s2s wrote
        client.set_registered_model_tag(name, k, v)
        client.delete_experiment_tag(exp_id, k)
    assert [e["seq"] for e in history.entries(cfg, name)] == [1, 2, 3, 4]
    assert history.verify(cfg, name)[0] == []
    promote_version(cfg, v3, force=True, reason="again")
    chain = history.entries(cfg, name)
    assert [e["seq"] for e in chain] == [1, 2, 3, 4, 5] and history.verify(cfg, name)[0] == []
    assert not any(k.startswith(history.PREFIX) for k in client.get_registered_model(name).tags)
    moved_tags = client.get_experiment(exp_id).tags
    assert all(moved_tags[k] == v for k, v in old.items() if k != history.HEAD)


def test_history_at_a_time_and_verify_through_the_cli(moved, project):
    cfg, name, (v1, v2, v3) = moved
    chain = history.entries(cfg, name)
    env = {"S2S_ROOT": str(project)}
    third = datetime.fromisoformat(chain[2]["time"])
    at = run_cli("history", "--at", third.isoformat(), cwd=project, env=env)
    assert at.returncode == 0, at.stderr
    assert f"champion v{v3}" in at.stdout and "force" in at.stdout and "hotfix" in at.stdout
    before = run_cli("history", "--at", "2000-01-01", cwd=project, env=env)
    assert "had no champion" in before.stdout
    listing = run_cli("history", cwd=project, env=env)
    assert listing.stdout.count("\n") == 5 and "rejected" in listing.stdout
    ok = run_cli("history", "--verify", cwd=project, env=env)
    assert ok.returncode == 0 and "4 entries" in ok.stdout


@pytest.mark.parametrize("tamper", ["edit", "remove", "rehash-last"])
def test_verify_detects_a_tampered_entry(moved, project, tamper):
    cfg, name, versions = moved
    client = tracking.client(cfg)
    chain = history.entries(cfg, name)
    if tamper == "edit":  # what served and why, rewritten in the middle of the history
        entry = {k: v for k, v in chain[1].items() if k != "_key"}
        entry["reasons"] = ["all gates passed"]
        client.set_experiment_tag(history.store_id(cfg, name), chain[1]["_key"], json.dumps(entry))
        expected = "entry 2"
    elif tamper == "remove":
        client.delete_experiment_tag(history.store_id(cfg, name), chain[2]["_key"])
        expected = "entry 4"
    else:  # the last entry edited and re-hashed, the head left alone
        entry = {k: v for k, v in chain[3].items() if k != "_key"}
        entry["who"] = "someone-else"
        entry["hash"] = history.entry_hash(entry)
        client.set_experiment_tag(history.store_id(cfg, name), chain[3]["_key"], json.dumps(entry))
        expected = history.HEAD
    problems = history.verify(cfg, name)[0]
    assert problems and any(expected in p for p in problems), problems
    proc = run_cli("history", "--verify", cwd=project, env={"S2S_ROOT": str(project)})
    assert proc.returncode == 1 and "does NOT verify" in proc.stdout and expected in proc.stdout


def test_a_recovered_change_is_recorded_once(project):
    """recover() finishing an intent whose entry was already written does not write it again."""
    from tasks.tracking import registry

    cfg = load_config()
    name = cfg.register.model_name
    _, v1 = new_version(cfg, 0.7)
    with registry.locked_model(cfg, name) as lock:
        registry.move_aliases(
            cfg, name, {"champion": v1}, {"op": "force", "version": v1, "champion_before": None}, lock
        )
        intent = {"id": history.entries(cfg, name)[-1]["intent_id"], "changes": {"champion": v1}, "record": {}}
        registry._finish(cfg, name, intent, lock, None)  # what recover() does after a crash before clearing
    assert len(history.entries(cfg, name)) == 1 and history.verify(cfg, name)[0] == []


def test_a_consistent_rewrite_passes_the_chain_but_not_the_exported_anchor(moved, project, tmp_path):
    """Someone who can write tags rewrites entry 2 and every later one with fresh hashes and head:
    the chain itself verifies; the head exported before (a file, a git tag) does not."""
    import subprocess

    cfg, name, _ = moved
    env = {"S2S_ROOT": str(project)}
    anchor = tmp_path / "head.json"
    out = run_cli("history", "--export-head", str(anchor), cwd=project, env=env)
    assert out.returncode == 0 and json.loads(anchor.read_text())["seq"] == 4, out.stdout + out.stderr
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    git_env = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
    git_env["GIT_COMMITTER_EMAIL"] = "t@e"
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=project, check=True, env=git_env)
    tagged = run_cli("history", "--export-head", "git", cwd=project, env=git_env)
    assert tagged.returncode == 0 and f"s2s-history/{name}/4" in tagged.stdout, tagged.stdout + tagged.stderr

    c = tracking.client(cfg)
    chain = history.entries(cfg, name)
    prev = chain[0]["hash"]
    for old in chain[1:]:
        entry = {k: v for k, v in old.items() if k != "_key"}
        entry["who"], entry["prev"] = "forger@elsewhere", prev
        entry["hash"] = prev = history.entry_hash(entry)
        c.set_experiment_tag(history.store_id(cfg, name), old["_key"], json.dumps(entry))
    c.set_experiment_tag(history.store_id(cfg, name), history.HEAD, history.head_of(entry))
    assert history.verify(cfg, name)[0] == []  # consistent: the chain alone cannot tell
    for against in (str(anchor), f"git:s2s-history/{name}/4"):
        proc = run_cli("history", "--verify", "--against", against, cwd=project, env=env)
        assert proc.returncode == 1 and "rewritten since" in proc.stdout, proc.stdout + proc.stderr


def test_an_alias_moved_with_the_plain_mlflow_client_is_reported(moved, project):
    cfg, name, (v1, v2, v3) = moved
    tracking.client(cfg).set_registered_model_alias(name, "champion", v2)  # v2 was rejected
    problems, _ = history.verify(cfg, name)
    assert any(f"alias is on v{v2}" in p and f"left it on v{v1}" in p for p in problems), problems
    proc = run_cli("history", "--verify", cwd=project, env={"S2S_ROOT": str(project)})
    assert proc.returncode == 1 and "moved outside s2s" in proc.stdout
