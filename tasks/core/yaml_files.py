"""Reading the project's YAML files strictly: a duplicate key or a YAML error is a ConfigError
naming the file and the line; the comment beside each key of params.yaml quotes the setting's help."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tasks.core.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not {type(key).__name__}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                f"key {key!r} first given on line {seen[key] + 1}",
                node.start_mark,
                f"repeated on line {key_node.start_mark.line + 1} (YAML would keep only the last)",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text, strictly: duplicate keys refused; errors name the line and what to fix."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        raise ConfigError(f"{where}:{line} not valid YAML ({problem or str(exc).splitlines()[0]})") from None


def read_yaml(path: Path, what: str = "") -> dict[str, Any]:
    """A YAML file holding a mapping; every way it can be unreadable is one ConfigError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte order mark is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (undecodable bytes on line {line}); save it as UTF-8") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: holds NUL bytes (a binary file?); {what or 'it'} must be YAML text")
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping at the top level, found {type(data).__name__}" + (f" ({what})" if what else "")
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level keys must be names, found {bad[0]!r}")
    return data


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
_COMMENT = re.compile(r"\s#\s?(?P<text>.*)$")


def setting_comments(text: str) -> dict[str, str]:
    """``section.key`` -> what params.yaml's comment says of it: the comment on its line and the
    indented continuation lines below it (``#   ...``). params.yaml is the documented config
    surface; its comments quote the schema's help (tests/test_docs.py holds them to it)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if last is not None and stripped.startswith("#   "):
                out[last] += " " + stripped[1:].strip()
            elif stripped:
                last = None
            continue
        m = _KEY_LINE.match(line)
        if not m:
            last = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        dotted = ".".join(k for _, k in stack)
        rest = m["rest"].lstrip()
        if rest[:1] in ("'", '"'):  # a quoted value may hold what looks like a comment
            rest = rest[rest.find(rest[0], 1) + 1 :]
        comment = _COMMENT.search(" " + rest)
        if comment and comment["text"].startswith("  ") and last is not None:
            out[last] += " " + comment["text"].strip()  # the comment above it, continued on this line
            continue
        last = dotted if comment else None
        if comment:
            out[dotted] = comment["text"].strip()
    return out
