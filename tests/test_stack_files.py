"""docker/ without a Docker engine: the compose file's structure, the images' basics, and the
security floor of the pinned set (CVE version floors, safetensors, no remote code, no pickles)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
LONG_RUNNING = ("postgres", "minio", "mlflow", "prefect-server", "worker")

# Floors for published advisories; the pins must be at or above them.
CVE_FLOORS = {
    # CVE-2025-32434: torch.load(weights_only=True) could still execute code (fixed in 2.6.0)
    "torch": "2.6.0",
    # CVE-2024-11392/11393/11394 (deserialisation RCE, fixed 4.48.0); CVE-2025-3263/3264/3777/5197/
    # 6638/6921 (ReDoS and URL checks, the last fixed in 4.53.0)
    "transformers": "4.53.0",
    # CVE-2025-52967 (SSRF in the tracking server, fixed 3.1.0); GHSA-5cvj-7rg6-jggj (model creation
    # directory traversal); GHSA-gq3w-7jj3-x7gr (public default admin password): the behaviour
    # of the latter is checked against a real server in test_server_stack.py
    "mlflow": "3.1.0",
}


def test_compose_has_the_stack_with_health_checks_and_named_volumes():
    assert set(LONG_RUNNING) <= set(SERVICES)
    for name in LONG_RUNNING:
        svc = SERVICES[name]
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name} has no health check"
        assert svc.get("image") or svc.get("build"), name
    declared = set(COMPOSE["volumes"])
    used = {
        v.split(":")[0] for svc in SERVICES.values() for v in svc.get("volumes", []) if not v.startswith((".", "/"))
    }
    assert used and used <= declared
    assert {"pgdata", "miniodata"} <= used  # the databases and the object store survive restarts
    # services wait for what they need to be healthy, not merely started
    assert SERVICES["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_images_are_pinned_and_ports_stay_on_localhost():
    for name, svc in SERVICES.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image!r})"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_mlflow_uses_postgres_s3_and_auth_and_the_worker_reaches_it_by_environment():
    env = SERVICES["mlflow"]["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert "minio" in SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"]
    start = (DOCKER / "mlflow" / "start.sh").read_text()
    assert "--app-name basic-auth" in start and "--serve-artifacts" in start
    assert "mlflow-start" in (DOCKER / "mlflow" / "Dockerfile").read_text()
    worker = SERVICES["worker"]["environment"]
    assert worker["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["PREFECT_API_URL"].startswith("http://prefect-server:")
    assert "s3://" in SERVICES["mlflow"]["environment"]["MLFLOW_ARTIFACTS_DESTINATION"]
    assert "DVC_BUCKET" in (DOCKER / ".env.example").read_text()  # the DVC remote on the same store


def test_no_secret_in_the_files_and_every_variable_in_env_example():
    text = (DOCKER / "compose.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert needed and not needed - example, f"missing from docker/.env.example: {sorted(needed - example)}"
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH_STRING|_KEY$")
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if secretish.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", str(value)), f"{name}.{key} must come from .env"
            assert "password1234" not in str(value)


def test_images_run_as_a_non_root_user_with_s2s_as_entry_point():
    cuda = (DOCKER / "Dockerfile.cuda").read_text()
    assert re.search(r"^ARG BASE=nvidia/cuda:\S+", cuda, re.M) and re.search(r"^FROM \$\{BASE\}", cuda, re.M)
    for dockerfile in ("Dockerfile.cuda", "Dockerfile.cpu", "mlflow/Dockerfile"):
        text = (DOCKER / dockerfile).read_text()
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0"), f"{dockerfile} runs as root"
    for dockerfile in ("Dockerfile.cuda", "Dockerfile.cpu"):
        text = (DOCKER / dockerfile).read_text()
        assert 'ENTRYPOINT ["s2s"]' in text and "-c constraints.txt" in text and "torch==2.13.0" in text


def constraint_pins() -> dict[str, str]:
    """constraints.txt as {package (lower case): pinned version}."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_cpu_and_cuda_images_differ_only_in_their_defaults():
    """One image recipe: Dockerfile.cuda is Dockerfile.cpu with other build-argument defaults
    (base, torch wheel and index, extras), so a fix to one cannot miss the other."""
    marker = "# ---- from here on Dockerfile.cpu and Dockerfile.cuda are the same"
    cpu, cuda = ((DOCKER / name).read_text().partition(marker) for name in ("Dockerfile.cpu", "Dockerfile.cuda"))
    assert cpu[1] == cuda[1] == marker and cpu[2] == cuda[2]
    # above the marker: comments, and the same instructions in the same order, values aside
    # (an ARG above FROM would be empty in the build; any other instruction would be one image's)
    for head in (cpu[0], cuda[0]):
        lines = [line for line in head.splitlines() if line.strip() and not line.startswith("#")]
        assert [line.split("=")[0] for line in lines] == [
            "ARG BASE",
            "FROM ${BASE}",
            "ARG TORCH",
            "ARG TORCH_INDEX",
            "ARG EXTRAS",
        ], lines

    def defaults(head: str) -> dict[str, str]:
        return dict(re.findall(r"^ARG (\w+)=(\S+)$", head, re.M))

    assert set(defaults(cpu[0])) == set(defaults(cuda[0])) == {"BASE", "TORCH", "TORCH_INDEX", "EXTRAS"}
    assert defaults(cpu[0])["TORCH_INDEX"].endswith("/cpu") and defaults(cuda[0])["TORCH_INDEX"].endswith("/cu128")
    pinned = constraint_pins()["torch"]
    assert defaults(cpu[0])["TORCH"] == f"torch=={pinned}+cpu"
    assert defaults(cuda[0])["TORCH"] == f"torch=={pinned}+cu128"
    assert "gpu" in defaults(cuda[0])["EXTRAS"].split(",") and "gpu" not in defaults(cpu[0])["EXTRAS"].split(",")


