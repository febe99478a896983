"""The work pools' base job templates, held against Prefect's own schema: the Kubernetes GPU pool
(docker/kubernetes/base-job-template.json) through prefect-kubernetes' job configuration, which
builds the Job manifest, and a real Prefect server, which takes it for a `kubernetes` pool (and
refuses a template naming an undeclared variable); the Docker pool of the compose stack
(docker/docker-pool/) through prefect-docker's, with a deployment's job variables as `s2s deploy`
sets them. The Docker pool running a flow in a fresh container is `make stack-check`'s."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration

TEMPLATE = REPO / "docker" / "kubernetes" / "base-job-template.json"
DOCKER_TEMPLATE = REPO / "docker" / "docker-pool" / "base-job-template.json"


def _manifest(values: dict) -> dict:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads(TEMPLATE.read_text())
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))
    return config.job_manifest


def test_the_kubernetes_template_renders_a_gpu_job_with_volumes_and_secrets(prefect_server):  # the API it reads
    job = _manifest({})  # the pool's defaults
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "s2s-pipeline:cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["envFrom"] == [{"secretRef": {"name": "s2s-secrets"}}]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/work", "/home/s2s/.cache/huggingface"}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims == {"project": "s2s-project", "hf-cache": "s2s-hf-cache"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["restartPolicy"] == "Never"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert not container.get("env")  # no value in the template: credentials come from the Secret only

    # a deployment's job variables override the pool's defaults
    job = _manifest({"image": "registry.example/s2s-pipeline:cuda-2", "gpu_count": 2, "secret_name": "team-a"})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/s2s-pipeline:cuda-2"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["envFrom"] == [{"secretRef": {"name": "team-a"}}]


def test_a_prefect_server_takes_it_for_a_kubernetes_pool_and_refuses_an_undeclared_variable(prefect_server):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    template = json.loads(TEMPLATE.read_text())
    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(
            WorkPoolCreate(name="s2s-gpu-k8s-check", type="kubernetes", base_job_template=template), overwrite=True
        )
        assert pool.type == "kubernetes" and pool.base_job_template == template
        broken = copy.deepcopy(template)
        container = broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
        container["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpus_per_run }}"  # declared nowhere
        with pytest.raises(Exception, match="gpus_per_run"):
            client.create_work_pool(
                WorkPoolCreate(name="s2s-gpu-k8s-broken", type="kubernetes", base_job_template=broken), overwrite=True
            )


def test_the_docker_pool_runs_the_project_image_on_the_stack_with_the_deployments_settings(prefect_server):
    from prefect_docker.worker import DockerWorkerJobConfiguration

    template = json.loads(DOCKER_TEMPLATE.read_text())
    # what docker/docker-pool/start.py adds: where the registry is and who asks (no secret)
    template["variables"]["properties"]["env"]["default"] = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    deployment = {"working_dir": "/work", "env": {"S2S_ROOT": "/work", "S2S_PIPELINE": "default"}}  # s2s deploy's
    config = asyncio.run(DockerWorkerJobConfiguration.from_template_and_values(template, deployment))
    assert config.image == "s2s-pipeline:cpu" and config.networks == ["s2s_default"]
    assert config.volumes == ["s2s_project:/work", "s2s_hfcache:/home/s2s/.cache/huggingface"]
    # the pool's environment and the deployment's, merged
    assert config.env == {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "S2S_ROOT": "/work", "S2S_PIPELINE": "default"}
    # the image's entrypoint is `s2s`: the worker's command runs through env, as the image's user
    assert config.container_create_kwargs == {
        "entrypoint": ["/usr/bin/env"],
        "working_dir": "/work",
        "user": "1000:1000",
    }
    assert config.auto_remove is True
