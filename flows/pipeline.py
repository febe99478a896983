"""The flows: the training pipeline, the scheduled retrain, and manual promotion.

Each flow resolves the pipeline's configuration and sequences the stage tasks; stage logic lives
in ``tasks/``. The flow owns what spans stages: the project lock (one writer per folder), the
MLflow run (opened lazily, ended here on every exit path), and the decision whether a stage's
recorded result may be reused (DVC says its inputs are unchanged, and the tracking store still
holds what the result names; see tasks/core/dvc_cache.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict

from prefect import flow, get_run_logger

from flows.stages import for_pipeline, promote_version_task
from tasks import promote as promote_stage
from tasks import register as register_stage
from tasks.core import locks, logs
from tasks.core.config import Config, load_config
from tasks.core.dvc_cache import StageCache
from tasks.core.errors import ValidationFailed
from tasks.core.paths import write_guard
from tasks.core.results import EvaluateResult, IngestResult, PromoteResult, RegisterResult, TrainResult
from tasks.core.secrets import install_redaction, load_secret_blocks
from tasks.core.summary import RunSummary, stage_figure
from tasks.tracking import client as tracking
from tasks.tracking import registry
from tasks.tracking.retrain import skip_reason
from tasks.tracking.run import RunOwner, log_validation, owned

STAGES = ("ingest", "validate", "train", "evaluate", "register", "promote")


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


def _sequence(cfg: Config, force: bool, owner: RunOwner, log) -> RunSummary:
    tasks, cache = for_pipeline(cfg), StageCache(cfg, force)
    reports = cfg.path("reports")
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    if cache.reason:
        log.info("stage cache off: %s", cache.reason)
    if not cache.up_to_date("guard"):  # the folder check dvc.yaml runs first (it passed when cfg loaded)
        write_guard(cfg)
        cache.record("guard")

    def stage(name: str, cached, *args, still=None):
        """Run stage ``name``, or reuse its recorded result when DVC says its inputs did not
        change and ``still(result)`` confirms the tracking store holds what it names."""
        number = f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}"
        if cache.up_to_date(name):
            result = cached()
            if still is None or still(result):
                logs.progress("%s: unchanged since dvc.lock recorded it, reused", number)
                skipped.append(name)
                return result
            logs.progress("%s: its recorded result names what the tracking store no longer holds: running it", number)
        start = time.perf_counter()
        logs.adopt_libraries()  # what the previous stage imported (transformers...) logs through ours
        logs.progress("%s: running", number)
        try:
            result = tasks[name](cfg, *args)
        finally:
            seconds[name] = round(time.perf_counter() - start, 2)
        cache.record(name)
        figure = stage_figure(name, result)
        logs.progress("%s: done in %.1f s%s", number, seconds[name], f": {figure}" if figure else "")
        return result

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
        )
        run.continue_run(trained.run_id)  # later stages log to the training's run, cached or not
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
    holder = registry.alias_version(cfg, promoted.model_name, cfg.promote.alias)
    return RunSummary.of(
        cfg,
        ingested,
        trained,
        evaluated,
        registered,
        promoted,
        seconds,
        skipped,
        alias_now=str(holder.version) if holder else None,
    )


# No log_prints on these flows: Prefect's print patch ignores a redirected sys.stdout, so dill's
# dis-capture inside datasets' fingerprinting ends up as thousands of run-log lines (and dill
# sees no globals). The stages log through `logging`; prefect.toml forwards the `tasks` loggers.
@flow(name="training-pipeline")
def training_pipeline(pipeline: str = "default", overrides: list[str] | None = None, force: bool = False) -> RunSummary:
    """Run every stage of ``pipeline`` (pipelines.yaml) with optional ``section.key=value`` overrides."""
    summary = run_stages(load_config(pipeline, overrides or []), force)
    publish(f"{pipeline}-run", summary.markdown(), f"{summary.model_name} v{summary.version}")
    return summary


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
def retrain(pipeline: str = "default") -> RunSummary | None:
    """The scheduled run: skip, saying why, when the data and settings are the champion's."""
    cfg = load_config(pipeline)
    reason = skip_reason(cfg)
    if reason:
        get_run_logger().info("retrain of %r skipped: %s", pipeline, reason)
        publish(f"{pipeline}-retrain", f"## retrain of `{pipeline}` skipped\n\n{reason}", "skipped")
        return None
    summary = run_stages(cfg)
    publish(f"{pipeline}-retrain", summary.markdown(), f"{summary.model_name} v{summary.version}")
    return summary


@flow(name="promotion")
def promotion(version: str, pipeline: str = "default", force: bool = False, reason: str | None = None) -> dict:
    """Promote a registered version by hand, through the gates unless forced (recorded)."""
    result = promote_version_task(load_config(pipeline), version, force, reason)
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
    return asdict(result)
