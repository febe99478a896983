"""Where the pipeline may write and what it may delete: the one guard for configured paths.

Every folder a setting names (``paths.*``, ``tracking.artifacts``) is checked when the
configuration loads, before any stage runs, and the error names the setting. A configured
folder must

* be given (an empty value, as an unset shell variable gives, resolves to the project itself);
* resolve, symlinks followed, strictly inside its run folder (the project for ``default``,
  ``runs/<pipeline>/`` otherwise) or strictly inside a folder named in ``paths.extra_roots``;
* never be the project, one of its parents, ``.git`` / ``.dvc`` or a folder inside them, and
  never contain the project's own files (params.yaml, pipelines.yaml, dvc.yaml, the raw data,
  the SQLite tracking store) or another configured folder;
* when it is a folder the pipeline replaces or deletes, either not exist yet or carry the
  marker file the pipeline leaves in every folder it creates.

The pipeline deletes a folder only through :func:`remove_owned`, which refuses a folder without
the marker and never follows a symbolic link. Files a later stage reads are written through
:func:`atomic_write_text` (a unique temporary name, then an atomic rename).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from tasks.core.errors import ConfigError

logger = logging.getLogger(__name__)

# tasks.core.config.Config: loading a configuration runs this module's check, so config imports
# this module and this module names the type without importing it (no import circle)
Config = Any

MARKER = ".s2s-owned"
MARKER_TEXT = "created by s2s-pipeline; the pipeline may replace or delete this folder\n"
# Folders the pipeline replaces or deletes as a whole (the others only receive files).
REPLACED = ("data", "tokenizer", "base_model", "model", "adapter", "checkpoints")
PROJECT_FILES = ("params.yaml", "pipelines.yaml", "dvc.yaml", "dvc.lock")
STATE_DIR = ".s2s"  # locks, the open-run ledger: never a configured folder


def _inside(child: Path, parent: Path) -> bool:
    """``child`` is strictly below ``parent`` (both resolved)."""
    return child != parent and parent in child.parents


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def output_settings(cfg: Config) -> dict[str, Path]:
    """Setting name -> resolved folder, for every folder the pipeline writes."""
    out = {f"paths.{name}": cfg.path(name).resolve() for name in type(cfg.paths).model_fields if name != "extra_roots"}
    out["tracking.artifacts"] = cfg.artifact_root().resolve()
    return out


def check(cfg: Config) -> None:
    """Raise ConfigError, naming the setting, for any configured folder the pipeline must not use."""
    root = cfg.root.resolve()
    base = cfg.base().resolve()
    extra = _extra_roots(cfg, root)
    protected_dirs = [root / ".git", root / ".dvc", root / STATE_DIR]
    protected_files = [root / f for f in PROJECT_FILES]
    source = cfg.source_path()
    if source.exists():
        protected_files.append(source.resolve())
    db = cfg.sqlite_path()
    if db is not None:
        protected_files.append(db.resolve())

    settings = output_settings(cfg)
    for setting, path in settings.items():
        shown = _shown(cfg, setting)
        _check_home(setting, shown, path, base if setting.startswith("paths.") else root, root, extra)
        for d in protected_dirs:
            if _within(path, d) or _within(d, path):
                raise ConfigError(
                    f"{setting}: {shown} resolves to {path}, which overlaps {d.name}/; choose a folder of its own"
                )
        for f in protected_files:
            if _inside(f, path):
                raise ConfigError(
                    f"{setting}: {shown} resolves to {path}, which holds {f}; "
                    "choose a folder of its own (the pipeline may replace it)"
                )
        name = setting.removeprefix("paths.")
        if name in REPLACED and path.exists() and not is_owned(path):
            raise ConfigError(
                f"{setting}: {path} exists and was not created by this pipeline (it has no {MARKER} marker), "
                "so the pipeline will not replace it; choose another folder, or move it away yourself"
            )
    items = sorted(settings.items(), key=lambda kv: len(kv[1].parts))
    for i, (a, pa) in enumerate(items):
        for b, pb in items[i + 1 :]:
            if _within(pb, pa):
                raise ConfigError(f"{b} ({pb}) lies inside {a} ({pa}); configured folders must not overlap")


def _extra_roots(cfg: Config, root: Path) -> list[Path]:
    extra = []
    for raw in cfg.paths.extra_roots:
        p = Path(raw).expanduser()
        if not p.is_absolute():
            raise ConfigError(f"paths.extra_roots: {raw!r} must be an absolute folder (e.g. /mnt/scratch/s2s)")
        p = p.resolve()
        if _within(root, p):
            raise ConfigError(f"paths.extra_roots: {raw!r} holds the project folder itself; name a folder beside it")
        extra.append(p)
    return extra


def _check_home(setting: str, shown: str, path: Path, home: Path, root: Path, extra: list[Path]) -> None:
    """``path`` lies strictly inside its ``home`` (the run folder, or the project for tracking
    settings) or an extra root, and holds neither the project folder nor a parent of it."""
    if not any(_inside(path, r) for r in (home, *extra)):
        where = "the project folder" if home == root else f"the run folder {home.relative_to(root)}/"
        if _within(home, path):
            what = f"{where} itself" if path == home else f"a parent of {where}"
        else:
            what = f"a folder outside {where}" + (" and outside paths.extra_roots" if extra else "")
        raise ConfigError(
            f"{setting}: {shown} resolves to {path}, {what}; the pipeline writes and deletes "
            f"there, so give a folder strictly inside {where}"
            + ("" if extra else " (or name an outside folder in paths.extra_roots)")
        )
    if _within(root, path):
        raise ConfigError(f"{setting}: {shown} resolves to {path}, the project folder or one of its parents")


def _shown(cfg: Config, setting: str) -> str:
    section, _, key = setting.partition(".")
    value = getattr(getattr(cfg, section), key)
    return repr(str(value))


# -- folders the pipeline owns -------------------------------------------------------------


def is_owned(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file()


def mark(folder: Path) -> Path:
    """Create ``folder`` (and its parents) and mark it as the pipeline's own."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    if not marker.exists():
        marker.write_text(MARKER_TEXT, encoding="utf-8")
    return folder


