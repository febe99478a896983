"""`s2s serve`: MLflow's scoring format answered by the registered model, the alias followed
without a dropped request, and a SIGTERM that lets the request in flight finish. A real server
process on 127.0.0.1, the real registry, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import free_port, stop_group, venv_bin, wait_healthy

from tasks.core.config import load_config
from tasks.tracking import client as tracking

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("served")]

TEXTS = ["Forecasters expect a sunny Monday in Bergen.", "Lyon council met on Friday.", "Prices rose in Oslo."]


def start(root, tmp_path, *args: str):
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    proc = subprocess.Popen(
        [venv_bin("s2s"), "serve", "--port", str(port), *args],
        cwd=root,
        env={**os.environ, "S2S_ROOT": str(root)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_healthy(f"http://127.0.0.1:{port}/ping", proc, log, timeout=120)
    return proc, f"http://127.0.0.1:{port}", log


def post(url: str, body: bytes | str, content_type: str = "application/json"):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_scoring_formats_errors_and_a_sigterm_with_a_request_in_flight(served_project, tmp_path):
    import mlflow

    root, _ = served_project
    mlflow.set_tracking_uri(load_config(root=root).tracking_uri())
    expected = mlflow.pyfunc.load_model("models:/s2s-default/1").predict(TEXTS)
    proc, url, log = start(root, tmp_path, "--max-inputs", "2000")
    try:
        bodies = {
            "inputs": json.dumps({"inputs": TEXTS}),
            "instances": json.dumps({"instances": TEXTS}),
            "split": json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}}),
            "records": json.dumps({"dataframe_records": [{"text": t, "id": i} for i, t in enumerate(TEXTS)]}),
        }
        for name, body in bodies.items():
            status, doc, headers = post(url, body)
            assert status == 200 and doc == {"predictions": expected}, (name, doc)
            assert headers["X-Model-Version"] == "1" and headers["X-Model-Backend"] == "ct2"
        csv_body = "id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS))
        assert post(url, csv_body, "text/csv")[1] == {"predictions": expected}
        assert post(url, json.dumps({"inputs": [TEXTS[0], "", None]}))[1]["predictions"] == [expected[0], "", ""]
        for body, ctype, status, words in [
            ("{not json", "application/json", 400, "not JSON"),
            (json.dumps({"texts": TEXTS}), "application/json", 400, "inputs, instances"),
            (json.dumps({"inputs": [1, 2]}), "application/json", 400, "input 0 is a int"),
            ("x", "text/plain", 415, "text/plain"),
            ("a,b\n1,2\n", "text/csv", 400, "'text'"),
        ]:
            got = post(url, body, ctype)
            assert got[0] == status and words in got[1]["message"], got
        with urllib.request.urlopen(f"{url}/version", timeout=10) as r:
            version = json.loads(r.read())
        assert version == {"model": "s2s-default", "version": "1", "alias": "champion", "backend": "ct2"}

        # SIGTERM while a long request is being answered: it completes, the process exits 0
        result = {}
        big = json.dumps({"inputs": [f"{TEXTS[i % 3]} Row {i}." for i in range(2000)]})
        caller = threading.Thread(target=lambda: result.update(answer=post(url, big)))
        caller.start()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        caller.join(120)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
        status, doc, _ = result["answer"]
        assert status == 200 and len(doc["predictions"]) == 2000
        assert "finishing the requests in flight" in log.read_text()
    finally:
        stop_group(proc)


def test_follow_alias_swaps_the_champion_without_dropping_a_request(served_project, tmp_path):
    root, _ = served_project
    cfg = load_config(root=root)
    c = tracking.client(cfg)
    v1 = c.get_model_version("s2s-default", "1")
    proc, url, log = start(root, tmp_path, "--follow-alias", "--poll-seconds", "1")
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            status, _, headers = post(url, json.dumps({"inputs": [TEXTS[i % 3]]}))
            seen[i].append((status, headers.get("X-Model-Version")))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        v2 = str(c.create_model_version("s2s-default", v1.source, v1.run_id).version)
        c.set_registered_model_alias("s2s-default", "champion", v2)
        deadline = time.monotonic() + 60
        while not any(v == v2 for s in seen for _, v in s) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # and a while on the new version
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        c.set_registered_model_alias("s2s-default", "champion", "1")  # the fixture's champion again
        stop_group(proc)
    answers = [a for s in seen for a in s]
    assert len(answers) > 20 and all(status == 200 for status, _ in answers), answers[:10]
    assert any(v == v2 for _, v in answers), log.read_text()[-2000:]
    for s in seen:  # per client, in the order it asked: v1 until the swap, then v2, never back
        versions = [v for _, v in s]
        assert versions == sorted(versions, key=lambda v: v != "1"), versions
    assert f"serving s2s-default v1 -> v{v2}" in log.read_text()


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def raw(url: str, payload: bytes, trickle: bytes = b"", every: float = 0.5, limit: float = 30.0) -> tuple[bytes, float]:
    """A client on a real socket: send ``payload``, then ``trickle`` one byte every ``every`` s;
    what the server answered and when (s) it closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=limit) as sock:
        sock.sendall(payload)
        sock.settimeout(every)
        got = b""
        for byte in [trickle[i : i + 1] for i in range(len(trickle))] + [b""] * int(limit / every):
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            except TimeoutError:
                pass
            if byte:
                try:
                    sock.sendall(byte)
                except OSError:
                    break
            assert time.monotonic() - start < limit, "the server kept a slow client beyond any deadline"
    return got, time.monotonic() - start


