"""A quiet console and a complete log file.

By default the console shows only what a person running the pipeline acts on: one line per
stage as it starts and ends (the ``tasks.progress`` logger), live progress bars on a terminal,
warnings from this project, errors from anywhere, and the end-of-run summary. Everything else
(library INFO lines, per-step training dicts, Prefect's run-state lines, MLflow and DVC chatter)
goes to a log file under ``.s2s/logs/`` whose path the summary prints; ``-v`` shows it all
live. An error a user caused is printed once, by the entry point, not again by every engine it
passed through.

Libraries that install their own handlers (transformers, datasets, MLflow, Prefect, DVC) are
made to propagate into these two handlers instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path

PROGRESS = "tasks.progress"  # the stage lines: shown on the console, forwarded to Prefect's UI
LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"
OURS = ("tasks", "flows", "__main__")  # __main__: a stage run as `python -m tasks.<stage>`
KEEP_LOGS = 30  # log files kept per project
# third-party loggers held to warnings in the log file too: they log at INFO what says nothing about
# a run. GX's public-API registry notes every closure it skips ("Skipping registering function ...
# because it is a closure"), hundreds of lines per import: 73% of a default run's log file.
QUIET = (
    "httpx",
    "urllib3",
    "alembic",
    "absl",
    "filelock",
    "git",
    "fsspec",
    "asyncio",
    "great_expectations._docs_decorators",
)

_state: dict = {"file": None, "verbose": False, "console": None}


class _Console(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _state["verbose"]:
            return True
        if record.name == PROGRESS:
            return True
        if record.name.startswith("prefect"):
            return False  # run states echo errors the entry point prints once (the log file has them)
        if record.name.split(".")[0] in OURS:
            return record.levelno >= logging.WARNING
        if record.levelno >= logging.ERROR and _stopping():
            return False  # a library's error from the write a stop interrupted: the stop line says it all
        return record.levelno >= logging.ERROR


def _stopping() -> bool:
    from tasks.core import signals

    return signals.stop_requested() is not None


class _ProgressFormatter(logging.Formatter):
    """Stage lines bare; everything else with its level and source."""

    def __init__(self):
        super().__init__(LOG_FORMAT, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == PROGRESS:
            return record.getMessage()
        if record.levelno >= logging.WARNING and record.name.split(".")[0] in OURS:
            return f"{record.levelname.lower()}: {record.getMessage()}" + (
                "\n" + self.formatException(record.exc_info) if record.exc_info else ""
            )
        return super().format(record)


def log_file_for(root: Path, command: str) -> Path:
    folder = root / ".s2s" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.log"))
    for stale in old[: max(0, len(old) - KEEP_LOGS + 1)]:
        stale.unlink(missing_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{stamp}-{command}-{os.getpid()}.log"


def configure(log_file: Path | None = None, verbose: bool = False) -> None:
    """Console + file handlers on the root logger (idempotent: call again after importing a
    library that installs its own)."""
    _state["verbose"] = verbose or os.environ.get("S2S_VERBOSE") == "1"
    if log_file is not None:
        _state["file"] = log_file
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow: no handler of its own
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # one bar per weight load, shard write and dataset map is noise: the stages have their own
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.addFilter(_Console())
    console.setFormatter(_ProgressFormatter())
    root.addHandler(console)
    _state["console"] = console
    if _state["file"] is not None:
        fh = logging.FileHandler(_state["file"], encoding="utf-8")
        fh.setLevel(logging.DEBUG if _state["verbose"] else logging.INFO)
        fh.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(fh)
    logging.captureWarnings(True)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    adopt_libraries()


def adopt_libraries() -> None:
    """Make libraries that set up their own handlers log through ours (cheap: the entry points
    and the flow call it again before each stage, after the previous one imported more)."""
    for name in (
        "transformers",
        "datasets",
        "evaluate",
        "mlflow",
        "dvc",
        "great_expectations",
        "prefect",
        "uvicorn",
        "py.warnings",
    ):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not _is_prefect_api(handler):
                logger.removeHandler(handler)
        logger.propagate = True
        if name in ("great_expectations", "dvc"):
            logger.setLevel(logging.INFO)  # GX and DVC pin odd levels of their own
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.extra"):
        logging.getLogger(name).propagate = True  # their API handler stays: the run logs in Prefect's UI
    if "transformers" in sys.modules:
        import transformers

        tl = transformers.utils.logging
        tl.disable_default_handler()  # sets up transformers' lazy handler now, then removes it for good
        tl.enable_propagation()
        tl.disable_progress_bar()  # "Loading weights", "Writing model shards"
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()  # the tokenize map bars


def _is_prefect_api(handler: logging.Handler) -> bool:
    return type(handler).__name__ in ("APILogHandler", "WorkerAPILogHandler")


def current_file() -> Path | None:
    return _state["file"]


def progress(message: str, *args) -> None:
    """A stage line: on the console, in the log file, in Prefect's run log."""
    logging.getLogger(PROGRESS).info(message, *args)


class _Explained(logging.Filter):
    """Drops a library's notice that says nothing to act on, after our one line explaining it."""

    def __init__(self, text: str, explanation: str):
        super().__init__()
        self.text, self.explanation, self.told = text, explanation, False
        self.logger = logging.getLogger(__name__)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        if not self.told:
            self.told = True
            self.logger.info(self.explanation)
        return False


def explain_once(logger_name: str, text: str, explanation: str) -> None:
    """``logger_name``'s records containing ``text`` are replaced by ``explanation``, once."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, _Explained) and f.text == text for f in target.filters):
        target.addFilter(_Explained(text, explanation))
