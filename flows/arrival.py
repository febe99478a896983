"""Data arrival: `s2s data add PATH` versions new data with DVC and tells Prefect, whose trigger on
each pipeline's retrain deployment (`s2s deploy`) starts the retrain.

``add`` DVC-tracks the path (``dvc add``), commits the ``.dvc`` file with git, pushes the data
when a DVC remote is configured, then emits one ``s2s.data.added`` event per pipeline whose
``ingest.source`` is that path, carrying the pipeline and the data version (the md5 DVC records,
the same version ingest and every model version carry). ``--version`` accepts a version already
pushed from elsewhere: only the event is emitted.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from flows.deploy import DATA_EVENT, data_resource
from tasks.core.config import Config
from tasks.core.errors import ConfigError
from tasks.core.project import dvc_command

logger = logging.getLogger(__name__)


def announce(pipeline: str, version: str, source: str, via: str = "s2s data add") -> None:
    """Emit the data-arrival event of ``pipeline`` (and wait until it is sent)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(
        event=DATA_EVENT,
        resource={
            "prefect.resource.id": data_resource(pipeline),
            "s2s.pipeline": pipeline,
            "s2s.data_version": version,
        },
        payload={"pipeline": pipeline, "data_version": version, "source": source, "via": via},
    )
    EventsWorker.drain_all()


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise ConfigError(f"{what} failed (`{' '.join(cmd)}`): {(proc.stderr or proc.stdout).strip()[-600:]}")
    return proc.stdout


def untrack_from_git(root: Path, rel: Path) -> bool:
    """Data that git tracks (the shipped sample, a file committed before DVC was used) moves to
    DVC: it leaves git's index (``git rm --cached``; the file stays on disk) and the commit
    that adds its ``.dvc`` file records the move. True when it was git-tracked."""
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "--", str(rel)], cwd=root, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        return False
    _run(["git", "rm", "-r", "-q", "--cached", "--", str(rel)], root, "git rm --cached")
    from tasks.core import logs

    logs.progress(
        "%s was tracked by git: it is now tracked by DVC instead (removed from git's index with "
        "`git rm --cached`, the file stays; the next commit records the move)",
        rel,
    )
    return True


def add(configs: dict[str, Config], path: str | None, version: str | None = None) -> list[tuple[str, str]]:
    """Version ``path`` (or take ``version``) and announce it to every pipeline reading it.
    Returns (pipeline, data version) pairs."""
    from tasks.data.sources import dvc_hash

    root = next(iter(configs.values())).root
    if path is None:
        if version is None:
            raise ConfigError("give the data PATH to add, or --version of data already pushed")
        targets = list(configs)
    else:
        src = (root / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
        if not src.exists():
            raise ConfigError(f"{path} does not exist")
        if not src.is_relative_to(root):
            raise ConfigError(f"{path} is outside the project ({root}): DVC tracks data inside it")
        targets = [name for name, cfg in configs.items() if cfg.source_path().resolve() == src]
        if not targets:
            sources = ", ".join(f"{n}: {c.ingest.source}" for n, c in configs.items())
            raise ConfigError(f"no pipeline reads {path} (ingest.source of each: {sources})")
        dvc = dvc_command()
        rel = src.relative_to(root)
        untrack_from_git(root, rel)
        _run([*dvc, "add", str(rel)], root, "dvc add")
        files = [f"{rel}.dvc", str(rel.parent / ".gitignore") if str(rel.parent) != "." else ".gitignore"]
        _run(["git", "add", "--", *[f for f in files if (root / f).exists()]], root, "git add")
        version = dvc_hash(src)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode
        if staged:
            _run(["git", "commit", "-q", "-m", f"data: {rel} at version {version}"], root, "git commit")
        remote = subprocess.run([*dvc, "remote", "default"], cwd=root, capture_output=True, text=True)
        if remote.returncode == 0 and remote.stdout.strip():
            _run([*dvc, "push", str(rel)], root, "dvc push")
    for name in targets:
        announce(name, version, str(configs[name].ingest.source))
    return [(name, version) for name in targets]
