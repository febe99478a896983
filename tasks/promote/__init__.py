"""Stage 6, promote: gate the candidate and move the ``champion`` alias only when it earns it.

``decide`` is a pure function of (candidate metrics, champion metrics, gates). ``promote`` is
the thin side effect around it: it takes the model's promotion lock, re-reads the champion
(someone may have moved it in the UI, or another run may have promoted meanwhile), decides,
moves aliases and writes the decision and its reasons as tags on the version.

MLflow's alias update is last-writer-wins with no compare-and-set, so without the lock two runs
finishing together could both read "champion = v3", both pass, and leave the alias on whichever
wrote last, even the worse one. The lock (tasks/tracking/registry.py) is a file lock beside a
SQLite store and a lease kept in the registry itself for a shared server, so it holds across
machines. The decision and the champion before are recorded on the version before any alias
moves, and the alias moves are one recoverable change: a crash at any point leaves a state the
next run (or ``s2s rollback``) completes. Promoting the version that already is the champion
is a no-op that says so.

The stage lives here (``promote``, ``is_current``, ``main``); its parts are in tasks/promotion/:
the pure decision (``gates.py``), recording it and moving aliases (``apply.py``), waiting for a
person's approval (``approval.py``) and a person's own moves (``manual.py``). Every name of those
parts that other modules use is importable from here.
"""

from __future__ import annotations

import logging

from tasks.core.config import Config
from tasks.core.results import EvaluateResult, PromoteResult, RegisterResult
from tasks.promotion.apply import CHALLENGER, PENDING_APPROVAL, PREVIOUS, _already, _apply, _history_record, _record
from tasks.promotion.approval import (
    AWAITING,
    Waiting,
    _await,
    approve,
    approve_command,
    awaiting_reason,
    choose,
    flow_run_state,
    resume_waiting_flow,
    version_state,
    waiting,
)
from tasks.promotion.gates import (
    EPS,
    Decision,
    _gates,
    decide,
    degenerate_checks,
    degenerate_measures,
    interval_tags,
    same_rows_basis,
)
from tasks.promotion.manual import compare, promote_version, rollback
from tasks.tracking import reads, registry, version_tags
from tasks.tracking.run import RunHandle

__all__ = [
    "AWAITING",
    "CHALLENGER",
    "EPS",
    "PENDING_APPROVAL",
    "PREVIOUS",
    "Decision",
    "Waiting",
    "_already",
    "_apply",
    "_history_record",
    "_record",
    "approve",
    "approve_command",
    "awaiting_reason",
    "choose",
    "compare",
    "decide",
    "degenerate_checks",
    "degenerate_measures",
    "flow_run_state",
    "interval_tags",
    "is_current",
    "main",
    "promote",
    "promote_version",
    "resume_waiting_flow",
    "rollback",
    "same_rows_basis",
    "version_state",
    "waiting",
]

logger = logging.getLogger(__name__)


def promote(
    cfg: Config, registered: RegisterResult, evaluated: EvaluateResult, run: RunHandle | None = None
) -> PromoteResult:
    """Apply the gates to the candidate against the champion *as it is now*, under the model's lock."""
    name, version = registered.model_name, str(registered.version)
    with registry.locked_model(cfg, name) as lock:
        current = reads.alias_version(cfg, name, cfg.promote.alias)  # re-read inside the lock
        previous = str(current.version) if current else None
        decision = None
        if previous == version:
            prior = reads.aliases(cfg, name).get(PREVIOUS)
            result = _already(cfg, name, version, prior)
        else:
            result, decision = _gate(cfg, lock, name, version, evaluated, current)
    if run is not None:
        run.set_tags({"promotion.decision": "promoted" if result.promoted else "rejected"})
    if decision is not None:
        _report(cfg, run, result, evaluated, decision, current)
    result.save(cfg.path("reports"))
    logger.info(
        "promote: %s v%s %s (%s)",
        name,
        version,
        "PROMOTED" if result.promoted else "not promoted",
        "; ".join(result.reasons),
    )
    return result


def _gate(cfg: Config, lock, name: str, version: str, evaluated: EvaluateResult, current):
    """Decide on the candidate against ``current`` (the champion or None), then record the
    decision and move the aliases, or put the version on hold for a person's approval."""
    previous = str(current.version) if current else None
    champion, basis, intervals, paired = _champion(cfg, evaluated, current)
    gates = _gates(cfg, evaluated.primary)
    limits = cfg.promote.degenerate
    outputs = degenerate_checks(evaluated.degenerate, limits) if limits.refuse else ()
    decision = decide(evaluated.metrics, champion, gates, intervals, paired, outputs)
    extra = interval_tags(intervals) if gates.confidence is not None else {}
    if decision.promote and gates.approval == "required":
        result = _await(cfg, lock, name, version, decision, previous, basis, extra, intervals)
    else:
        result = _apply(cfg, lock, name, version, decision, previous, basis, extra, intervals)
    result.intervals = intervals or {}
    return result, decision


