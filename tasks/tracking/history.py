"""The champion history: every alias move of a model, hash-chained, in the registry itself.

Each alias change (automatic promotion or rejection, manual, forced, rollback) appends one entry
as a registered-model tag ``s2s.history.<seq>`` on the tracking server, so every machine of a
team reads the same history (MLflow keeps only the aliases as they are now; mlflow#2169). An
entry holds: when, who, the operation, the champion before and after, the version concerned,
the decision and its reasons with the numbers and intervals, the data version, git commit and
flow run of that version, and ``prev``, the hash of the entry before. ``s2s.history.head`` holds
the last entry's hash, so editing, inserting or deleting any entry (the last one included)
breaks the chain where it happened and ``s2s history --verify`` names it. This makes tampering
evident, not impossible: someone who can write tags can rewrite the whole chain, which is what
an external copy of the head hash (a release note, a ticket) would catch.

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
from datetime import UTC, datetime
from typing import Any

from tasks.core.config import Config
from tasks.tracking import client as tracking

PREFIX = "s2s.history."
HEAD = "s2s.history.head"
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


def entries(cfg: Config, name: str, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The model's history, oldest first (an unreadable entry is kept as ``{"seq", "unreadable"}``)."""
    from tasks.tracking import registry

    tags = registry.model_tags(cfg, name) if tags is None else tags
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
    from tasks.tracking import registry

    if not version:
        return {}
    v = registry.get_version(cfg, name, str(version))
    tags = (v.tags or {}) if v is not None else {}
    return {
        "data_version": tags.get("data_version", ""),
        "git_commit": tags.get("git_commit", ""),
        "flow_run_id": tags.get("prefect_flow_run_id", ""),
    }


def append(cfg: Config, name: str, intent: dict[str, Any], lock) -> dict[str, Any] | None:
    """Record ``intent`` (an alias change just applied) as the next entry, once per intent id."""
    from tasks.tracking import registry

    record = intent.get("record") or {}
    intent_id = intent.get("id")
    tags = registry.model_tags(cfg, name) or {}
    chain = entries(cfg, name, tags)
    if intent_id and any(e.get("intent_id") == intent_id for e in chain[-3:]):
        return None  # recorded before a crash: the change was finished by recover()
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
    c = tracking.client(cfg)
    key = f"{PREFIX}{entry['seq']:06d}"
    lock.verify()
    registry.call(
        cfg,
        lambda: c.set_registered_model_tag(name, key, json.dumps(entry, ensure_ascii=False)),
        "appending to the champion history",
    )
    registry.call(
        cfg,
        lambda: c.set_registered_model_tag(name, HEAD, f"{entry['seq']}:{entry['hash']}"),
        "recording the champion history's head",
    )
    return entry


def verify(cfg: Config, name: str) -> list[str]:
    """Problems in the chain, each naming the entry; empty when every entry is intact."""
    from tasks.tracking import registry

    tags = registry.model_tags(cfg, name) or {}
    chain = entries(cfg, name, tags)
    problems: list[str] = []
    prev = ""
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
    head = tags.get(HEAD)
    if chain and head != f"{chain[-1].get('seq')}:{chain[-1].get('hash')}":
        problems.append(f"{HEAD} is {head!r} but the last entry is {chain[-1].get('seq')} (the last entry changed)")
    if not chain and head:
        problems.append(f"{HEAD} is {head!r} but there are no entries (the history was removed)")
    return problems


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