def test_every_request_is_bounded_fairly_served_and_named_when_refused(served_project, tmp_path):
    root, _ = served_project
    proc, url, log = start(
        root,
        tmp_path,
        "--max-inputs",
        "3000",
        "--max-input-chars",
        "2000",
        "--read-timeout",
        "2",
        "--max-request-seconds",
        "60",
    )
    try:
        assert post(url, json.dumps({"inputs": TEXTS}))[0] == 200  # warm
        before = rss_peak_mb(proc.pid)
        # over a limit: the status and the setting to change
        status, doc, _ = post(url, json.dumps({"inputs": ["a"] * 3001}))
        assert status == 413 and "serve.max_inputs" in doc["message"] and "3,001" in doc["message"], doc
        status, doc, _ = post(url, json.dumps({"inputs": ["ok", "x" * 2001]}))
        assert status == 422 and "input 1" in doc["message"] and "serve.max_input_chars" in doc["message"], doc
        # the 9.5 MB single text (0.67 -> 4.1 GB, 40 s of CPU): refused before tokenizing
        status, doc, _ = post(url, json.dumps({"inputs": ["word " * 1_900_000]}))
        assert status == 422 and "9,500,000 characters" in doc["message"], doc
        got, _ = raw(url, b"POST /invocations HTTP/1.1\r\nContent-Length: 11534336\r\n\r\n")  # body not sent
        assert got.startswith(b"HTTP/1.1 413") and b"serve.max_body_bytes" in got, got
        # a request at every limit at once: memory per request stays bounded
        status, doc, _ = post(url, json.dumps({"inputs": [("Prices rose in Oslo. " * 100)[:2000]] * 300}))
        assert status == 200 and len(doc["predictions"]) == 300
        grew = rss_peak_mb(proc.pid) - before
        assert grew < 300, f"peak RSS grew {grew:.0f} MB for requests within the limits"

        # malformed bodies are the client's error (4xx), never a 500
        for body in (
            "[" * 100_000 + "]" * 100_000,  # nested deeper than the JSON parser goes
            json.dumps({"dataframe_split": {"columns": 5, "data": [["a"]]}}),
            '{"inputs": ["\\ud800 lone surrogate"]}',
        ):
            status, doc, _ = post(url, body)
            assert 400 <= status < 500, (body[:60], status, doc)

        # slow clients: a body that never finishes gets a 408; headers that never end, a closed socket
        got, took = raw(
            url, b'POST /invocations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inputs"'
        )
        assert got.startswith(b"HTTP/1.1 408"), got
        assert took < 6, took
        got, took = raw(url, b"POST /invocations HTTP/1.1\r\n", trickle=b"X-Slow: " + b"a" * 200, every=0.25)
        assert took < 6 and b"200 OK" not in got, (got, took)

        # fairness: small requests sent while a 3,000-input one is being generated are answered first
        finished: dict[str, float] = {}
        answered: dict[str, int] = {}

        def send_big() -> None:
            answered["big"] = post(url, json.dumps({"inputs": [f"{TEXTS[i % 3]} Row {i}." for i in range(3000)]}))[0]
            finished["big"] = time.monotonic()

        big = threading.Thread(target=send_big)
        started = time.monotonic()
        big.start()
        time.sleep(0.3)
        sent = []
        for i in range(3):
            sent.append(time.monotonic())
            status, doc, _ = post(url, json.dumps({"inputs": [TEXTS[i]]}))
            assert status == 200 and doc["predictions"][0]
            finished[f"small{i}"] = time.monotonic()
        big.join(300)
        assert answered["big"] == 200, answered
        took = {k: round(v - started, 3) for k, v in finished.items()}
        # meaningful only when the big one was still being generated when the first small one went out
        assert sent[0] < finished["big"], f"the 3,000 inputs took {took['big']} s: too fast to test fairness"
        assert all(finished[f"small{i}"] < finished["big"] for i in range(3) if sent[i] < finished["big"]), took
    finally:
        stop_group(proc)


