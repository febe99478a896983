"""The process a pipeline runs in: the defaults every entry point sets for the libraries we drive,
and the Prefect flow run we are inside, if any. Neither needs MLflow, so every layer (the stage
runner, the CLI, the tracking client, notifications) takes them from here."""

from __future__ import annotations

import os
import sys


def quiet_telemetry() -> None:
    """Process defaults for the libraries we drive: no usage telemetry (these machines are
    offline anyway) and MLflow HTTP clients that fail fast. Set values are left alone."""
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE", "0"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        # both cores for tokenizing and fitting the tokenizer; set explicitly, so a later fork
        # (a git subprocess) prints no warning
        "TOKENIZERS_PARALLELISM": "true",
        # MLflow's client retries a dead server 7 times with exponential backoff (minutes);
        # fail fast instead and let the pipeline's own retries (pipelines.yaml) do the waiting.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }.items():
        os.environ.setdefault(key, value)


def prefect_flow_run_id() -> str | None:
    """The id of the Prefect flow run we are inside, if any (cheap: no import when not loaded)."""
    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
    except Exception:
        return None
