"""The docs site and the README against the code: the site builds strictly offline, every setting
and flag of the generated reference has help, and every command, setting, path, module and make
target a page names exists. The tutorials' commands are run by the tests named in their pages."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docs_text import DOCS, ROOT, commands, is_synopsis, pages, split

pytestmark = pytest.mark.unit

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]  # not --quiet: it hides the warnings strict counts


def _build(config: Path, dest: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "-f", str(config), "-d", str(dest)], capture_output=True, text=True, env=env)


def test_site_builds_strictly_offline_and_a_broken_link_fails_it(tmp_path):
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    built = sorted(p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html"))
    for page in ("reference/params/index.html", "reference/cli/index.html", "tutorials/first-run/index.html"):
        assert page in built
    # no page loads anything from the network (fonts, scripts, styles)
    for html in (tmp_path / "site").rglob("*.html"):
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html.read_text())
        assert not remote, (html, remote)
    # negative control: the same site with one broken link must not build
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    page = copy / "docs" / "tutorials" / "first-run.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    broken = _build(copy / "mkdocs.yml", tmp_path / "broken")
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr


def test_every_setting_of_the_reference_has_help_and_a_type():
    from flows import reference

    for key in reference.params_keys() + reference.pipeline_keys():
        assert key.help.strip(), f"{key.dotted}: no help (a docstring under the field in tasks/core/sections/)"
        assert key.type.strip(), key.dotted
    page = reference.params_page()
    for key in ("train.lr", "ingest.source", "promote.degenerate.max_empty", "serve.drain_s"):
        assert f"`{key}`" in page


def test_params_yaml_comments_quote_the_schemas_help():
    """A setting's help has one home, the docstring under its field (tasks/core/sections/):
    ``s2s train --help``, the reference and ``pydantic``'s field description read it. params.yaml's
    comment on a setting, where it has one, must say the same, so neither drifts from the other;
    every field has help (sections that hold fields say what they are in their class docstring)."""
    from tasks.core import config

    helps = config.setting_help()
    said = config.setting_comments((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for key, comment in said.items():
        if key in config.SECTIONS:
            continue  # a section's comment in the file
        assert key in helps, f"params.yaml: a comment on {key}, which is no setting"
        assert " ".join(comment.split()) == helps[key], f"params.yaml: the comment on {key} is not its help"
    blank = [k for k, v in helps.items() if not v and k != "promote.gates"]
    assert not blank, f"settings with no help: {blank}"
    # negative control: a comment that says something else is caught
    edited = (ROOT / "params.yaml").read_text(encoding="utf-8").replace("# cap on rows", "# most rows", 1)
    assert " ".join(config.setting_comments(edited)["ingest.max_samples"].split()) != helps["ingest.max_samples"]


def test_every_command_of_the_parser_and_every_exit_code_is_in_the_reference():
    from flows import reference
    from tasks.core.errors import EXIT_CODES

    cli = reference.cli_page()
    for name, parser in reference.commands().items():
        assert f"## `{name}`" in cli
        for action in parser._actions:
            for flag in set(action.option_strings) - {"-h", "--help"}:
                assert f"{flag}" in cli, (name, flag)
    codes = reference.exit_codes_page()
    for code in EXIT_CODES:
        assert f"| {code} |" in codes


def _parse(words: list[str]):
    from flows.cli import build_parser

    parser = build_parser()
    parser.exit_on_error = False
    try:
        return parser.parse_args(words[1:])
    except SystemExit as exc:  # argparse exits on --help/--version (fine) and on errors
        if exc.code not in (0, None):
            raise AssertionError(f"does not parse: {' '.join(words)}") from None
        return None


def _check_synopsis(words: list[str]) -> None:
    """A usage line: its command exists and each of its flags belongs to that command."""
    from flows import reference

    known = reference.commands()
    name = "s2s"
    for word in words[1:]:
        if f"{name} {word}" in known:
            name = f"{name} {word}"
        elif not word.startswith("-"):
            break
    flags = {f for action in known[name]._actions for f in action.option_strings}
    flags |= {f for action in known["s2s"]._actions for f in action.option_strings}
    for word in words:
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", word):
            assert flag.split("=")[0] in flags, f"{name}: no flag {flag}"


def test_every_documented_s2s_command_parses():
    """Each `s2s ...` line of every page: a concrete command must parse as written; a usage line
    with placeholders must name a command that exists and only flags it has."""
    seen = 0
    for page in pages():
        for command in commands(page, "s2s"):
            words = split(command.text)
            where = f"{page.relative_to(ROOT)}:{command.line}: {command.text}"
            try:
                if is_synopsis(command.text):
                    _check_synopsis(words)
                else:
                    _parse(words)
            except AssertionError as exc:
                raise AssertionError(f"{where}: {exc}") from None
            seen += 1
    assert seen > 30


SECTIONS = "paths|tracking|ingest|validate|train|evaluate|register|promote|drift|notify|serve"
KEY = re.compile(
    rf"(?<![\w./-])(?!(?:{SECTIONS})\.(?:py|csv|json|jsonl|yaml|parquet)\b)"
    rf"((?:{SECTIONS})\.[a-z_]+(?:\.[a-z_]+)*)(?![\w/{{-])"
)
EXAMPLES = {"train.lrr", "train.key"}  # a misspelling the docs show being refused; a placeholder


def test_every_documented_setting_exists():
    from flows import reference

    keys = reference.params_keys()
    known = {k.dotted for k in keys}
    pipeline = {k.dotted for k in reference.pipeline_keys()}
    mappings = tuple(k.dotted + "." for k in keys if k.type.startswith("mapping"))  # validate.min_rows.test
    wrong = []
    for page in pages():
        for no, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for key in KEY.findall(line):
                ok = key in known | EXAMPLES or key.startswith(mappings) or key.removeprefix("promote.") in pipeline
                if not ok:
                    wrong.append(f"{page.relative_to(ROOT)}:{no}: {key}")
    assert not wrong, "settings the docs name that do not exist:\n" + "\n".join(wrong)


PATH = re.compile(r"`((?:tasks|flows|tests|bench|docker|data|docs|\.dvc|\.ci)/[\w./*-]*)`")


def test_every_documented_path_module_and_make_target_exists():
    make = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", make, re.M))
    wrong = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for path in PATH.findall(text):
            path = path.rstrip(".")
            if "<" in path or (path.startswith("data/") and not path.startswith("data/sample")):
                continue  # a placeholder, a file the user brings, or a run artifact's path
            if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
                wrong.append(f"{page.relative_to(ROOT)}: no such path {path}")
        for module in re.findall(r"python -m ([\w.]+)", text):
            if module.endswith(".") or module in ("pytest", "pip", "venv", "mkdocs"):
                continue
            if importlib.util.find_spec(module) is None:
                wrong.append(f"{page.relative_to(ROOT)}: no such module {module}")
        for target in re.findall(r"`make ([\w-]+)", text):
            if target not in targets:
                wrong.append(f"{page.relative_to(ROOT)}: no make target {target}")
    assert not wrong, "\n".join(wrong)


def test_every_tutorial_names_the_test_that_runs_it():
    """A tutorial says which test executes its commands, and that test reads them from the page."""
    for page in sorted((DOCS / "tutorials").glob("*.md")):
        m = re.search(r"`(tests/test_\w+\.py)::(\w+)`", page.read_text())
        assert m, f"{page.name}: names no test that runs it"
        test_file = ROOT / m[1]
        assert test_file.exists(), m[1]
        body = test_file.read_text()
        assert f"def {m[2]}(" in body, m[2]
        assert page.name in body, f"{m[1]} does not read {page.name}"


def test_the_readme_is_short_and_the_site_home_is_the_readme():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make run" in text and "make test" in text  # the two commands
    sys.path.insert(0, str(DOCS))
    try:
        from hooks import home_page
    finally:
        sys.path.remove(str(DOCS))
    home = home_page()
    assert "](docs/" not in home and "(tutorials/first-run.md)" in home and "](img/pipeline.svg)" in home


def test_every_example_of_the_reference_is_accepted_by_the_configuration(tmp_path):
    """Each params.yaml example as a `--set` override, each pipelines.yaml example as a line of a
    pipeline entry: the strict configuration loads every one."""
    import yaml

    from flows import reference
    from tasks.core.config import load_config

    for name in ("params.yaml", "pipelines.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "data" / "sample").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "sample" / "reports.csv", tmp_path / "data" / "sample" / "reports.csv")
    examples = [e for e in map(reference.override_example, reference.params_keys()) if e]
    assert len(examples) > 120
    # all at once (each is the shipped or default value, so together they are the shipped
    # configuration): one load, and a refused one is named by the error
    load_config(overrides=examples, root=tmp_path)
    keys = {k.dotted: k for k in reference.pipeline_keys()}
    entries = [yaml.safe_load(e) for e in (reference._pipeline_example(k, keys) for k in keys.values()) if e]
    assert len(entries) > 20
    merged: dict = {}
    for entry in entries:  # one pipeline entry holding every example line
        for key, value in entry.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump({"default": merged}))
    load_config(root=tmp_path)
