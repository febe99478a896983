"""``s2s serve``: a registered model over HTTP, in MLflow's scoring-server format.

``POST /invocations`` takes ``{"inputs": [...]}``, ``{"instances": [...]}``,
``{"dataframe_split": {"columns": [...], "data": [[...]]}}``, ``{"dataframe_records": [...]}``
(the ``text`` column, else the only one) or ``text/csv``, and answers
``{"predictions": [...]}`` in input order (a blank input gives ""). ``GET /ping`` and
``/health`` answer 200 once a model is loaded; ``GET /version`` names it. Every answer to
``/invocations`` carries ``X-Model-Version`` and ``X-Model-Backend``.

Requests are micro-batched: one worker thread takes what is queued (up to ``max_batch`` texts,
waiting at most ``max_wait_s`` for more) and makes one ``predict`` call for all of it, so
concurrent clients share batches. The model a batch runs on is taken when the batch starts:
with ``--follow-alias`` a new version is loaded beside the served one and swapped in between
batches, so no request is dropped or answered by half of each.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.data.text import is_blank, nfc

logger = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Served:
    """One loaded model version."""

    model: Any
    name: str
    version: str
    backend: str


def backend_of(model) -> str:
    try:
        return getattr(model.unwrap_python_model(), "backend", "hf")
    except Exception:  # not a python-function model of ours
        return "hf"


def _column(columns: list, rows: list[list]) -> list:
    if "text" in columns:
        i = columns.index("text")
    elif len(columns) == 1:
        i = 0
    else:
        raise BadRequest(f"which column holds the text? name one 'text' (columns given: {columns})")
    return [row[i] if isinstance(row, list) and len(row) > i else None for row in rows]


def parse(content_type: str, body: bytes) -> list:
    """The texts of a request (None for a missing cell), or BadRequest naming what is wrong."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "text/csv":
        try:
            rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BadRequest(f"the CSV body is not readable: {exc}") from None
        if not rows:
            raise BadRequest("the CSV body is empty: send a header row and one row per input")
        return _column(rows[0], rows[1:])
    if kind not in ("application/json", ""):
        raise BadRequest(f"content type {kind!r} is not served: send application/json or text/csv", 415)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest('send a JSON object: {"inputs": ["text", ...]}')
    if "inputs" in doc or "instances" in doc:
        key = "inputs" if "inputs" in doc else "instances"
        texts = doc[key]
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list):
            raise BadRequest(f'"{key}" must be a list of strings')
        missing = [i for i, t in enumerate(texts) if isinstance(t, dict) and "text" not in t]
        if missing:
            raise BadRequest(f'input {missing[0]} is an object without "text": send strings or {{"text": ...}}')
        texts = [t["text"] if isinstance(t, dict) else t for t in texts]
    elif "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise BadRequest('"dataframe_split" needs "columns" and "data" (a list of rows)')
        texts = _column(list(split.get("columns") or ["text"]), split["data"])
    elif "dataframe_records" in doc:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequest('"dataframe_records" must be a list of objects')
        columns = sorted({k for r in records for k in r})
        texts = (
            [r.get("text") for r in records]
            if "text" in columns or not columns
            else _column(columns, [[r.get(c) for c in columns] for r in records])
        )
    else:
        raise BadRequest(
            f"no inputs: send one of inputs, instances, dataframe_split, dataframe_records (keys given: {sorted(doc)})"
        )
    bad = [i for i, t in enumerate(texts) if t is not None and not isinstance(t, str)]
    if bad:
        raise BadRequest(f"input {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
    return texts


def body_length(header: str | None) -> int:
    """The request's Content-Length, or BadRequest (413 over ``MAX_BODY``)."""
    try:
        length = int(header or 0)
    except ValueError:
        raise BadRequest(f"Content-Length {header!r} is not a number of bytes") from None
    if length < 0:
        raise BadRequest(f"Content-Length {length} is negative")
    if length > MAX_BODY:
        raise BadRequest(f"the body is {length:,} bytes; the limit is {MAX_BODY:,}", 413)
    return length


class Batcher:
    """One worker thread: queued requests become one ``predict`` call on the current model."""

    def __init__(self, current: Callable[[], Served], max_batch: int = 32, max_wait_s: float = 0.005):
        self.current, self.max_batch, self.max_wait_s = current, max_batch, max_wait_s
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="s2s-batcher", daemon=True)
        self.thread.start()

    def submit(self, texts: list) -> Future:
        done: Future = Future()
        self.jobs.put((texts, done))
        return done

    def _run(self) -> None:
        while True:
            batch = [self.jobs.get()]
            size, deadline = len(batch[0][0]), time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                batch.append(job)
                size += len(job[0])
            served = self.current()  # taken once: a swap lands between batches
            # blank: nothing visible (tasks/data/text.py); the rest in NFC, the form ingest trained on
            todo = [nfc(str(t)) for texts, _ in batch for t in texts if t is not None and not is_blank(str(t))]
            try:
                outputs = iter([" ".join(str(p).splitlines()) for p in served.model.predict(todo)] if todo else [])
                for texts, done in batch:
                    done.set_result(
                        ([next(outputs) if t is not None and not is_blank(str(t)) else "" for t in texts], served)
                    )
            except Exception as exc:  # answered as a 500 to every request of the batch
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)


