"""Recording a promotion decision on the version and moving the aliases it implies.

The reasons and the champion before go in the version's decision record (one JSON tag,
tasks/tracking/version_tags.py), written before any alias moves; the decision itself
(``promotion.decision``) is written with the alias change, one recoverable change in the
registry (tasks/tracking/registry.py), so it is never said without it.
"""

from __future__ import annotations

from tasks.core.config import Config
from tasks.core.results import PromoteResult
from tasks.promotion.gates import Decision
from tasks.tracking import registry, version_tags

CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
PENDING_APPROVAL = "pending_approval"


def _record(
    cfg: Config,
    name: str,
    version: str,
    decision: Decision,
    previous: str | None,
    basis: str,
    extra: dict[str, str] | None = None,
) -> None:
    """The reasons and the champion before, in the version's record: written before any alias moves. The
    decision itself is written with the alias change (``_apply``), so it is never said without it."""
    tags = {
        "promotion.reasons": "; ".join(decision.reasons)[:5000],
        "promotion.champion_before": previous or "none",
        "promotion.compared_on": basis,
        "promotion.failed_gates": ",".join(decision.failed),
        **(extra or {}),
    }
    version_tags.record(cfg, name, version, tags)


def _apply(
    cfg: Config,
    lock,
    name: str,
    version: str,
    decision: Decision,
    previous: str | None,
    basis: str,
    extra: dict[str, str] | None = None,
    intervals: dict[str, dict] | None = None,
) -> PromoteResult:
    """Record the decision, then move the aliases as one recoverable change (and the history entry)."""
    alias = cfg.promote.alias
    _record(cfg, name, version, decision, previous, basis, extra)
    changes, champion = _alias_changes(alias, version, decision, previous, extra)
    outcome = "promoted" if decision.promote else "rejected"
    registry.move_aliases(
        cfg,
        name,
        changes,
        _history_record(_op(decision, extra), version, previous, outcome, decision.reasons, intervals, basis),
        lock,
        tags={version: {"promotion.decision": outcome}},
    )
    return PromoteResult(
        model_name=name,
        version=version,
        promoted=decision.promote,
        reasons=list(decision.reasons),
        failed=list(decision.failed),
        alias=alias if decision.promote else CHALLENGER,
        previous_champion=previous,
        champion=champion,
    )


def _alias_changes(
    alias: str, version: str, decision: Decision, previous: str | None, extra: dict[str, str] | None
) -> tuple[dict[str, str | None], str | None]:
    """The aliases a decision moves, in the order they move, and the champion after them."""
    if decision.promote:
        changes: dict[str, str | None] = {}
        if previous and previous != version:
            changes[PREVIOUS] = previous  # the rollback target is in place before the champion moves
        changes[alias] = version
        champion = version
    else:
        changes, champion = {CHALLENGER: version}, previous
    if (extra or {}).get("promotion.approved_by"):
        changes[PENDING_APPROVAL] = None  # the wait is over, in the same recoverable change
    return changes, champion


def _op(decision: Decision, extra: dict[str, str] | None) -> str:
    """What the history calls this alias change."""
    extra = extra or {}
    if extra.get("promotion.approved_by"):
        return "approve" if decision.promote else "reject"
    if extra.get("promotion.forced") == "true":
        return "force"
    if extra.get("promotion.manual") == "true":
        return "manual"
    return "promote" if decision.promote else "reject"


def _history_record(
    op: str, version: str, previous: str | None, decision: str, reasons, intervals: dict | None, basis: str
) -> dict:
    """What an alias change records for the champion history (tasks/tracking/history.py)."""
    return {
        "op": op,
        "version": version,
        "champion_before": previous,
        "decision": decision,
        "reasons": list(reasons),
        "intervals": intervals or {},
        "basis": basis,
    }


def _already(cfg: Config, name: str, version: str, previous: str | None) -> PromoteResult:
    reason = f"v{version} already holds the {cfg.promote.alias!r} alias: nothing to do"
    return PromoteResult(
        model_name=name,
        version=version,
        promoted=True,
        reasons=[reason],
        failed=[],
        alias=cfg.promote.alias,
        previous_champion=previous,
        champion=version,
    )
