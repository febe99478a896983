"""The reference pages of the docs site, generated from what the code reads, so they cannot go stale.

- every params.yaml key: its type, default and help from the strict schema
  (``tasks/core/sections/``: the docstring under each field), and the value params.yaml ships;
- every pipelines.yaml key, from ``PipelineSpec`` and the header of pipelines.yaml;
- every ``s2s`` command and flag, from the argparse parser the CLI runs;
- the exit codes, from their one table (``tasks.core.errors.EXIT_CODES``).

``pages()`` returns them as markdown; ``docs/hooks.py`` adds them to the site at build time and
``tests/test_docs.py`` checks that every key has help and every documented command parses.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core import config as cfgmod
from tasks.core.errors import EXIT_CODES

_MISSING = object()  # "not set" (None is YAML's null, a value)


@dataclass(frozen=True)
class Key:
    """One documented setting: ``dotted`` name, type, default, help and the shipped value."""

    dotted: str
    type: str
    default: Any
    help: str
    shipped: Any = _MISSING  # what the shipped file sets, if it sets it


def _type_name(annotation: Any) -> str:
    """A reader's name for a field's type: ``int``, ``float or null``, ``one of a, b``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is Path:
        return "path"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return _MISSING if field.is_required() else field.default


def _section_of(annotation: Any) -> type[BaseModel] | None:
    found = cfgmod._section_type(annotation)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _walk(model: type[BaseModel], prefix: str, helps: dict[str, str], shipped: dict[str, Any]) -> list[Key]:
    out: list[Key] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        nested = _section_of(field.annotation)
        value = shipped.get(name, _MISSING) if isinstance(shipped, dict) else _MISSING
        help_text = (
            " ".join((field.description or "").split())
            or helps.get(dotted)
            or (inspect.cleandoc(nested.__doc__ or "").split("\n\n")[0].replace("\n", " ") if nested else "")
        )
        out.append(Key(dotted, _type_name(field.annotation), _default(field), help_text, value))
        if nested is not None:
            out += _walk(nested, dotted, helps, value if isinstance(value, dict) else {})
    return out


def params_keys(root: Path | None = None) -> list[Key]:
    """Every params.yaml key, in the file's section order, nested sections included."""
    root = root or _shipped_root()
    text = (root / cfgmod.PARAMS_FILE).read_text(encoding="utf-8")
    shipped = cfgmod.parse_yaml(text, cfgmod.PARAMS_FILE)
    keys: list[Key] = []
    for section, model in cfgmod.SECTIONS.items():
        doc = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        keys.append(Key(section, "section", _MISSING, doc, shipped.get(section, _MISSING)))
        keys += _walk(model, section, {}, shipped.get(section) or {})
    return keys


def _pipeline_helps(text: str) -> dict[str, str]:
    """pipelines.yaml's header: ``#   key   what it is`` lines (continued by deeper-indented lines)."""
    helps: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#   (\w+)\s{2,}(.*)$", line)
        if m and m[1] in cfgmod.PIPELINE_KEYS:
            last = m[1]
            helps[last] = m[2].strip()
        elif last and re.match(r"#\s{4,}\S", line):
            helps[last] += " " + line.lstrip("#").strip()
        else:
            last = None
    return helps


def pipeline_keys(root: Path | None = None) -> list[Key]:
    """Every key of a pipelines.yaml entry (``gates`` are params.yaml's ``promote.gates``)."""
    root = root or _shipped_root()
    text = (root / cfgmod.PIPELINES_FILE).read_text(encoding="utf-8")
    shipped = cfgmod.parse_yaml(text, cfgmod.PIPELINES_FILE).get(cfgmod.DEFAULT_PIPELINE) or {}
    keys = _walk(cfgmod.PipelineSpec, "", _pipeline_helps(text), shipped)
    gates = [k for k in params_keys(root) if k.dotted.startswith("promote.gates.")]
    given = shipped.get("gates") or {}
    return keys + [
        Key(
            k.dotted.removeprefix("promote."),
            k.type,
            k.default,
            k.help,
            given.get(k.dotted.rsplit(".", 1)[1], _MISSING),
        )
        for k in gates
    ]


def _shipped_root() -> Path:
    from tasks.core import project

    return project.templates()


def _cell(value: Any) -> str:
    if value is _MISSING:
        return ""
    if isinstance(value, Path):
        value = str(value)
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    if isinstance(value, str):
        text = value if value else '""'
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _scalar(value: Any) -> str | None:
    """``value`` as `--set` takes it (YAML), or None for what has no one-line form."""
    import json

    if isinstance(value, Path):
        value = str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value) if (not value or value != value.strip() or ":" in value or " " in value) else value
    if isinstance(value, list):
        return json.dumps(value)
    return None


def override_example(key: Key) -> str | None:
    """An override of ``key`` that the configuration accepts: ``section.key=value`` with the
    shipped (else the default) value; the first entry for a mapping. None when there is none."""
    value = key.shipped if key.shipped is not _MISSING else key.default
    dotted = key.dotted
    if "section" in key.type:  # its keys have rows (and examples) of their own
        return None
    if isinstance(value, dict):
        if not value:
            return None
        first = next(iter(value))
        dotted, value = f"{dotted}.{first}", value[first]
    text = None if value is _MISSING else _scalar(value)
    return None if text is None else f"{dotted}={text}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _keys_table(keys: list[Key], example) -> list[str]:
    """One row per key: type, default, help, the shipped value where it differs, an example."""
    rows = ["| key | type | default | help | shipped | example |", "|---|---|---|---|---|---|"]
    for k in keys:
        if k.type == "section":
            continue
        differs = k.shipped is not _MISSING and k.shipped != k.default and not isinstance(k.shipped, dict)
        shown = example(k)
        rows.append(
            f"| `{k.dotted}` | {_escape(k.type)} | {_cell(k.default)} | {_escape(k.help)} | "
            f"{_cell(k.shipped) if differs else ''} | {'`' + _escape(shown) + '`' if shown else ''} |"
        )
    return rows


