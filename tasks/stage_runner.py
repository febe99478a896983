"""The stage runner: ``python -m tasks.<stage>``, the DVC entry point of each of the six stages.

It sits above the shared layers because it uses two of them: the process frame of every DVC
stage (flags, logging, signals, the configuration, errors as exit statuses: ``tasks/core/entry.py``)
and the MLflow run the process owns (``tasks/tracking/run.py``)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from typing import Any

from tasks.core.entry import stage_process


def retry_delays(cfg) -> list[float]:
    """The pipeline's backoff for transient failures (pipelines.yaml ``retries``), one per retry."""
    r = cfg.spec.retries
    return [r.delay_s[min(i, len(r.delay_s) - 1)] for i in range(r.count)] if r.delay_s else [0.0] * r.count


def stage_main(name: str, run: Callable[[Any, Any], Any], argv: list[str] | None = None) -> int:
    """``python -m tasks.<name>``: the DVC entry point of one stage.

    The process is the owner here, as the flow is in ``s2s run``: it holds the project lock,
    opens nothing but ends the MLflow run the stage logged to (FINISHED, FAILED or KILLED), and
    retries transient failures with the pipeline's backoff. ``run(cfg, owner)`` does the work."""

    def body(cfg, args: argparse.Namespace) -> None:
        from tasks.core import locks, retry, signals
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
            from tasks.core.paths import sweep_outputs
            from tasks.core.results import clear_after

            sweep_outputs(cfg)  # what a killed run left half-written (this process holds the lock)

            clear_after(cfg.path("reports"), name)  # the later decisions are made again, or not at all
            retry.call(attempt, retry_delays(cfg), f"the {name} stage")
            signals.check()  # a stop whose exception was lost (tasks/core/signals.py): not a success

    return stage_process(name, body, argv)
