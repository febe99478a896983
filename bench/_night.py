"""One night of bench.soak: the ``retrain`` flow a deployment's schedule starts, run in this
process under the temporary Prefect server ``s2s run`` uses (so its pauses, state and logs are
Prefect's). Prints ``night: <state> <message>`` and exits 0 when the flow run completed.

    python -m bench._night [pipeline]
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from flows.cli_common import _prepare_env
    from flows.local_server import TemporaryServer, api_settings

    _prepare_env()
    from tasks.core import logs
    from tasks.core.config import find_root

    logs.configure(logs.log_file_for(find_root(), "night"))  # the quiet console `s2s run` has

    pipeline = argv[0] if argv else "default"
    server = TemporaryServer()
    try:
        from flows.pipeline import retrain

        server.wait()
        print(f"night: api {server.url}", flush=True)  # what `s2s approve` talks to while the flow waits
        logs.adopt_libraries()
        with api_settings(server):
            state = retrain(pipeline=pipeline, return_state=True)
        try:
            summary = state.result() if state.is_completed() else None
        except Exception:  # a skip returns a bare state
            summary = None
        if hasattr(summary, "format"):
            print(summary.format())
        print(f"night: {state.type.value} {state.message or ''}".strip(), flush=True)
        return 0 if state.is_completed() else 1
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
