"""The MLflow run of one pipeline execution: one owner opens it and ends it, stages only log.

The owner (the flow, or a stage's ``python -m`` entry point under ``dvc repro``) holds a
:class:`RunOwner` for the whole execution and ends the run in one place, on every exit path:
FINISHED, FAILED with the reason as the ``s2s.failure`` tag, or KILLED when the process was
asked to stop. Stages receive a :class:`RunHandle`: it creates the run on first use (so a run
whose data fails validation, or whose training resumes an earlier run, creates no empty run),
can continue an earlier run of the same training (``adopt``), and retries every call while the
tracking server is away, for at most ``tracking.retry_s``. Training metrics are buffered
instead: training goes on through an outage and the points are sent when the server is back.

Every run a project folder opens is written to a ledger (``.s2s/open_runs/``) and removed when
the run ends. A process killed with SIGKILL cannot end its run, so the next run on the folder
(which holds the project lock, so the owner is surely dead) marks what the ledger still lists
as KILLED, or as the status its owner meant to write when the store was away at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core import retry
from tasks.core.config import Config
from tasks.core.context import prefect_flow_run_id
from tasks.core.errors import DataError, TrackingError, ValidationFailed
from tasks.core.paths import atomic_write_json
from tasks.core.results import RUN_FACTS
from tasks.core.signals import exit_code_for
from tasks.tracking import client as tracking
from tasks.tracking import store

logger = logging.getLogger(__name__)

LEDGER = Path(".s2s") / "open_runs"
END_REASON = "s2s.end_reason"
FAILURE = "s2s.failure"
FLOW_RUN = "prefect_flow_run_id"  # the flow run that logged last (tracking.run_tags)
FLOW_RUNS = "prefect_flow_run_ids"  # every flow run that worked on it, oldest first


def healed_tags(old: dict[str, str]) -> dict[str, str]:
    """Tags of a run taken over by another execution (a resume after a crash): the flow run now
    working on it, every earlier one, and how the previous execution ended."""
    out: dict[str, str] = {}
    if old.get(END_REASON) or old.get(FAILURE):
        out["s2s.previous_end"] = (old.get(END_REASON) or old.get(FAILURE) or "")[:5000]
    now = prefect_flow_run_id()
    before = old.get(FLOW_RUN)
    if now and now != before:
        ids = [x for x in (old.get(FLOW_RUNS) or before or "").split(",") if x]
        out[FLOW_RUNS] = ",".join([*ids, now])
        out[FLOW_RUN] = now
    return out


class RunHandle:
    """What a stage needs of the run: log to it. Never ends it (the owner does)."""

    def __init__(self, cfg: Config, data_version: str | None):
        self.cfg = cfg
        self.data_version = data_version
        self._run_id: str | None = None
        self._continues: str | None = None  # an earlier run to reopen on first use
        self._pending: list = []  # buffered metrics (training)
        self._next_flush = 0.0
        self._warned = False
        self.previous_flow_run: str | None = None  # the flow run an adopted run was last logged by

    # -- the run itself -----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._run_id is not None

    @property
    def run_id(self) -> str:
        """The run's id; the run is created (with every setting as a param) on first use, or the
        run named by :meth:`continue_run` is reopened."""
        if self._run_id is None:
            if self._continues:
                self.adopt(self._continues, {"s2s.continued": time.strftime("%Y-%m-%dT%H:%M:%S")}, required=True)
            else:
                self._run_id = self._call(self._create, "creating the MLflow run")
                _ledger_add(self.cfg, self._run_id)
        return self._run_id

    def continue_run(self, run_id: str) -> None:
        """Log to the earlier run ``run_id`` (a cached training's) if anything is logged at all."""
        if not run_id:  # the result came without its run's facts (tasks/core/results.py: RUN_FACTS)
            raise DataError(
                f"the training's MLflow run is not known in {self.cfg.root} (its record under "
                f"{self.cfg.path('reports')}/{RUN_FACTS} is missing or older than training.json): "
                "train again with `s2s run --force` or `dvc repro -f train`"
            )
        if self._run_id is None:
            self._continues = run_id
        elif self._run_id != run_id:
            raise TrackingError(f"this execution logs to MLflow run {self._run_id}, not {run_id}")

    def _create(self) -> str:
        from mlflow.entities import Param, RunTag

        c = tracking.client(self.cfg)
        exp = tracking.experiment_id(self.cfg, c)
        tags = tracking.run_tags(self.cfg, self.data_version or "unknown")
        tags["mlflow.runName"] = f"{self.cfg.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = c.create_run(exp, tags=tags)
        params = [Param(k, v[:6000]) for k, v in sorted(self.cfg.flat_params().items())]
        for i in range(0, len(params), 100):  # MLflow's log_batch limit is 100 params per call
            c.log_batch(run.info.run_id, params=params[i : i + 100])
        c.log_batch(run.info.run_id, tags=[RunTag("data_version", self.data_version or "unknown")])
        return run.info.run_id

    def adopt(self, run_id: str, reason: dict[str, str] | None = None, required: bool = False) -> bool:
        """Continue the earlier run ``run_id`` (a resumed training, a later stage of a cached
        one) instead of creating one: it is set RUNNING again. False when it no longer exists in
        this store (``required``: a TrackingError then)."""
        if self._run_id == run_id:
            return True
        if self._run_id is not None:
            raise TrackingError(f"this execution already logs to MLflow run {self._run_id}; cannot also adopt {run_id}")

        def reopen() -> bool:
            from mlflow.exceptions import MlflowException

            c = tracking.client(self.cfg)
            try:
                run = c.get_run(run_id)
            except MlflowException as exc:
                if tracking.is_not_found(exc):
                    return False
                raise
            if run.info.lifecycle_stage != "active":
                return False
            c.update_run(run_id, status="RUNNING")
            for k, v in {**(reason or {}), **healed_tags(run.data.tags or {})}.items():
                c.set_tag(run_id, k, v)
            for stale in (FAILURE, END_REASON):  # a resumed run is no longer failed or killed
                if stale in (run.data.tags or {}):
                    c.delete_tag(run_id, stale)
            self.previous_flow_run = (run.data.tags or {}).get(FLOW_RUN)
            return True

        found = self._call(reopen, f"reopening MLflow run {run_id}")
        if not found:
            if required:
                raise TrackingError(
                    f"MLflow run {run_id} does not exist in {tracking.redact_uri(self.cfg)}; "
                    "re-run the pipeline (the stage that created it runs again)"
                )
            return False
        self._run_id = run_id
        _ledger_add(self.cfg, run_id)
        return True

    # -- logging ------------------------------------------------------------------------
    @property
    def client(self):
        return tracking.client(self.cfg)

    def _call(self, fn, what: str, budget_s: float | None = None):
        """``fn()`` with store errors as transient TrackingErrors, retried for ``tracking.retry_s``
        (or ``budget_s``)."""

        def once():
            try:
                return fn()
            except TrackingError:
                raise
            except tracking.store_errors() as exc:
                raise tracking.failure(self.cfg, what, exc) from None

        budget = self.cfg.tracking.retry_s if budget_s is None else budget_s
        return retry.call(once, retry.delays_within(budget), what)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, buffered: bool = False) -> None:
        """Log metrics. ``buffered``: never raise or wait; keep them while the server is away."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None]
        if not buffered:
            run_id = self.run_id
            for i in range(0, len(batch), 1000):
                part = batch[i : i + 1000]
                self._call(lambda part=part: self.client.log_batch(run_id, metrics=part), "logging metrics")
            return
        self._pending.extend(batch)
        if time.monotonic() >= self._next_flush:
            self._flush_once()

    def _flush_once(self) -> bool:
        if not self._pending:
            return True
        try:
            run_id = self.run_id if self._run_id else None
            if run_id is None:
                return False
            c = self.client
            while self._pending:
                part = self._pending[:1000]
                c.log_batch(run_id, metrics=part)
                del self._pending[: len(part)]
            if self._warned:
                logger.info("the tracking server is back: buffered metrics sent")
                self._warned = False
            return True
        except tracking.store_errors() + (TrackingError,) as exc:
            self._next_flush = time.monotonic() + 5.0
            if not self._warned:
                logger.warning(
                    "tracking server unreachable (%s); training goes on and keeps its metrics until it is back",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                self._warned = True
            return False

    def flush(self) -> None:
        """Send buffered metrics, waiting up to ``tracking.retry_s`` for the server."""
        if not self._pending:
            return
        deadline = time.monotonic() + self.cfg.tracking.retry_s
        while not self._flush_once():
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"{len(self._pending)} buffered metric points could not be sent to "
                    f"{tracking.redact_uri(self.cfg)} within tracking.retry_s="
                    f"{self.cfg.tracking.retry_s:g} s",
                    transient=True,
                )
            time.sleep(2.0)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        run_id = self.run_id
        batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        self._call(lambda: self.client.log_batch(run_id, tags=batch), "tagging the run")

    def set_experiment_tag(self, key: str, value: str) -> None:
        """A tag of the run's experiment (the UI's primary metric, for example)."""
        run_id = self.run_id
        experiment_id = self._call(lambda: self.client.get_run(run_id).info.experiment_id, "reading the run")
        self._call(lambda: self.client.set_experiment_tag(experiment_id, key, value), "tagging the experiment")

    def log_inputs(self, datasets: list) -> None:
        """MLflow DatasetInputs (the splits, tasks/tracking/lineage.py)."""
        if datasets:
            run_id = self.run_id
            self._call(lambda: self.client.log_inputs(run_id, datasets=datasets), "logging the datasets")

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        run_id = self.run_id
        self._call(
            lambda: self.client.log_artifact(run_id, str(path), artifact_path=artifact_path),
            f"uploading {Path(path).name}",
        )

    def log_artifacts(self, folder: Path | str, artifact_path: str | None = None) -> None:
        run_id = self.run_id
        self._call(
            lambda: self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path),
            f"uploading {Path(folder).name}/",
        )

    def log_dict(self, data: dict, artifact_file: str) -> None:
        run_id = self.run_id
        self._call(lambda: self.client.log_dict(run_id, data, artifact_file), f"uploading {artifact_file}")

    def log_table(self, frame, artifact_file: str) -> None:
        run_id = self.run_id
        self._call(
            lambda: self.client.log_table(run_id, data=frame, artifact_file=artifact_file), f"uploading {artifact_file}"
        )


# -- the owner --------------------------------------------------------------------------------


class RunOwner:
    """Opens (lazily) and ends the run of one pipeline execution."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.handle: RunHandle | None = None

    def run(self, data_version: str | None) -> RunHandle:
        """The execution's run handle (one per execution)."""
        if self.handle is None:
            self.handle = RunHandle(self.cfg, data_version)
        elif data_version and not self.handle.data_version:
            self.handle.data_version = data_version
        return self.handle

    def attach(self, run_id: str, data_version: str | None = None) -> RunHandle:
        """The run an earlier stage created (a training in another process): stages log to it."""
        handle = self.run(data_version)
        handle.continue_run(run_id)
        return handle

    def close(self, exc: BaseException | None = None) -> str | None:
        """End the run on every exit path; returns the status written (None: no run was opened)."""
        handle = self.handle
        if handle is None or not handle.started:
            return None
        status, tags = end_status(exc)
        run_id = handle.run_id
        _ledger_add(self.cfg, run_id, intended=status, tags=tags)
        # a stop request must end within seconds: one attempt, no waiting for an absent server
        budget = None if status != "KILLED" else 0.0
        try:
            if status == "FINISHED":
                handle.flush()
            else:
                handle._flush_once()
            if tags:
                from mlflow.entities import RunTag

                batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
                handle._call(lambda: handle.client.log_batch(run_id, tags=batch), "tagging the run", budget)
            handle._call(lambda: handle.client.set_terminated(run_id, status=status), "ending the MLflow run", budget)
        except TrackingError as error:
            if exc is None:
                raise
            logger.warning(
                "could not end MLflow run %s as %s (%s); the next run on this folder will", run_id, status, error
            )
            return status
        _ledger_remove(self.cfg, run_id)
        return status


