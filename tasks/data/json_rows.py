"""JSON data files read strictly: one document (an array of records, or columns) or JSON Lines;
NaN and Infinity are refused, and an error names the line and what to fix."""

from __future__ import annotations

import json

from tasks.core.errors import DataError


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (use null)")


def loads(text: str):
    """Strict JSON: NaN and Infinity are refused, as JSON itself does."""
    return json.loads(text, parse_constant=_reject_constant)


def json_document(where: str, text: str, lines: bool = False) -> list[dict] | None:
    """The records of a JSON file that is one document: an array of objects, an object of
    columns (lists of equal length, or pandas' ``{"col": {"0": v, ...}}``), or one object of
    scalars (one record). None when the text is JSON Lines (or ``lines``, a ``.jsonl`` name, and
    the text is not an array), so the line reader takes it and names any broken line."""
    body = text.lstrip("\ufeff \t\r\n")
    if not body.startswith("[") and (lines or not body.startswith("{")):
        return None
    try:
        doc = loads(body)
    except ValueError as exc:
        if body.startswith("["):
            raise DataError(f"{where}: not valid JSON ({exc}); a JSON file must be one array of objects") from None
        return None  # JSON Lines, or a broken object: the line reader names the line
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            if not isinstance(item, dict):
                raise DataError(
                    f"{where}: element {i} of the JSON array is a JSON {_json_type(item)}, not an object; "
                    'the array must hold objects like {"text": ..., "target": ...}'
                )
        return doc
    return _columns(where, doc) if isinstance(doc, dict) else None


def _columns(where: str, doc: dict) -> list[dict]:
    values = list(doc.values())
    if all(not isinstance(v, (list, dict)) for v in values):
        return [doc]  # one record (a JSON Lines file of one line)
    if all(isinstance(v, list) for v in values):
        lengths = {len(v) for v in values}
        if len(lengths) == 1:
            return [dict(zip(doc, row)) for row in zip(*values)]
    elif all(isinstance(v, dict) for v in values):  # pandas' to_json(orient="columns")
        index = list(dict.fromkeys(k for v in values for k in v))
        if all(len(v) == len(index) for v in values):
            return [{col: doc[col][i] for col in doc} for i in index]
    sizes = ", ".join(
        f"{k!r}: {len(v) if isinstance(v, (list, dict)) else 'one value'}" for k, v in list(doc.items())[:6]
    )
    raise DataError(
        f"{where}: a JSON object that is not a table: its values must be columns of equal length "
        f"(found {sizes}); write an array of objects, or one object per line (JSON Lines)"
    )


def _json_type(v) -> str:
    return {list: "list", dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), type(v).__name__
    )
