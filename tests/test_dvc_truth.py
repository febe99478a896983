"""dvc.yaml tells the truth: each stage lists every project file its code runs and every setting
it reads, so `dvc repro` re-runs a stage whenever something it depends on changed.

Code: the project modules a stage's entry point imports, transitively (function-level imports and
``find_spec("tasks....")`` references included; ``tasks.metrics`` finds its families by
scanning its folder, so the whole folder counts). Settings: recorded while the stages really run
on a tiny project, every ``cfg.<section>.<key>`` read. Exempt, by design: ``paths.*`` (a stage's
files are its deps and outs, spelled with ``${paths.*}``) and ``tracking.*`` (where MLflow records
go, never what a stage computes).

The same import graph holds the layering: ``tasks/core`` is the ground floor (it imports nothing
of the project above it: no tracking, data, modeling, serving, stage or flow), and no project
module is part of an import circle.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml
from conftest import REPO

STAGES = ("ingest", "validate", "train", "evaluate", "register", "promote")
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
EXEMPT = ("paths", "tracking")
# pipelines.yaml keys of the default pipeline and the settings they override
PIPELINE_KEYS = {
    "default.model_name": "register.model_name",
    "default.gates": "promote.gates",
    "default.description": "spec.description",
}


def module_file(name: str) -> Path | None:
    if name.split(".")[0] not in ("tasks", "flows"):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError, ValueError):  # a name inside a module, not a module
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _not_on_import(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (read by type checkers only) or ``if __name__ == "__main__":`` (the
    script ``python -m``, which nothing imports): a block importing the module never runs."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    if isinstance(test, ast.Name | ast.Attribute) and getattr(test, "id", getattr(test, "attr", "")) == "TYPE_CHECKING":
        return True
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _nodes(tree: ast.AST, on_import: bool) -> list[ast.AST]:
    """Every node of ``tree``; ``on_import``: only what can run once the module is imported."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if on_import and _not_on_import(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return out


def imported_by(name: str, on_import: bool = False) -> set[str]:
    """The project modules ``name`` imports, module-level and inside functions. ``on_import``: as a
    module another one imports, so neither type-checking imports nor its ``__main__`` block (what
    can take part in an import circle); otherwise everything its code may run, ``find_spec``
    references included (what a DVC stage depends on)."""
    path = module_file(name)
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _nodes(tree, on_import):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif (
            not on_import
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("tasks.")
        ):
            found.add(node.value)  # find_spec("tasks.serving.pyfunc"): shipped by path
    out = set()
    for mod in found:
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            if module_file(".".join(parts[:i])):
                out.add(".".join(parts[:i]))
    return out


def closure(entry: str) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imported_by(mod) - seen)
    return seen


def code_files(entry: str) -> set[str]:
    files = {module_file(m).relative_to(REPO).as_posix() for m in closure(entry)}
    if any(f.startswith("tasks/metrics/") for f in files):  # the registry scans its folder
        files |= {p.relative_to(REPO).as_posix() for p in (REPO / "tasks" / "metrics").rglob("*.py")}
    return {f for f in files if not f.endswith("/__init__.py") or Path(REPO / f).stat().st_size > 0}


def listed_deps(stage: str) -> set[str]:
    return {d for d in DVC[stage].get("deps", []) if isinstance(d, str)}


