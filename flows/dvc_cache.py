"""DVC as the one caching authority for stage results, for `dvc repro` and the Prefect flow alike.

Before a stage, the flow asks DVC whether it is up to date (its code, data and params unchanged
since `dvc.lock` recorded it, and its outputs still there: exactly `dvc status`); if so, the
stage's saved result is reused. After a stage runs, the flow records it in `dvc.lock` (`dvc
commit`), as `dvc repro` would. So a `dvc repro` after `s2s run` does nothing, and a second
`s2s run` re-runs nothing, and the two can never disagree about what is current.

Only runs that `dvc.yaml` describes are cached: the `default` pipeline with params.yaml as it
is. Other pipelines, `--set` overrides and `--force` always run every stage.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from tasks.core.config import DEFAULT_PIPELINE, Config

logger = logging.getLogger(__name__)


class StageCache:
    def __init__(self, cfg: Config, force: bool = False):
        self.root = cfg.root
        if force:
            self.reason = "--force: every stage runs"
        elif cfg.pipeline != DEFAULT_PIPELINE:
            self.reason = f"pipeline {cfg.pipeline!r} is not in dvc.yaml: every stage runs"
        elif cfg.overrides:
            self.reason = "settings overridden on the command line: every stage runs, dvc.lock untouched"
        elif not (Path(cfg.root) / "dvc.yaml").is_file() or not (Path(cfg.root) / ".dvc").is_dir():
            self.reason = "no DVC project here: every stage runs"
        else:
            self.reason = None
        self._repo = None
        self._status: set[str] | None = None  # stages `dvc status` calls changed, until a stage runs

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def _dvc(self):
        if self._repo is None:
            from tasks.core import locks

            # the repository whose lock this run holds (tasks/core/locks.py); a second Repo in
            # this process would contend for DVC's lock with the first
            self._repo = locks.dvc_repo(self.root)
            self._own = self._repo is None
            if self._own:
                from dvc.repo import Repo

                self._repo = Repo(str(self.root))
        return self._repo

    def up_to_date(self, stage: str) -> bool:
        """True when DVC would not re-run ``stage`` (and its outputs are in place)."""
        if not self.enabled:
            return False
        if self._status is None:
            # DVC resolves stages against the working directory, so its calls run from the project
            # folder (for their duration only: nothing else here depends on the cwd)
            with contextlib.chdir(self.root):
                self._status = set(self._dvc().status())
        return stage not in self._status

    def record(self, stage: str) -> None:
        """Write the stage's deps, params and outputs to dvc.lock (and outputs to the DVC cache).
        What follows it must be looked at again: its inputs just changed."""
        if self.enabled:
            with contextlib.chdir(self.root):
                self._dvc().commit(stage, force=True)
            self._status = None

    def close(self) -> None:
        if self._repo is not None and getattr(self, "_own", False):
            self._repo.close()
        self._repo = None
