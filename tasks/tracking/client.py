"""MLflow plumbing shared by the stages: one client per call, run ids passed explicitly.

MLflow's fluent API keeps the active run per thread and the tracking URI process-wide (and
writes it into ``MLFLOW_TRACKING_URI``), so two pipelines in one process, or Prefect tasks on
other threads, would step on each other. The stages therefore use only ``MlflowClient`` with an
explicit store and run id; only the CLI, an entry point, sets the global URI.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.config import Config
from tasks.core.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tasks.core.results import IngestResult

logger = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"


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
        "TOKENIZERS_PARALLELISM": "false",
        # MLflow's client retries a dead server 7 times with exponential backoff (minutes);
        # fail fast instead and let the pipeline's own retries (pipelines.yaml) do the waiting.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }.items():
        os.environ.setdefault(key, value)


def client(cfg: Config) -> "MlflowClient":
    """An MlflowClient on the configured store; fails early with a readable error."""
    quiet_telemetry()
    from mlflow import MlflowClient

    uri = cfg.tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def preflight(cfg: Config) -> None:
    """Before any work: the tracking store answers and accepts our credentials, or a clear error
    now instead of after hours of training."""
    from mlflow.exceptions import MlflowException

    from tasks.core.secrets import redact

    uri = cfg.tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return  # a local store: nothing to be down; its first use creates it
    c = client(cfg)
    try:
        c.search_experiments(max_results=1)
    except MlflowException as exc:
        text = str(exc)
        if "401" in text or "Unauthorized" in text or "403" in text or "PERMISSION_DENIED" in text:
            raise TrackingError(
                f"MLflow at {redact(uri)} rejected the credentials: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or the Prefect Secret block mlflow-tracking-password)") from None
        if is_transient(exc):
            raise TrackingError(f"the MLflow tracking server at {redact(uri)} is unreachable ({redact(text.splitlines()[0])}); "
                                "nothing was trained. Start it, or point MLFLOW_TRACKING_URI / tracking.uri "
                                "at a running one", transient=True) from None
        raise TrackingError(f"MLflow at {redact(uri)} refused the request: {redact(text)}") from None
    except Exception as exc:
        raise TrackingError(f"cannot reach the MLflow tracking store at {redact(uri)}: {redact(str(exc))}; "
                            "nothing was trained. Check MLFLOW_TRACKING_URI or tracking.uri", transient=True) from None


def experiment_id(cfg: Config, c: "MlflowClient | None" = None) -> str:
    """The pipeline's experiment, created on first use with the configured artifact folder."""
    from mlflow.exceptions import MlflowException

    c = c or client(cfg)
    name = cfg.experiment_name()
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None if cfg.tracking_uri().startswith("http") else cfg.artifact_location()
        return c.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if "already exists" in str(exc):  # another process created it between our two calls
            return c.get_experiment_by_name(name).experiment_id
        raise TrackingError(f"MLflow at {cfg.tracking_uri()} refused the request: {exc}") from None
    except Exception as exc:  # connection errors come in many types (requests, sqlite, ...)
        raise TrackingError(
            f"cannot reach the MLflow tracking store at {cfg.tracking_uri()}: {exc}; "
            "check MLFLOW_TRACKING_URI or tracking.uri",
            transient=True,
        ) from None


def is_transient(exc: BaseException) -> bool:
    """Connection trouble and server-side 5xx/429 are worth a retry; a refusal is not."""
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    code = getattr(exc, "error_code", "") or ""
    text = str(exc)
    return code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR") or any(
        marker in text for marker in ("Max retries exceeded", "Connection refused", "503", "502", "504", "429")
    )


def git_commit(root: Path) -> str:
    """HEAD's sha, suffixed with ``-dirty`` when tracked files have uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def prefect_flow_run_id() -> str | None:
    """The id of the Prefect flow run we are inside, if any (cheap: no import when not loaded)."""
    import sys

    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
    except Exception:
        return None


def run_tags(cfg: Config, data_version: str) -> dict[str, str]:
    """Tags every run and model version of the project carries, under the same names."""
    tags = {
        "pipeline": cfg.pipeline,
        "data_version": data_version,
        "git_commit": git_commit(cfg.root),
        "params_hash": cfg.params_hash(),
        "base_model": cfg.train.model,
    }
    flow_run = prefect_flow_run_id()
    if flow_run:
        tags["prefect_flow_run_id"] = flow_run
    return tags


def start_run(cfg: Config, data_version: str, run_name: str | None = None) -> str:
    """Create the pipeline run's MLflow run with params and tags; return its id."""
    from mlflow.entities import Param, RunTag

    c = client(cfg)
    exp = experiment_id(cfg, c)
    tags = run_tags(cfg, data_version)
    tags["mlflow.runName"] = run_name or f"{cfg.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = c.create_run(exp, tags=tags)
    params = [Param(k, v[:6000]) for k, v in sorted(cfg.flat_params().items())]
    for i in range(0, len(params), 100):  # MLflow's log_batch limit is 100 params per call
        c.log_batch(run.info.run_id, params=params[i : i + 100])
    c.log_batch(run.info.run_id, tags=[RunTag("data_version", data_version)])
    return run.info.run_id


def log_metrics(cfg: Config, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None]
    client(cfg).log_batch(run_id, metrics=batch)


def end_run(cfg: Config, run_id: str, status: str = "FINISHED") -> None:
    client(cfg).set_terminated(run_id, status=status)


def log_validation_artifacts(cfg: Config, run_id: str, report: Path) -> None:
    """The validation report (JSON) and GX Data Docs (HTML) under ``validation/`` of the run."""
    c = client(cfg)
    if report.is_file():
        c.log_artifact(run_id, str(report), artifact_path="validation")
    docs = report.parent / "validation_docs"
    if docs.is_dir():
        c.log_artifacts(run_id, str(docs), artifact_path="validation/data_docs")


def log_failed_validation(cfg: Config, ingested: "IngestResult", report: Path) -> str | None:
    """Record a rejected data set as a FAILED run holding the report; nothing is registered."""
    try:
        run_id = start_run(cfg, ingested.data_version, run_name=f"{cfg.pipeline}-validation-failed")
        c = client(cfg)
        c.set_tag(run_id, "failed_stage", "validate")
        log_validation_artifacts(cfg, run_id, report)
        c.set_terminated(run_id, status="FAILED")
        return run_id
    except TrackingError as exc:
        logger.warning("could not record the failed validation in MLflow: %s", exc)
        return None

