"""The compose topology with native processes on 127.0.0.1: a PostgreSQL server from Debian's
packages, `mlflow server` with that PostgreSQL backend, served artifacts and basic-auth, started
by docker/mlflow/start.sh exactly as the compose stack starts it. The pipeline reaches it only
through environment variables. Faults: the server down at the start of a run, and down at
registration (retried with backoff, completed later by `s2s register`, never twice). Secrets:
a known value for every credential, searched for in every output afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from conftest import REPO, dvc_env, free_port, make_clone, stop_group, venv_bin, wait_healthy

pytestmark = [pytest.mark.system, pytest.mark.slow]  # make test-slow

ADMIN_PASSWORD = "mlflow-admin-Secret-7731"  # the known secret values searched for afterwards
HUB_TOKEN = "hf_KnownSecretToken4242"
S3_SECRET = "s3-Known-Secret-Key-9090"
PG_PASSWORD = "pg-Known-Secret-5151"
SECRETS = (ADMIN_PASSWORD, HUB_TOKEN, S3_SECRET, PG_PASSWORD)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries missing: `make system-deps` installs Debian's postgresql package")
    return found[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root, a laptop does not."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    pg = _pg_bin()
    # not under pytest's tmp folder: that one is private to this user, and PostgreSQL runs as `postgres`
    base = Path(tempfile.mkdtemp(prefix="s2s-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    pwfile = base / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
        base.chmod(0o700)
    port = free_port()
    init = subprocess.run(
        _as_postgres(
            [
                str(pg / "initdb"),
                "-D",
                str(data),
                "-U",
                "s2s",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
            ]
        ),
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    pwfile.unlink()
    subprocess.run(
        _as_postgres(
            [
                str(pg / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "pg.log"),
                "-w",
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {sock}",
            ]
        ),
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
    try:
        for db in ("mlflow", "mlflow_auth"):
            subprocess.run(
                [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "s2s", db],
                env=env,
                check=True,
                capture_output=True,
            )
        yield {"port": port, "url": f"postgresql://s2s:{PG_PASSWORD}@127.0.0.1:{port}", "bin": pg, "base": base}
    finally:
        subprocess.run(
            _as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


class MlflowServer:
    """docker/mlflow/start.sh on 127.0.0.1 with the PostgreSQL backend; can be stopped and restarted."""

    def __init__(self, postgres: dict, folder: Path):
        self.port, self.folder, self.proc = free_port(), folder, None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        self.artifacts = folder / "artifacts"
        self.env = {
            **os.environ,
            "PATH": f"{Path(venv_bin('mlflow')).parent}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_BACKEND_STORE_URI": f"{postgres['url']}/mlflow",
            "MLFLOW_AUTH_DATABASE_URI": f"{postgres['url']}/mlflow_auth",
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.artifacts),
            "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-csrf-key",
            "MLFLOW_AUTH_CONFIG_PATH": str(folder / "conf" / "basic_auth.ini"),  # outside what is searched
        }
        (folder / "conf").mkdir(exist_ok=True)

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [
                    str(REPO / "docker" / "mlflow" / "start.sh"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_healthy(f"{self.url}/health", self.proc, self.log, timeout=120)

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    srv = MlflowServer(postgres, tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def client_env(server: MlflowServer) -> dict:
    """What a user exports to use the stack: nothing in params.yaml changes."""
    return {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
        "HF_TOKEN": HUB_TOKEN,
        "AWS_ACCESS_KEY_ID": "s2s-test-key-id",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }


def _status(url: str, user: str, password: str) -> int:
    auth = b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Authorization": f"Basic {auth}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _client(server: MlflowServer, monkeypatch):
    for k, v in client_env(server).items():
        monkeypatch.setenv(k, v)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def test_start_script_refuses_the_public_default_admin_password(tmp_path):
    env = {
        **os.environ,
        "MLFLOW_AUTH_ADMIN_PASSWORD": "password1234",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
        "MLFLOW_BACKEND_STORE_URI": "sqlite:///x.db",
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path),
    }
    proc = subprocess.run([str(REPO / "docker" / "mlflow" / "start.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "old public default" in proc.stderr
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD")
    proc = subprocess.run([str(REPO / "docker" / "mlflow" / "start.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in proc.stderr


def test_basic_auth_rejects_the_default_password_and_accepts_ours(server):
    assert _status(server.url, "admin", "password1234") == 401
    assert _status(server.url, "admin", "wrong-password") == 401
    assert _status(server.url, "admin", ADMIN_PASSWORD) == 200


def test_default_pipeline_against_the_server_registers_and_leaks_no_secret(server, postgres, tmp_path, monkeypatch):
    project = make_clone(tmp_path / "proj")
    env = {**os.environ, **client_env(server), "S2S_ROOT": str(project)}
    proc = subprocess.run([venv_bin("s2s"), "run"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"open {server.url}" in proc.stdout and not (project / "mlflow.db").exists()  # the server, not SQLite

    c = _client(server, monkeypatch)
    versions = c.search_model_versions("name='s2s-default'")
    assert len(versions) == 1
    champion = c.get_model_version_by_alias("s2s-default", "champion")
    assert champion.version == versions[0].version and champion.tags["data_version"]
    run = c.get_run(champion.run_id)
    assert run.data.metrics["rougeL"] >= 0.0 and run.data.params
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server, stored in its folder
    assert any(server.artifacts.rglob("model.safetensors"))

    import mlflow

    model = mlflow.pyfunc.load_model("models:/s2s-default@champion")  # through the server, with credentials
    assert len(model.predict(["Forecasters expect a sunny Monday in Bergen."])) == 1

    # every output: console, project files, served artifacts, server log, the database, params/tags
    dump = subprocess.run(
        [str(postgres["bin"] / "pg_dump"), "-h", "127.0.0.1", "-p", str(postgres["port"]), "-U", "s2s", "mlflow"],
        env={**os.environ, "PGPASSWORD": PG_PASSWORD},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "registered_models" in dump
    texts = {
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "database": dump,
        "params/tags": repr(run.data.params) + repr(run.data.tags) + repr(champion.tags),
    }
    source = set(subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True).stdout.split())
    produced = [
        p
        for p in project.rglob("*")
        if p.is_file() and ".git" not in p.parts and str(p.relative_to(project)) not in source
    ]  # what the run wrote (this test's source is in the clone)
    assert any(p.name == "model.safetensors" for p in produced) and any(p.name == "dvc.lock" for p in produced)
    for path in [*produced, *server.artifacts.rglob("*")]:
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    texts["server log"] = server.log.read_text()
    leaks = [(where, s) for where, text in texts.items() for s in SECRETS if s in text]
    assert not leaks, leaks


def test_tracking_server_down_at_start_fails_before_training(tmp_path):
    project = make_clone(tmp_path / "proj")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
        "S2S_ROOT": str(project),
    }
    start = time.monotonic()
    proc = subprocess.run([venv_bin("s2s"), "run"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "is unreachable" in proc.stderr and "nothing was trained" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and ADMIN_PASSWORD not in proc.stdout + proc.stderr
    assert not (project / "artifacts").exists() and not (project / "data" / "processed").exists()
    assert time.monotonic() - start < 120


def test_wrong_credentials_are_named_before_training(server, tmp_path):
    project = make_clone(tmp_path / "proj")
    env = {**os.environ, **client_env(server), "MLFLOW_TRACKING_PASSWORD": "not-the-password", "S2S_ROOT": str(project)}
    proc = subprocess.run([venv_bin("s2s"), "run"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "rejected the credentials" in proc.stderr, proc.stderr[-2000:]
    assert "MLFLOW_TRACKING_PASSWORD" in proc.stderr and not (project / "artifacts").exists()


def test_server_down_at_registration_retries_then_completes_once(server, tmp_path, monkeypatch, prefect_server):
    import yaml

    # no waiting inside a call (tracking.retry_s: 0): the task-level retries of the flow are what is tested
    project = make_clone(tmp_path / "proj", params={"tracking": {"retry_s": 0}})
    pipes = yaml.safe_load((project / "pipelines.yaml").read_text())
    pipes["default"].update(model_name="s2s-outage", retries={"count": 6, "delay_s": [2, 4, 8, 8, 8, 8]})
    (project / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    env = {**dvc_env(), **client_env(server)}
    # train and evaluate (the stage functions, as the flow calls them), then the server goes away
    from tasks.core.config import load_config
    from tasks.evaluate import evaluate
    from tasks.ingest import ingest
    from tasks.train import train
    from tasks.validate import validate

    for k, v in client_env(server).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("S2S_ROOT", str(project))
    cfg = load_config()
    ingested = ingest(cfg)
    validate(cfg, ingested)
    evaluate(cfg, train(cfg, ingested), ingested)
    server.stop()
    try:
        down = subprocess.run(
            [venv_bin("s2s"), "register"],
            cwd=project,
            env={**env, "S2S_ROOT": str(project)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert down.returncode == 1 and "is unreachable" in down.stderr, down.stderr[-2000:]
        assert (project / "artifacts" / "model" / "model.safetensors").is_file()  # kept locally

        # the flow's register task: transient failures are retried with backoff until the server is back
        from prefect import flow, get_client

        from flows.stages import for_pipeline
        from tasks.core.results import EvaluateResult, IngestResult, TrainResult

        task = for_pipeline(cfg)["register"]
        reports = cfg.path("reports")

        @flow(name="register-while-the-server-restarts")
        def register_flow():
            return task(
                cfg,
                TrainResult.load(reports),
                EvaluateResult.load(reports),
                IngestResult.load(cfg.path("data")),
                return_state=True,
            )

        restart = threading.Timer(3.0, server.start)
        restart.start()
        state = register_flow()
        restart.join()
        registered = state.result()
        assert registered.model_name == "s2s-outage" and registered.version == "1"
        with get_client(sync_client=True) as pc:
            assert pc.read_task_run(state.state_details.task_run_id).run_count > 1  # failed, then retried
    finally:
        if server.proc.poll() is not None:
            server.start()

    later = subprocess.run(
        [venv_bin("s2s"), "register"],
        cwd=project,
        env={**env, "S2S_ROOT": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert later.returncode == 0, later.stdout + later.stderr
    assert "s2s-outage v1" in later.stdout and "PROMOTED" in later.stdout
    c = _client(server, monkeypatch)
    assert [v.version for v in c.search_model_versions("name='s2s-outage'")] == ["1"]  # never twice