def end_status(exc: BaseException | None) -> tuple[str, dict[str, str]]:
    """FINISHED, KILLED (asked to stop) or FAILED with the reason, from how the execution ended."""
    from tasks.core.secrets import redact

    if exc is None:
        return "FINISHED", {}
    if exit_code_for(exc) is not None:
        return "KILLED", {END_REASON: redact(str(exc) or type(exc).__name__)}
    first = (str(exc).strip().splitlines() or [""])[0]
    tags = {FAILURE: redact(f"{type(exc).__name__}: {first}")[:5000]}
    if isinstance(exc, ValidationFailed):
        tags["failed_stage"] = "validate"
    return "FAILED", tags


@contextlib.contextmanager
def owned(cfg: Config) -> Iterator[RunOwner]:
    """``with owned(cfg) as owner``: the run (if any gets opened) is ended when the block ends."""
    reap_stale(cfg)
    owner = RunOwner(cfg)
    try:
        yield owner
    except BaseException as exc:
        owner.close(exc)
        raise
    owner.close(None)


# -- the ledger of open runs ------------------------------------------------------------------


def _ledger_dir(cfg: Config) -> Path:
    return cfg.root / LEDGER


def _ledger_add(cfg: Config, run_id: str, intended: str | None = None, tags: dict | None = None) -> None:
    # the store by its key (no credentials: nothing the project writes holds a secret)
    entry = {"run_id": run_id, "pid": os.getpid(), "store": store.store_key(cfg), "opened": time.time()}
    if intended:
        entry.update(intended=intended, tags=tags or {})
    atomic_write_json(_ledger_dir(cfg) / f"{run_id}.json", entry)


