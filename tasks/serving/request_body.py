"""What a ``POST /invocations`` asks for: its texts, read from any of MLflow's scoring-server
request shapes or CSV, and the limits one request must keep (:class:`Limits`, the ``serve``
section of params.yaml). Every refusal is a :class:`BadRequest` with its HTTP status and the
setting to change."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

MAX_BODY = 10 * 1024 * 1024
ERROR_CODES = {
    408: "REQUEST_TIMEOUT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_ENTITY",
    503: "SERVICE_UNAVAILABLE",
}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (the ``serve`` section of params.yaml)."""

    max_inputs: int = 256
    max_input_chars: int = 20000
    max_body_bytes: int = MAX_BODY
    max_request_seconds: float = 30.0
    max_queued_inputs: int = 4096
    read_timeout_s: float = 10.0
    drain_s: float = 20.0

    @classmethod
    def of(cls, section) -> Limits:
        return cls(**section.model_dump())


def check_limits(texts: list, limits: Limits) -> None:
    """413 over ``max_inputs``, 422 for an input over ``max_input_chars`` (before any tokenizing)."""
    if len(texts) > limits.max_inputs:
        raise BadRequest(
            f"{len(texts):,} inputs in one request; the limit is {limits.max_inputs:,} "
            "(serve.max_inputs, s2s serve --max-inputs): split the request",
            413,
        )
    for i, t in enumerate(texts):
        if t is not None and len(t) > limits.max_input_chars:
            raise BadRequest(
                f"input {i} has {len(t):,} characters; the limit is {limits.max_input_chars:,} "
                "(serve.max_input_chars, s2s serve --max-input-chars)",
                422,
            )


def _column(columns: list, rows: list[list]) -> list:
    if "text" in columns:
        i = columns.index("text")
    elif len(columns) == 1:
        i = 0
    else:
        raise BadRequest(f"which column holds the text? name one 'text' (columns given: {columns})")
    return [row[i] if isinstance(row, list) and len(row) > i else None for row in rows]


def _csv_texts(body: bytes) -> list:
    try:
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadRequest(f"the CSV body is not readable: {exc}") from None
    if not rows:
        raise BadRequest("the CSV body is empty: send a header row and one row per input")
    return _column(rows[0], rows[1:])


def _json_doc(body: bytes) -> dict:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]] nested deeper than the parser goes (was a 500)
        raise BadRequest("the body is JSON nested too deeply: send a flat object of inputs") from None
    if not isinstance(doc, dict):
        raise BadRequest('send a JSON object: {"inputs": ["text", ...]}')
    return doc


def _inputs(doc: dict, key: str) -> list:
    texts = doc[key]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list):
        raise BadRequest(f'"{key}" must be a list of strings')
    missing = [i for i, t in enumerate(texts) if isinstance(t, dict) and "text" not in t]
    if missing:
        raise BadRequest(f'input {missing[0]} is an object without "text": send strings or {{"text": ...}}')
    return [t["text"] if isinstance(t, dict) else t for t in texts]


def _dataframe_split(doc: dict, key: str) -> list:
    split = doc[key]
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise BadRequest('"dataframe_split" needs "columns" and "data" (a list of rows)')
    columns = split.get("columns") or ["text"]
    if not isinstance(columns, list):  # a number here was a 500
        raise BadRequest('"dataframe_split" "columns" must be a list of column names')
    return _column(columns, split["data"])


def _dataframe_records(doc: dict, key: str) -> list:
    records = doc[key]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest('"dataframe_records" must be a list of objects')
    columns = sorted({k for r in records for k in r})
    if "text" in columns or not columns:
        return [r.get("text") for r in records]
    return _column(columns, [[r.get(c) for c in columns] for r in records])


# MLflow's scoring-server request shapes, in the order a body's keys are looked for
JSON_SHAPES = {
    "inputs": _inputs,
    "instances": _inputs,
    "dataframe_split": _dataframe_split,
    "dataframe_records": _dataframe_records,
}


def _check_texts(texts: list) -> list:
    bad = [i for i, t in enumerate(texts) if t is not None and not isinstance(t, str)]
    if bad:
        raise BadRequest(f"input {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
    for i, t in enumerate(texts):  # "\ud800" is valid JSON but no text: the tokenizer failed on it (a 500)
        if t is not None and not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"input {i} holds a lone surrogate (\\ud800-\\udfff): not Unicode text") from None
    return texts


def parse(content_type: str, body: bytes) -> list:
    """The texts of a request (None for a missing cell), or BadRequest naming what is wrong."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "text/csv":
        return _csv_texts(body)
    if kind not in ("application/json", ""):
        raise BadRequest(f"content type {kind!r} is not served: send application/json or text/csv", 415)
    doc = _json_doc(body)
    key = next((k for k in JSON_SHAPES if k in doc), None)
    if key is None:
        raise BadRequest(
            f"no inputs: send one of inputs, instances, dataframe_split, dataframe_records (keys given: {sorted(doc)})"
        )
    return _check_texts(JSON_SHAPES[key](doc, key))


def body_length(header: str | None, limit: int = MAX_BODY) -> int:
    """The request's Content-Length, or BadRequest (413 over ``limit``)."""
    try:
        length = int(header or 0)
    except ValueError:
        raise BadRequest(f"Content-Length {header!r} is not a number of bytes") from None
    if length < 0:
        raise BadRequest(f"Content-Length {length} is negative")
    if length > limit:
        raise BadRequest(
            f"the body is {length:,} bytes; the limit is {limit:,} (serve.max_body_bytes, s2s serve --max-body-bytes)",
            413,
        )
    return length
