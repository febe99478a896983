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
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from tasks.core.config import Config, Degenerate, Gates
from tasks.core.errors import ConfigError, TrackingError
from tasks.core.results import EvaluateResult, PromoteResult, RegisterResult
from tasks.tracking import client as tracking
from tasks.tracking import reads, registry
from tasks.tracking.run import RunHandle

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
PENDING_APPROVAL = "pending_approval"
AWAITING = "passed the gates: awaiting approval"  # how the reason of a waiting version starts
EPS = 1e-12  # float noise, not a tolerance


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()  # names of the gates that failed


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    gates: Gates,
    intervals: dict[str, dict] | None = None,
    paired: dict[str, float] | None = None,
    outputs: tuple[tuple[bool, str, str], ...] = (),
) -> Decision:
    """Pass only if every gate holds. ``champion`` is None when there is none yet.

    Gates: ``min`` / ``max`` absolute bounds; beat the champion on ``primary`` by at least
    ``min_delta`` (null turns it off); lose at most ``max_regression[m]`` on each listed metric.
    "Beat" and "lose" follow each metric's direction in the registry (tasks/metrics/): for a
    lower-is-better metric, a gain is a decrease. A metric the candidate lacks fails its gate;
    one the champion lacks skips the comparison.

    Certified (``gates.confidence`` set and ``intervals`` holding the paired-bootstrap interval of
    candidate - champion for the metric): the *lower bound* of the primary metric's gain must
    reach ``min_delta`` and its observed gain be above zero (a tie never replaces the champion),
    and the *upper bound* of each listed metric's drop must stay within its tolerance. Without
    an interval for a metric (the champion was not re-scored on the same rows) the point
    estimate decides, and the reason says so.

    ``paired``: the candidate's metrics on the rows the champion was re-scored on, when those are
    fewer than the candidate's test rows (the champion trained on the others); the comparisons
    with the champion read these, the absolute bounds the candidate's own.

    ``outputs``: the degenerate-output checks (``degenerate_checks``), (passed, gate, reason) each.
    """
    from tasks import metrics
    from tasks.metrics.bootstrap import Interval

    def lower_is_better(metric: str) -> bool:
        m = metrics.get(metric)
        return m is not None and m.higher_is_better is False

    def gain(metric: str, c: float, h: float) -> float:  # candidate over champion, in the better direction
        return h - c if lower_is_better(metric) else c - h

    def gain_interval(metric: str) -> tuple[float, float, float, Interval] | None:
        """(observed gain, its lower bound, its upper bound, the interval) when certified."""
        if gates.confidence is None or not intervals or metric not in intervals:
            return None
        iv = Interval.from_dict(intervals[metric])
        if lower_is_better(metric):
            return -iv.diff, -iv.high, -iv.low, iv
        return iv.diff, iv.low, iv.high, iv

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
            check(
                value >= bound - EPS,
                f"min.{metric}",
                f"{metric} {value:.4f} {'>=' if value >= bound - EPS else '<'} {bound} (min)",
            )
    for metric, bound in sorted(gates.max.items()):
        value = candidate.get(metric)
        if value is None:
            check(False, f"max.{metric}", f"{metric} is missing from the candidate's metrics (gate max {bound})")
        else:
            check(
                value <= bound + EPS,
                f"max.{metric}",
                f"{metric} {value:.4f} {'<=' if value <= bound + EPS else '>'} {bound} (max)",
            )

    for ok, gate, text in outputs:
        check(ok, gate, text)

    primary = gates.primary or metrics.default_primary(list(metrics.families()))
    candidate = {**candidate, **(paired or {})}  # like with like from here on
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
            elif (certified := gain_interval(primary)) is not None:
                observed, low, high, iv = certified
                ok = low >= gates.min_delta - EPS and observed > EPS
                check(
                    ok,
                    "beat_champion",
                    f"{primary} {c:.4f} vs champion {h:.4f}: gain {observed:+.4f}, {iv.confidence:.0%} interval "
                    f"[{low:+.4f}, {high:+.4f}]: lower bound {low:+.4f} "
                    + (
                        f"{'>=' if low >= gates.min_delta - EPS else '<'} min_delta {gates.min_delta}"
                        if observed > EPS or low < gates.min_delta - EPS
                        else "but no gain at all (a tie keeps the champion)"
                    )
                    + f" (paired bootstrap, n={iv.n})",
                )
            else:
                delta = gain(primary, c, h)
                check(
                    delta >= gates.min_delta - EPS,
                    "beat_champion",
                    f"{primary} {c:.4f} vs champion {h:.4f}: {delta:+.4f} "
                    f"{'>=' if delta >= gates.min_delta - EPS else '<'} min_delta {gates.min_delta}"
                    + (" (point estimates: no paired scores)" if gates.confidence is not None else ""),
                )
        for metric, tolerance in sorted(gates.max_regression.items()):
            c, h = candidate.get(metric), champion.get(metric)
            if c is None:
                check(False, f"regression.{metric}", f"{metric} is missing from the candidate's metrics")
            elif h is None:
                reasons.append(f"the champion has no {metric}: regression check skipped")
            elif (certified := gain_interval(metric)) is not None:
                observed, low, high, iv = certified
                worst = -low  # the upper bound of the drop
                check(
                    worst <= tolerance + EPS,
                    f"regression.{metric}",
                    f"{metric} {c:.4f} vs champion {h:.4f}: drop {max(-observed, 0):.4f}, {iv.confidence:.0%} "
                    f"upper bound {max(worst, 0):.4f} {'<=' if worst <= tolerance + EPS else '>'} "
                    f"tolerance {tolerance}",
                )
            else:
                drop = -gain(metric, c, h)
                check(
                    drop <= tolerance + EPS,
                    f"regression.{metric}",
                    f"{metric} {c:.4f} vs champion {h:.4f}: drop {max(drop, 0):.4f} "
                    f"{'<=' if drop <= tolerance + EPS else '>'} tolerance {tolerance}",
                )
    if not reasons:
        reasons.append("no gates configured: promoted unconditionally")
    return Decision(promote=not failed, reasons=tuple(reasons), failed=tuple(failed))


