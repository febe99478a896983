"""The flows: the training pipeline, the scheduled retrain, and manual promotion.

Each flow resolves the pipeline's configuration and sequences the stage tasks; stage logic lives
in ``tasks/``. The flow owns what spans stages: the project lock (one writer per folder), the
MLflow run (opened lazily, ended here on every exit path), and the decision whether a stage's
recorded result may be reused (DVC says its inputs are unchanged, and the tracking store still
holds what the result names; see flows/dvc_cache.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import asdict

from prefect import flow, get_run_logger

from flows import runs
from flows.dvc_cache import StageCache
from flows.stages import for_pipeline, promote_version_task
from flows.summary import RunSummary, stage_figure
from tasks import promote as promote_stage
from tasks import register as register_stage
from tasks import train as train_stage
from tasks.core import locks, logs, notify, paths, results, signals
from tasks.core.config import Config, load_config
from tasks.core.errors import ValidationFailed
from tasks.core.paths import write_guard
from tasks.core.results import STAGES, EvaluateResult, IngestResult, PromoteResult, RegisterResult, TrainResult
from tasks.core.secrets import install_redaction, load_secret_blocks
from tasks.tracking import client as tracking
from tasks.tracking import reads
from tasks.tracking import retrain as retraining
from tasks.tracking.run import RunOwner, log_validation, owned


def run_stages(cfg: Config, force: bool = False) -> RunSummary:
    """ingest -> validate -> train -> evaluate -> register -> promote, reusing current stages."""
    install_redaction()  # also in worker-started runs, which do not go through the CLI
    log = get_run_logger()
    filled = load_secret_blocks()
    if filled:
        log.info("credentials from Prefect Secret blocks: %s", ", ".join(filled))
    with locks.project_lock(cfg.root):
        tracking.preflight(cfg)  # an unreachable tracking server or bad credentials: fail before any work
        with owned(cfg) as owner:
            return _sequence(cfg, force, owner, log)


class _Stages:
    """Runs the stages in order, each once: or reuses a stage's recorded result (DVC says its
    inputs did not change and ``still(result)`` confirms the tracking store holds what it names),
    or keeps the result ``finished()`` finds (the stage completed for these inputs, but the run
    that ran it was stopped before recording it; not with --force). Times what it runs."""

    def __init__(self, cfg: Config, force: bool, cache: StageCache):
        self.cfg, self.force, self.cache = cfg, force, cache
        self.tasks = for_pipeline(cfg)
        self.seconds: dict[str, float] = {}
        self.skipped: list[str] = []

    def __call__(self, name: str, cached, *args, still=None, finished=None):
        number = f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}"
        signals.check()  # a stop that arrived since the last stage, even one whose exception was lost
        if self.cache.up_to_date(name):
            result = cached()
            if still is None or still(result):
                logs.progress("%s: unchanged since dvc.lock recorded it, reused", number)
                self.skipped.append(name)
                return result
            logs.progress("%s: its recorded result names what the tracking store no longer holds: running it", number)
        if finished is not None and not self.force and (result := finished()) is not None:
            logs.progress("%s: finished for these settings and data before its run was stopped: kept", number)
            self.cache.record(name)
            return result
        results.clear_after(self.cfg.path("reports"), name)  # what follows is decided again, or not at all
        start = time.perf_counter()
        logs.adopt_libraries()  # what the previous stage imported (transformers...) logs through ours
        logs.progress("%s: running", number)
        try:
            result = self.tasks[name](self.cfg, *args)
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
        self.cache.record(name)
        figure = stage_figure(name, result)
        logs.progress("%s: done in %.1f s%s", number, self.seconds[name], f": {figure}" if figure else "")
        return result


def _sequence(cfg: Config, force: bool, owner: RunOwner, log) -> RunSummary:
    cache = StageCache(cfg, force)
    stage, reports = _Stages(cfg, force, cache), cfg.path("reports")
    if cache.reason:
        log.info("stage cache off: %s", cache.reason)
    paths.sweep_outputs(cfg)  # what a killed run left half-written (this run holds the lock)
    if not cache.up_to_date("guard"):  # the folder check dvc.yaml runs first (it passed when cfg loaded)
        write_guard(cfg)
        cache.record("guard")
    try:
        ingested = stage("ingest", lambda: IngestResult.load(cfg.path("data")))
        run = owner.run(ingested.data_version)
        try:
            stage("validate", lambda: None, ingested)
        except ValidationFailed:  # the gate: record the rejected data on a FAILED run, train nothing
            log_validation(cfg, run)
            raise
        trained = stage(
            "train",
            lambda: TrainResult.load(reports),
            ingested,
            run,
            still=lambda r: tracking.run_exists(cfg, r.run_id),
            finished=lambda: train_stage.finished_unrecorded(cfg, ingested),
        )
        run.continue_run(trained.run_id)  # later stages log to the training's run, cached or not
        if trained.resumed_flow_run and "train" not in stage.skipped:
            runs.close_crashed(trained.resumed_flow_run)  # its train task no longer shows Running
        evaluated = stage("evaluate", lambda: EvaluateResult.load(reports), trained, ingested, run)
        registered = stage(
            "register",
            lambda: RegisterResult.load(reports),
            trained,
            evaluated,
            ingested,
            run,
            still=lambda r: register_stage.is_current(cfg, r),
        )
        promoted = stage(
            "promote",
            lambda: PromoteResult.load(reports),
            registered,
            evaluated,
            run,
            still=lambda r: promote_stage.is_current(cfg, r),
        )
    finally:
        cache.close()
    # say only what holds: the alias as the registry has it now, not as a record remembers it
    holder = reads.alias_version(cfg, promoted.model_name, cfg.promote.alias)
    now = str(holder.version) if holder else None
    stage_results = (ingested, trained, evaluated, registered, promoted)
    return RunSummary.of(cfg, *stage_results, stage.seconds, stage.skipped, alias_now=now)


# No log_prints on these flows: Prefect's print patch ignores a redirected sys.stdout, so dill's
# dis-capture inside datasets' fingerprinting ends up as thousands of run-log lines (and dill
# sees no globals). The stages log through `logging`; prefect.toml forwards the `tasks` loggers.
@flow(name="training-pipeline")
def training_pipeline(pipeline: str = "default", overrides: list[str] | None = None, force: bool = False) -> RunSummary:
    """Run every stage of ``pipeline`` (pipelines.yaml) with optional ``section.key=value`` overrides."""
    cfg = load_config(pipeline, overrides or [])
    with failures_told(cfg):
        summary = await_approval(cfg, run_stages(cfg, force))
    publish(f"{pipeline}-run", summary.markdown(), f"{summary.model_name} v{summary.version}")
    tell(cfg, summary)
    return summary


@contextlib.contextmanager
def failures_told(cfg: Config):
    """A run that fails (bad data, a stage error, an interruption) is one ``failed`` event."""
    from tasks.core.secrets import redact

    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, (GeneratorExit,)):
            notify.send(cfg, "failed", error=redact(f"{type(exc).__name__}: {exc}")[:2000])
        raise


def await_approval(cfg: Config, summary: RunSummary) -> RunSummary:
    """gates.approval: required: the candidate passed; pause the flow run with a form (approve,
    reason) until a person answers or approval_timeout_s passes (then gates.on_timeout decides).
    Paused outside the project lock and the MLflow run: a long wait blocks nobody."""
    if not summary.awaiting:
        return summary
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput

    class Approval(RunInput):
        approve: bool = False
        reason: str = ""
        approver: str = ""

    gates = cfg.promote.gates
    notify.send(cfg, "awaiting_approval", version=summary.version, reasons=summary.reasons, metrics=summary.metrics)
    logs.progress(
        "promote: %s v%s of pipeline %r passed the gates and waits for a person's approval (champion stays %s "
        "meanwhile). In %s, approve: `%s`  reject: `%s`  (or resume this flow run in the Prefect UI: approve, "
        "reason); unanswered after %d s: %s (gates.on_timeout)",
        summary.model_name,
        summary.version,
        cfg.pipeline,
        f"v{summary.alias_now}" if summary.alias_now else "none",
        cfg.root,
        promote_stage.approve_command(cfg, summary.version),
        promote_stage.approve_command(cfg, summary.version, reject=True),
        gates.approval_timeout_s,
        gates.on_timeout,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=Approval, timeout=gates.approval_timeout_s, poll_interval=2, key="approval"
        )
        result = promote_stage.approve(cfg, summary.version, answer.approve, answer.reason, answer.approver)
    except FlowPauseTimeout:
        result = promote_stage.approve(
            cfg,
            summary.version,
            gates.on_timeout == "promote",
            f"no answer within {gates.approval_timeout_s} s: {gates.on_timeout} (gates.on_timeout)",
            "timeout",
        )
    result.save(cfg.path("reports"))
    holder = reads.alias_version(cfg, result.model_name, cfg.promote.alias)
    return dataclasses.replace(
        summary,
        promoted=result.promoted,
        awaiting=False,
        alias=result.alias,
        reasons=result.reasons,
        alias_now=str(holder.version) if holder else None,
    )


def tell(cfg: Config, summary: RunSummary) -> None:
    notify.send(
        cfg,
        "promoted" if summary.promoted else "rejected",
        version=summary.version,
        champion=summary.alias_now,
        reasons=summary.reasons,
        metrics=summary.metrics,
        intervals=(summary.champion or {}).get("intervals", {}),
        data_version=summary.data_version,
    )


def publish(key: str, markdown: str, description: str) -> None:
    """The flow run's outcome as a Prefect markdown artifact (the run page's Artifacts tab; the
    latest per key on the Artifacts page). Best effort: the run's outcome does not depend on it."""
    from prefect.artifacts import create_markdown_artifact

    key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    try:
        create_markdown_artifact(markdown=markdown, key=key, description=description)
    except Exception as exc:  # the API is down after the run's work is done: say so, keep the outcome
        get_run_logger().warning("the run summary was not published to Prefect: %s", exc)


