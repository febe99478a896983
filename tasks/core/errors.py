"""Errors a user can cause and fix. Each message says what was found and what to change.

Entry points (the CLI, ``python -m tasks.<stage>``) print these as one readable message and exit
non-zero; so does a write that failed for lack of room (``storage_failure``); anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib

# Every exit status of `s2s` and of `python -m tasks.<stage>`: the one table (docs/reference's
# exit-codes page is generated from it). Constants below name the ones code returns directly.
EXIT_CODES: dict[int, str] = {
    0: "success: the command did what it was asked (`s2s run`: the candidate was promoted, or a retrain "
    "had nothing new to train)",
    1: "an error you can fix, named in one message: bad data, the data gate failed, an unreachable or "
    "refused tracking store, a failed write (disk full)",
    2: "a setting is unknown or invalid (params.yaml, pipelines.yaml, `--set`, flags, an AutoTrain config), "
    "or the command line itself is wrong",
    3: "the model trained fine but was not promoted: the gates refused it, a person rejected it, or an "
    "approval came too late (the champion moved)",
    75: "another run holds the project folder (`.s2s/run.lock`); try again later or pass `--wait`",
    130: "stopped by Ctrl-C (SIGINT): checkpoint kept, MLflow run KILLED, locks released",
    143: "stopped by SIGTERM (`docker stop`, a scheduler): checkpoint kept, MLflow run KILLED, locks released",
}
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_NOT_PROMOTED, EXIT_BUSY = 0, 1, 2, 3, 75


class PipelineError(Exception):
    """Base of the project's user-facing errors. ``transient``: trying again later can help
    (a server or the network was down), the only case the orchestrator retries."""

    exit_code = EXIT_ERROR
    transient = False


class ConfigError(PipelineError):
    """A setting in params.yaml, pipelines.yaml or on the command line is unknown or invalid."""

    exit_code = EXIT_CONFIG


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


class StorageError(PipelineError):
    """A write failed for lack of room: the disk is full, a quota is used up, or the process's
    file size limit (``ulimit -f``) was reached."""


# what torch and safetensors say when their writer hits a full disk or a size limit (a C++
# stream error, not an OSError, so its errno is lost)
_WRITER_FAILURES = ("iostream error", "unexpected pos", "failed writing file", "PytorchStreamWriter", "No space left")


def storage_failure(exc: BaseException, root=None) -> StorageError | None:
    """The storage fault behind ``exc`` (anywhere in its chain) as one message naming the cause
    and the fix, or None when it is not one. ``root``: the folder whose disk to measure."""
    import errno
    import os
    import resource
    import shutil

    seen, at, chain = set(), exc, []
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        chain.append(at)
        at = at.__cause__ or at.__context__
    codes = {getattr(e, "errno", None) for e in chain if isinstance(e, OSError)}
    writer = any(isinstance(e, RuntimeError) and any(m in str(e) for m in _WRITER_FAILURES) for e in chain)
    if not (codes & {errno.ENOSPC, errno.EDQUOT, errno.EFBIG} or writer):
        return None
    where = str(root or os.getcwd())
    named = next((e.filename for e in chain if isinstance(e, OSError) and getattr(e, "filename", None)), None)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    if errno.EFBIG in codes or (limit != resource.RLIM_INFINITY and errno.ENOSPC not in codes):
        cause = f"a file reached this process's file size limit (ulimit -f: {limit} bytes)"
        fix = "raise the limit (ulimit -f unlimited)"
    elif errno.EDQUOT in codes:
        cause = "the disk quota is used up"
        fix = "free space within the quota"
    else:
        cause = "the disk is full" + (f" ({free / 1e6:.0f} MB free on the file system of {where})" if free else "")
        fix = "free space (or point paths.* in params.yaml at a larger disk)"
    first = str(chain[-1]).strip().splitlines()[0][:200] if str(chain[-1]).strip() else type(chain[-1]).__name__
    return StorageError(
        f"writing {named or 'a file'} failed: {cause} ({first}); {fix}, then run again: "
        "a training goes on from its last complete checkpoint"
    )


def suggest(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or nothing: every "unknown name" error uses it."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