def degenerate_checks(report: dict, limits: Degenerate) -> tuple[tuple[bool, str, str], ...]:
    """The degenerate-output gate on the evaluate stage's figures (tasks/metrics/degenerate.py):
    (passed, gate, reason) per failed measure, each reason with up to three examples (input
    shortened, prediction) shared among them; one passing line when none fails. No figures (an
    evaluation from before they were measured) fails closed: the outputs were never looked at."""
    figures, examples = report.get("figures") or {}, report.get("examples") or {}
    if not figures:
        return ((False, "degenerate", "no degenerate-output figures in the evaluation: re-run evaluate"),)
    measures = degenerate_measures(figures, limits)
    failed = [m for m in measures if m[0]]
    if not failed:
        return ((True, "degenerate", "outputs not degenerate: " + ", ".join(m[2] for m in measures)),)
    out, budget = [], 3
    for _, gate, found, kind in failed:
        shown = (examples.get(kind) or [])[:budget]
        budget -= len(shown)
        cases = ", ".join(f"{e['input']!r} -> {e['prediction']!r}" for e in shown)
        out.append((False, f"degenerate.{gate}", f"degenerate outputs: {found}" + (f", e.g. {cases}" if cases else "")))
    return tuple(out)


def degenerate_measures(figures: dict[str, float], limits: Degenerate) -> list[tuple[bool, str, str, str]]:
    """(failed, measure, what was found against its limit, example kind) per measure."""
    pct = "{:.1%}".format
    empty, looping = figures["empty_share"], figures["repeating_share"]
    same, theirs = figures["identical_share"], figures["reference_identical_share"]
    ratio = figures["length_ratio"]
    return [
        (empty > limits.max_empty + EPS, "empty", f"{pct(empty)} empty (max {pct(limits.max_empty)})", "empty"),
        (
            looping > limits.max_repeating + EPS,
            "repeating",
            f"{pct(looping)} repeating (max {pct(limits.max_repeating)})",
            "repeating",
        ),
        (
            same - theirs > limits.max_identical_excess + EPS,
            "identical",
            f"the most common prediction is {pct(same)} of them (references: {pct(theirs)}, "
            f"excess max {pct(limits.max_identical_excess)})",
            "identical",
        ),
        (
            ratio < limits.min_length_ratio - EPS,
            "length",
            f"length {ratio:.2f}x the references' (min {limits.min_length_ratio}x)",
            "short",
        ),
    ]