@pytest.mark.parametrize("package", sorted(CVE_FLOORS))
def test_pins_and_installed_versions_clear_the_cve_floors(package):
    floor = Version(CVE_FLOORS[package])
    assert Version(metadata.version(package).split("+")[0]) >= floor
    assert Version(constraint_pins()[package]) >= floor
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [d for d in deps if re.split(r"[=<>!~\[ ]", d)[0].lower() == package]
    assert pinned and Version(pinned[0].split("==")[1].split()[0]) >= floor


def test_remote_code_is_off_by_default_and_weights_are_safetensors_only():
    from tasks.core.config import Train

    assert Train().trust_remote_code is False
    code = "\n".join(p.read_text() for d in ("tasks", "flows") for p in (REPO / d).rglob("*.py"))
    assert "trust_remote_code=True" not in code
    for pattern in (
        r"pickle\.loads?\(",
        r"torch\.load\(",
        r"joblib\.load",
        r"weights_only\s*=\s*False",
        r"cloudpickle",
        r"safe_serialization\s*=\s*False",
        r"use_safetensors\s*=\s*False",
    ):
        assert not re.search(pattern, code), pattern
    assert "use_safetensors=True" in (REPO / "tasks" / "modeling" / "models.py").read_text()
    assert "use_safetensors=True" in (REPO / "tasks" / "modeling" / "engines.py").read_text()  # the shipped loader


def _check_env(values: dict) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], **values}
    return subprocess.run(["sh", str(DOCKER / "check-env.sh")], env=env, capture_output=True, text=True)


def test_the_stack_refuses_the_example_placeholders_and_known_defaults():
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    refused = _check_env(example)
    assert refused.returncode == 2
    for var in (
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "PREFECT_SERVER_API_AUTH_STRING",
    ):
        assert f"check-env: {var} still holds the .env.example placeholder" in refused.stderr, var
    strong = {
        var: "Zq7-real-Secret-4411"
        for var in (
            "POSTGRES_PASSWORD",
            "MINIO_ROOT_PASSWORD",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY",
        )
    }
    strong["PREFECT_SERVER_API_AUTH_STRING"] = "admin:Zq7-real-Secret-4411"
    assert _check_env(strong).returncode == 0
    for default in ("password1234", "minioadmin", "Password", "postgres", "short"):
        result = _check_env({**strong, "MINIO_ROOT_PASSWORD": default})
        assert result.returncode == 2 and "MINIO_ROOT_PASSWORD" in result.stderr, default
    assert _check_env({**strong, "POSTGRES_PASSWORD": ""}).returncode == 2

    # nothing starts before the check passed: every service waits for it, directly or through another
    def waits_for_check(name, seen=()):
        needs = SERVICES[name].get("depends_on", {})
        return "check-env" in needs or any(waits_for_check(n, seen + (name,)) for n in needs if n not in seen)

    for name in SERVICES:
        if name != "check-env":
            assert waits_for_check(name), f"{name} can start before check-env"


def test_the_local_override_swaps_images_only_for_images_built_here():
    """docker/compose.local.yaml (no public registry): it overrides services of compose.yaml only,
    every image it names is built here (s2s-*), it publishes nothing, and it holds no secret."""
    text = (DOCKER / "compose.local.yaml").read_text()
    local = yaml.safe_load(text)["services"]
    assert set(local) <= set(COMPOSE["services"]), set(local) - set(COMPOSE["services"])
    for name, service in local.items():
        assert "ports" not in service, name
        if "image" in service:
            assert service["image"].startswith("s2s-"), (name, service["image"])
    built = {s["build"]["dockerfile"] for s in local.values() if "build" in s}
    assert all((REPO / f).is_file() for f in built), built
    for path in (DOCKER / "local").iterdir():
        assert "USER" in path.read_text() or path.suffix == ".sh", path  # every image runs unprivileged
    assert not re.search(r"(?i)(password|secret)\s*[:=]\s*[^$\s{]", text)
