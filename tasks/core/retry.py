"""Retrying what a retry can fix: the one policy for transient failures outside Prefect's task
retries (stage entry points under ``dvc repro``, calls a stage must not lose, such as training's
metrics). Only errors marked ``transient`` (tasks/core/errors.py) are retried."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


def delays_within(budget_s: float, first: float = 1.0, factor: float = 2.0, cap: float = 30.0) -> list[float]:
    """Backoff delays (1, 2, 4, ... capped) whose sum stays within ``budget_s`` seconds."""
    out, total, d = [], 0.0, first
    while budget_s > 0 and total + d <= budget_s:
        out.append(d)
        total += d
        d = min(d * factor, cap)
    if budget_s > total:
        out.append(budget_s - total)
    return out


def call(
    fn: Callable[[], T], delays: Iterable[float], what: str, retry_if: Callable[[BaseException], bool] = is_transient
) -> T:
    """``fn()``, retried after each of ``delays`` while it fails with a retryable error."""
    pending = list(delays)
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not pending or not retry_if(exc):
                raise
            wait = pending.pop(0)
            logger.warning(
                "%s failed (attempt %d: %s); retrying in %.0f s",
                what,
                attempt,
                str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                wait,
            )
            time.sleep(wait)
            attempt += 1
