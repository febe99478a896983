"""``s2s init DIR``: a ready project anywhere, the way this repository is one.

It writes the project files (params.yaml, pipelines.yaml, dvc.yaml, prefect.toml, .gitignore,
.dvcignore) from the installed package, initialises git and DVC (with the offline page of
``dvc plots show``, .dvc/plots_template.html, as plots.html_template), and generates the embedded
sample data (``s2s init`` unless ``--no-sample``), so ``s2s run`` and ``s2s train --data-path ...`` work there
as they do in the repository.

One difference: the pipeline's code is the installed package, not files of the project, so the
project's dvc.yaml cannot list it by path. Its ``guard`` stage runs on every ``dvc repro`` (about
a second) and records the installed code's version and fingerprint; every other stage depends on
that record, so upgrading the package re-runs what it could change, and nothing else does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from tasks.core.errors import ConfigError

DIST = "s2s-pipeline"  # the distribution's name (pyproject.toml)
FILES = ("params.yaml", "pipelines.yaml", "dvc.yaml", "prefect.toml", ".gitignore", ".dvcignore")
PLOTS_TEMPLATE = ".dvc/plots_template.html"  # `dvc plots show`'s page with vega inlined (bench/vendor_vega.sh)
SHARE = Path(sys.prefix) / "share" / DIST  # where pyproject's data-files put them


def dvc_command() -> list[str]:
    """How to run this environment's DVC: through the interpreter, so it works whether or not
    the `dvc` script sits beside it (a venv, a wheel installed with --prefix, a container)."""
    return [sys.executable, "-m", "dvc"]


def templates() -> Path:
    """The folder holding the project files: the source checkout, else the installed copies."""
    checkout = Path(importlib.util.find_spec("tasks").origin).parents[1]
    for folder in (checkout, SHARE):
        if all((folder / f).is_file() for f in (*FILES, PLOTS_TEMPLATE)):
            return folder
    raise ConfigError(f"the project templates are not installed (looked in {checkout} and {SHARE}); reinstall {DIST}")


def code_fingerprint() -> dict[str, str]:
    """The installed pipeline code: package version and a hash of every source file."""
    h = hashlib.sha256()
    for package in ("tasks", "flows"):
        base = Path(importlib.util.find_spec(package).origin).parent
        for path in sorted(base.rglob("*.py")):
            h.update(path.relative_to(base.parent).as_posix().encode())
            h.update(path.read_bytes())
    return {"version": version(), "code_sha256": h.hexdigest()[:16]}


def version() -> str:
    """The installed package's version (its metadata); ``unknown`` when run from an uninstalled copy."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


def project_dvc_yaml(text: str) -> str:
    """The repository's dvc.yaml for a project outside it: code deps replaced by the guard's
    record of the installed code (the guard stage always runs and writes it)."""
    spec = yaml.safe_load(text)
    for name, stage in spec["stages"].items():
        stage["deps"] = [
            d for d in stage.get("deps", []) if not (isinstance(d, str) and d.startswith(("tasks/", "flows/")))
        ]
        if name == "guard":
            stage["always_changed"] = True
            stage.pop("deps", None) if not stage["deps"] else None
    header = (
        "# The pipeline's stages for `dvc repro` (see the s2s-pipeline README). The code is the installed\n"
        "# package: the guard stage records its version and fingerprint, and every stage depends on it.\n"
    )
    return header + yaml.safe_dump(spec, sort_keys=False)


def init(folder: Path) -> Path:
    """Create a project in ``folder`` (new, or empty). Returns it. (The sample data is the
    caller's: tasks/data/sample.py is not code every stage depends on.)"""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        if (folder / "params.yaml").exists():
            raise ConfigError(f"{folder} already holds a project (params.yaml); nothing was changed")
        raise ConfigError(f"{folder} is not empty; give a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    source = templates()
    for name in FILES:
        text = (source / name).read_text(encoding="utf-8")
        if name == "dvc.yaml" and source != folder:
            text = project_dvc_yaml(text)
        (folder / name).write_text(text, encoding="utf-8")
    dvc = dvc_command()
    template = Path(PLOTS_TEMPLATE).name  # DVC takes it relative to .dvc/
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "config", "plots.html_template", template]):
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        if proc.returncode:
            raise ConfigError(f"`{' '.join(cmd)}` failed in {folder}: {proc.stderr.strip()[:300]}")
    shutil.copyfile(source / PLOTS_TEMPLATE, folder / PLOTS_TEMPLATE)
    return folder


def first_commit(folder: Path) -> str:
    """Commit everything ``init`` (and the caller) wrote, so runs name a commit from the start
    (their ``git_commit`` tag). With no git identity configured, the commit is made as
    ``s2s init`` and that is said. Returns the commit's short hash."""

    def git(*args: str, identity: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *identity, *args], cwd=folder, capture_output=True, text=True)

    git("add", "-A")
    proc = git("commit", "-q", "-m", "s2s init: a new project")
    if proc.returncode and "identity" in (proc.stderr + proc.stdout).lower():
        print("git has no user.name / user.email here: the first commit is by 's2s init'", file=sys.stderr)
        proc = git(
            "commit",
            "-q",
            "-m",
            "s2s init: a new project",
            identity=("-c", "user.name=s2s init", "-c", "user.email=s2s@localhost"),
        )
    if proc.returncode:
        raise ConfigError(f"`git commit` failed in {folder}: {(proc.stderr or proc.stdout).strip()[:300]}")
    return git("rev-parse", "--short", "HEAD").stdout.strip()


def is_checkout(root: Path) -> bool:
    """The project is the source checkout itself (its dvc.yaml lists the code by path)."""
    return (root / "tasks" / "__init__.py").is_file()
