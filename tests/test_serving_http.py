"""`s2s serve`: MLflow's scoring format answered by the registered model, the alias followed
without a dropped request, and a SIGTERM that lets the request in flight finish. A real server
process on 127.0.0.1, the real registry, real HTTP."""

from __future__ import annotations

import json
import os
import signal
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
    proc, url, log = start(root, tmp_path)
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


def test_bad_lengths_and_objects_without_text_are_400s_not_500s():
    from tasks.serving.http_server import MAX_BODY, BadRequest, body_length, parse

    for header, status in (("abc", 400), ("-5", 400), (str(MAX_BODY + 1), 413)):
        with pytest.raises(BadRequest) as err:
            body_length(header)
        assert err.value.status == status
    assert body_length(None) == 0 and body_length("12") == 12
    with pytest.raises(BadRequest, match='without "text"'):
        parse("application/json", json.dumps({"inputs": [{"x": 1}]}).encode())
    assert parse("application/json", json.dumps({"inputs": [{"text": "a"}, "b"]}).encode()) == ["a", "b"]
