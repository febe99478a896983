"""``s2s train``'s flags (or AutoTrain YAML) become the project's own settings, not a one-off.

* In the project ``s2s train`` started (outside any project), they are the project: params.yaml
  takes the settings and pipelines.yaml's ``default`` entry the model name and gates, so ``s2s
  run``, ``dvc repro`` and ``s2s deploy`` train exactly this, and DVC caches every stage.
* In an existing project they become a named pipeline in pipelines.yaml (``data``, ``params``,
  ``model_name``, ``gates``), next to the team's ``default``, run by ``s2s run --pipeline NAME``
  and deployed by ``s2s deploy``.

The data is versioned with DVC inside the project: a local file or folder outside it is copied
to ``data/<name>/`` and ``dvc add``-ed (a hub dataset id stays as it is). The YAML files are
edited in place, comments and order kept. Writing the same settings again changes nothing.

Gates on the user's own data are relative (beat the champion, certified by the paired
interval); the sample's absolute ROUGE floors are tuned to the sample, so they are not carried
over. An absolute floor is one line in pipelines.yaml (``min: {rougeL: 0.3}``).
"""

from __future__ import annotations

import filecmp
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.config import DEFAULT_PIPELINE, PARAMS_FILE, PIPELINES_FILE, parse_override
from tasks.core.errors import ConfigError

# the gates a project on its own data starts with: beat the champion at the 95% lower bound
RELATIVE_GATES = {"min_delta": 0.0, "confidence": 0.95, "approval": "none"}
GATES_COMMENT = (
    "relative: beat the champion (paired 95% interval); an absolute floor only if you add one, e.g. min: {rougeL: 0.3}"
)


@dataclass
class Written:
    pipeline: str  # what `s2s run --pipeline` runs
    changed: list[str] = field(default_factory=list)  # files whose content changed
    data: str | None = None  # where the data now is, relative to the project
    commands: list[str] = field(default_factory=list)  # how to run it again


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip: comments, order and quoting kept
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a line the user wrote
    # lists in block style at the key's indent and None as an empty value: how `dvc exp run -S`
    # (a ruamel round trip too) writes them, so neither rewrites a line the other wrote
    y.indent(mapping=2, sequence=2, offset=0)
    return y


def _load(path: Path):
    return _yaml().load(path.read_text(encoding="utf-8")) or {}


def _blocks(text: str) -> dict[str, tuple[int, int]]:
    """Each top-level key's line span ``[start, end)`` in ``text``: its key line and the indented
    or blank lines after it (trailing blank lines and column-0 comments end it)."""
    lines = text.splitlines(keepends=True)
    spans: dict[str, tuple[int, int]] = {}
    for i, line in enumerate(lines):
        if line[:1] not in ("", " ", "\t", "#", "\n", "\r") and ":" in line:
            key = line.split(":", 1)[0].strip().strip("'\"")
            end = i + 1
            while end < len(lines) and (lines[end][:1] in (" ", "\t") or not lines[end].strip()):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1
            spans[key] = (i, end)
    return spans


def _dump(path: Path, data, keys: list[str]) -> bool:
    """Write the top-level entries ``keys`` of ``data`` into ``path``, every other line as it
    was (an entry not there yet is appended). Returns whether the file changed."""
    original = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = original.splitlines(keepends=True)
    spans = _blocks(original)
    appended = []
    for key in sorted(keys, key=lambda k: -spans.get(k, (len(lines), 0))[0]):  # from the bottom up
        buf = io.StringIO()
        _yaml().dump({key: data[key]}, buf)
        block = buf.getvalue().rstrip("\n").split("\n")
        new = [line + "\n" for line in block]
        if key in spans:
            start, end = spans[key]
            lines[start:end] = new
        else:
            appended.append(["\n", *new])
    for block in appended:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.extend(block)
    text = "".join(lines)
    if text == original:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # all or nothing
    return True


