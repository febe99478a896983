"""The picture of the code's structure in the developer docs (docs/img/structure.svg), drawn from
the imports as they are: one box per package (the stages together), an arrow where a module of one
imports a module of another, each box on the floor above everything it imports.

    python -m flows.structure > docs/img/structure.svg

A test fails while the committed picture differs from what this draws (tests/test_structure.py).
"""

from __future__ import annotations

import ast
import html
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = "tasks/ stages"  # ingest ... promote, the guard and their runner: the DVC contract
DOCS = {"flows/reference.py", "flows/structure.py"}  # what the docs site is generated from
WIDTH, ROW, BOX_H = 980, 96, 46


def group(rel: str) -> str:
    """The box of a module: its package two levels down (``tasks/core/sections`` is core's)."""
    parts = rel.split("/")
    if rel in DOCS:
        return "flows/ docs pages"
    if parts[0] == "tasks" and len(parts) == 2 or parts[:2] == ["tasks", "promote"]:
        return STAGES
    return "/".join(parts[:2] if len(parts) > 2 else parts[:1]) + "/"


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of tasks/ and flows/."""
    out = {}
    for path in sorted([*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/**/*.py")]):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at module level or inside its functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from tasks import metrics` imports tasks.metrics; `from tasks.core.config import X`, config
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> tuple[dict[str, dict], dict[tuple[str, str], int]]:
    """Boxes (how many modules) and arrows (importing box, imported box) -> module imports."""
    known = modules()
    boxes: dict[str, dict] = {}
    arrows: dict[tuple[str, str], int] = {}
    for path in known.values():
        src = group(path.relative_to(ROOT).as_posix())
        box = boxes.setdefault(src, {"modules": 0})
        box["modules"] += 1
        for target in imports(path, known):
            dst = group(known[target].relative_to(ROOT).as_posix())
            if dst != src:
                arrows[(src, dst)] = arrows.get((src, dst), 0) + 1
    return boxes, arrows


def floors(boxes: dict, arrows: dict) -> dict[str, int]:
    """0 for a box that imports no other; else one above the highest box it imports."""
    level: dict[str, int] = {}

    def of(box: str, path: tuple = ()) -> int:
        if box not in level:
            below = [dst for (src, dst) in arrows if src == box and dst not in path]
            level[box] = 1 + max((of(d, (*path, box)) for d in below), default=-1)
        return level[box]

    for box in boxes:
        of(box)
    return level


def svg() -> str:
    boxes, arrows = graph()
    level = floors(boxes, arrows)
    top = max(level.values())
    rows: dict[int, list[str]] = {}
    for box in sorted(boxes):
        rows.setdefault(level[box], []).append(box)
    height = (top + 1) * ROW + 40
    where = {}
    for floor, names in rows.items():
        step = WIDTH / len(names)
        for i, name in enumerate(names):
            where[name] = (step * i + step / 2, 20 + (top - floor) * ROW)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="a" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="9" markerHeight="9" '
        'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#8a94a6"/></marker></defs>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    for src, dst in sorted(arrows):
        (x1, y1), (x2, y2) = where[src], where[dst]
        out.append(
            f'<line x1="{x1:.0f}" y1="{y1 + BOX_H:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#8a94a6" '
            f'stroke-width="1.3" marker-end="url(#a)"><title>{html.escape(src)} imports '
            f"{html.escape(dst)}</title></line>"
        )
    for name, (x, y) in sorted(where.items()):
        box = boxes[name]
        w = max(160, 8 * len(name))
        out.append(
            f'<rect x="{x - w / 2:.0f}" y="{y:.0f}" width="{w}" height="{BOX_H}" rx="6" fill="#e8eef7" '
            'stroke="#4a6fa5"/>'
        )
        out.append(
            f'<text x="{x:.0f}" y="{y + 19:.0f}" text-anchor="middle" font-weight="bold">{html.escape(name)}</text>'
        )
        out.append(
            f'<text x="{x:.0f}" y="{y + 36:.0f}" text-anchor="middle" fill="#555">{box["modules"]} modules</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(svg(), end="")
