"""The webhook: one JSON event per outcome, delivered to a real receiver on 127.0.0.1, retried
through 503s, never fatal to the run, its URL (and token) never printed."""

import logging
import time

import pytest
from services import Receiver, free_port

from tasks.core import notify
from tasks.core.config import load_config

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_event_is_delivered_with_its_fields(project, receiver, monkeypatch):
    monkeypatch.setenv("S2S_WEBHOOK_URL", receiver.url)
    cfg = load_config()
    assert notify.send(cfg, "promoted", version="3", reasons=["rougeL 0.8 >= 0.6 (min)"])
    (event,) = receiver.events
    assert event["event"] == "promoted" and event["version"] == "3" and event["model"] == cfg.register.model_name
    assert event["pipeline"] == "default" and event["time"].endswith("+00:00")


def test_503s_are_retried_then_delivered(project, monkeypatch):
    r = Receiver(fail_first=2, fail_status=503)
    try:
        monkeypatch.setenv("S2S_WEBHOOK_URL", r.url)
        assert notify.send(load_config(), "failed", error="boom")
        assert r.requests == 3 and [e["event"] for e in r.events] == ["failed"]
    finally:
        r.close()


@pytest.mark.parametrize("where", ["404", "closed port"])
def test_an_unreachable_webhook_is_a_warning_without_its_token(project, monkeypatch, caplog, where):
    r = Receiver(fail_first=10, fail_status=404) if where == "404" else None
    url = r.url if r else f"http://127.0.0.1:{free_port()}/hook/SECRET-TOKEN-123"
    monkeypatch.setenv("S2S_WEBHOOK_URL", url)
    cfg = load_config(overrides=["notify.attempts=2", "notify.timeout_s=2"])
    try:
        with caplog.at_level(logging.WARNING):
            assert notify.send(cfg, "rejected") is False
        assert "did not reach the webhook" in caplog.text and "SECRET-TOKEN-123" not in caplog.text
        if r:
            assert r.requests == 1  # a 4xx is not retried
    finally:
        if r:
            r.close()


def test_events_not_listed_and_no_url_send_nothing(project, receiver, monkeypatch):
    assert notify.send(load_config(), "promoted") is False  # no URL in the environment
    monkeypatch.setenv("S2S_WEBHOOK_URL", receiver.url)
    assert notify.send(load_config(overrides=["notify.events=[failed]"]), "promoted") is False
    assert receiver.requests == 0


def test_flows_tell_the_webhook(project, receiver, monkeypatch, prefect_server):
    """Through the real flows on a real Prefect server: a manual promotion says `promoted`; a run
    whose data is missing says `failed` with the error."""
    from test_promote import new_version

    from flows.pipeline import promotion, training_pipeline

    monkeypatch.setenv("S2S_WEBHOOK_URL", receiver.url)
    cfg = load_config()
    _, v1 = new_version(cfg, 0.9)
    promotion(v1)
    assert [(e["event"], e["version"], e["champion"]) for e in receiver.events] == [("promoted", v1, v1)]
    assert receiver.events[0]["flow_run_id"]
    with pytest.raises(Exception, match="does not exist"):
        training_pipeline(overrides=["ingest.source=data/missing.csv"])
    failed = receiver.events[-1]
    assert failed["event"] == "failed" and "missing.csv" in failed["error"]


def test_the_polling_trigger_announces_a_version_once(project, monkeypatch, prefect_server):
    """watch-data (trigger.poll_s): a data version nobody has seen is announced once, as a real
    Prefect event; the next look finds nothing new; a changed file is announced again."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.pipeline import watch_data
    from tasks.data.sources import dvc_hash

    raw = project / "data" / "sample" / "reports.csv"
    first = watch_data()
    assert first == dvc_hash(raw)
    assert watch_data() is None
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")
    second = watch_data()
    assert second == dvc_hash(raw) and second != first
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            events = client.read_events(filter=EventFilter(event=EventNameFilter(name=["s2s.data.added"])), limit=50)
        seen = [e.resource.get("s2s.data_version") for e in getattr(events, "events", events)]
        if {first, second} <= set(seen) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {first, second} <= set(seen), seen
