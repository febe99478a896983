"""``s2s``: the command line. Heavy libraries are imported inside the commands, so ``s2s --help``
starts in a fraction of a second.

One module per command family, each with the parser of its commands: ``pipeline_cmds`` (run, init,
deploy, worker, train), ``decision_cmds`` (promote, register, evaluate, rollback, approve, data),
``history_cmds`` (history, registry, compare), ``model_cmds`` (predict, serve); what they share is
``flows/cli_common.py``. Every command and helper stays importable from ``flows.cli``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from flows.cli.decision_cmds import (
    _add_decision_commands,
    _approval_configs,
    _decision,
    _print_waiting,
    _version_or_none,
    cmd_approve,
    cmd_data_add,
    cmd_evaluate,
    cmd_promote,
    cmd_register,
    cmd_rollback,
)
from flows.cli.history_cmds import _add_history_commands, cmd_compare, cmd_history, cmd_registry
from flows.cli.model_cmds import FLAG_DEST, LIMIT_FLAGS, _add_model_commands, cmd_predict, cmd_serve, load_registered
from flows.cli.pipeline_cmds import _add_pipeline_commands, cmd_deploy, cmd_init, cmd_run, cmd_train, cmd_worker
from flows.cli_common import EXIT_NOT_PROMOTED, _prepare_env, _require_prefect_server
from tasks.core.entry import report_error, setup_logging
from tasks.core.errors import PipelineError, storage_failure

__all__ = [
    "EXIT_NOT_PROMOTED",
    "FLAG_DEST",
    "LIMIT_FLAGS",
    "TRAINING_COMMANDS",
    "build_parser",
    "cmd_approve",
    "cmd_compare",
    "cmd_data_add",
    "cmd_deploy",
    "cmd_evaluate",
    "cmd_history",
    "cmd_init",
    "cmd_predict",
    "cmd_promote",
    "cmd_register",
    "cmd_registry",
    "cmd_rollback",
    "cmd_run",
    "cmd_serve",
    "cmd_train",
    "cmd_worker",
    "load_registered",
    "main",
    "_add_decision_commands",
    "_add_history_commands",
    "_add_model_commands",
    "_add_pipeline_commands",
    "_approval_configs",
    "_decision",
    "_prepare_env",
    "_print_waiting",
    "_require_prefect_server",
    "_version_or_none",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2s",
        description="Fine-tune, evaluate, register and promote seq2seq models "
        "(Prefect + DVC + Great Expectations + transformers + MLflow).",
    )
    from tasks.core import project

    parser.add_argument("--version", action="version", version=f"%(prog)s {project.version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log line live (they always go to the log file under .s2s/logs/)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_pipeline_commands(sub)
    _add_decision_commands(sub)
    _add_history_commands(sub)
    _add_model_commands(sub)
    return parser


TRAINING_COMMANDS = ("run", "train")  # the commands whose stop leaves a checkpoint and a KILLED run


def main(argv: list[str] | None = None) -> int:
    from tasks.core import signals

    args = build_parser().parse_args(argv)
    setup_logging(args.command, verbose=args.verbose)
    signals.install()
    try:
        return args.func(args)
    except BrokenPipeError:  # `s2s compare | head`: the reader has all it wanted
        os._exit(0)
    except BaseException as exc:
        code = signals.exit_code_for(exc)
        if code is None and (asked := signals.stop_requested()) is not None:
            # a stop that surfaced as another error on its way out (Prefect's CrashedRun for a
            # flow it saw crash, a failure wrapped around the interrupted call): the stop is the cause
            logging.getLogger(__name__).info("the stop surfaced as", exc_info=exc)  # file only
            code, exc = 128 + asked, signals.Interrupted(asked)
        if code is None and isinstance(exc, PipelineError):
            return report_error(exc)
        if code is None:
            if (storage := storage_failure(exc)) is not None:  # not a bug: one message, the trace in the log
                logging.getLogger(__name__).info("the failed write", exc_info=exc)  # file only
                return report_error(storage)
            raise
        # stopped on request: everything was released on the way out. Exit now, without the
        # interpreter's shutdown hooks, which could wait on a Prefect server that is gone.
        after = (
            "; the MLflow run is marked KILLED and a re-run continues from the last checkpoint"
            if args.command in TRAINING_COMMANDS
            else ""
        )
        print(f"s2s {args.command}: {exc or 'interrupted'}{after}", file=sys.stderr)
        signals.hard_exit(code - 128)
