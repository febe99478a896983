"""The champion history: every alias move of a model, hash-chained, in the registry itself.

Each alias change (automatic promotion or rejection, manual, forced, rollback) appends one entry
as a tag ``s2s.history.<seq>`` of the experiment ``<model> champion history`` on the tracking
server, so every machine of a team reads the same history (MLflow keeps only the aliases as they
are now; mlflow#2169) and the registered model's page stays readable. Entries written by older
versions as tags of the registered model itself are read too, and moved to the experiment by the
next append. An
entry holds: when, who, the operation, the champion before and after, the version concerned,
the decision and its reasons with the numbers and intervals, the data version, git commit and
flow run of that version, and ``prev``, the hash of the entry before. ``s2s.history.head`` holds
the last entry's hash, so editing, inserting or deleting any entry (the last one included)
breaks the chain where it happened and ``s2s history --verify`` names it. Someone who can write
tags can rewrite the whole chain with fresh hashes: ``s2s history --export-head`` keeps the head
outside the store (a file, a git tag, the webhook) and ``--verify --against`` checks the chain
still holds it. ``--verify`` also checks the live champion alias against the last move (an alias
moved with the plain MLflow client is reported). A crash between an entry and its head leaves
the head one behind: ``--verify`` says so without calling it tampering, and the next append
writes the head past it.

Appending is part of the write-ahead alias change (tasks/tracking/registry.py): the entry is
written after the aliases moved and before the intent is cleared, under the model's lock, and is
keyed by the intent's id, so a change finished by ``recover`` after a crash is recorded exactly
once.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.config import Config
from tasks.tracking import client as tracking
from tasks.tracking import reads

PREFIX = "s2s.history."
HEAD = "s2s.history.head"
STORE_SUFFIX = " champion history"
MOVES_CHAMPION = ("promote", "force", "manual", "rollback", "approve")


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != "hash"}, sort_keys=True, ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def store_name(name: str) -> str:
    """The experiment whose tags hold ``name``'s champion history."""
    return f"{name}{STORE_SUFFIX}"


def store_id(cfg: Config, name: str, create: bool = False) -> str | None:
    """The id of ``name``'s history experiment (created, or restored if deleted, when ``create``)."""
    from mlflow.exceptions import MlflowException

    c = tracking.client(cfg)
    label = store_name(name)
    exp = reads.call(cfg, lambda: c.get_experiment_by_name(label), "reading the champion history")
    if exp is None and create:
        from tasks.tracking import lineage

        note = (
            f"The champion history of registered model {name!r}: one hash-chained entry per alias change, "
            "written by s2s. Read it with `s2s history`, check it with `s2s history --verify`; do not edit."
        )
        tags = {**lineage.experiment_tags(), "mlflow.note.content": note}

        def create_or_get():
            try:
                location = None if cfg.tracking_uri().startswith("http") else cfg.artifact_location()
                return c.create_experiment(label, artifact_location=location, tags=tags)
            except MlflowException as exc:
                if "already exists" not in str(exc):  # else another writer created it meanwhile
                    raise
                return c.get_experiment_by_name(label).experiment_id

        return reads.call(cfg, create_or_get, "creating the champion history")
    if exp is not None and create and exp.lifecycle_stage == "deleted":
        reads.call(cfg, lambda: c.restore_experiment(exp.experiment_id), "restoring the champion history")
    return None if exp is None else exp.experiment_id


def history_tags(
    cfg: Config, name: str, model_tags: dict[str, str] | None = None, exp_id: str | None = None
) -> dict[str, str]:
    """The history's tags: those an older version left on the registered model, then the
    experiment's (which win: a move copies first and deletes after). ``exp_id``: the history
    experiment when the caller has it (else looked up)."""
    model_tags = (reads.model_tags(cfg, name) or {}) if model_tags is None else model_tags
    out = {k: v for k, v in model_tags.items() if k.startswith(PREFIX)}
    exp_id = exp_id or store_id(cfg, name)
    if exp_id is not None:
        c = tracking.client(cfg)
        exp = reads.call(cfg, lambda: c.get_experiment(exp_id), "reading the champion history")
        out.update({k: v for k, v in (exp.tags or {}).items() if k.startswith(PREFIX)})
    return out


