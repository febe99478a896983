"""The stage functions as Prefect tasks.

DVC owns artifact caching (see flows/dvc_cache.py), so Prefect caches nothing. Retries are
for transient failures only (a tracking server, the hub or storage being unreachable), with the
pipeline's count and backoff; bad data or a bad setting fails at once. Promotions of a model are
serialized by the registry's own lock (tasks/tracking/registry.py), which holds across machines
with or without a Prefect server.
"""

from __future__ import annotations

import functools

from prefect import task
from prefect.cache_policies import NONE

from tasks.core import signals
from tasks.core.config import Config
from tasks.core.secrets import scrub_exception
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote, promote_version
from tasks.register import register
from tasks.train import train
from tasks.validate import validate


def transient(_task, _task_run, state) -> bool:  # Prefect's retry_condition_fn
    """Retry only what a retry can fix."""
    try:
        state.result()
    except Exception as exc:
        return bool(getattr(exc, "transient", False))
    return False


def scrubbed(fn):
    """The stage function, with credentials removed from any exception it raises before Prefect
    turns the message into a run state (kept in the Prefect database and shown in its UI), and a
    stop request honoured at the task's start and end even if its exception was lost on the way
    (raised inside a finalizer while Prefect set up or recorded the task: tasks/core/signals.py)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            signals.check()
            result = fn(*args, **kwargs)
            signals.check()
            return result
        except BaseException as exc:
            scrub_exception(exc)
            raise

    return wrapper


def _task(fn, name: str, retryable: bool):
    options = {"retry_condition_fn": transient} if retryable else {}
    return task(scrubbed(fn), name=name, cache_policy=NONE, **options)


# the stages whose failures can be transient get the pipeline's retries
RETRYABLE = ("ingest", "evaluate", "register", "promote")
TASKS = {
    name: _task(fn, name, name in RETRYABLE)
    for name, fn in (
        ("ingest", ingest),
        ("validate", validate),
        ("train", train),
        ("evaluate", evaluate),
        ("register", register),
        ("promote", promote),
    )
}
promote_version_task = _task(promote_version, "promote-version", True)


def for_pipeline(cfg: Config) -> dict:
    """The tasks with this pipeline's retries and timeouts applied."""
    retries, timeouts = cfg.spec.retries, cfg.spec.timeouts
    out = {}
    for name, t in TASKS.items():
        options = {}
        if name in RETRYABLE and retries.count:
            options.update(retries=retries.count, retry_delay_seconds=retries.delay_s)
        timeout = {"train": timeouts.train_s, "evaluate": timeouts.evaluate_s}.get(name)
        if timeout:
            options["timeout_seconds"] = timeout
        out[name] = t.with_options(**options) if options else t
    return out
