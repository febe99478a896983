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

# where the installed `flows` package lives: the checkout for an editable install, site-packages
# for an installed one (a project made by `s2s init` holds no code; S2S_ROOT points the run at it)
CODE_ROOT = Path(__file__).resolve().parent.parent
FLOWS = {  # flow name -> entrypoint, relative to CODE_ROOT
    "retrain": "flows/pipeline.py:retrain",
    "training-pipeline": "flows/pipeline.py:training_pipeline",
    "promotion": "flows/pipeline.py:promotion",
    "watch-data": "flows/pipeline.py:watch_data",  # only for pipelines with trigger.poll_s
}
DATA_EVENT = "s2s.data.added"


def data_resource(pipeline: str) -> str:
    """The Prefect resource id a pipeline's data-arrival events carry (and its trigger matches)."""
    return f"s2s.data.{pipeline}"


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


def deploy_pipeline(cfg: Config, work_pool: str | None = None) -> list[tuple[str, str, str]]:
    """Create or update the deployments of one pipeline; returns (full name, work pool, when it
    runs) for each. Applied one by one, silently: ``Flow.deploy`` would print a table per
    deployment, the command prints one for them all."""
    from prefect import Flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron, Interval

    spec = cfg.spec
    pool = work_pool or spec.work_pool
    ensure_work_pool(pool)
    env = {"S2S_ROOT": str(cfg.root), "S2S_PIPELINE": cfg.pipeline}
    if spec.heal.rerun_crashed:  # heartbeats let the server see a run whose worker died
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(spec.heal.heartbeat_s)
    job = {"working_dir": str(cfg.root), "env": env}
    deployed = []
    for flow_name, entrypoint in FLOWS.items():
        if flow_name == "watch-data" and not spec.trigger.poll_s:
            continue
        flow = Flow.from_source(source=str(CODE_ROOT), entrypoint=entrypoint)
        schedules, triggers, limit = None, None, None
        if flow_name == "retrain":
            if spec.schedule is not None:
                schedules = [Cron(spec.schedule.cron, timezone=spec.schedule.timezone, active=spec.schedule.active)]
            if spec.trigger.on_data:
                triggers = [
                    DeploymentEventTrigger(
                        name=f"data arrival: {cfg.pipeline}",
                        expect={DATA_EVENT},
                        match={"prefect.resource.id": data_resource(cfg.pipeline)},
                        parameters={"pipeline": cfg.pipeline},
                    )
                ]
            limit = ConcurrencyLimitConfig(
                limit=spec.concurrency.limit,
                collision_strategy=ConcurrencyLimitStrategy(spec.concurrency.collision.upper()),
            )
        elif flow_name == "watch-data":
            schedules = [Interval(spec.trigger.poll_s)]
        flow.to_deployment(
            name=cfg.pipeline,
            work_pool_name=pool,
            parameters={"pipeline": cfg.pipeline},
            schedules=schedules,
            triggers=triggers,
            concurrency_limit=limit,
            job_variables=job,
            tags=["s2s", cfg.pipeline, *spec.tags],
            description=(spec.description or f"{flow_name} of the {cfg.pipeline} pipeline").strip(),
        ).apply()
        deployed.append((f"{flow_name}/{cfg.pipeline}", pool, _when(cfg, flow_name)))
    if spec.heal.rerun_crashed:
        ensure_healing(cfg)
    return deployed


def _when(cfg: Config, flow_name: str) -> str:
    """When a deployment runs, as the table of `s2s deploy` says it."""
    spec = cfg.spec
    if flow_name == "watch-data":
        return f"every {spec.trigger.poll_s} s"
    if flow_name != "retrain":
        return "on demand"
    when = []
    if spec.schedule is not None:
        when.append(
            f"cron {spec.schedule.cron} {spec.schedule.timezone}" + ("" if spec.schedule.active else " (paused)")
        )
    if spec.trigger.on_data:
        when.append("on new data")
    return ", ".join(when) or "on demand"


def _automation(name: str, trigger, actions, description: str) -> None:
    """Create the automation ``name``, replacing an older one of that name (idempotent deploys)."""
    from prefect.automations import Automation

    try:
        Automation.read(name=name).delete()
    except ValueError:
        pass  # none yet
    Automation(name=name, trigger=trigger, actions=actions, description=description).create()


def rerun_automation(pipeline: str) -> str:
    """The name of the automation that runs a crashed retrain of ``pipeline`` again (the flow runs it
    starts carry its id in their idempotency key: ``automation <id>, action 0, ...``)."""
    return f"s2s: re-run crashed retrain/{pipeline}"


def ensure_healing(cfg: Config) -> None:
    """Two Prefect automations: a flow run of this project whose heartbeats stop (its worker was
    killed) is marked Crashed; a crashed retrain of this pipeline is run again, and resumes from
    its last complete checkpoint. (Prefect's documented zombie-flow pattern, for a self-hosted
    server.) The retrain flow itself stops re-running after heal.max_reruns crashes in an hour."""
    from datetime import timedelta

    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.utilities.asyncutils import run_coro_as_sync

    heal = cfg.spec.heal

    async def deployment_id():
        async with get_client() as client:
            return (await client.read_deployment_by_name(f"retrain/{cfg.pipeline}")).id

    retrain_id = run_coro_as_sync(deployment_id())
    _automation(
        f"s2s: crash silent runs of retrain/{cfg.pipeline}",
        EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{retrain_id}"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * heal.heartbeat_s),
        ),
        [
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"no heartbeat for {3 * heal.heartbeat_s} s: the worker died"
            )
        ],
        "a retrain whose heartbeats stopped is marked Crashed",
    )
    _automation(
        rerun_automation(cfg.pipeline),
        EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{retrain_id}"}),
            posture=Posture.Reactive,
            threshold=1,
        ),
        [RunDeployment(source="selected", deployment_id=retrain_id, parameters={"pipeline": cfg.pipeline})],
        "a crashed retrain runs again and resumes from its last complete checkpoint",
    )


def deploy(
    root: Path | None = None, pipelines: list[str] | None = None, work_pool: str | None = None
) -> list[tuple[str, str, str]]:
    """Validate every pipeline (all or nothing), then deploy the chosen ones (default: all):
    (full name, work pool, when it runs) per deployment."""
    configs = validate_all(root)
    chosen = pipelines or list(configs)
    unknown = [p for p in chosen if p not in configs]
    if unknown:
        from tasks.core.errors import ConfigError

        raise ConfigError(f"unknown pipeline(s) {unknown}; pipelines.yaml defines {', '.join(configs)}")
    return [name for p in chosen for name in deploy_pipeline(configs[p], work_pool)]