def _move_legacy(cfg: Config, name: str, exp_id: str, model_tags: dict[str, str], lock) -> None:
    """Entries an older version wrote on the registered model: copied to the experiment, then
    deleted from the model (a crash in between leaves both copies, read as one)."""
    legacy = {k: v for k, v in model_tags.items() if k.startswith(PREFIX)}
    if not legacy:
        return
    c = tracking.client(cfg)
    lock.verify()
    for k in sorted(legacy, key=lambda k: k == HEAD):  # the head last
        reads.call(cfg, lambda k=k: c.set_experiment_tag(exp_id, k, legacy[k]), "moving the champion history")
    for k in legacy:
        reads.call(cfg, lambda k=k: c.delete_registered_model_tag(name, k), "moving the champion history")


def entries(cfg: Config, name: str, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The model's history, oldest first (an unreadable entry is kept as ``{"seq", "unreadable"}``)."""
    tags = history_tags(cfg, name) if tags is None else tags
    out = []
    for key, value in (tags or {}).items():
        if not key.startswith(PREFIX) or key == HEAD:
            continue
        seq = key.removeprefix(PREFIX)
        try:
            entry = json.loads(value)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            entry = {"seq": int(seq) if seq.isdigit() else seq, "unreadable": str(exc)}
        entry["_key"] = key
        out.append(entry)
    return sorted(out, key=lambda e: e["_key"])


def _version_facts(cfg: Config, name: str, version: str | None) -> dict[str, str]:
    if not version:
        return {}
    v = reads.get_version(cfg, name, str(version))
    tags = (v.tags or {}) if v is not None else {}
    return {
        "data_version": tags.get("data_version", ""),
        "git_commit": tags.get("git_commit", ""),
        "flow_run_id": tags.get("prefect_flow_run_id", ""),
    }


def append(cfg: Config, name: str, intent: dict[str, Any], lock) -> dict[str, Any] | None:
    """Record ``intent`` (an alias change just applied) as the next entry, once per intent id."""
    record = intent.get("record") or {}
    intent_id = intent.get("id")
    model_tags = reads.model_tags(cfg, name) or {}
    exp_id = store_id(cfg, name, create=True)
    tags = history_tags(cfg, name, model_tags, exp_id)
    _move_legacy(cfg, name, exp_id, model_tags, lock)
    chain = entries(cfg, name, tags)
    c = tracking.client(cfg)
    if intent_id and any(e.get("intent_id") == intent_id for e in chain[-3:]):
        # recorded before a crash (the change is being finished by recover()); a crash between
        # the entry and its head left the head behind: write it now
        if tags.get(HEAD) != head_of(chain[-1]) and "hash" in chain[-1]:
            lock.verify()
            reads.call(
                cfg,
                lambda: c.set_experiment_tag(exp_id, HEAD, head_of(chain[-1])),
                "recording the champion history's head",
            )
        return None
    alias = cfg.promote.alias
    changes = intent.get("changes") or {}
    before = record.get("champion_before")
    after = changes.get(alias, before) if alias in changes else before
    entry: dict[str, Any] = {
        "seq": len(chain) + 1,
        "time": datetime.fromtimestamp(intent.get("written") or datetime.now(UTC).timestamp(), UTC).isoformat(),
        "who": record.get("who") or who(),
        "op": record.get("op", "change"),
        "alias": alias,
        "version": str(record.get("version", "")),
        "champion_before": before,
        "champion_after": after,
        "changes": changes,
        "decision": record.get("decision", ""),
        "reasons": record.get("reasons", []),
        "intervals": record.get("intervals", {}),
        **_version_facts(cfg, name, record.get("version")),
        "flow_run_of_change": record.get("flow_run_id", ""),
        "intent_id": intent_id,
        "prev": chain[-1].get("hash", "") if chain else "",
    }
    entry["hash"] = entry_hash(entry)
    key = f"{PREFIX}{entry['seq']:06d}"
    lock.verify()
    reads.call(
        cfg,
        lambda: c.set_experiment_tag(exp_id, key, json.dumps(entry, ensure_ascii=False)),
        "appending to the champion history",
    )
    reads.call(
        cfg,
        lambda: c.set_experiment_tag(exp_id, HEAD, head_of(entry)),
        "recording the champion history's head",
    )
    return entry


def verify(cfg: Config, name: str, anchor: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes) of the chain. Problems name the entry: edited, inserted, removed, a
    champion alias that does not match the history (moved outside s2s), or an entry that differs
    from ``anchor`` (a head exported earlier: a rewrite with recomputed hashes). Notes are what
    is not tampering: the head one entry behind after a crash between the two writes."""
    model_tags = reads.model_tags(cfg, name) or {}
    tags = history_tags(cfg, name, model_tags)
    chain = entries(cfg, name, tags)
    problems = _links(chain)
    notes: list[str] = []
    head = tags.get(HEAD)
    if chain and head != head_of(chain[-1]):
        if len(chain) > 1 and head == head_of(chain[-2]) and not problems:
            notes.append(
                f"entry {chain[-1].get('seq')} was written but not its head (a crash between the two "
                "writes); the next alias change records it"
            )
        else:
            problems.append(f"{HEAD} is {head!r} but the last entry is {chain[-1].get('seq')} (the last entry changed)")
    if not chain and head:
        problems.append(f"{HEAD} is {head!r} but there are no entries (the history was removed)")
    if model_tags.get(reads.PENDING):
        notes.append("an alias change is half done (a crash mid-change); the next writer finishes and records it")
    else:
        problems += _against_aliases(cfg, name, chain)
    if anchor is not None:
        problems += _against_anchor(chain, anchor)
    return problems, notes


def _links(chain: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    prev: str | None = ""
    for i, entry in enumerate(chain, start=1):
        label = f"entry {entry.get('seq', '?')} ({entry['_key']})"
        if "unreadable" in entry:
            problems.append(f"{label}: not readable JSON ({entry['unreadable']})")
            prev = None
            continue
        stored = dict(entry)
        stored.pop("_key")
        if entry.get("seq") != i:
            problems.append(f"{label}: sequence number {entry.get('seq')} where {i} was expected (inserted or removed)")
        if stored.get("hash") != entry_hash(stored):
            problems.append(f"{label}: its content does not match its hash (edited)")
        if prev is not None and stored.get("prev") != prev:
            problems.append(f"{label}: does not follow the entry before it (an entry before it was edited or removed)")
        prev = stored.get("hash")
    return problems


def head_of(entry: dict[str, Any]) -> str:
    return f"{entry.get('seq')}:{entry.get('hash')}"


def _against_aliases(cfg: Config, name: str, chain: list[dict[str, Any]]) -> list[str]:
    """The live champion alias is where the history's last move left it."""
    alias = cfg.promote.alias
    live = reads.alias_version(cfg, name, alias)
    live_v = str(live.version) if live is not None else None
    moves = [e for e in chain if "unreadable" not in e and e.get("op") in MOVES_CHAMPION]
    said = str(moves[-1].get("champion_after")) if moves and moves[-1].get("champion_after") else None
    if moves and moves[-1].get("alias", alias) != alias:
        return []  # the alias was renamed in the settings: the history speaks of another alias
    if live_v != said:
        return [
            f"the {alias!r} alias is on {'v' + live_v if live_v else 'no version'} but the history's last move "
            f"left it on {'v' + said if said else 'no version'} (the alias was moved outside s2s, which "
            "records every move it makes)"
        ]
    return []


def _against_anchor(chain: list[dict[str, Any]], anchor: dict[str, Any]) -> list[str]:
    """The chain still holds the entry an exported head named, unchanged."""
    try:
        seq, digest = int(anchor["seq"]), str(anchor["hash"])
    except (KeyError, TypeError, ValueError):
        return [f"the anchor {anchor!r} is not an exported head (it needs seq and hash)"]
    when = anchor.get("exported", "?")
    if len(chain) < seq:
        return [f"the anchor exported at {when} names entry {seq}, but the history has {len(chain)} (entries removed)"]
    if chain[seq - 1].get("hash") != digest:
        return [
            f"entry {seq} is not the one the anchor exported at {when} names (the history up to it was "
            "rewritten since, hashes and all)"
        ]
    return []


def export_head(cfg: Config, name: str) -> dict[str, Any]:
    """The head as an anchor to keep outside the store (a file, a git tag, the webhook)."""
    chain = entries(cfg, name)
    if not chain:
        raise ValueError(f"{name} has no champion history yet: nothing to anchor")
    last = chain[-1]
    live = reads.alias_version(cfg, name, cfg.promote.alias)
    return {
        "model": name,
        "seq": last.get("seq"),
        "hash": last.get("hash"),
        "champion": str(live.version) if live is not None else None,
        "exported": datetime.now(UTC).isoformat(),
    }


def export_to(cfg: Config, name: str, target: str) -> str:
    """``s2s history --export-head``: the head to a file, a git tag (``git``) or the webhook
    (``webhook``); returns what was done."""
    from tasks.core import notify
    from tasks.core.errors import ConfigError
    from tasks.core.paths import atomic_write_json

    try:
        head = export_head(cfg, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if target == "git":
        tag = f"s2s-history/{name}/{head['seq']}"
        proc = subprocess.run(
            ["git", "tag", "-f", "-a", tag, "-m", json.dumps(head, sort_keys=True)],
            cwd=cfg.root,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise ConfigError(f"git tag {tag} failed: {proc.stderr.strip()}")
        return f"{name}: history head (entry {head['seq']}) exported as git tag {tag}; verify with --against git:{tag}"
    elif target == "webhook":
        if not notify.send(cfg, "history_head", always=True, **head):
            raise ConfigError(f"the webhook in ${cfg.notify.webhook_env} did not take the history head")
        return f"{name}: history head (entry {head['seq']}) sent to the webhook in ${cfg.notify.webhook_env}"
    atomic_write_json(Path(target), head)
    return f"{name}: history head (entry {head['seq']}) written to {target}; verify with --against {target}"


def read_anchor(cfg: Config, source: str) -> dict[str, Any]:
    """An exported head from a file or a git tag (``git:TAG``)."""
    from tasks.core.errors import ConfigError

    if source.startswith("git:"):
        proc = subprocess.run(
            ["git", "tag", "-l", "--format=%(contents)", source[4:]], cwd=cfg.root, capture_output=True, text=True
        )
        text = proc.stdout.strip()
        if not text:
            raise ConfigError(f"--against {source}: no such git tag in {cfg.root}")
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ConfigError(f"--against {source}: cannot read it ({exc.strerror})") from None
    try:
        anchor = json.loads(text)
    except ValueError:
        raise ConfigError(f"--against {source}: not an exported history head (JSON from --export-head)") from None
    if not isinstance(anchor, dict) or anchor.get("model") not in (None, cfg.register.model_name):
        raise ConfigError(f"--against {source}: it anchors {anchor.get('model')!r}, not {cfg.register.model_name!r}")
    return anchor


def champion_at(chain: list[dict[str, Any]], when: datetime) -> tuple[dict[str, Any] | None, str | None]:
    """(the entry that made the champion of ``when``, that version); (None, None) before any."""
    last = None
    for entry in chain:
        if "unreadable" in entry:
            continue
        if datetime.fromisoformat(entry["time"]) > when:
            break
        if entry.get("op") in MOVES_CHAMPION:
            last = entry
    return (last, last.get("champion_after")) if last else (None, None)


def describe(entry: dict[str, Any]) -> str:
    """One entry as `s2s history` lists it: what moved, or what waits on whom."""
    version, before = entry.get("version") or "-", entry.get("champion_before") or "-"
    if entry.get("op") == "await":
        return f"v{version} awaits a person's approval (champion stays v{before} meanwhile)"
    if entry.get("op") == "reject":
        return f"v{version} rejected (champion stays v{before})"
    return f"champion v{before} -> v{entry.get('champion_after') or '-'}"
