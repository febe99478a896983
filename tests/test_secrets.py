"""Credentials from Prefect Secret blocks when the environment lacks them; never in a log line."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import run_cli
from services import MlflowServer

from tasks.core import secrets


@pytest.mark.integration
def test_unset_credentials_come_from_prefect_secret_blocks(prefect_server, monkeypatch):
    from prefect.blocks.system import Secret

    Secret(value="hf_from_a_block_123").save("hf-token", overwrite=True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-the-environment")  # the environment wins
    Secret(value="from-a-block").save("mlflow-tracking-password", overwrite=True)
    filled = secrets.load_secret_blocks()
    import os

    assert "HF_TOKEN" in filled and os.environ["HF_TOKEN"] == "hf_from_a_block_123"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "from-the-environment"
    monkeypatch.delenv("HF_TOKEN")


def test_log_records_are_scrubbed_of_credentials_and_url_passwords(monkeypatch, caplog):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-s3-key")
    secrets.install_redaction()
    log = logging.getLogger("tasks.test")
    with caplog.at_level(logging.INFO, logger="tasks.test"):
        log.info("uploading with key %s", "very-secret-s3-key")
        log.info("tracking at %s", "http://admin:hunter22@mlflow:5000/api")
        log.info("plain %d", 3)
    text = caplog.text
    assert "very-secret-s3-key" not in text and "hunter22" not in text
    assert "uploading with key ***" in text and "http://admin:***@mlflow:5000/api" in text and "plain 3" in text
    assert secrets.redact("postgresql://s2s:pw-123@db/mlflow") == "postgresql://s2s:***@db/mlflow"


def test_url_passwords_with_slash_or_at_and_prefect_auth_strings_are_scrubbed(monkeypatch):
    for url, clean in [
        ("postgresql://s2s:p@ss/w@rd@127.0.0.1:5432/mlflow", "postgresql://s2s:***@127.0.0.1:5432/mlflow"),
        ("see http://u:a/b@host/x and more", "see http://u:***@host/x and more"),
        ("https://ci:tok%2Fen@mlflow.example.com", "https://ci:***@mlflow.example.com"),
        ("http://127.0.0.1:5000/api", "http://127.0.0.1:5000/api"),  # no credentials: untouched
    ]:
        assert secrets.redact(url) == clean
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:prefect-Secret-8080")
    assert secrets.redact("auth admin:prefect-Secret-8080 / prefect-Secret-8080") == "auth *** / ***"


SECRET = "Known-Secret-Value-777"


@pytest.mark.system
def test_tracebacks_uncaught_errors_and_printed_output_are_scrubbed(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from tasks.core.entry import setup_logging\n"
        "setup_logging()\n"
        "log = logging.getLogger('tasks.x')\n"
        "try:\n"
        f"    raise RuntimeError('connecting with ' + {SECRET!r})\n"
        "except RuntimeError:\n"
        "    log.exception('failed')\n"
        f"print('printed', {SECRET!r})\n"
        "print('a url http://admin:p@ss/w@rd@db:5432/x', file=sys.stderr)\n"
        f"raise ValueError('uncaught ' + {SECRET!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" in out and "ValueError: uncaught ***" in out
    assert SECRET not in out and "p@ss/w@rd" not in out and "admin:***@db:5432" in out


@pytest.mark.integration
def test_prefect_state_messages_are_scrubbed(prefect_server, monkeypatch):
    """The message of a failed task becomes a Prefect state, stored by the server and shown in its UI."""
    from prefect import flow, get_client

    from flows.stages import _task

    monkeypatch.setenv("HF_TOKEN", SECRET)

    def leaky():
        raise RuntimeError(f"hub refused token {SECRET} at https://u:{SECRET}@hub/x")

    @flow(name="leaky")
    def leaky_flow():
        return str(_task(leaky, "leaky", False)(return_state=True).state_details.task_run_id)

    task_run_id = leaky_flow()
    with get_client(sync_client=True) as client:
        stored = client.read_task_run(task_run_id).state
    assert stored.is_failed() and "hub refused token ***" in stored.message and SECRET not in stored.message


@pytest.mark.system
def test_compare_prints_no_credentials_of_the_tracking_uri(project):
    from conftest import free_port, run_cli

    uri = f"http://ci:Cmp-Secret-999@127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_cli(
        "compare",
        "--set",
        "tracking.retry_s=0",
        cwd=project,
        timeout=120,
        env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "S2S_ROOT": str(project)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Cmp-Secret-999" not in out and "ci:***@127.0.0.1" in out, out
    assert "Traceback" not in out


@pytest.mark.slow  # make test-slow
@pytest.mark.system
def test_nothing_the_project_writes_holds_a_credential(tmp_path):
    """A whole run against a real MLflow server with a password in the tracking URI, another in
    MLFLOW_TRACKING_PASSWORD and a token in the webhook URL: no file the project wrote (the open-run
    ledger, logs, reports, the registry record, DVC and git state) holds any of them."""
    import contextlib
    import os
    import subprocess
    import time
    import uuid

    from conftest import make_project, venv_bin
    from services import MlflowServer, Receiver

    drawn = [f"sec{uuid.uuid4().hex}" for _ in range(3)]  # values nothing could hold by chance
    server = MlflowServer(tmp_path / "server").start()
    hook = Receiver()
    try:
        root = make_project(
            tmp_path / "proj", pipelines={"default": {"gates": {"min": {"rouge1": 0.0, "rougeL": 0.0}}}}
        )
        uri = server.url.replace("http://", f"http://ci:{drawn[0]}@")
        env = {
            "S2S_ROOT": str(root),
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_TRACKING_USERNAME": "ci",
            "MLFLOW_TRACKING_PASSWORD": drawn[1],
            "S2S_WEBHOOK_URL": f"{hook.url}?token={drawn[2]}",
        }
        # the open-run ledger exists only while the run is open (or after a kill): read it then
        proc = subprocess.Popen(
            [venv_bin("s2s"), "run"],
            cwd=root,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ledger_seen: dict[str, bytes] = {}
        while proc.poll() is None:
            for f in (root / ".s2s" / "open_runs").glob("*.json"):
                with contextlib.suppress(OSError):
                    ledger_seen[f.name] = f.read_bytes()
            time.sleep(0.1)
        output = proc.stdout.read()
        assert proc.returncode == 0, output[-3000:]
        assert ledger_seen, "never saw the open-run ledger: the test proves nothing about it"
        assert not [n for n, b in ledger_seen.items() for secret in drawn if secret.encode() in b]
        assert hook.events, "the webhook got no event: its URL was not used, so the test proves nothing"
        assert (root / ".s2s").is_dir() and (root / "reports").is_dir()
        leaks = [
            (path.relative_to(root).as_posix(), secret[:7])
            for path in root.rglob("*")
            if path.is_file()
            for secret in drawn
            if secret.encode() in path.read_bytes()
        ]
        assert leaks == [], leaks
        assert not any(secret in output for secret in drawn)
    finally:
        hook.close()
        server.stop()


@pytest.mark.system
@pytest.mark.slow  # make test-slow (CI budget); make stack-check sends a wrong password to the stack's MLflow too
def test_wrong_tracking_credentials_are_refused_at_once_by_name(tmp_path, project):
    """A real MLflow server with basic-auth: a wrong password is one clear, non-retried error
    naming the variables to check, without the password; the right one works."""
    server = MlflowServer(tmp_path / "auth-server", admin_password="right-Pass-4821").start()
    try:
        base = {"S2S_ROOT": str(project), "MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_USERNAME": "admin"}
        started = time.monotonic()
        wrong = run_cli("compare", cwd=project, env={**base, "MLFLOW_TRACKING_PASSWORD": "wrong-Pass-0000"})
        took = time.monotonic() - started
        said = wrong.stdout + wrong.stderr
        assert wrong.returncode == 1 and "refused the credentials (401" in said, said
        assert "MLFLOW_TRACKING_PASSWORD" in said and "wrong-Pass-0000" not in said and "retrying" not in said
        assert took < 60, took  # not minutes of "transient" retries
        right = run_cli("compare", cwd=project, env={**base, "MLFLOW_TRACKING_PASSWORD": "right-Pass-4821"})
        assert right.returncode == 0, right.stdout + right.stderr
    finally:
        server.stop()