# -- registry side effects -----------------------------------------------------------------


def interval_tags(intervals: dict[str, dict] | None) -> dict[str, str]:
    """``promotion.interval.<metric>``: candidate - champion with its paired-bootstrap interval."""
    from tasks.metrics.bootstrap import Interval

    return {f"promotion.interval.{k}": Interval.from_dict(v).text() for k, v in (intervals or {}).items()}


def same_rows_basis(evaluated: EvaluateResult) -> str:
    """How the champion was compared: on how many of the test rows, and why not all."""
    champ = evaluated.champion or {}
    rows, left_out = champ.get("rows", evaluated.n_examples), champ.get("left_out", 0)
    text = f"champion v{champ.get('version')} re-scored on the same {rows} test rows"
    if left_out:
        text += f" ({left_out} it trained on left out)"
    return text


def version_metrics(version) -> dict[str, float]:
    """The metrics recorded on a model version (its ``metric.*`` tags)."""
    return {k.removeprefix("metric."): float(v) for k, v in (version.tags or {}).items() if k.startswith("metric.")}


def _gates(cfg: Config, primary: str | None = None) -> Gates:
    return cfg.promote.gates.model_copy(update={"primary": primary or cfg.primary_metric})


def _record(
    cfg: Config,
    name: str,
    version: str,
    decision: Decision,
    previous: str | None,
    basis: str,
    extra: dict[str, str] | None = None,
) -> None:
    """The reasons and the champion before, on the version: written before any alias moves. The
    decision itself is written with the alias change (``_apply``), so it is never said without it."""
    tags = {
        "promotion.reasons": "; ".join(decision.reasons)[:5000],
        "promotion.champion_before": previous or "none",
        "promotion.compared_on": basis,
        "promotion.failed_gates": ",".join(decision.failed),
        **(extra or {}),
    }
    c = tracking.client(cfg)
    for k, v in tags.items():
        reads.call(cfg, lambda k=k, v=v: c.set_model_version_tag(name, version, k, v), "recording the decision")


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
    op = "promote" if decision.promote else "reject"
    if (extra or {}).get("promotion.approved_by"):
        op = "approve" if decision.promote else "reject"
    elif (extra or {}).get("promotion.forced") == "true":
        op = "force"
    elif (extra or {}).get("promotion.manual") == "true":
        op = "manual"
    registry.move_aliases(
        cfg,
        name,
        changes,
        _history_record(
            op, version, previous, "promoted" if decision.promote else "rejected", decision.reasons, intervals, basis
        ),
        lock,
        tags={version: {"promotion.decision": "promoted" if decision.promote else "rejected"}},
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


def _await(
    cfg: Config,
    lock,
    name: str,
    version: str,
    decision: Decision,
    previous: str | None,
    basis: str,
    extra: dict[str, str],
    intervals: dict[str, dict] | None,
) -> PromoteResult:
    """Passed the gates; a person decides (gates.approval: required). The version takes the
    ``pending_approval`` alias; ``approve`` finishes it either way. The version's tags say what
    waits on whom: since when, which pipeline, which flow run, the command that answers."""
    from datetime import UTC, datetime, timedelta

    from tasks.core.context import prefect_flow_run_id

    gates = cfg.promote.gates
    since = datetime.now(UTC)
    flow_run = prefect_flow_run_id() or ""
    # only a paused flow run times out; a version put on hold outside one waits until answered
    deadline = (since + timedelta(seconds=gates.approval_timeout_s)).isoformat(timespec="seconds") if flow_run else ""
    reasons = (*decision.reasons, awaiting_reason(cfg, version, previous, deadline))
    _record(
        cfg,
        name,
        version,
        Decision(False, reasons),
        previous,
        basis,
        {
            **extra,
            "promotion.flow_run": flow_run,
            "promotion.prefect_api": _prefect_api(),
            "promotion.pipeline": cfg.pipeline,
            "promotion.awaiting_since": since.isoformat(timespec="seconds"),
            "promotion.approval_deadline": deadline,
            "promotion.on_timeout": gates.on_timeout if deadline else "",
        },
    )
    registry.move_aliases(
        cfg,
        name,
        {PENDING_APPROVAL: version},
        _history_record("await", version, previous, "awaiting approval", reasons, intervals, basis),
        lock,
        tags={version: {"promotion.decision": "awaiting_approval"}},
    )
    return PromoteResult(
        model_name=name,
        version=version,
        promoted=False,
        reasons=list(reasons),
        failed=[],
        alias=PENDING_APPROVAL,
        previous_champion=previous,
        champion=previous,
        awaiting=True,
    )


def approve_command(cfg: Config, version: str, reject: bool = False) -> str:
    """The command that answers for ``version`` of this pipeline, as a shell would take it: the
    pipeline and the run's ``--set`` overrides spelled out, so it addresses no other model."""
    import shlex

    words = ["s2s", "approve", str(version), "--pipeline", cfg.pipeline]
    for item in cfg.overrides:
        words += ["--set", item]
    if reject:
        words.append("--reject")
    return " ".join(shlex.quote(w) for w in words) + ' --reason "..."'


def awaiting_reason(cfg: Config, version: str, champion: str | None, deadline: str) -> str:
    """The reason a waiting version carries (tags, history, run summary): on whom it waits."""
    then = (
        f"unanswered by {deadline}: {cfg.promote.gates.on_timeout} (gates.on_timeout)"
        if deadline
        else "no flow run waits, so no timeout: it waits until answered"
    )
    # one reason: the decision's reasons are stored joined by "; ", so none may contain one
    return (
        f"{AWAITING} of pipeline {cfg.pipeline!r} by a person: `{approve_command(cfg, version)}` "
        f"(add --reject to reject), the champion stays {_v(champion)} meanwhile, {then}"
    )


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none (no champion yet)"


def _prefect_api() -> str:
    """The Prefect API the waiting flow run lives on (so `s2s approve` can resume it)."""
    import sys

    if "prefect" not in sys.modules:
        return ""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or ""


def resume_waiting_flow(cfg: Config, version: str, approved: bool, reason: str, approver: str) -> str | None:
    """Resume the flow run that waits on ``version`` with the same answer (best effort). Returns
    the flow run id when it was resumed."""
    candidate = reads.get_version(cfg, cfg.register.model_name, str(version))
    tags = (candidate.tags or {}) if candidate is not None else {}
    flow_run, api = tags.get("promotion.flow_run"), tags.get("promotion.prefect_api")
    if not flow_run or not api:
        return None
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            resume_flow_run(UUID(flow_run), run_input={"approve": approved, "reason": reason, "approver": approver})
    except Exception as exc:  # the run finished, timed out, or its server is gone: the registry has the answer
        logger.info("flow run %s was not resumed (%s)", flow_run, exc)
        return None
    return flow_run


def approve(
    cfg: Config,
    version: str,
    approved: bool,
    reason: str = "",
    approver: str = "",
    expect_waiting: bool = False,
) -> PromoteResult:
    """A person's answer for a version awaiting approval (or the timeout's configured outcome).
    The champion must not have moved since the gates compared with it; if it did, the comparison
    is stale and the version is rejected with that reason. Answering a version already decided
    returns its recorded outcome and changes nothing (the paused flow, resumed after
    ``s2s approve`` answered); with ``expect_waiting`` (a person's command) it is a ConfigError."""
    name = str(cfg.register.model_name)
    version = str(version)
    approver = approver or getpass.getuser()
    with registry.locked_model(cfg, name) as lock:
        pending = reads.alias_version(cfg, name, PENDING_APPROVAL)
        candidate = reads.get_version(cfg, name, version)
        if candidate is None:
            raise ConfigError(f"{name} has no version {version}; see `s2s compare --pipeline {cfg.pipeline}`")
        tags = candidate.tags or {}
        if pending is None or str(pending.version) != version:
            decided = tags.get("promotion.decision", "")
            if expect_waiting:
                raise ConfigError(
                    f"{name} v{version} (pipeline {cfg.pipeline!r}) is not awaiting approval "
                    f"({version_state(cfg, candidate)}): nothing changed; `s2s approve --list` shows what waits"
                )
            if decided in ("promoted", "rejected"):
                current = reads.alias_version(cfg, name, cfg.promote.alias)
                return PromoteResult(
                    model_name=name,
                    version=version,
                    promoted=decided == "promoted",
                    reasons=[r for r in tags.get("promotion.reasons", "").split("; ") if r],
                    failed=[],
                    alias=cfg.promote.alias if decided == "promoted" else CHALLENGER,
                    previous_champion=tags.get("promotion.champion_before"),
                    champion=str(current.version) if current else None,
                )
            raise ConfigError(f"{name} v{version} is not awaiting approval (decision: {decided or 'none'})")
        before = tags.get("promotion.champion_before")
        before = None if before in (None, "", "none") else before
        current = reads.alias_version(cfg, name, cfg.promote.alias)
        now = str(current.version) if current else None
        prior = [r for r in tags.get("promotion.reasons", "").split("; ") if r and not r.startswith(AWAITING)]
        said = f"{'approved' if approved else 'rejected'} by {approver}" + (f": {reason}" if reason else "")
        if approved and now != before:
            approved, said = False, f"{said}; but the champion moved from v{before} to v{now} while it waited: re-run"
        decision = Decision(approved, (*prior, said), () if approved else ("approval",))
        extra = {"promotion.approved_by": approver, "promotion.approval_reason": reason}
        return _apply(cfg, lock, name, version, decision, now, tags.get("promotion.compared_on", ""), extra)


def version_state(cfg: Config, version) -> str:
    """What became of a registered version, in a few words: its decision and its aliases."""
    tags = version.tags or {}
    held = sorted(a for a, v in reads.aliases(cfg, version.name).items() if v == str(version.version))
    decided = tags.get("promotion.decision") or "no promotion decision recorded"
    by = tags.get("promotion.approved_by")
    return f"{decided}" + (f" by {by}" if by else "") + (f"; holds {', '.join(held)}" if held else "; holds no alias")


# -- what waits for approval, across the pipelines ---------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A version holding ``pending_approval``: what it waits for, since when, on which flow run."""

    cfg: Config
    version: str
    since: str
    champion: str | None
    reasons: tuple[str, ...]
    metrics: dict[str, float]
    deadline: str
    on_timeout: str
    flow_run: str
    prefect_api: str

    @property
    def pipeline(self) -> str:
        return self.cfg.pipeline

    @property
    def model_name(self) -> str:
        return self.cfg.register.model_name

    def command(self, reject: bool = False) -> str:
        return approve_command(self.cfg, self.version, reject)

    def line(self) -> str:
        return f"pipeline {self.pipeline!r}: {self.model_name} v{self.version} since {self.since}: `{self.command()}`"


def _store_exists(cfg: Config) -> bool:
    """False only for a SQLite store whose file does not exist (nothing can wait in it, and a
    read must not create it); any other store is asked."""
    db = cfg.sqlite_path()
    return db is None or db.exists()


def waiting(configs: dict[str, Config]) -> list[Waiting]:
    """Every version awaiting approval in the registries of ``configs`` (pipeline -> config),
    one per registered model. A registry that cannot be read is an error naming the pipeline,
    never "nothing waits"."""
    seen: dict[tuple[str, str], Waiting] = {}
    for pipeline, cfg in configs.items():
        name = cfg.register.model_name
        key = (cfg.tracking_uri(), name)
        if key in seen or not _store_exists(cfg):
            continue
        try:
            pending = reads.alias_version(cfg, name, PENDING_APPROVAL)
            if pending is None:
                continue
            tags = pending.tags or {}
            owner = configs.get(tags.get("promotion.pipeline", ""), cfg)  # pipelines sharing a model
            before = tags.get("promotion.champion_before", "")
            seen[key] = Waiting(
                cfg=owner if owner.register.model_name == name else cfg,
                version=str(pending.version),
                since=tags.get("promotion.awaiting_since") or _await_time(cfg, name, str(pending.version)),
                champion=before if before not in ("", "none") else None,
                reasons=tuple(r for r in tags.get("promotion.reasons", "").split("; ") if r),
                metrics=version_metrics(pending),
                deadline=tags.get("promotion.approval_deadline", ""),
                on_timeout=tags.get("promotion.on_timeout", ""),
                flow_run=tags.get("promotion.flow_run", ""),
                prefect_api=tags.get("promotion.prefect_api", ""),
            )
        except TrackingError as exc:
            raise TrackingError(
                f"pipeline {pipeline!r}: {exc}; cannot tell what awaits approval there, so nothing was answered "
                f"(to answer for one pipeline only: s2s approve VERSION --pipeline NAME)",
                transient=exc.transient,
            ) from None
    return sorted(seen.values(), key=lambda w: (w.since, w.pipeline))


def _await_time(cfg: Config, name: str, version: str) -> str:
    """When ``version`` began to wait, from its history entry (versions put on hold before the
    ``promotion.awaiting_since`` tag existed)."""
    from tasks.tracking import history

    for entry in reversed(history.entries(cfg, name)):
        if entry.get("op") == "await" and entry.get("version") == version:
            return str(entry.get("time", ""))[:19] + "+00:00"
    return "unknown"


def choose(found: list[Waiting], version: str | None, configs: dict[str, Config]) -> Waiting:
    """The one waiting version a person's ``s2s approve [VERSION]`` answers for, or a ConfigError
    that says what waits and the command for each: never a guess, never a version not waiting."""
    checked = ", ".join(configs)
    if version is not None:
        matching = [w for w in found if w.version == str(version)]
        if len(matching) == 1:
            return matching[0]
        if not matching:
            states = []
            for cfg in configs.values():
                if not _store_exists(cfg):
                    continue
                v = reads.get_version(cfg, cfg.register.model_name, str(version))
                if v is not None:
                    states.append(f"{cfg.register.model_name} v{version}: {version_state(cfg, v)}")
            raise ConfigError(
                f"v{version} is not awaiting approval in pipeline(s) {checked}: nothing changed"
                + "".join(f"\n  {s}" for s in dict.fromkeys(states))
                + _listing(found)
            )
        found = matching
    if not found:
        raise ConfigError(f"nothing awaits approval in pipeline(s) {checked}: nothing changed")
    if len(found) > 1:
        raise ConfigError(
            f"{len(found)} versions await approval: name one with its --pipeline (nothing changed)" + _listing(found)
        )
    return found[0]


def _listing(found: list[Waiting]) -> str:
    if not found:
        return "\n  nothing awaits approval"
    return "\n  waiting now:" + "".join(f"\n    {w.line()}" for w in found)


def flow_run_state(w: Waiting) -> str:
    """The paused flow run's state as its Prefect server has it (a display: an unreachable server
    is said, not hidden)."""
    if not w.flow_run or not w.prefect_api:
        return "no flow run waits: only `s2s approve` answers it"
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: w.prefect_api}), get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(w.flow_run)).state
    except Exception as exc:  # a status line: the reason it could not be read is the status
        return f"flow run {w.flow_run}: its state could not be read from {w.prefect_api} ({type(exc).__name__}: {exc})"
    if state is None:
        return f"flow run {w.flow_run}: no state"
    if state.is_paused():
        until = state.state_details.pause_timeout
        return f"flow run {w.flow_run} is paused" + (f" until {until.isoformat(timespec='seconds')}" if until else "")
    return (
        f"flow run {w.flow_run} is {state.name}, no longer waiting: it will not act on an answer, "
        "`s2s approve` alone decides"
    )


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