REPORT = PromoteResult.ALSO[0]


def _report(cfg: Config, run: RunHandle | None, result: PromoteResult, evaluated: EvaluateResult, decision, current):
    """The promotion report (tasks/promotion/report.py): ``reports/promotion_report.html``, logged
    on the candidate's run, and the decision in the version's description, linked to it. The
    decision is already recorded: a failure here is a warning, never a different outcome."""
    import dataclasses
    import json

    from tasks.core import paths
    from tasks.promotion import report
    from tasks.tracking import client as tracking

    name, version = result.model_name, result.version
    try:
        path = cfg.resolve(evaluated.predictions_path)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    except (OSError, ValueError):
        rows = []  # the figures are still reported, without examples
    comparison = report.compare(dataclasses.asdict(evaluated), rows)
    c = tracking.client(cfg)
    try:
        mv = reads.call(cfg, lambda: c.get_model_version(name, version), f"reading {name} v{version}")
        data = {
            f"candidate v{version}": (mv.tags or {}).get("data_version"),
            **({f"champion v{current.version}": (current.tags or {}).get("data_version")} if current else {}),
        }
        page = report.render_html(
            comparison,
            model=name,
            version=version,
            promoted=result.promoted,
            checks=list(decision.checks),
            degenerate=evaluated.degenerate,
            data_versions=data,
        )
        out = cfg.path("reports") / REPORT
        paths.atomic_write_text(out, page)
        link = None
        if run is not None:
            run.log_artifact(out, artifact_path="promotion")
            experiment = reads.call(cfg, lambda: c.get_run(mv.run_id).info.experiment_id, "reading the run")
            link = (
                f"[promotion/{REPORT}](#/experiments/{experiment}/runs/{mv.run_id}/artifactPath/promotion/"
                f"{REPORT}?workflowType=machine_learning) in the candidate's run"
            )
        card = (mv.description or "").split("\n## Promotion decision", 1)[0].rstrip("\n") + "\n"
        section = report.description_section(result.promoted, list(result.reasons), comparison, link)
        reads.call(
            cfg,
            lambda: c.update_model_version(name, version, description=card + section),
            f"writing the decision into {name} v{version}'s description",
        )
    except Exception as exc:  # cosmetic: the decision and aliases are recorded already
        logger.warning("promote: the promotion report of %s v%s was not written: %s", name, version, exc)


def _champion(cfg: Config, evaluated: EvaluateResult, current):
    """What the candidate is compared with: (champion metrics or None, how they were measured,
    the paired-bootstrap intervals, the candidate's metrics on the champion's rows)."""
    previous = str(current.version) if current else None
    if current is None:
        return None, "no champion", None, None
    if evaluated.champion and str(evaluated.champion["version"]) == previous:
        champ = evaluated.champion
        return champ["metrics"], same_rows_basis(evaluated), champ.get("intervals"), champ.get("candidate_metrics")
    basis = (
        f"champion v{previous} changed during this run: its recorded metrics"
        if evaluated.champion
        else f"champion v{previous}: its recorded metrics"
    )
    return version_tags.metrics_of(cfg, current), basis, None, None


def is_current(cfg: Config, result: PromoteResult) -> bool:
    """A cached decision still holds: the alias points where it says (the champion it made, or the
    champion it lost to). Otherwise promotion runs again against the registry as it is."""
    if result.awaiting:  # a person's answer is not something a cache can reuse
        return False
    current = reads.alias_version(cfg, result.model_name, cfg.promote.alias)
    holder = str(current.version) if current else None
    return holder == (result.version if result.promoted else result.champion)


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> PromoteResult:
        reports = cfg.path("reports")
        registered = RegisterResult.load(reports)
        if why := cfg.register.skipped_for_experiment():
            result = PromoteResult(
                model_name=registered.model_name, version="", promoted=False, reasons=[why], failed=[], alias=""
            )
            result.save(reports)
            return result
        return promote(cfg, registered, EvaluateResult.load(reports), owner.attach(registered.run_id))

    return stage_main("promote", run, argv)
