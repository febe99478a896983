"""Errors a user can cause and fix. Each message says what was found and what to change.

Entry points (the CLI, ``python -m tasks.<stage>``) print these as one readable message and exit
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the project's user-facing errors. ``transient``: trying again later can help
    (a server or the network was down), the only case the orchestrator retries."""

    exit_code = 1
    transient = False


class ConfigError(PipelineError):
    """A setting in params.yaml, pipelines.yaml or on the command line is unknown or invalid."""

    exit_code = 2


class DataError(PipelineError):
    """The input data cannot be read or does not have the expected shape."""


class ValidationFailed(PipelineError):
    """The data-quality gate rejected the data; nothing was trained or registered."""

    def __init__(self, message: str, report_path: str | None = None, result=None):
        super().__init__(message)
        self.report_path = report_path
        self.result = result  # the full ValidateResult, for callers that want every check


class TrackingError(PipelineError):
    """The MLflow tracking server or registry cannot be reached or refused a request."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient
