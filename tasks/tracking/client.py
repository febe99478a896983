"""MLflow plumbing shared by the stages: one client per call, run ids passed explicitly.

MLflow's fluent API keeps the active run per thread and the tracking URI process-wide (and
writes it into ``MLFLOW_TRACKING_URI``), so two pipelines in one process, or Prefect tasks on
other threads, would step on each other. The stages therefore use only ``MlflowClient`` with an
explicit store and run id; only the CLI, an entry point, sets the global URI.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core import retry
from tasks.core.config import Config
from tasks.core.context import prefect_flow_run_id, quiet_telemetry
from tasks.core.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient


logger = logging.getLogger(__name__)


def client(cfg: Config, checked: bool = True) -> MlflowClient:
    """An MlflowClient on the configured store; fails early with a readable error. The store is
    checked once per process first (``tasks.tracking.store``: sound, this project's registry,
    artifacts inside the project); ``checked=False`` only for the commands that repair that."""
    quiet_telemetry()
    from mlflow import MlflowClient

    from tasks.tracking import store

    uri = cfg.tracking_uri()
    db = cfg.sqlite_path()
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    made: list[MlflowClient] = []

    def make() -> MlflowClient:  # MLflow opens (and would create) the store here: after the checks
        if not made:
            made.append(MlflowClient(tracking_uri=uri, registry_uri=uri))
        return made[0]

    def check() -> None:
        try:
            store.ensure(cfg, make)
        except TrackingError:
            raise
        except store_errors() as exc:
            raise failure(cfg, "checking the tracking store's identity", exc) from None

    if checked:  # a server away is waited for (tracking.retry_s); a damaged or foreign store is not
        retry.call(check, retry.delays_within(cfg.tracking.retry_s), "checking the tracking store")
    return make()


def preflight(cfg: Config) -> None:
    """Before any work: the tracking store answers and accepts our credentials, or a clear error
    now instead of after hours of training."""
    from mlflow.exceptions import MlflowException

    from tasks.core.secrets import redact

    uri = cfg.tracking_uri()
    if not uri.startswith(("http://", "https://")):
        client(cfg)  # a local store: nothing to be down, but it must be sound and this project's
        return
    try:
        c = client(cfg, checked=False)  # the server answers and takes our credentials first
        c.search_experiments(max_results=1)
    except MlflowException as exc:
        text = str(exc)
        if "401" in text or "Unauthorized" in text or "403" in text or "PERMISSION_DENIED" in text:
            raise TrackingError(
                f"MLflow at {redact(uri)} rejected the credentials: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or the Prefect Secret block mlflow-tracking-password)"
            ) from None
        if is_transient(exc):
            raise TrackingError(
                f"the MLflow tracking server at {redact(uri)} is unreachable ({redact(text.splitlines()[0])}); "
                "nothing was trained. Start it, or point MLFLOW_TRACKING_URI / tracking.uri "
                "at a running one",
                transient=True,
            ) from None
        raise TrackingError(f"MLflow at {redact(uri)} refused the request: {redact(text)}") from None
    except Exception as exc:
        raise TrackingError(
            f"cannot reach the MLflow tracking store at {redact(uri)}: {redact(str(exc))}; "
            "nothing was trained. Check MLFLOW_TRACKING_URI or tracking.uri",
            transient=True,
        ) from None
    client(cfg)  # then: it is this project's registry


def experiment_id(cfg: Config, c: MlflowClient | None = None) -> str:
    """The pipeline's experiment, created on first use with the configured artifact folder."""
    from mlflow.exceptions import MlflowException

    c = c or client(cfg)
    name = cfg.experiment_name()
    try:
        from tasks.tracking import lineage

        tags = lineage.experiment_tags()
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            for k, v in tags.items():  # made by an older version, or the metrics changed since
                if (exp.tags or {}).get(k) != v:
                    c.set_experiment_tag(exp.experiment_id, k, v)
            return exp.experiment_id
        location = None if cfg.tracking_uri().startswith("http") else cfg.artifact_location()
        return c.create_experiment(name, artifact_location=location, tags=tags)
    except MlflowException as exc:
        if "already exists" in str(exc):  # another process created it between our two calls
            return c.get_experiment_by_name(name).experiment_id
        raise failure(cfg, f"creating experiment {name!r}", exc) from None
    except store_errors() as exc:
        raise failure(cfg, f"creating experiment {name!r}", exc) from None


def store_errors() -> tuple[type[BaseException], ...]:
    """What a tracking or registry call raises when the store is away, locked or refusing:
    MLflow's own errors, connection errors (requests, sockets) and database errors."""
    import requests
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError  # a dependency of mlflow's stores

    return (MlflowException, OSError, requests.RequestException, SQLAlchemyError)


def run_exists(cfg: Config, run_id: str) -> bool:
    """The run is in the store the configuration points at now (only "not found" means no)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    c = client(cfg)
    try:
        return c.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException as exc:
        if is_not_found(exc):
            return False
        raise failure(cfg, f"reading MLflow run {run_id}", exc) from None
    except store_errors() as exc:
        raise failure(cfg, f"reading MLflow run {run_id}", exc) from None


def redact_uri(cfg: Config) -> str:
    from tasks.core.secrets import redact

    return redact(cfg.tracking_uri())


def is_not_found(exc: BaseException) -> bool:
    """The one answer that means "absent": the registry says the object does not exist.
    (A missing alias comes back as INVALID_PARAMETER_VALUE "alias ... not found".)"""
    code = getattr(exc, "error_code", "") or ""
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return code == "INVALID_PARAMETER_VALUE" and " alias " in f" {exc} " and "not found" in str(exc)


def failure(cfg: Config, doing: str, exc: BaseException) -> TrackingError:
    """A tracking or registry error as a TrackingError: transient (retried with the pipeline's
    backoff), with a message that names what failed and where, credentials scrubbed."""
    from tasks.core.secrets import redact
    from tasks.tracking import store

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    if is_corrupt(exc):
        return store.corrupt(cfg, f"{doing} failed: {first}")
    if (refused := auth_refusal(exc)) is not None:
        return TrackingError(
            f"{doing} failed: the MLflow server at {redact(cfg.tracking_uri())} {refused}; check "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN). "
            "Nothing was changed, and no retry can help",
        )
    return TrackingError(
        f"{doing} failed at the MLflow store {redact(cfg.tracking_uri())}: "
        f"{type(exc).__name__}: {redact(first)}; nothing was changed by this step, and it "
        "is retried as a transient failure",
        transient=True,
    )


def auth_refusal(exc: BaseException) -> str | None:
    """What the server said when it refused the credentials (HTTP 401/403), or None."""
    text = str(exc)
    if "error code 401" in text or "You are not authenticated" in text or "UNAUTHENTICATED" in text:
        return "refused the credentials (401: not authenticated)"
    if "error code 403" in text or "PERMISSION_DENIED" in text:
        return "refused the request (403: this user lacks the permission)"
    return None


def is_corrupt(exc: BaseException) -> bool:
    """The database under the store is damaged: no retry can help."""
    text = str(exc)
    return any(m in text for m in ("file is not a database", "database disk image is malformed", "malformed database"))


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
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


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
