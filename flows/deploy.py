"""`s2s deploy`: Prefect deployments for every pipeline of pipelines.yaml.

Per pipeline: ``retrain/<name>`` on the pipeline's cron schedule (skips when the data and
settings are the champion's), ``training-pipeline/<name>`` to run on demand, and
``promotion/<name>`` for manual promotions. Each runs on the pipeline's work pool (created as a
process pool when missing) from this project folder. Promotions of a model are serialised by the
registry's own lock (tasks/tracking/registry.py), which needs no Prefect object.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.core.config import Config, validate_all

logger = logging.getLogger(__name__)

FLOWS = {  # flow name -> entrypoint in this project
    "retrain": "flows/pipeline.py:retrain",
    "training-pipeline": "flows/pipeline.py:training_pipeline",
    "promotion": "flows/pipeline.py:promotion",
}


def _read_or_create(read, create) -> bool:
    """Call ``read()``; when the object does not exist, ``create()`` it (a concurrent creator
    wins). True when this call created it."""
    from prefect import get_client
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def _ensure():
        async with get_client() as client:
            try:
                await read(client)
            except ObjectNotFound:
                try:
                    await create(client)
                    return True
                except ObjectAlreadyExists:
                    pass
            return False

    return run_coro_as_sync(_ensure())


def ensure_work_pool(name: str) -> None:
    """A process work pool ``name`` (left as it is when it exists, whatever its type)."""
    from prefect.client.schemas.actions import WorkPoolCreate

    if _read_or_create(
        lambda c: c.read_work_pool(name), lambda c: c.create_work_pool(WorkPoolCreate(name=name, type="process"))
    ):
        logger.info("created process work pool %r", name)


def deploy_pipeline(cfg: Config, work_pool: str | None = None) -> list[str]:
    """Create or update the three deployments of one pipeline; returns their full names."""
    from prefect import Flow
    from prefect.schedules import Cron

    spec = cfg.spec
    pool = work_pool or spec.work_pool
    ensure_work_pool(pool)
    job = {"working_dir": str(cfg.root), "env": {"S2S_ROOT": str(cfg.root), "S2S_PIPELINE": cfg.pipeline}}
    names = []
    for flow_name, entrypoint in FLOWS.items():
        flow = Flow.from_source(source=str(cfg.root), entrypoint=entrypoint)
        schedules = None
        if flow_name == "retrain" and spec.schedule is not None:
            schedules = [Cron(spec.schedule.cron, timezone=spec.schedule.timezone, active=spec.schedule.active)]
        flow.deploy(
            name=cfg.pipeline,
            work_pool_name=pool,
            parameters={"pipeline": cfg.pipeline},
            schedules=schedules,
            job_variables=job,
            tags=["s2s", cfg.pipeline, *spec.tags],
            description=(spec.description or f"{flow_name} of the {cfg.pipeline} pipeline").strip(),
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,
        )
        names.append(f"{flow_name}/{cfg.pipeline}")
    return names


def deploy(root: Path | None = None, pipelines: list[str] | None = None, work_pool: str | None = None) -> list[str]:
    """Validate every pipeline (all or nothing), then deploy the chosen ones (default: all)."""
    configs = validate_all(root)
    chosen = pipelines or list(configs)
    unknown = [p for p in chosen if p not in configs]
    if unknown:
        from tasks.core.errors import ConfigError

        raise ConfigError(f"unknown pipeline(s) {unknown}; pipelines.yaml defines {', '.join(configs)}")
    return [name for p in chosen for name in deploy_pipeline(configs[p], work_pool)]
