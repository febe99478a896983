"""Credentials: from the environment or Prefect Secret blocks, never from settings, never logged.

The MLflow password, the hub token and the S3 keys are read by the libraries themselves from
their usual environment variables. When one is not set and a Prefect API is configured, the
Prefect Secret block of the same name in kebab case (``mlflow-tracking-password``,
``hf-token``, ``aws-secret-access-key``...) fills it in for this process.

Every log record made in this process is scrubbed of those values and of passwords written
into URLs (``scheme://user:password@host``, also when the password holds ``/`` or ``@``),
whatever logger or handler it goes through; so are formatted tracebacks, uncaught exceptions,
exception messages on their way to Prefect's run states, and what the process prints.
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
    "PREFECT_API_AUTH_STRING",  # "user:password" of a Prefect server's basic auth
    "PREFECT_SERVER_API_AUTH_STRING",
    "S2S_WEBHOOK_URL",  # a webhook URL often carries its token (Slack, Teams)
)
MASK = "***"
# scheme://user:password@host: the password runs to the last "@" of the URL (it may hold "/" or
# "@" itself); what follows the "@" must look like a host.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^/\s:@'\"]+:)[^\s'\"]*@(?=[\w.\[\]-]+(?:[:/\s'\"]|$))")
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
    for env in ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING"):  # also the password alone
        _, _, password = os.environ.get(env, "").partition(":")
        values.add(password)
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without credential values and URL passwords."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


def scrub_exception(exc: BaseException) -> BaseException:
    """Remove credentials from an exception's message (and its causes') in place, before it
    reaches a traceback, a Prefect state message or a log."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        try:
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        except (AttributeError, TypeError):
            pass
        exc = exc.__cause__ or exc.__context__
    return exc


class _RedactingStream:
    """stdout/stderr that scrub what goes through them, line by line."""

    def __init__(self, stream):
        self._stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            return self._stream.write(text)
        data = self._partial + text
        head, sep, tail = data.rpartition("\n")
        if sep:
            self._stream.write(redact(head + sep))
        self._partial = tail
        if len(self._partial) > 4096 or ("\r" in tail):  # progress bars redraw without newlines
            self._stream.write(redact(self._partial))
            self._partial = ""
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._stream.write(redact(self._partial))
            self._partial = ""
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install_redaction(streams: bool = False) -> None:
    """Scrub every log record made from now on (message, arguments, tracebacks), uncaught
    exceptions, and (``streams``: entry points) everything printed to stdout/stderr."""
    import sys

    global _installed
    if streams and not isinstance(sys.stderr, _RedactingStream):
        sys.stdout, sys.stderr = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    if _installed:
        return
    format_exception, format_stack = logging.Formatter.formatException, logging.Formatter.formatStack
    logging.Formatter.formatException = lambda self, ei: redact(format_exception(self, ei))
    logging.Formatter.formatStack = lambda self, si: redact(format_stack(self, si))
    hook = sys.excepthook

    def excepthook(kind, value, tb):
        scrub_exception(value)
        hook(kind, value, tb)

    sys.excepthook = excepthook
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
