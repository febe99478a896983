"""The Docker work pool's worker (compose service `docker-worker`, profile `docker-pool`).

1. Creates (or updates) the `docker` work pool from base-job-template.json, with the tracking
   server's address and user as the flow-run containers' environment defaults: not secrets.
2. Saves the credentials the flow runs need as Prefect Secret blocks (`mlflow-tracking-password`,
   and `hf-token` when set), which the pipeline reads when the variable is unset
   (tasks/core/secrets.py): no credential is written into the pool, a deployment or a container's
   environment.
3. Runs `prefect worker start --type docker`: each flow run starts a fresh container from the
   project image on the stack's network, with its volumes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.actions import WorkPoolCreate

from tasks.core.secrets import block_name

POOL = os.environ.get("DOCKER_POOL", "docker")
TEMPLATE = Path(__file__).with_name("base-job-template.json")
PASSED_ON = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME")  # where the registry is, who asks: not secrets
AS_BLOCKS = ("MLFLOW_TRACKING_PASSWORD", "HF_TOKEN")


def main() -> int:
    template = json.loads(TEMPLATE.read_text())
    env = {k: os.environ[k] for k in PASSED_ON if os.environ.get(k)}
    template["variables"]["properties"]["env"]["default"] = env
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="docker", base_job_template=template), overwrite=True)
    for name in AS_BLOCKS:
        if os.environ.get(name):
            Secret(value=os.environ[name]).save(block_name(name), overwrite=True)
    image = template["variables"]["properties"]["image"]["default"]
    print(f"work pool {POOL!r} (docker): each flow run starts a container of {image}", flush=True)
    os.execvp("prefect", ["prefect", "worker", "start", "--pool", POOL, "--type", "docker"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