def promote(
    cfg: Config, registered: RegisterResult, evaluated: EvaluateResult, run: RunHandle | None = None
) -> PromoteResult:
    """Apply the gates to the candidate against the champion *as it is now*, under the model's lock."""
    name, version = registered.model_name, str(registered.version)
    with registry.locked_model(cfg, name) as lock:
        current = reads.alias_version(cfg, name, cfg.promote.alias)  # re-read inside the lock
        previous = str(current.version) if current else None
        if previous == version:
            prior = reads.aliases(cfg, name).get(PREVIOUS)
            result = _already(cfg, name, version, prior)
        else:
            intervals, paired = None, None
            if current is None:
                champion, basis = None, "no champion"
            elif evaluated.champion and str(evaluated.champion["version"]) == previous:
                champion, basis = evaluated.champion["metrics"], same_rows_basis(evaluated)
                intervals = evaluated.champion.get("intervals")
                paired = evaluated.champion.get("candidate_metrics")
            else:
                champion = version_metrics(current)
                basis = (
                    f"champion v{previous} changed during this run: its recorded metrics"
                    if evaluated.champion
                    else f"champion v{previous}: its recorded metrics"
                )
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
    if run is not None:
        run.set_tags({"promotion.decision": "promoted" if result.promoted else "rejected"})
    result.save(cfg.path("reports"))
    logger.info(
        "promote: %s v%s %s (%s)",
        name,
        version,
        "PROMOTED" if result.promoted else "not promoted",
        "; ".join(result.reasons),
    )
    return result