def nested(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """``["train.lr=0.001", "ingest.source=x"]`` -> ``{"train": {"lr": 0.001}, "ingest": {"source": "x"}}``."""
    out: dict[str, Any] = {}
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _set(target, values: dict[str, Any]) -> None:
    """Merge ``values`` into a round-trip mapping, keeping the comments of the keys it replaces."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _set(target[key], value)
        else:
            target[key] = value


def _dvc(root: Path, *args: str) -> None:
    from tasks.core.project import dvc_command

    proc = subprocess.run([*dvc_command(), *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise ConfigError(f"`dvc {' '.join(args)}` failed in {root}: {(proc.stderr or proc.stdout).strip()[-500:]}")


def _same(a: Path, b: Path) -> bool:
    if a.is_file() and b.is_file():
        return filecmp.cmp(a, b, shallow=False)
    if a.is_dir() and b.is_dir():
        cmp = filecmp.dircmp(a, b)
        files = [f for f in cmp.common_files]
        if cmp.left_only or cmp.right_only or cmp.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
        return not mismatch and not errors and all(_same(a / d, b / d) for d in cmp.common_dirs)
    return False


def version_data(root: Path, name: str, source: str) -> str:
    """The data source as the project keeps it: a local path outside the project is copied to
    ``data/<name>/`` and ``dvc add``-ed; one inside it is ``dvc add``-ed where it lies (unless DVC
    already tracks it); anything else (a hub id) is returned unchanged. Returns the source as
    the settings should name it (relative to the project)."""
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        return source  # a hub dataset id, or a path the run will report as missing
    path = path.resolve()
    if not path.is_relative_to(root):
        target = root / "data" / name / path.name
        if not (target.exists() and _same(path, target)):
            if target.is_dir():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
        path = target
    relative = path.relative_to(root).as_posix()
    if (root / ".dvc").is_dir() and not path.with_name(path.name + ".dvc").exists() and not _tracked_by_git(root, path):
        _dvc(root, "add", "-q", relative)
    elif path.with_name(path.name + ".dvc").exists():
        _dvc(root, "add", "-q", relative)  # a new version of data DVC already tracks (no-op if unchanged)
    return relative


def _tracked_by_git(root: Path, path: Path) -> bool:
    """A file git already tracks (DVC refuses to add it): it stays versioned by git."""
    proc = subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(path.relative_to(root))], cwd=root, capture_output=True
    )
    return proc.returncode == 0


MARK = "written by s2s train"


def write(root: Path, name: str, overrides: list[str], own: bool) -> Written:
    """Make ``overrides`` (``section.key=value``) the project's settings. ``own``: the project was
    started for this training (its params.yaml becomes these settings); else a pipeline ``name``
    is added to (or updated in) pipelines.yaml."""
    from ruamel.yaml.comments import CommentedMap

    settings = nested(overrides)
    register = settings.pop("register", {})
    model_name = register.pop("model_name", None) or name
    if register:
        settings["register"] = register
    written = Written(pipeline=DEFAULT_PIPELINE if own else name)
    if not own and name == DEFAULT_PIPELINE:
        raise ConfigError(f"--project-name {name!r} names the project's own pipeline; choose another name")
    ingest = settings.get("ingest", {})
    if "source" in ingest:
        ingest["source"] = written.data = version_data(root, name, str(ingest["source"]))
    pipes_path, params_path = root / PIPELINES_FILE, root / PARAMS_FILE
    pipes = _load(pipes_path)
    entry = pipes.get(written.pipeline)
    if entry is None:
        entry = pipes[written.pipeline] = CommentedMap()
    first = MARK not in str(entry.get("description", ""))
    entry["description"] = f"{MARK} for {model_name} (its flags are these settings)"
    entry["model_name"] = model_name
    if own:
        params = _load(params_path)
        _set(params, settings)
        if _dump(params_path, params, list(settings)):
            written.changed.append(PARAMS_FILE)
        written.commands = ["s2s run", "dvc repro", "s2s deploy"]
    else:
        if data := settings.pop("ingest", {}):
            entry["data"] = data
        if settings:
            entry["params"] = settings
        else:
            entry.pop("params", None)
        written.commands = [f"s2s run --pipeline {name}", f"s2s deploy {name}"]
    if first or "gates" not in entry:  # the sample's floors do not fit other data; later edits are the user's
        gates = CommentedMap(RELATIVE_GATES)
        gates.yaml_add_eol_comment(GATES_COMMENT, "min_delta")
        entry["gates"] = gates
    if _dump(pipes_path, pipes, [written.pipeline]):
        written.changed.append(PIPELINES_FILE)
    return written