@flow(name="retrain")
def retrain(pipeline: str = "default"):
    """The scheduled (or data-triggered, or crash-re-run) retrain: give way to a newer waiting run;
    stop after heal.max_reruns crashes; skip, saying why, when the data and settings are the
    champion's or the data has not drifted from what it was trained on."""
    from prefect.states import Cancelled

    cfg = load_config(pipeline)
    newer = runs.superseded()
    if newer:
        message = f"superseded by the newer retrain {newer}: it runs on the same or newer data"
        get_run_logger().info(message)
        return Cancelled(message=message)
    crashes = runs.crash_streak()
    if crashes > cfg.spec.heal.max_reruns:
        raise RuntimeError(
            f"retrain of {pipeline!r} crashed {crashes} times within the hour: not re-running it again "
            f"(heal.max_reruns {cfg.spec.heal.max_reruns}); look at the crashed runs' logs"
        )
    with failures_told(cfg):
        verdict, figures = retrain_verdict(cfg)
        if not verdict.train:
            return skipped(cfg, verdict.reason)
        logs.progress("retrain of %r: %s", pipeline, verdict.reason)
        summary = await_approval(cfg, run_stages(cfg))
        if figures:
            retraining.tag_drift(cfg, summary.version, figures)
    publish(
        f"{pipeline}-retrain",
        f"**Why it trained:** {verdict.reason}\n\n{summary.markdown()}",
        f"{summary.model_name} v{summary.version}",
    )
    tell(cfg, summary)
    return summary


