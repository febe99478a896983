"""The flows: the training pipeline, the scheduled retrain, and manual promotion.

Each flow resolves the pipeline's configuration and sequences the stage tasks; stage logic lives
in ``tasks/``. The flow owns what spans stages: the project lock (one writer per folder), the
MLflow run (opened lazily, ended here on every exit path), and the decision whether a stage's
recorded result may be reused (DVC says its inputs are unchanged, and the tracking store still
holds what the result names; see tasks/core/dvc_cache.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from prefect import flow, get_run_logger

from flows.stages import for_pipeline, promote_version_task
from tasks import promote as promote_stage
from tasks import register as register_stage
from tasks.core import locks
from tasks.core.config import Config, load_config
from tasks.core.dvc_cache import StageCache
from tasks.core.errors import ValidationFailed
from tasks.core.paths import write_guard
from tasks.core.results import EvaluateResult, IngestResult, PromoteResult, RegisterResult, TrainResult
from tasks.core.secrets import install_redaction, load_secret_blocks
from tasks.core.summary import RunSummary
from tasks.tracking import client as tracking
from tasks.tracking import registry
from tasks.tracking.retrain import skip_reason
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
        if cache.up_to_date(name):
            result = cached()
            if still is None or still(result):
                log.info("%s: unchanged since dvc.lock recorded it; reusing its result", name)
                skipped.append(name)
                return result
            log.info("%s: its recorded result names what the tracking store no longer holds; running it", name)
        start = time.perf_counter()
        log.info("stage %s: running", name)
        try:
            result = tasks[name](cfg, *args)
        finally:
            seconds[name] = round(time.perf_counter() - start, 2)
        cache.record(name)
        log.info("stage %s: done in %.1f s", name, seconds[name])
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
    return run_stages(load_config(pipeline, overrides or []), force)


@flow(name="retrain")
def retrain(pipeline: str = "default") -> RunSummary | None:
    """The scheduled run: skip, saying why, when the data and settings are the champion's."""
    cfg = load_config(pipeline)
    reason = skip_reason(cfg)
    if reason:
        get_run_logger().info("retrain of %r skipped: %s", pipeline, reason)
        return None
    return run_stages(cfg)


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
    return asdict(result)