def remove_owned(folder: Path) -> bool:
    """Delete ``folder`` if the pipeline created it; never follow a symlink. True if removed.

    A folder without the marker is refused loudly: the pipeline deletes only what it made."""
    if folder.is_symlink():
        raise ConfigError(f"{folder} is a symbolic link; the pipeline never deletes through links")
    if not folder.exists():
        return False
    if not is_owned(folder):
        raise ConfigError(
            f"{folder} was not created by this pipeline (no {MARKER} marker); it is left alone: move it away yourself"
        )
    shutil.rmtree(folder)
    return True


def remove_inside(owned: Path, child: Path) -> None:
    """Delete ``child``, something a library wrote inside a folder the pipeline owns (a
    checkpoint inside the checkpoint folder); never through a link, never elsewhere."""
    if not is_owned(owned):
        raise ConfigError(f"{owned} was not created by this pipeline (no {MARKER} marker); leaving {child.name} alone")
    if child.is_symlink() or child.resolve().parent != owned.resolve():
        raise ConfigError(f"{child} is not a plain entry of {owned}; not deleting it")
    shutil.rmtree(child) if child.is_dir() else child.unlink()


def temp_sibling(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same file system, so renames are atomic); what a
    dead process left under such a name for ``path`` goes first."""
    sweep_stale(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale(path: Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` (``temp_sibling``) whose process is gone: what a
    SIGKILL, or a stop in the middle of a write, left half-written. Returns what was removed."""
    import re

    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp-(\d+)-[0-9a-f]{{8}}$")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except FileNotFoundError:  # no parent folder yet: nothing was left there
        return removed
    for sibling in siblings:
        m = pattern.match(sibling.name)
        if m and int(m[1]) != os.getpid() and not _alive(int(m[1])):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def sweep_outputs(cfg: Config) -> list[Path]:
    """``sweep_stale`` for every folder the pipeline writes (run start, under the project lock)."""
    removed = [p for path in output_settings(cfg).values() for p in sweep_stale(path)]
    if removed:
        logger.info("removed what stopped runs left half-written: %s", ", ".join(str(p) for p in removed))
    return removed


def replace_dir(tmp: Path, out: Path) -> Path:
    """Move a finished, marked temporary folder ``tmp`` to ``out``, replacing what the pipeline
    had there. Readers see the old folder or the new one, never a half-written one."""
    mark(tmp)
    old = None
    if out.exists() or out.is_symlink():
        old = temp_sibling(out)
        if not is_owned(out):
            raise ConfigError(f"{out} was not created by this pipeline (no {MARKER} marker); not replacing it")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def relative(path: str | Path, root: Path) -> str:
    """``path`` relative to the project ``root`` when it lies inside it (results store these)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


def absolute(path: str | Path, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


# -- `dvc repro`: the same check before DVC deletes any stage output -----------------------

GUARD_FILE = Path(STATE_DIR) / "guard.json"


def write_guard(cfg: Config) -> Path:
    """Record the checked folders. dvc.yaml's first stage runs this (``python -m tasks.guard``),
    so a bad ``paths.*`` edit stops ``dvc repro`` before DVC removes the outputs of any stage."""
    checked = {k: cfg.relative(v) for k, v in output_settings(cfg).items()}
    from tasks.core.project import code_fingerprint, is_checkout

    if not is_checkout(cfg.root):  # the code is the installed package: its fingerprint stands for it
        checked["code"] = code_fingerprint()
    return atomic_write_json(cfg.root / GUARD_FILE, checked)
