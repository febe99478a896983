"""Reading the model registry, fail closed, and the retried call every registry request makes.

**Reads fail closed.** Only the registry saying "not found" means "absent" (no champion, no such
version). A locked SQLite file, a 503, a timeout or a 403 is a transient TrackingError: retried
for ``tracking.retry_s`` here, then with the pipeline's backoff by the orchestrator, and if it
persists the run fails and no alias moves.

The registry's writes go through the same retried :func:`call`. The promotion lock and the
write-ahead alias changes are in tasks/tracking/registry.py, the champion history in
tasks/tracking/history.py; both read through this module, which needs neither of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tasks.core import retry
from tasks.core.config import Config
from tasks.core.errors import TrackingError
from tasks.tracking import client as tracking

T = TypeVar("T")

# the registered-model tag holding an alias change under way (registry.py writes and clears it;
# history.py reports one left behind)
PENDING = "s2s.pending"


def call(cfg: Config, fn: Callable[[], T], doing: str) -> T:
    """A registry call whose errors are transient TrackingErrors, retried for ``tracking.retry_s``."""

    def once():
        try:
            return fn()
        except TrackingError:
            raise
        except tracking.store_errors() as exc:
            raise tracking.failure(cfg, doing, exc) from None

    return retry.call(once, retry.delays_within(cfg.tracking.retry_s), doing)


def _absent_is_none(cfg: Config, fn: Callable[[], T], doing: str) -> T | None:
    from mlflow.exceptions import MlflowException

    def once():
        try:
            return fn()
        except MlflowException as exc:
            if tracking.is_not_found(exc):
                return None
            raise

    return call(cfg, once, doing)


def alias_version(cfg: Config, name: str, alias: str):
    """The version holding ``alias``, or None only when the registry says there is none."""
    c = tracking.client(cfg)
    return _absent_is_none(
        cfg, lambda: c.get_model_version_by_alias(name, alias), f"reading alias {alias!r} of {name!r}"
    )


def get_version(cfg: Config, name: str, version: str):
    """Model version ``version`` of ``name``, or None only when the registry says it does not exist."""
    c = tracking.client(cfg)
    return _absent_is_none(cfg, lambda: c.get_model_version(name, str(version)), f"reading {name!r} version {version}")


def model_tags(cfg: Config, name: str) -> dict[str, str] | None:
    """The registered model's tags, or None when the model does not exist."""
    c = tracking.client(cfg)
    model = _absent_is_none(cfg, lambda: c.get_registered_model(name), f"reading registered model {name!r}")
    return None if model is None else dict(model.tags or {})


def aliases(cfg: Config, name: str) -> dict[str, str]:
    """alias -> version of the registered model (empty when the model does not exist)."""
    c = tracking.client(cfg)
    model = _absent_is_none(cfg, lambda: c.get_registered_model(name), f"reading registered model {name!r}")
    return {} if model is None else {a: str(v) for a, v in (model.aliases or {}).items()}
