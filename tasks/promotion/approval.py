"""Promotion that waits for a person (``gates.approval: required``).

A version that passed the gates takes the ``pending_approval`` alias, its tags saying what waits
on whom (since when, which pipeline, which flow run, the command that answers); ``approve``
finishes it either way. ``waiting`` and ``choose`` find what waits across the pipelines for
``s2s approve``; ``flow_run_state`` and ``resume_waiting_flow`` talk to the paused flow run.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from tasks.core.config import Config
from tasks.core.errors import ConfigError, TrackingError
from tasks.core.results import PromoteResult
from tasks.promotion.apply import CHALLENGER, PENDING_APPROVAL, _apply, _history_record, _record
from tasks.promotion.gates import Decision
from tasks.tracking import reads, registry, version_tags

logger = logging.getLogger("tasks.promote")  # the stage's logger, as before the split

AWAITING = "passed the gates: awaiting approval"  # how the reason of a waiting version starts


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
    tags = version_tags.facts(candidate)
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
        tags = version_tags.facts(candidate)
        if pending is None or str(pending.version) != version:
            return _decided(cfg, name, version, candidate, expect_waiting)
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


def _decided(cfg: Config, name: str, version: str, candidate, expect_waiting: bool) -> PromoteResult:
    """An answer for a version that does not wait: its recorded outcome, or a ConfigError."""
    tags = version_tags.facts(candidate)
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


def version_state(cfg: Config, version) -> str:
    """What became of a registered version, in a few words: its decision and its aliases."""
    tags = version_tags.facts(version)
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
            tags = version_tags.facts(pending)
            owner = configs.get(tags.get("promotion.pipeline", ""), cfg)  # pipelines sharing a model
            before = tags.get("promotion.champion_before", "")
            seen[key] = Waiting(
                cfg=owner if owner.register.model_name == name else cfg,
                version=str(pending.version),
                since=tags.get("promotion.awaiting_since") or _await_time(cfg, name, str(pending.version)),
                champion=before if before not in ("", "none") else None,
                reasons=tuple(r for r in tags.get("promotion.reasons", "").split("; ") if r),
                metrics=version_tags.metrics_of(cfg, pending),
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
