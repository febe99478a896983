"""The flows: the training pipeline, the scheduled retrain, and manual promotion.

Each flow resolves the pipeline's configuration and sequences the stage tasks; stage logic lives
in ``tasks/``. Stages whose inputs did not change since ``dvc.lock`` recorded them are not
recomputed (DVC is the one caching authority, see tasks/dvc_cache.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger

from flows.stages import for_pipeline, promote_version_task
from tasks.core.config import Config, load_config
from tasks.core.dvc_cache import StageCache
from tasks.core.errors import ValidationFailed
from tasks.core.results import EvaluateResult, IngestResult, PromoteResult, RegisterResult, TrainResult
from tasks.tracking import client as tracking
from tasks.tracking.retrain import skip_reason
from tasks.core.secrets import install_redaction, load_secret_blocks
from tasks.core.summary import RunSummary
from tasks.tracking.client import log_failed_validation


def run_stages(cfg: Config, force: bool = False) -> RunSummary:
    """ingest -> validate -> train -> evaluate -> register -> promote, skipping up-to-date stages."""
    install_redaction()  # also in worker-started runs, which do not go through the CLI
    log = get_run_logger()
    tasks, cache = for_pipeline(cfg), StageCache(cfg, force)
    reports = cfg.path("reports")
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    if cache.reason:
        log.info("stage cache off: %s", cache.reason)
    filled = load_secret_blocks()
    if filled:
        log.info("credentials from Prefect Secret blocks: %s", ", ".join(filled))
    tracking.preflight(cfg)  # an unreachable tracking server or bad credentials: fail before any work

    def stage(name: str, previous, *args):
        if cache.up_to_date(name):
            log.info("%s: unchanged since dvc.lock recorded it; reusing its result", name)
            skipped.append(name)
            return previous()
        start = time.perf_counter()
        try:
            result = tasks[name](cfg, *args)
        finally:
            seconds[name] = round(time.perf_counter() - start, 2)
        cache.record(name)
        return result

    try:
        ingested = stage("ingest", lambda: IngestResult.load(cfg.path("data")))
        try:
            stage("validate", lambda: None, ingested)
        except ValidationFailed as exc:  # the gate: record the rejected data, train nothing
            log_failed_validation(cfg, ingested, Path(exc.report_path or ""))
            raise
        trained = stage("train", lambda: TrainResult.load(reports), ingested)
        evaluated = stage("evaluate", lambda: EvaluateResult.load(reports), trained, ingested)
        registered = stage("register", lambda: RegisterResult.load(reports), trained, evaluated, ingested)
        promoted = stage("promote", lambda: PromoteResult.load(reports), registered, evaluated)
    finally:
        cache.close()
    return RunSummary.of(cfg, ingested, trained, evaluated, registered, promoted, seconds, skipped)


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
    get_run_logger().info("%s v%s: %s (%s)", result.model_name, result.version,
                          "promoted" if result.promoted else "not promoted", "; ".join(result.reasons))
    return asdict(result)