def is_current(cfg: Config, result: PromoteResult) -> bool:
    """A cached decision still holds: the alias points where it says (the champion it made, or the
    champion it lost to). Otherwise promotion runs again against the registry as it is."""
    if result.awaiting:  # a person's answer is not something a cache can reuse
        return False
    current = reads.alias_version(cfg, result.model_name, cfg.promote.alias)
    holder = str(current.version) if current else None
    return holder == (result.version if result.promoted else result.champion)


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
        champion = version_metrics(current) if current else None
        if force:
            decision = Decision(True, (f"forced by {getpass.getuser()}" + (f": {reason}" if reason else ""),))
            extra = {
                "promotion.forced": "true",
                "promotion.forced_by": getpass.getuser(),
                "promotion.forced_reason": reason or "",
            }
        else:
            decision = decide(version_metrics(candidate), champion, _gates(cfg))
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
    c = tracking.client(cfg)
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
            reads.call(
                cfg,
                lambda: c.set_model_version_tag(name, old, "promotion.rolled_back_by", getpass.getuser()),
                "recording the rollback",
            )
        reads.call(
            cfg,
            lambda: c.set_model_version_tag(name, new, "promotion.restored_by_rollback", "true"),
            "recording the rollback",
        )
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
            **version_metrics(v),
            "data_version": (v.tags or {}).get("data_version", ""),
            "decision": (v.tags or {}).get("promotion.decision", ""),
            "created": v.creation_timestamp,
        }
        for v in versions
    ]


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


if __name__ == "__main__":
    raise SystemExit(main())
