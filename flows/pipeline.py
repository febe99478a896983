"""The training pipeline flow: ingest -> validate -> train -> evaluate -> register -> promote."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

from flows.stages import evaluate_task, ingest_task, promote_task, register_task, train_task, validate_task
from tasks.config import load_config
from tasks.errors import ValidationFailed
from tasks.summary import RunSummary
from tasks.tracking import log_failed_validation


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(pipeline: str = "default", overrides: list[str] | None = None) -> RunSummary:
    """Run every stage of ``pipeline`` (pipelines.yaml) with optional ``section.key=value`` overrides."""
    cfg = load_config(pipeline, overrides or [])
    seconds: dict[str, float] = {}

    def timed(name, task, *args):
        start = time.perf_counter()
        try:
            return task(*args)
        finally:
            seconds[name] = round(time.perf_counter() - start, 2)

    ingested = timed("ingest", ingest_task, cfg)
    try:
        timed("validate", validate_task, cfg, ingested)
    except ValidationFailed as exc:  # the gate: record the rejected data, train nothing
        log_failed_validation(cfg, ingested, Path(exc.report_path or ""))
        raise
    trained = timed("train", train_task, cfg, ingested)
    evaluated = timed("evaluate", evaluate_task, cfg, trained, ingested)
    registered = timed("register", register_task, cfg, trained, evaluated, ingested)
    promoted = timed("promote", promote_task, cfg, registered, evaluated)
    return RunSummary(
        pipeline=pipeline, data_version=ingested.data_version, rows=ingested.rows, metrics=evaluated.metrics,
        model_name=registered.model_name, version=registered.version, promoted=promoted.promoted,
        alias=promoted.alias, reasons=promoted.reasons, stage_seconds=seconds,
        tracking_uri=cfg.tracking_uri(), run_id=trained.run_id, worst=evaluated.worst,
    )
