"""Stage 6, promote: gate the candidate and move the ``champion`` alias only when it earns it.

``decide`` is a pure function of (candidate metrics, champion metrics, gates). ``promote`` is
the thin side effect around it: it takes the model's promotion lock, re-reads the champion
(someone may have moved it in the UI, or another run may have promoted meanwhile), decides,
moves aliases and writes the decision and its reasons as tags on the version.

MLflow's alias update is last-writer-wins with no compare-and-set, so without the lock two runs
finishing together could both read "champion = v3", both pass, and leave the alias on whichever
wrote last, even the worse one. The lock is a file lock next to the SQLite store (or under the
project folder for a tracking server): it serialises promotions on one machine or a shared file
system; on several machines run promotions through the promotion flow, which Prefect limits to
one at a time.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from pathlib import Path

from tasks.tracking import client as tracking
from tasks.core.config import Config, Gates
from tasks.core.errors import ConfigError, TrackingError
from tasks.core.results import EvaluateResult, PromoteResult, RegisterResult

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
EPS = 1e-12  # float noise, not a tolerance


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()  # names of the gates that failed


def decide(candidate: dict[str, float], champion: dict[str, float] | None, gates: Gates) -> Decision:
    """Pass only if every gate holds. ``champion`` is None when there is none yet.

    Gates: ``min`` / ``max`` absolute bounds; beat the champion on ``primary`` by at least
    ``min_delta`` (null turns it off); lose at most ``max_regression[m]`` on each listed metric.
    A metric the candidate lacks fails its gate; one the champion lacks skips the comparison.
    """
    reasons: list[str] = []
    failed: list[str] = []

    def check(ok: bool, gate: str, text: str) -> None:
        reasons.append(text)
        if not ok:
            failed.append(gate)

    for metric, bound in sorted(gates.min.items()):
        value = candidate.get(metric)
        if value is None:
            check(False, f"min.{metric}", f"{metric} is missing from the candidate's metrics (gate min {bound})")
        else:
            check(value >= bound - EPS, f"min.{metric}", f"{metric} {value:.4f} {'>=' if value >= bound - EPS else '<'} {bound} (min)")
    for metric, bound in sorted(gates.max.items()):
        value = candidate.get(metric)
        if value is None:
            check(False, f"max.{metric}", f"{metric} is missing from the candidate's metrics (gate max {bound})")
        else:
            check(value <= bound + EPS, f"max.{metric}", f"{metric} {value:.4f} {'<=' if value <= bound + EPS else '>'} {bound} (max)")

    primary = gates.primary or "rougeL"
    if champion is None:
        if gates.min_delta is not None or gates.max_regression:
            reasons.append("no champion yet: nothing to beat")
    else:
        if gates.min_delta is not None:
            c, h = candidate.get(primary), champion.get(primary)
            if c is None:
                check(False, "beat_champion", f"{primary} is missing from the candidate's metrics")
            elif h is None:
                reasons.append(f"the champion has no {primary}: beat-the-champion skipped")
            else:
                delta = c - h
                check(delta >= gates.min_delta - EPS, "beat_champion",
                      f"{primary} {c:.4f} vs champion {h:.4f}: {delta:+.4f} "
                      f"{'>=' if delta >= gates.min_delta - EPS else '<'} min_delta {gates.min_delta}")
        for metric, tolerance in sorted(gates.max_regression.items()):
            c, h = candidate.get(metric), champion.get(metric)
            if c is None:
                check(False, f"regression.{metric}", f"{metric} is missing from the candidate's metrics")
            elif h is None:
                reasons.append(f"the champion has no {metric}: regression check skipped")
            else:
                drop = h - c
                check(drop <= tolerance + EPS, f"regression.{metric}",
                      f"{metric} {c:.4f} vs champion {h:.4f}: drop {max(drop, 0):.4f} "
                      f"{'<=' if drop <= tolerance + EPS else '>'} tolerance {tolerance}")
    if not reasons:
        reasons.append("no gates configured: promoted unconditionally")
    return Decision(promote=not failed, reasons=tuple(reasons), failed=tuple(failed))


# -- registry side effects -----------------------------------------------------------------


def lock_path(cfg: Config, name: str) -> Path:
    uri = cfg.tracking_uri()
    base = Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else cfg.root / ".s2s"
    folder = base / ".s2s-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"promote-{name}.lock"


def promotion_lock(cfg: Config, name: str):
    from filelock import FileLock

    return FileLock(str(lock_path(cfg, name)), timeout=cfg.promote.lock_timeout_s)


def _alias(c, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metrics(version) -> dict[str, float]:
    """The metrics recorded on a model version (its ``metric.*`` tags)."""
    return {k.removeprefix("metric."): float(v) for k, v in (version.tags or {}).items() if k.startswith("metric.")}


def _gates(cfg: Config, primary: str | None = None) -> Gates:
    return cfg.promote.gates.model_copy(update={"primary": primary or cfg.primary_metric})


def _apply(cfg: Config, c, name: str, version: str, decision: Decision, previous: str | None,
           basis: str, extra_tags: dict[str, str] | None = None) -> PromoteResult:
    """Move aliases for a decision and record it on the version."""
    alias = cfg.promote.alias
    if decision.promote:
        c.set_registered_model_alias(name, alias, version)
        if previous and previous != version:
            c.set_registered_model_alias(name, PREVIOUS, previous)
        champion = version
    else:
        c.set_registered_model_alias(name, CHALLENGER, version)
        champion = previous
    tags = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.reasons": "; ".join(decision.reasons)[:5000],
        "promotion.champion_before": previous or "none",
        "promotion.compared_on": basis,
        **(extra_tags or {}),
    }
    if decision.failed:
        tags["promotion.failed_gates"] = ",".join(decision.failed)
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    return PromoteResult(model_name=name, version=version, promoted=decision.promote, reasons=list(decision.reasons),
                         failed=list(decision.failed), alias=alias if decision.promote else CHALLENGER,
                         previous_champion=previous, champion=champion)


def promote(cfg: Config, registered: RegisterResult, evaluated: EvaluateResult) -> PromoteResult:
    """Apply the gates to the candidate against the champion *as it is now*, under the lock."""
    c = tracking.client(cfg)
    name, version = registered.model_name, str(registered.version)
    with promotion_lock(cfg, name):
        current = _alias(c, name, cfg.promote.alias)  # re-read inside the lock
        previous = str(current.version) if current else None
        if current is None:
            champion, basis = None, "no champion"
        elif evaluated.champion and str(evaluated.champion["version"]) == previous:
            champion, basis = evaluated.champion["metrics"], f"champion v{previous} re-scored on the same rows"
        else:
            champion = version_metrics(current)
            basis = (f"champion v{previous} changed during this run: its recorded metrics" if evaluated.champion
                     else f"champion v{previous}: its recorded metrics")
        decision = decide(evaluated.metrics, champion, _gates(cfg, evaluated.primary))
        result = _apply(cfg, c, name, version, decision, previous, basis)
    c.set_tag(registered.run_id, "promotion.decision", "promoted" if decision.promote else "rejected")
    tracking.end_run(cfg, registered.run_id, "FINISHED")
    result.save(cfg.path("reports"))
    logger.info("promote: %s v%s %s (%s; %s)", name, version, "PROMOTED" if decision.promote else "not promoted",
                basis, "; ".join(decision.reasons))
    return result


def promote_version(cfg: Config, version: str, force: bool = False, reason: str | None = None) -> PromoteResult:
    """Manual promotion (``s2s promote``): through the gates on recorded metrics unless forced;
    a forced promotion is recorded with who forced it and why."""
    from mlflow.exceptions import MlflowException

    c = tracking.client(cfg)
    name = cfg.register.model_name
    try:
        candidate = c.get_model_version(name, str(version))
    except MlflowException:
        raise ConfigError(f"{name} has no version {version}; see `s2s compare`") from None
    with promotion_lock(cfg, name):
        current = _alias(c, name, cfg.promote.alias)
        previous = str(current.version) if current else None
        if previous == str(version):
            raise ConfigError(f"{name} v{version} is already the {cfg.promote.alias}")
        champion = version_metrics(current) if current else None
        if force:
            decision = Decision(True, (f"forced by {getpass.getuser()}" + (f": {reason}" if reason else ""),))
            extra = {"promotion.forced": "true", "promotion.forced_by": getpass.getuser(),
                     "promotion.forced_reason": reason or ""}
        else:
            decision = decide(version_metrics(candidate), champion, _gates(cfg))
            extra = {"promotion.manual": "true"}
        if not decision.promote:  # a failed manual promotion changes no alias
            return PromoteResult(model_name=name, version=str(version), promoted=False, reasons=list(decision.reasons),
                                 failed=list(decision.failed), alias="", previous_champion=previous, champion=previous)
        return _apply(cfg, c, name, str(version), decision, previous, "recorded metrics (manual)", extra)


def rollback(cfg: Config) -> tuple[str, str]:
    """Move ``champion`` back to ``previous_champion``; returns (from, to)."""
    c = tracking.client(cfg)
    name = cfg.register.model_name
    with promotion_lock(cfg, name):
        current, previous = _alias(c, name, cfg.promote.alias), _alias(c, name, PREVIOUS)
        if previous is None:
            raise TrackingError(f"{name} has no {PREVIOUS} alias to roll back to")
        c.set_registered_model_alias(name, cfg.promote.alias, str(previous.version))
        if current is not None:
            c.set_registered_model_alias(name, PREVIOUS, str(current.version))
            c.set_model_version_tag(name, str(current.version), "promotion.rolled_back_by", getpass.getuser())
        c.set_model_version_tag(name, str(previous.version), "promotion.restored_by_rollback", "true")
        return (str(current.version) if current else "none"), str(previous.version)


def compare(cfg: Config, limit: int = 10) -> list[dict]:
    """The newest versions of the pipeline's model, with metrics, data versions and aliases."""
    c = tracking.client(cfg)
    name = cfg.register.model_name
    versions = c.search_model_versions(f"name='{name}'", max_results=200)
    versions = sorted(versions, key=lambda v: int(v.version), reverse=True)[:limit]
    aliases: dict[str, list[str]] = {}  # search results do not carry aliases; the model does
    for alias, version in (c.get_registered_model(name).aliases or {}).items() if versions else []:
        aliases.setdefault(str(version), []).append(alias)
    return [{"version": str(v.version), "aliases": ",".join(sorted(aliases.get(str(v.version), []))), **version_metrics(v),
             "data_version": (v.tags or {}).get("data_version", ""), "decision": (v.tags or {}).get("promotion.decision", ""),
             "created": v.creation_timestamp} for v in versions]


def main(argv: list[str] | None = None) -> int:
    from tasks.core.entry import stage_main

    def run(cfg: Config) -> PromoteResult:
        reports = cfg.path("reports")
        return promote(cfg, RegisterResult.load(reports), EvaluateResult.load(reports))

    return stage_main("promote", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
