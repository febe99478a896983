"""Real text at real lengths, offline: Python functions paired with the first line of their
docstring (the "code to docstring" task), taken from the source files of the packages installed
in this environment. Deterministic for a given environment and seed."""

from __future__ import annotations

import ast
import csv
import random
import sys
from pathlib import Path


def function_docstring_pairs(n: int, min_chars: int = 1200, max_chars: int = 3000, seed: int = 0) -> list[dict]:
    """``n`` pairs of (function source without its docstring, the docstring's first line)."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    files = sorted(site.rglob("*.py"))
    random.Random(seed).shuffle(files)
    rows: list[dict] = []
    seen: set[str] = set()
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
                continue
            doc = ast.get_docstring(node)
            if not doc or not doc.strip() or len(node.body) < 2:
                continue
            summary = doc.strip().splitlines()[0].strip()
            first = node.body[0]  # the docstring: left out
            head = "".join(lines[node.lineno - 1 : first.lineno - 1])
            body = head + "".join(lines[first.end_lineno : node.end_lineno])
            if not (min_chars <= len(body) <= max_chars) or len(summary) < 10 or body in seen:
                continue
            seen.add(body)
            rows.append({"text": body, "target": summary})
            if len(rows) >= n:
                return rows
    return rows


def write(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "target"])
        writer.writeheader()
        writer.writerows(rows)
    return path
