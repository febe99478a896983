"""The stage functions as Prefect tasks.

DVC owns artifact caching (see tasks/dvc_cache.py), so Prefect caches nothing. Retries are for
transient failures only (a tracking server, the hub or storage being unreachable), with the
pipeline's count and backoff; bad data or a bad setting fails at once.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from tasks.core.config import Config
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote, promote_version
from tasks.register import register
from tasks.train import train
from tasks.validate import validate


def transient(task, task_run, state) -> bool:
    """Retry only what a retry can fix."""
    try:
        state.result()
    except Exception as exc:
        return bool(getattr(exc, "transient", False))
    return False


def serialized_promote(cfg: Config, registered, evaluated):
    """Promotion under the model's Prefect concurrency limit too (created by `s2s deploy`), so
    runs on different machines never move the alias at the same time; the file lock inside
    ``promote`` covers one machine."""
    from prefect.concurrency.sync import concurrency

    with concurrency(f"promote-{cfg.register.model_name}", occupy=1, strict=False):
        return promote(cfg, registered, evaluated)


def serialized_promote_version(cfg: Config, version: str, force: bool = False, reason: str | None = None):
    from prefect.concurrency.sync import concurrency

    with concurrency(f"promote-{cfg.register.model_name}", occupy=1, strict=False):
        return promote_version(cfg, version, force=force, reason=reason)


TASKS = {
    "ingest": task(ingest, name="ingest", cache_policy=NONE, retry_condition_fn=transient),
    "validate": task(validate, name="validate", cache_policy=NONE),
    "train": task(train, name="train", cache_policy=NONE),
    "evaluate": task(evaluate, name="evaluate", cache_policy=NONE, retry_condition_fn=transient),
    "register": task(register, name="register", cache_policy=NONE, retry_condition_fn=transient),
    "promote": task(serialized_promote, name="promote", cache_policy=NONE, retry_condition_fn=transient),
}
promote_version_task = task(serialized_promote_version, name="promote-version", cache_policy=NONE,
                            retry_condition_fn=transient)
# the stages whose failures can be transient get the pipeline's retries
RETRYABLE = ("ingest", "evaluate", "register", "promote")


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
