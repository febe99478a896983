"""Credentials from Prefect Secret blocks when the environment lacks them; never in a log line."""

from __future__ import annotations

import logging

from tasks.core import secrets


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
