"""Credentials: from the environment or Prefect Secret blocks, never from settings, never logged.

The MLflow password, the hub token and the S3 keys are read by the libraries themselves from
their usual environment variables. When one is not set and a Prefect API is configured, the
Prefect Secret block of the same name in kebab case (``mlflow-tracking-password``,
``hf-token``, ``aws-secret-access-key``...) fills it in for this process.

Every log record made in this process is scrubbed of those values and of passwords written
into URLs (``scheme://user:password@host``), whatever logger or handler it goes through.
"""

from __future__ import annotations

import logging
import os
import re

# Environment variables that hold credentials (each may come from a Prefect Secret block).
SECRET_ENV = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PREFECT_API_KEY",
)
MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^/\s:@]+:)[^@\s/]+@")
_installed = False


def block_name(env: str) -> str:
    return env.lower().replace("_", "-")


def load_secret_blocks() -> list[str]:
    """Fill unset credential variables from Prefect Secret blocks; returns the names filled."""
    missing = [env for env in SECRET_ENV if not os.environ.get(env)]
    if not missing:
        return []
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # no server of our own to hold blocks (temporary server)
        return []
    from prefect.blocks.system import Secret

    filled = []
    for env in missing:
        try:
            value = Secret.load(block_name(env), _sync=True).get()
        except (ValueError, KeyError):  # no such block
            continue
        except Exception as exc:  # the server is down: the run fails later with a clear error
            logging.getLogger(__name__).debug("secret block %s not read: %s", block_name(env), type(exc).__name__)
            continue
        if value:
            os.environ[env] = str(value)
            filled.append(env)
    return filled


def secret_values() -> list[str]:
    values = {os.environ.get(env, "") for env in SECRET_ENV}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without credential values and URL passwords."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


def install_redaction() -> None:
    """Scrub every log record made from now on (message and arguments)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
