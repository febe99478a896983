"""What every entry point shares: logging set-up, config flags, and turning user errors into
one readable message with a non-zero exit status instead of a traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from tasks.core.errors import PipelineError


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


def retry_delays(cfg) -> list[float]:
    """The pipeline's backoff for transient failures (pipelines.yaml ``retries``), one per retry."""
    r = cfg.spec.retries
    return [r.delay_s[min(i, len(r.delay_s) - 1)] for i in range(r.count)] if r.delay_s else [0.0] * r.count


def stage_main(name: str, run: Callable[[Any, Any], Any], argv: list[str] | None = None, lock: bool = True) -> int:
    """``python -m tasks.<name>``: the DVC entry point of one stage.

    The process is the owner here, as the flow is in ``s2s run``: it holds the project lock,
    opens nothing but ends the MLflow run the stage logged to (FINISHED, FAILED or KILLED), and
    retries transient failures with the pipeline's backoff. ``run(cfg, owner)`` does the work."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}", description=f"Run the {name} stage.")
    add_config_flags(parser)
    parser.add_argument("--wait", action="store_true", help="wait for another run on this folder to finish")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every log line on the console")
    args = parser.parse_args(argv)
    setup_logging(f"stage-{name}", verbose=args.verbose)
    from tasks.core import locks, retry, signals
    from tasks.core.config import load_config
    from tasks.tracking.client import quiet_telemetry

    signals.install()
    quiet_telemetry()
    try:
        cfg = load_config(args.pipeline, args.overrides)
        if not lock:
            run(cfg, None)
            return 0
        from tasks.tracking.run import owned

        # the other ranks of a distributed (torchrun) run are part of rank 0's run, which holds it
        holder = (
            locks.project_lock(cfg.root, wait=args.wait)
            if int(os.environ.get("RANK", "0")) == 0
            else contextlib.nullcontext()
        )
        with holder:

            def attempt():
                from tasks.core import logs

                logs.adopt_libraries()
                with owned(cfg) as owner:
                    return run(cfg, owner)

            signals.check()
            retry.call(attempt, retry_delays(cfg), f"the {name} stage")
            signals.check()  # a stop whose exception was lost (tasks/core/signals.py): not a success
    except PipelineError as exc:
        return report_error(exc)
    except BaseException as exc:
        code = signals.exit_code_for(exc)
        if code is None:
            raise
        print(f"{name}: {exc or 'interrupted'}; nothing half-written was kept", file=sys.stderr)
        return code
    return 0
