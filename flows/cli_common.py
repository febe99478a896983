"""What the ``s2s`` command families share (``flows/cli/``). It sits beside the package, not in it:
a module of ``flows/cli/`` importing a sibling would import the package, which imports every
family, back (the import-circle check of tests/test_dvc_truth.py)."""

from __future__ import annotations

import os

from tasks.core import errors


def _prepare_env() -> None:
    from tasks.core.context import quiet_telemetry

    quiet_telemetry()
    # Our stage loggers appear in Prefect's run logs (and the UI), not only on the console.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")


# Exit status of `s2s run` when the model trained fine but did not pass the promotion gates,
# so a CI job or a scheduler can tell "rejected candidate" apart from "pipeline broken" (1, 2).
EXIT_NOT_PROMOTED = errors.EXIT_NOT_PROMOTED


def _require_prefect_server(command: str) -> None:
    """Deployments and workers live on a long-running Prefect server, not on a temporary one."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        from tasks.core.errors import ConfigError

        raise ConfigError(
            f"`s2s {command}` needs a running Prefect server: start one with "
            "`prefect server start --host 127.0.0.1` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or set it in your Prefect profile)"
        )