def test_a_sigterm_answers_what_cannot_finish_in_the_drain_time_with_a_503(served_project, tmp_path):
    root, _ = served_project
    proc, url, log = start(
        root, tmp_path, "--max-inputs", "60000", "--drain-seconds", "1", "--set", "serve.max_queued_inputs=60000"
    )
    try:
        result = {}
        # far more than a fast machine generates in the second before the SIGTERM and the drain second
        big = json.dumps({"inputs": [f"{TEXTS[i % 3]} Row {i}." for i in range(60000)]})
        caller = threading.Thread(target=lambda: result.update(answer=post(url, big), at=time.monotonic()))
        caller.start()
        time.sleep(1.0)
        sent_term = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        start_stop = time.monotonic()
        assert proc.wait(30) == 0, log.read_text()[-2000:]
        caller.join(30)
        status, doc, headers = result["answer"]
        assert result["at"] > sent_term, "the request was answered before the SIGTERM: make it bigger"
        assert status == 503 and "serve.drain_s" in doc["message"] and headers.get("Retry-After"), doc
        assert time.monotonic() - start_stop < 10
    finally:
        stop_group(proc)


def test_bad_lengths_and_objects_without_text_are_400s_not_500s():
    from tasks.serving.request_body import MAX_BODY, BadRequest, Limits, body_length, check_limits, parse

    for header, status in (("abc", 400), ("-5", 400), (str(MAX_BODY + 1), 413)):
        with pytest.raises(BadRequest) as err:
            body_length(header)
        assert err.value.status == status
    assert body_length(None) == 0 and body_length("12") == 12
    with pytest.raises(BadRequest, match='without "text"'):
        parse("application/json", json.dumps({"inputs": [{"x": 1}]}).encode())
    assert parse("application/json", json.dumps({"inputs": [{"text": "a"}, "b"]}).encode()) == ["a", "b"]
    for body, words in (
        (b"[" * 100_000, "nested too deeply"),
        (json.dumps({"dataframe_split": {"columns": 5, "data": [["a"]]}}).encode(), "list of column names"),
        (b'{"inputs": ["\\ud800"]}', "lone surrogate"),
    ):
        with pytest.raises(BadRequest, match=words) as err:
            parse("application/json", body)
        assert err.value.status == 400
    limits = Limits(max_inputs=2, max_input_chars=5)
    with pytest.raises(BadRequest, match="serve.max_inputs") as err:
        check_limits(["a", "b", "c"], limits)
    assert err.value.status == 413
    with pytest.raises(BadRequest, match="input 1 has 6 characters.*serve.max_input_chars") as err:
        check_limits(["a", "abcdef"], limits)
    assert err.value.status == 422
    check_limits(["abcde", None], limits)
