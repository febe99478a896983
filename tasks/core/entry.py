"""What every entry point shares: logging set-up, config flags, and turning user errors into
one readable message with a non-zero exit status instead of a traceback; and the process frame of
a DVC stage (``stage_process``), which the stage runner (``tasks/stage_runner.py``) builds on."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from tasks.core.errors import PipelineError, storage_failure


def setup_logging(command: str = "run", verbose: bool = False, streams: bool = True) -> None:
    """Configure logging once, at an entry point (never at import): a quiet console and a log
    file under the project's ``.s2s/logs/`` (tasks/core/logs.py)."""
    from tasks.core import logs
    from tasks.core.secrets import install_redaction

    install_redaction(streams=streams)  # credentials never reach a log line or the console
    log_file = None
    with contextlib.suppress(PipelineError, OSError):
        from tasks.core.config import find_root

        log_file = logs.log_file_for(find_root(), command)
    logs.configure(log_file, verbose=verbose or os.environ.get("S2S_LOG_LEVEL", "").upper() == "DEBUG")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        "-p",
        default=os.environ.get("S2S_PIPELINE", "default"),
        help="named pipeline from pipelines.yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a params.yaml setting for this run, e.g. --set train.epochs=1 (repeatable)",
    )


def report_error(exc: PipelineError) -> int:
    from tasks.core.secrets import redact

    print(f"error: {redact(str(exc))}", file=sys.stderr)
    return exc.exit_code


def stage_process(name: str, body: Callable[[Any, argparse.Namespace], Any], argv: list[str] | None = None) -> int:
    """The process frame every ``dvc repro`` stage shares (``python -m tasks.<stage>``, and the
    guard's ``python -m tasks.guard``).

    Flags (``--pipeline``, ``--set``, ``--wait``, ``-v``), logging, signal handling, the
    configuration, and errors turned into one message and an exit status. ``body(cfg, args)`` does
    the work. The guard (``python -m tasks.guard``) is this and nothing more; the six stages
    run through ``tasks/stage_runner.py``, which adds the project lock, the MLflow run the process
    owns and retries."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}", description=f"Run the {name} stage.")
    add_config_flags(parser)
    parser.add_argument("--wait", action="store_true", help="wait for another run on this folder to finish")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every log line on the console")
    args = parser.parse_args(argv)
    setup_logging(f"stage-{name}", verbose=args.verbose)
    from tasks.core import signals
    from tasks.core.config import load_config
    from tasks.core.context import quiet_telemetry

    signals.install()
    quiet_telemetry()
    try:
        cfg = load_config(args.pipeline, args.overrides)
        body(cfg, args)
    except PipelineError as exc:
        return report_error(exc)
    except BaseException as exc:
        code = signals.exit_code_for(exc)
        if code is None:
            if (storage := storage_failure(exc)) is not None:
                return report_error(storage)
            raise
        print(f"{name}: {exc or 'interrupted'}; nothing half-written was kept", file=sys.stderr)
        return code
    return 0
