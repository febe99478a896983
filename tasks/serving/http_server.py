"""``s2s serve``: a registered model over HTTP, in MLflow's scoring-server format.

``POST /invocations`` takes ``{"inputs": [...]}``, ``{"instances": [...]}``,
``{"dataframe_split": {"columns": [...], "data": [[...]]}}``, ``{"dataframe_records": [...]}``
(the ``text`` column, else the only one) or ``text/csv``, and answers
``{"predictions": [...]}`` in input order (a blank input gives ""). ``GET /ping`` and
``/health`` answer 200 once a model is loaded; ``GET /version`` names it. Every answer to
``/invocations`` carries ``X-Model-Version`` and ``X-Model-Backend``.

Requests are micro-batched and served fairly: one worker thread builds each batch (up to
``max_batch`` texts, waiting at most ``max_wait_s`` for more) by taking one input from each
request in turn, so a 10,000-input request shares every batch with the small ones that arrive
after it instead of making them wait for all of it. A request keeps the model version its first
batch ran on: with ``--follow-alias`` a new version is loaded beside the served one and used for
requests that start after the swap, so no request is dropped or answered by half of each.

Every request is bounded (:class:`Limits`, the ``serve`` section of params.yaml): inputs per
request and body bytes (413), characters per input (422, checked before anything is tokenized),
generation time (413 once its share of the batches passes the limit), and the time the client
may take to send it (408, or the connection closed if the headers never came). On SIGTERM the
server stops accepting, answers the requests in flight for up to ``drain_s``, then answers what
is left with a 503 and exits 0. Every refusal names the setting to change.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.data.text import is_blank, nfc
from tasks.serving.request_body import ERROR_CODES, BadRequest, Limits, body_length, check_limits, parse

logger = logging.getLogger(__name__)


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


class Job:
    """One request in the scheduler: its inputs, what is left to generate, its answers."""

    def __init__(self, texts: list):
        # blank: nothing visible (tasks/data/text.py), answered ""; the rest in NFC, the form ingest trained on
        self.texts = [None if t is None or is_blank(str(t)) else nfc(str(t)) for t in texts]
        self.todo = deque(i for i, t in enumerate(self.texts) if t is not None)
        self.left = len(self.todo)  # not yet answered (queued or in the running batch)
        self.out = [""] * len(texts)
        self.spent = 0.0  # seconds of generation charged to this request
        self.served: Served | None = None  # the version its first batch ran on
        self.done: Future = Future()


class Batcher:
    """One worker thread; each batch takes one input from each waiting request in turn (fair
    round-robin), runs one ``predict`` call, and charges each request its share of the time."""

    def __init__(
        self,
        current: Callable[[], Served],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        limits: Limits | None = None,
    ):
        self.current, self.max_batch, self.max_wait_s = current, max_batch, max_wait_s
        self.limits = limits or Limits()
        self.cond = threading.Condition()
        self.active: list[Job] = []
        self.queued = 0  # inputs waiting, all requests
        self.drain_until: float | None = None
        self.thread = threading.Thread(target=self._run, name="s2s-batcher", daemon=True)
        self.thread.start()

    def submit(self, texts: list) -> Future:
        job = Job(texts)
        if not job.todo:
            job.done.set_result((job.out, self.current()))
            return job.done
        with self.cond:
            if self.drain_until is not None:
                raise BadRequest("the server is shutting down: send this request to another replica", 503)
            if self.queued + len(job.todo) > self.limits.max_queued_inputs:
                alone = len(job.todo) > self.limits.max_queued_inputs  # it can never fit: not worth a retry
                raise BadRequest(
                    f"this request's {len(job.todo):,} inputs and the {self.queued:,} waiting exceed "
                    f"{self.limits.max_queued_inputs:,} (serve.max_queued_inputs): "
                    + ("split the request" if alone else "retry in a few seconds"),
                    413 if alone else 503,
                )
            self.active.append(job)
            self.queued += len(job.todo)
            self.cond.notify()
        return job.done

    def drain(self, seconds: float) -> None:
        """No new requests; those in flight get ``seconds`` to finish, then a 503."""
        with self.cond:
            self.drain_until = time.monotonic() + seconds
            self.cond.notify()

    def _fail(self, job: Job, exc: Exception) -> None:
        self.queued -= len(job.todo)
        job.todo.clear()
        if job in self.active:
            self.active.remove(job)
        if not job.done.done():
            job.done.set_exception(exc)

    def _take(self) -> tuple[Served, list[tuple[Job, int]]]:
        """One batch (lock held): one input per request in turn, all on one model version."""
        first = next(j for j in self.active if j.todo)
        served = first.served or self.current()
        batch: list[tuple[Job, int]] = []
        while len(batch) < self.max_batch:
            took = False
            for job in self.active:
                if job.todo and (job.served or served) is served and len(batch) < self.max_batch:
                    job.served = served
                    batch.append((job, job.todo.popleft()))
                    took = True
            if not took:
                break
        self.active.append(self.active.pop(self.active.index(first)))  # the next batch starts elsewhere
        self.queued -= len(batch)
        return served, batch

    def _run(self) -> None:
        while True:
            with self.cond:
                while not any(j.todo for j in self.active):
                    self.cond.wait(0.5 if self.drain_until is not None else None)
                if self.queued < self.max_batch and self.max_wait_s > 0:
                    self.cond.wait(self.max_wait_s)  # a moment for concurrent clients to join the batch
                if self.drain_until is not None and time.monotonic() > self.drain_until:
                    stop = BadRequest(
                        f"the server stopped before this request finished (serve.drain_s = "
                        f"{self.limits.drain_s:g} s after SIGTERM): send it again",
                        503,
                    )
                    for job in list(self.active):
                        self._fail(job, stop)
                    continue
                served, batch = self._take()
            start = time.perf_counter()
            try:
                outputs = list(served.model.predict([job.texts[i] for job, i in batch]))
            except Exception as exc:  # answered as a 500 to every request of the batch
                with self.cond:
                    for job in {id(j): j for j, _ in batch}.values():
                        self._fail(job, exc)
                continue
            share = (time.perf_counter() - start) / len(batch)
            with self.cond:
                for (job, i), out in zip(batch, outputs):
                    job.out[i] = " ".join(str(out).splitlines())
                    job.left -= 1
                    job.spent += share
                for job in {id(j): j for j, _ in batch}.values():
                    if job.done.done():
                        continue
                    if job.left == 0:
                        self.active.remove(job)
                        job.done.set_result((job.out, job.served))
                    elif job.spent > self.limits.max_request_seconds:
                        answered = len(job.texts) - job.left
                        self._fail(
                            job,
                            BadRequest(
                                f"this request used {job.spent:.1f} s of generation for {answered:,} of its "
                                f"inputs; the limit is {self.limits.max_request_seconds:g} s "
                                "(serve.max_request_seconds, s2s serve --max-request-seconds): send fewer "
                                "or shorter inputs per request",
                                413,
                            ),
                        )


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


class Deadlines:
    """Per connection: the request being read must have arrived by its deadline, else its socket's
    reading side is shut (the blocked read returns at once). Idle connections close on stop."""

    def __init__(self, stopping: threading.Event, tick_s: float = 0.1):
        self.lock = threading.Lock()
        self.reading: dict[socket.socket, tuple[float, bool]] = {}  # socket -> (deadline, idle)
        self.expired: set[socket.socket] = set()
        self.stopping = stopping
        threading.Thread(target=self._run, args=(tick_s,), name="s2s-deadlines", daemon=True).start()

    def start(self, sock: socket.socket, seconds: float, idle: bool) -> None:
        with self.lock:
            self.reading[sock] = (time.monotonic() + seconds, idle)

    def done(self, sock: socket.socket) -> bool:
        """The request is read; False if its deadline had passed (what was read is cut short)."""
        with self.lock:
            self.reading.pop(sock, None)
            late = sock in self.expired
            self.expired.discard(sock)
            return not late

    def _run(self, tick_s: float) -> None:
        while True:
            time.sleep(tick_s)
            now, stopping = time.monotonic(), self.stopping.is_set()
            with self.lock:
                late = [s for s, (at, idle) in self.reading.items() if now > at or (stopping and idle)]
                for sock in late:
                    self.reading.pop(sock)
                    self.expired.add(sock)
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:  # the client is gone already
                    pass


class Handler(BaseHTTPRequestHandler):
    """One connection's requests; what it serves with is set per server by :func:`make_server`."""

    protocol_version = "HTTP/1.1"  # keep-alive; an idle connection is closed after read_timeout_s
    # set by make_server: the model, the batcher, the limits, and the server's stop event
    holder: Holder
    batcher: Batcher
    alias: str | None
    stopping: threading.Event
    limits: Limits
    deadlines: Deadlines

    def log_message(self, fmt, *args):  # one line per request would drown the console
        logger.debug("%s " + fmt, self.address_string(), *args)

    def handle_one_request(self):
        # the whole request, from its first byte to the end of its body, within read_timeout_s
        self.deadlines.start(self.connection, self.limits.read_timeout_s, idle=True)
        try:
            super().handle_one_request()
        finally:
            self.deadlines.done(self.connection)

    def parse_request(self):
        self.deadlines.start(self.connection, self.limits.read_timeout_s, idle=False)  # the request line came
        if not super().parse_request():
            return False
        if self.command != "POST" and not self.deadlines.done(self.connection):
            self.close_connection = True  # headers cut short by the deadline: nothing to answer
            return False
        return True

    def _send(self, status: int, doc: dict, served: Served | None = None, close: bool = False) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "5")
        if served is not None:
            self.send_header("X-Model-Version", served.version)
            self.send_header("X-Model-Backend", served.backend)
        if close or self.stopping.is_set():  # an unread body, or shutting down: no next request here
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self, length: int) -> bytes:
        chunks, got = [], 0
        while got < length:
            try:
                chunk = self.rfile.read1(min(65536, length - got))
            except TimeoutError:  # no byte for read_timeout_s: the same deadline
                chunk = b""
            if not chunk:  # the client stopped, or its deadline shut the socket
                raise BadRequest(
                    f"the request did not arrive within {self.limits.read_timeout_s:g} s "
                    f"({got:,} of {length:,} body bytes; serve.read_timeout_s, s2s serve --read-timeout)",
                    408,
                )
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        served = self.holder.current()
        if self.path in ("/ping", "/health"):
            self._send(200, {"status": "ok"}, served)
        elif self.path == "/version":
            self._send(
                200,
                {"model": served.name, "version": served.version, "alias": self.alias, "backend": served.backend},
                served,
            )
        else:
            self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path}: POST /invocations"})

    def do_POST(self):  # noqa: N802
        if self.path != "/invocations":
            self.deadlines.done(self.connection)
            self._send(404, {"error_code": "NOT_FOUND", "message": f"no {self.path}: POST /invocations"})
            return
        read = False
        try:
            length = body_length(self.headers.get("Content-Length"), self.limits.max_body_bytes)
            body, read = self._read_body(length), True
            if not self.deadlines.done(self.connection):  # all here, or cut short: generation has its own bound
                read = False
                raise BadRequest(
                    f"the request did not arrive within {self.limits.read_timeout_s:g} s "
                    "(serve.read_timeout_s, s2s serve --read-timeout)",
                    408,
                )
            texts = parse(self.headers.get("Content-Type", ""), body)
            del body
            check_limits(texts, self.limits)
            predictions, served = self.batcher.submit(texts).result()
        except BadRequest as exc:
            code = ERROR_CODES.get(exc.status, "BAD_REQUEST")
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


def make_server(
    holder: Holder,
    batcher: Batcher,
    host: str,
    port: int,
    alias: str | None,
    stopping: threading.Event,
    limits: Limits | None = None,
) -> ThreadingHTTPServer:
    limits = limits or batcher.limits
    settings = {"holder": holder, "batcher": batcher, "alias": alias, "stopping": stopping, "limits": limits}
    settings["deadlines"] = Deadlines(stopping)
    settings["timeout"] = limits.read_timeout_s  # per socket operation (a client that stops reading our answer)
    return Server((host, port), type("ServingHandler", (Handler,), settings))
