"""What every entry point shares: logging set-up, config flags, and turning user errors into
one readable message with a non-zero exit status instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from tasks.core.errors import PipelineError

LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Configure logging once, at an entry point (never at import)."""
    from tasks.core.secrets import install_redaction

    install_redaction()  # credentials never reach a log line, whichever handler writes it
    logging.basicConfig(level=level or os.environ.get("S2S_LOG_LEVEL", "INFO"), format=LOG_FORMAT, datefmt="%H:%M:%S")
    # GX pins one of its module loggers to INFO, so it is named explicitly.
    for noisy in ("httpx", "urllib3", "alembic", "mlflow.store.db.utils", "great_expectations",
                  "great_expectations.data_context.types.base", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class HideUserErrorTracebacks(logging.Filter):
    """Prefect logs every task failure with its traceback. For errors a user caused and can fix
    (bad data, bad settings) the one-line message is the whole story; bugs keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PipelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_prefect_user_errors() -> None:
    """Attach the filter to the loggers Prefect's engines report failures on (after import)."""
    flt = HideUserErrorTracebacks()
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(flt)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline", "-p", default=os.environ.get("S2S_PIPELINE", "default"),
        help="named pipeline from pipelines.yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a params.yaml setting for this run, e.g. --set train.epochs=1 (repeatable)",
    )


def report_error(exc: PipelineError) -> int:
    from tasks.core.secrets import redact

    print(f"error: {redact(str(exc))}", file=sys.stderr)
    return exc.exit_code


def stage_main(name: str, run: Callable[[Any], Any], argv: list[str] | None = None) -> int:
    """``python -m tasks.<name>``: the DVC entry point of one stage."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}", description=f"Run the {name} stage.")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()
    from tasks.core.config import load_config
    from tasks.tracking.client import quiet_telemetry

    quiet_telemetry()
    try:
        run(load_config(args.pipeline, args.overrides))
    except PipelineError as exc:
        return report_error(exc)
    return 0
