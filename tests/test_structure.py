"""The size rules of the product code (tasks/, flows/): no module over 450 lines, no function over
60 (complexity over 15 and unused arguments are ruff's C901 and ARG, in `make test` too). The
layering and import-circle rules are in tests/test_dvc_truth.py, beside the stage-imports one."""

from __future__ import annotations

import ast

from conftest import REPO

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def product_modules():
    return sorted([*REPO.glob("tasks/**/*.py"), *REPO.glob("flows/**/*.py")])


def test_no_module_over_450_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in product_modules()}
    long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not long, f"split these by concept (one seam per module): {long}"


def test_no_function_over_60_lines():
    long = {}
    for path in product_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert not long, f"compute apart from record: split these: {long}"


def test_the_rules_see_the_code():
    """A negative control: the walk finds the modules and a function the size rule would catch."""
    assert len(product_modules()) > 40
    tree = ast.parse("def f():\n" + "    x = 1\n" * 70)
    assert tree.body[0].end_lineno - tree.body[0].lineno + 1 > MAX_FUNCTION_LINES
    from flows import structure  # and a package circle is seen as an arrow that does not point down

    arrows = {("a/", "b/"): 1, ("b/", "a/"): 1, ("c/", "a/"): 1}
    floor = structure.floors({"a/": {}, "b/": {}, "c/": {}}, arrows)
    assert [(s, d) for s, d in arrows if floor[d] >= floor[s]]


def test_the_structure_picture_is_the_code_and_every_arrow_points_down():
    """docs/img/structure.svg is what flows/structure.py draws from the imports now, and no package
    imports one on its own floor or above (a package-level circle would put two on one floor)."""
    from flows import structure

    boxes, arrows = structure.graph()
    floor = structure.floors(boxes, arrows)
    up = [(src, dst) for src, dst in arrows if floor[dst] >= floor[src]]
    assert not up, f"these packages import upward or in a circle: {up}"
    assert (REPO / "docs/img/structure.svg").read_text() == structure.svg(), (
        "the structure changed: python -m flows.structure > docs/img/structure.svg"
    )
