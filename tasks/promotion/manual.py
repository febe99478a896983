"""A person's moves on the registry: ``s2s promote`` (through the gates on recorded metrics, or
forced), ``s2s rollback`` and ``s2s compare``."""

from __future__ import annotations

import getpass

from tasks.core.config import Config
from tasks.core.errors import ConfigError, TrackingError
from tasks.core.results import PromoteResult
from tasks.promotion.apply import PREVIOUS, _already, _apply
from tasks.promotion.gates import Decision, _gates, decide
from tasks.tracking import client as tracking
from tasks.tracking import reads, registry, version_tags


def promote_version(cfg: Config, version: str, force: bool = False, reason: str | None = None) -> PromoteResult:
    """Manual promotion (``s2s promote``): through the gates on recorded metrics unless forced;
    a forced promotion is recorded with who forced it and why."""
    name = cfg.register.model_name
    candidate = reads.get_version(cfg, name, str(version))
    if candidate is None:
        raise ConfigError(f"{name} has no version {version}; see `s2s compare`")
    with registry.locked_model(cfg, name) as lock:
        current = reads.alias_version(cfg, name, cfg.promote.alias)
        previous = str(current.version) if current else None
        if previous == str(version):
            return _already(cfg, name, str(version), reads.aliases(cfg, name).get(PREVIOUS))
        champion = version_tags.metrics_of(cfg, current) if current else None
        if force:
            decision = Decision(True, (f"forced by {getpass.getuser()}" + (f": {reason}" if reason else ""),))
            extra = {
                "promotion.forced": "true",
                "promotion.forced_by": getpass.getuser(),
                "promotion.forced_reason": reason or "",
            }
        else:
            decision = decide(version_tags.metrics_of(cfg, candidate), champion, _gates(cfg))
            extra = {"promotion.manual": "true"}
        if not decision.promote:  # a failed manual promotion changes no alias
            return PromoteResult(
                model_name=name,
                version=str(version),
                promoted=False,
                reasons=list(decision.reasons),
                failed=list(decision.failed),
                alias="",
                previous_champion=previous,
                champion=previous,
            )
        return _apply(cfg, lock, name, str(version), decision, previous, "recorded metrics (manual)", extra)


def rollback(cfg: Config) -> tuple[str, str]:
    """Move ``champion`` back to ``previous_champion``; returns (from, to)."""
    name = cfg.register.model_name
    with registry.locked_model(cfg, name) as lock:
        current = reads.alias_version(cfg, name, cfg.promote.alias)
        previous = reads.alias_version(cfg, name, PREVIOUS)
        if previous is None:
            raise TrackingError(f"{name} has no {PREVIOUS} alias to roll back to")
        if current is not None and str(current.version) == str(previous.version):
            raise TrackingError(
                f"{name}: {PREVIOUS} and {cfg.promote.alias} are both v{previous.version}; nothing to roll back"
            )
        old, new = (str(current.version) if current else None), str(previous.version)
        if old:
            version_tags.record(cfg, name, old, {"promotion.rolled_back_by": getpass.getuser()})
        version_tags.record(cfg, name, new, {"promotion.restored_by_rollback": "true"})
        changes: dict[str, str | None] = {cfg.promote.alias: new, PREVIOUS: old}
        registry.move_aliases(
            cfg,
            name,
            changes,
            {
                "op": "rollback",
                "version": new,
                "champion_before": old,
                "decision": "rolled back",
                "reasons": [f"rollback by {getpass.getuser()}: v{old} -> v{new} ({PREVIOUS})"],
            },
            lock,
        )
        return old or "none", new


def compare(cfg: Config, limit: int = 10) -> list[dict]:
    """The newest versions of the pipeline's model, with metrics, data versions and aliases."""
    c = tracking.client(cfg)
    name = cfg.register.model_name
    versions = reads.call(
        cfg, lambda: c.search_model_versions(f"name='{name}'", max_results=200), f"listing versions of {name!r}"
    )
    versions = sorted(versions, key=lambda v: int(v.version), reverse=True)[:limit]
    by_version: dict[str, list[str]] = {}  # search results do not carry aliases; the model does
    for alias, version in (reads.aliases(cfg, name) if versions else {}).items():
        by_version.setdefault(str(version), []).append(alias)
    return [
        {
            "version": str(v.version),
            "aliases": ",".join(sorted(by_version.get(str(v.version), []))),
            **version_tags.metrics_of(cfg, v),
            "data_version": (v.tags or {}).get("data_version", ""),
            "decision": (v.tags or {}).get(version_tags.DECISION, ""),
            "created": v.creation_timestamp,
        }
        for v in versions
    ]