def retrain_verdict(cfg: Config) -> tuple[retraining.Verdict, dict[str, float]]:
    """Train or skip, on the data version and settings (tasks/tracking/retrain.py); drift is
    measured only when it decides (new data, same settings), in memory: no DVC output moves."""
    facts = retraining.facts(cfg)
    if facts.needs_drift and cfg.drift.check:
        from tasks.ingest import training_inputs

        drifted, figures = retraining.drift_check(cfg, training_inputs)
        facts = dataclasses.replace(facts, drifted=drifted, drift_figures=figures)
    return retraining.decide(facts), facts.drift_figures


def skipped(cfg: Config, reason: str):
    """A retrain with nothing to do: Completed with the reason as its message, tagged ``skipped``
    (the runs list tells it from one that trained), published and told."""
    from prefect.states import Completed

    get_run_logger().info("retrain of %r skipped: %s", cfg.pipeline, reason)
    logs.progress("retrain of %r skipped: %s", cfg.pipeline, reason)
    runs.tag_current("skipped")
    publish(f"{cfg.pipeline}-retrain", f"## retrain of `{cfg.pipeline}` skipped\n\n{reason}", "skipped")
    notify.send(cfg, "skipped", reasons=[reason])
    return Completed(message=f"skipped: {reason}"[:4000])


@flow(name="watch-data")
def watch_data(pipeline: str = "default") -> str | None:
    """The polling trigger (trigger.poll_s): when ingest.source holds a data version the last
    check did not see (nor the champion was trained on), emit the data-arrival event that starts
    the pipeline's retrain. Returns the new version, if any."""
    from prefect.variables import Variable

    from flows.arrival import announce
    from tasks.tracking.retrain import current_data_version

    cfg = load_config(pipeline)
    version = current_data_version(cfg)
    key = re.sub(r"[^a-z0-9_]+", "_", f"s2s_data_{pipeline}".lower())
    seen = Variable.get(key, default=None)
    if seen is None:  # first look: what the champion saw counts as seen
        holder = reads.alias_version(cfg, cfg.register.model_name, cfg.promote.alias)
        seen = (holder.tags or {}).get("data_version") if holder else None
    if version is None or version == seen:
        return None
    announce(pipeline, version, str(cfg.ingest.source), via="watch")
    Variable.set(key, version, overwrite=True)
    return version


@flow(name="promotion")
def promotion(version: str, pipeline: str = "default", force: bool = False, reason: str | None = None) -> dict:
    """Promote a registered version by hand, through the gates unless forced (recorded)."""
    cfg = load_config(pipeline)
    with failures_told(cfg):
        result = promote_version_task(cfg, version, force, reason)
    get_run_logger().info(
        "%s v%s: %s (%s)",
        result.model_name,
        result.version,
        "promoted" if result.promoted else "not promoted",
        "; ".join(result.reasons),
    )
    verdict = "PROMOTED" if result.promoted else "NOT PROMOTED"
    publish(
        f"{pipeline}-promotion",
        f"## {result.model_name} v{result.version}: **{verdict}**"
        + (" (forced)" if force else "")
        + "\n\n"
        + "\n".join(f"- {r}" for r in result.reasons),
        verdict.lower(),
    )
    notify.send(
        cfg,
        "promoted" if result.promoted else "rejected",
        version=result.version,
        champion=result.champion,
        champion_before=result.previous_champion,
        reasons=result.reasons,
        forced=force,
    )
    return asdict(result)
