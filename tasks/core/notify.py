"""Telling people: one JSON event per run outcome, POSTed to a webhook.

The URL comes from the environment variable ``notify.webhook_env`` (``S2S_WEBHOOK_URL``): it
usually carries a token, so it is never a setting in a file, and it is scrubbed from every log.
A 5xx answer, a refused connection or a timeout is retried with backoff (``notify.attempts``);
a webhook that stays down costs a warning, never the run's outcome: the registry is the record,
the webhook only tells.

The event::

    {"event": "promoted" | "rejected" | "skipped" | "failed" | "awaiting_approval",
     "pipeline": ..., "model": ..., "version": ..., "champion": ..., "champion_before": ...,
     "reasons": [...], "metrics": {...}, "intervals": {...}, "data_version": ...,
     "flow_run_id": ..., "time": ISO-8601 UTC, "host": ...}
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from tasks.core.config import Config
from tasks.core.context import prefect_flow_run_id

logger = logging.getLogger(__name__)


def webhook_url(cfg: Config) -> str | None:
    return os.environ.get(cfg.notify.webhook_env) or None


def event(cfg: Config, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "pipeline": cfg.pipeline,
        "model": cfg.register.model_name,
        **fields,
        "flow_run_id": prefect_flow_run_id() or "",
        "time": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
    }


def send(cfg: Config, kind: str, always: bool = False, **fields: Any) -> bool:
    """POST the event when a webhook is configured and ``kind`` is one of ``notify.events``
    (``always``: asked for by a person, whatever the events). True when the receiver took it (2xx)."""
    from tasks.core.secrets import redact

    url = webhook_url(cfg)
    if not url or (kind not in cfg.notify.events and not always):
        return False
    body = json.dumps(event(cfg, kind, **fields), default=str, ensure_ascii=False).encode()
    problem = ""
    for attempt in range(cfg.notify.attempts):
        if attempt:
            time.sleep(min(0.5 * 2.0 ** (attempt - 1), 30.0))
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "s2s-pipeline"}
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.notify.timeout_s) as response:
                if 200 <= response.status < 300:
                    logger.info("notify: %s event delivered (HTTP %s)", kind, response.status)
                    return True
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # a 4xx will not change on retry: the URL or its token is wrong
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
    logger.warning(
        "notify: the %s event did not reach the webhook in $%s (%s); the run's outcome stands",
        kind,
        cfg.notify.webhook_env,
        redact(problem),
    )
    return False
