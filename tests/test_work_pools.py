"""The Kubernetes work pool's base job template (docker/kubernetes/base-job-template.json),
held against Prefect's own schema: the kubernetes worker's job configuration (prefect-kubernetes)
builds a Job manifest from it and the pool's values, and a real Prefect server takes it for a
`kubernetes` work pool (and refuses a template whose manifest names an undeclared variable)."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration

TEMPLATE = REPO / "docker" / "kubernetes" / "base-job-template.json"


def _manifest(values: dict) -> dict:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads(TEMPLATE.read_text())
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values))
    return config.job_manifest


def test_the_kubernetes_template_renders_a_gpu_job_with_volumes_and_secrets():
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
