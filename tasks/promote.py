"""Stage 6, promote: gate the candidate on its metrics and move the ``champion`` alias on a pass.

``decide`` is a pure function of (candidate metrics, champion metrics, gates); ``promote`` is
the thin side effect that reads the registry, calls ``decide``, moves aliases and writes the
decision and its reasons as tags on the version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks import tracking
from tasks.config import Config, Gates
from tasks.results import EvaluateResult, PromoteResult, RegisterResult

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
PREVIOUS = "previous_champion"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()  # names of the gates that failed


def decide(candidate: dict[str, float], champion: dict[str, float] | None, gates: Gates) -> Decision:
    """Pass only if every absolute gate holds. Reasons read as sentences with the numbers."""
    reasons: list[str] = []
    failed: list[str] = []
    for metric, bound in sorted(gates.min.items()):
        value = candidate.get(metric)
        if value is None:
            failed.append(f"min.{metric}")
            reasons.append(f"{metric} is missing from the candidate's metrics (gate min {bound})")
        elif value < bound:
            failed.append(f"min.{metric}")
            reasons.append(f"{metric} {value:.4f} < {bound} (min)")
        else:
            reasons.append(f"{metric} {value:.4f} >= {bound} (min)")
    for metric, bound in sorted(gates.max.items()):
        value = candidate.get(metric)
        if value is None:
            failed.append(f"max.{metric}")
            reasons.append(f"{metric} is missing from the candidate's metrics (gate max {bound})")
        elif value > bound:
            failed.append(f"max.{metric}")
            reasons.append(f"{metric} {value:.4f} > {bound} (max)")
        else:
            reasons.append(f"{metric} {value:.4f} <= {bound} (max)")
    if not gates.min and not gates.max:
        reasons.append("no gates configured: promoted unconditionally")
    return Decision(promote=not failed, reasons=tuple(reasons), failed=tuple(failed))


def _champion(c, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metrics(version) -> dict[str, float]:
    return {k.removeprefix("metric."): float(v) for k, v in (version.tags or {}).items() if k.startswith("metric.")}


def promote(cfg: Config, registered: RegisterResult, evaluated: EvaluateResult) -> PromoteResult:
    """Apply the gates to the candidate and move aliases; record the decision on the version."""
    c = tracking.client(cfg)
    name, version, alias = registered.model_name, str(registered.version), cfg.promote.alias
    current = _champion(c, name, alias)
    decision = decide(evaluated.metrics, version_metrics(current) if current else None, cfg.promote.gates)
    previous = str(current.version) if current else None
    if decision.promote:
        c.set_registered_model_alias(name, alias, version)
        if previous and previous != version:
            c.set_registered_model_alias(name, PREVIOUS, previous)
        champion = version
    else:
        c.set_registered_model_alias(name, CHALLENGER, version)
        champion = previous
    c.set_model_version_tag(name, version, "promotion.decision", "promoted" if decision.promote else "rejected")
    c.set_model_version_tag(name, version, "promotion.reasons", "; ".join(decision.reasons)[:5000])
    if decision.failed:
        c.set_model_version_tag(name, version, "promotion.failed_gates", ",".join(decision.failed))
    c.set_tag(registered.run_id, "promotion.decision", "promoted" if decision.promote else "rejected")
    tracking.end_run(cfg, registered.run_id, "FINISHED")
    result = PromoteResult(
        model_name=name, version=version, promoted=decision.promote, reasons=list(decision.reasons),
        failed=list(decision.failed), alias=alias if decision.promote else CHALLENGER,
        previous_champion=previous, champion=champion,
    )
    result.save(cfg.path("reports"))
    logger.info("promote: %s v%s %s (%s)", name, version, "PROMOTED" if decision.promote else "not promoted",
                "; ".join(decision.reasons))
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_support import stage_main

    def run(cfg: Config) -> PromoteResult:
        reports = cfg.path("reports")
        return promote(cfg, RegisterResult.load(reports), EvaluateResult.load(reports))

    return stage_main("promote", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