class Holder:
    """The served model; ``swap`` replaces it between batches."""

    def __init__(self, served: Served):
        self._served = served
        self._lock = threading.Lock()

    def current(self) -> Served:
        with self._lock:
            return self._served

    def swap(self, served: Served) -> Served:
        with self._lock:
            old, self._served = self._served, served
        return old


def follow(
    holder: Holder, alias_version: Callable[[], str], load: Callable[[str], Served], poll_s: float, stop
) -> None:
    """Poll the alias every ``poll_s``; load the version it moves to, then swap it in."""
    while not stop.wait(poll_s):
        try:
            version = alias_version()
        except Exception as exc:  # the registry is down: keep serving what we have
            logger.warning(
                "alias check failed (%s); still serving v%s", str(exc).splitlines()[0], holder.current().version
            )
            continue
        if version == holder.current().version:
            continue
        try:
            new = load(version)
        except Exception as exc:
            logger.warning("could not load v%s (%s); still serving v%s", version, exc, holder.current().version)
            continue
        old = holder.swap(new)
        logger.warning("serving %s v%s -> v%s (%s)", new.name, old.version, new.version, new.backend)
        print(f"serving {new.name} v{old.version} -> v{new.version} ({new.backend})", flush=True)


def make_server(
    holder: Holder, batcher: Batcher, host: str, port: int, alias: str | None, stopping: threading.Event
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; an idle connection is closed after `timeout`
        timeout = 5

        def log_message(self, fmt, *args):  # one line per request would drown the console
            logger.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, doc: dict, served: Served | None = None, close: bool = False) -> None:
            body = json.dumps(doc, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if served is not None:
                self.send_header("X-Model-Version", served.version)
                self.send_header("X-Model-Backend", served.backend)
            if close or stopping.is_set():  # an unread body, or shutting down: no next request here
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            served = holder.current()
            if self.path in ("/ping", "/health"):
                self._send(200, {"status": "ok"}, served)
            elif self.path == "/version":
                self._send(
                    200,
                    {"model": served.name, "version": served.version, "alias": alias, "backend": served.backend},
                    served,
                )
            else:
                self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path}: POST /invocations"})

        def do_POST(self):  # noqa: N802
            if self.path != "/invocations":
                self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path}: POST /invocations"})
                return
            read = False
            try:
                length = body_length(self.headers.get("Content-Length"))
                body, read = self.rfile.read(length), True
                texts = parse(self.headers.get("Content-Type", ""), body)
                predictions, served = batcher.submit(texts).result()
            except BadRequest as exc:
                code = {413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}.get(exc.status, "BAD_REQUEST")
                self._send(exc.status, {"error_code": code, "message": str(exc)}, close=not read)
                return
            except Exception as exc:
                logger.exception("prediction failed")
                self._send(500, {"error_code": "INTERNAL_ERROR", "message": f"prediction failed: {exc}"})
                return
            self._send(200, {"predictions": predictions}, served)

    class Server(ThreadingHTTPServer):
        daemon_threads = False  # server_close() waits for the requests in flight
        request_queue_size = 1024  # socketserver's 5 drops connections of bursts (measured at 32 clients)

    return Server((host, port), Handler)