def _ledger_remove(cfg: Config, run_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (_ledger_dir(cfg) / f"{run_id}.json").unlink()


def reap_stale(cfg: Config) -> list[str]:
    """End the runs an earlier process on this folder left open (it was killed, or the store was
    away when it ended). Call with the project lock held. Returns the run ids ended."""
    from mlflow.exceptions import MlflowException

    folder = _ledger_dir(cfg)
    if not folder.is_dir() or int(os.environ.get("RANK", "0")) != 0:
        return []  # (the other ranks of a distributed run leave this to rank 0)
    ended = []
    for entry_file in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(entry_file.read_text())
        except (OSError, ValueError):
            entry_file.unlink(missing_ok=True)
            continue
        if entry.get("pid") == os.getpid():
            continue  # ours (a reentrant owner in this process)
        if entry.get("store", entry.get("tracking_uri")) not in (store.store_key(cfg), cfg.tracking_uri()):
            continue  # another store: left for a run pointed at it
        run_id = entry["run_id"]
        status = entry.get("intended") or "KILLED"
        tags = entry.get("tags") or {
            END_REASON: "the process running it ended without closing the run "
            "(killed); ended by the next run on this folder"
        }
        c = tracking.client(cfg)
        try:
            run = c.get_run(run_id)
            if run.info.status == "RUNNING":
                for k, v in tags.items():
                    c.set_tag(run_id, k, v)
                c.set_terminated(run_id, status=status)
                ended.append(run_id)
                logger.info("MLflow run %s was left RUNNING by an earlier process: marked %s", run_id, status)
        except MlflowException as exc:
            if not tracking.is_not_found(exc):
                logger.warning("could not end stale MLflow run %s yet: %s", run_id, str(exc).splitlines()[0])
                continue
        except tracking.store_errors() as exc:
            logger.warning("could not end stale MLflow run %s yet: %s", run_id, exc)
            continue
        entry_file.unlink(missing_ok=True)
    return ended


def log_validation(cfg: Config, run: RunHandle) -> None:
    """The data gate's report (JSON) and GX Data Docs (HTML) under ``validation/`` of the run."""
    from tasks.core.results import VALIDATION_DOCS, VALIDATION_REPORT

    reports = cfg.path("reports")
    if (reports / VALIDATION_REPORT).is_file():
        run.log_artifact(reports / VALIDATION_REPORT, artifact_path="validation")
    if (reports / VALIDATION_DOCS).is_dir():
        run.log_artifacts(reports / VALIDATION_DOCS, artifact_path="validation/data_docs")