def covered(file: str, deps: set[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", ["guard", *STAGES])
def test_each_stage_lists_every_project_file_its_code_runs(stage):
    entry = DVC[stage]["cmd"].split("python -m ", 1)[1].split()[0]
    needed = code_files(entry)
    missing = sorted(f for f in needed if not covered(f, listed_deps(stage)))
    assert not missing, f"dvc.yaml stage {stage!r} misses code deps: {missing}"
    unused = sorted(
        d for d in listed_deps(stage) if d.startswith(("tasks/", "flows/")) and not any(covered(f, {d}) for f in needed)
    )
    assert not unused, f"dvc.yaml stage {stage!r} lists code it does not run: {unused}"


def test_stages_do_not_import_stages():
    for stage in STAGES:
        others = {f"tasks.{s}" for s in STAGES} - {f"tasks.{stage}"}
        assert not closure(f"tasks.{stage}") & others, f"tasks/{stage}.py imports another stage"


def project_modules() -> list[str]:
    """Every module of ``tasks/`` and ``flows/``, by its dotted name."""
    out = []
    for package in ("tasks", "flows"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_core_imports_nothing_above_it():
    """tasks/core is the ground floor: what its modules import (at the top, inside functions,
    for type checking or as a script), transitively, is core itself and the metric registry,
    which imports nothing of the project (config checks metric names against it)."""

    def allowed(mod: str) -> bool:
        return mod == "tasks" or any(mod == p or mod.startswith(p + ".") for p in ("tasks.core", "tasks.metrics"))

    core = [m for m in project_modules() if m.startswith("tasks.core.")]
    assert core
    above = {mod: sorted(m for m in closure(mod) if not allowed(m)) for mod in core}
    above = {mod: found for mod, found in above.items() if found}
    assert not above, f"tasks/core imports, directly or through other modules, from above it: {above}"


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(mod: str) -> None:
        index[mod] = low[mod] = len(index)
        stack.append(mod)
        on_stack.add(mod)
        for dep in sorted(graph[mod]):
            if dep not in index:
                visit(dep)
                low[mod] = min(low[mod], low[dep])
            elif dep in on_stack:
                low[mod] = min(low[mod], index[dep])
        if low[mod] == index[mod]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == mod:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for mod in sorted(graph):
        if mod not in index:
            visit(mod)
    return circles


def test_no_import_circle_among_project_modules():
    """No module of tasks/ or flows/ imports, through any chain of imports (function-level ones
    included), a module that imports it back. Imports for type checking only and a module's
    ``__main__`` block are no links: they never run when the module is imported."""
    modules = project_modules()
    graph = {m: {d for d in imported_by(m, on_import=True) if d in modules and d != m} for m in modules}
    circles = import_circles(graph)
    assert not circles, "modules that import each other in a circle: " + "; ".join(", ".join(c) for c in circles)


def test_the_import_circle_check_finds_circles():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}) == [["a", "b", "c"]]


class Recorder:
    """A config section that remembers which settings were read (``section.key``)."""

    def __init__(self, model, prefix: str, log: set[str]):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        from pydantic import BaseModel

        value = getattr(self._model, name)
        if name in type(self._model).model_fields:
            key = f"{self._prefix}.{name}"
            if isinstance(value, BaseModel):
                return Recorder(value, key, self._log)
            self._log.add(key)
        else:  # model_dump, model_copy...: the whole section
            self._log.add(self._prefix)
        return value


def recording(cfg, log: set[str]):
    from tasks.core.config import SECTIONS

    return dataclasses.replace(cfg, **{name: Recorder(getattr(cfg, name), name, log) for name in SECTIONS})


def params_cover(key: str, stage: str) -> bool:
    entries = DVC[stage].get("params", [])
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            names.append(entry)
        else:  # {"pipelines.yaml": [...]}
            for keys in entry.values():
                names.extend(PIPELINE_KEYS.get(k, k) for k in keys)
    return any(key == n or key.startswith(n + ".") or n.startswith(key + ".") for n in names)


@pytest.mark.integration
def test_each_stage_lists_every_setting_it_reads(project):
    from tasks.core.config import load_config
    from tasks.evaluate import evaluate
    from tasks.ingest import ingest
    from tasks.promote import promote
    from tasks.register import register
    from tasks.train import train
    from tasks.validate import validate

    cfg = load_config()
    reads = {s: set() for s in STAGES}
    ingested = ingest(recording(cfg, reads["ingest"]))
    validate(recording(cfg, reads["validate"]), ingested)
    trained = train(recording(cfg, reads["train"]), ingested)
    evaluated = evaluate(recording(cfg, reads["evaluate"]), trained, ingested)
    registered = register(recording(cfg, reads["register"]), trained, evaluated, ingested)
    promote(recording(cfg, reads["promote"]), registered, evaluated)
    problems = {
        stage: sorted(k for k in keys if not k.startswith(EXEMPT) and not params_cover(k, stage))
        for stage, keys in reads.items()
    }
    assert not any(problems.values()), f"settings read but not in dvc.yaml params: {problems}"
    assert "train.lr" in reads["train"] and "evaluate.num_beams" in reads["evaluate"]  # the recorder records


def test_the_committed_dvc_lock_records_the_code_and_settings_as_they_are(tmp_path):
    """A fresh clone's `make run` writes the dvc.lock it was cloned with (its results hold no
    run's own facts: tasks/core/results.py RUN_FIELDS), so `git status` stays clean only if the
    committed lock records the code and settings of the same commit. `make dvc-lock` refreshes it."""
    import json
    import shutil
    import subprocess
    import sys

    from projects import project_files

    for rel in [*project_files(), "dvc.lock"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, tmp_path / rel)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    stale = {}
    for stage, changes in json.loads(proc.stdout).items():
        for change in changes:
            if not isinstance(change, dict):
                stale.setdefault(stage, []).append(change)  # "changed command", a new stage...
                continue
            for kind, entries in change.items():
                if kind == "changed outs":  # none exist in a fresh clone: the run makes them
                    continue
                # a dep that is in the clone is code, data or settings; the others are stage outputs
                recorded_code = {
                    p: what
                    for p, what in (entries.items() if isinstance(entries, dict) else [])
                    if kind != "changed deps" or (tmp_path / p).exists()
                }
                if recorded_code or not isinstance(entries, dict):
                    stale.setdefault(stage, []).append({kind: recorded_code or entries})
    assert not stale, f"dvc.lock is older than the code or settings it records: `make dvc-lock`, commit it: {stale}"
