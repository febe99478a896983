"""The guard stage, dvc.yaml's first: ``python -m tasks.guard``.

Every configured folder is checked (tasks/core/paths.py) when the configuration loads, and the
checked folders are recorded in ``.s2s/guard.json``, so a bad ``paths.*`` edit stops ``dvc repro``
before DVC removes the outputs of any stage. No project lock, no MLflow run: only the check and
its record.
"""

from __future__ import annotations

from tasks.core.entry import stage_process
from tasks.core.paths import write_guard


def main(argv: list[str] | None = None) -> int:
    return stage_process("guard", lambda cfg, _args: write_guard(cfg), argv)


if __name__ == "__main__":
    raise SystemExit(main())