def _pipeline_example(key: Key, siblings: dict[str, Key] | None = None) -> str | None:
    """The key as a line of a pipelines.yaml entry (``heal: {max_reruns: 2}``), with the keys
    its section requires beside it (``schedule: {cron: ..., timezone: UTC}``); ``siblings``: every
    pipeline key by name (read once by the caller)."""
    found = override_example(key)
    if found is None:
        return None
    dotted, value = found.split("=", 1)
    *outer, last = dotted.split(".")
    pairs = [f"{last}: {value}"]
    if len(outer) == 1 and outer[0] in cfgmod.PipelineSpec.model_fields:
        section = _section_of(cfgmod.PipelineSpec.model_fields[outer[0]].annotation)
        siblings = siblings if siblings is not None else {k.dotted: k for k in pipeline_keys()}
        for name, field in section.model_fields.items() if section else ():
            if field.is_required() and name != last:
                required = override_example(siblings[f"{outer[0]}.{name}"])
                pairs.insert(0, f"{name}: {required.split('=', 1)[1]}")
    text = ", ".join(pairs)
    for part in reversed(outer):
        text = f"{part}: {{{text}}}"
    return text


def params_page() -> str:
    keys = params_keys()
    lines = [
        "# params.yaml",
        "",
        "Every setting, one section per stage. Generated from the strict schema (`tasks/core/sections/`) "
        "and params.yaml's own comments when the site is built, so it lists exactly what the code "
        "accepts; an unknown key is an error naming the closest spelling. Override one value for one "
        "run with `s2s run --set section.key=value` (or `dvc exp run -S section.key=value`). "
        "*shipped* is the value the shipped params.yaml sets where it differs from the default; "
        "*example* is an override the configuration accepts (a test loads each one).",
        "",
    ]
    for section in cfgmod.SECTIONS:
        head = next(k for k in keys if k.dotted == section)
        lines += [f"## `{section}`", "", head.help, ""]
        lines += _keys_table([k for k in keys if k.dotted.startswith(section + ".")], override_example)
        lines.append("")
    return "\n".join(lines)


def pipelines_page() -> str:
    keys = pipeline_keys()
    lines = [
        "# pipelines.yaml",
        "",
        "Named pipelines: each entry overrides parts of params.yaml and says where the model goes, how "
        "it is gated, when it retrains and where it runs. Generated from `PipelineSpec` "
        "(`tasks/core/sections/pipeline.py`) and the header of the shipped pipelines.yaml. `data` takes any key "
        "of params.yaml's `ingest` section, `params` any other section, `gates` the keys of "
        "`promote.gates` listed at the end. *shipped* is the `default` pipeline's value where it "
        "differs from the default; *example* is the key as a line of an entry (a test loads each one).",
        "",
    ]
    by_name = {k.dotted: k for k in keys}
    lines += _keys_table(keys, lambda k: _pipeline_example(k, by_name))
    return "\n".join(lines) + "\n"


def _flag_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | help | default |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        names = ", ".join(action.option_strings) or action.metavar or action.dest
        if action.option_strings and action.nargs != 0:
            names += " " + (action.metavar or action.dest.upper()) if isinstance(action.metavar, str | None) else ""
        help_text = (action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%")
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else _cell(default)
        rows.append(f"| `{_escape(names)}` | {_escape(help_text)} | {shown} |")
    return rows


def commands() -> dict[str, argparse.ArgumentParser]:
    """``s2s`` and each of its commands (nested ones as ``registry show``) -> its parser."""
    from flows.cli import build_parser

    found: dict[str, argparse.ArgumentParser] = {}

    def visit(prefix: str, parser: argparse.ArgumentParser) -> None:
        found[prefix] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    visit(f"{prefix} {name}", child)

    visit("s2s", build_parser())
    return found


def cli_page() -> str:
    lines = [
        "# The `s2s` command",
        "",
        "Generated from the parser the command runs (`flows/cli/`). Exit statuses: [exit codes](exit-codes.md).",
        "",
    ]
    for name, parser in commands().items():
        lines += [f"## `{name}`", ""]
        if parser.description:
            lines += [parser.description, ""]
        usage = parser.format_usage().strip().removeprefix("usage: ")
        lines += ["```text", usage, "```", ""]
        rows = _flag_rows(parser)
        if len(rows) > 2:
            lines += rows + [""]
        if parser.epilog:
            lines += [parser.epilog, ""]
    return "\n".join(lines)


def exit_codes_page() -> str:
    lines = [
        "# Exit codes",
        "",
        "Every exit status of `s2s` and of `python -m tasks.<stage>` (what `dvc repro` runs), from the one "
        "table in `tasks/core/errors.py`. A scheduler or CI job can tell a rejected candidate (3) from a "
        "broken pipeline (1, 2) and a busy folder (75) from both.",
        "",
        "| status | meaning |",
        "|---|---|",
    ]
    lines += [f"| {code} | {_escape(text)} |" for code, text in EXIT_CODES.items()]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """reference/<name> -> markdown, for the docs site."""
    return {
        "params.md": params_page(),
        "pipelines.md": pipelines_page(),
        "cli.md": cli_page(),
        "exit-codes.md": exit_codes_page(),
    }
