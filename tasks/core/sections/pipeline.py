"""A pipelines.yaml entry (:class:`PipelineSpec`): schedule, retries, timeouts, trigger, concurrency
and healing of a pipeline's deployment."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tasks.core.sections.data import Section


class Schedule(Section):
    """When a pipeline's retrain deployment runs: a cron expression in a time zone."""

    cron: str
    """a cron expression (`0 3 * * *`: every night at 03:00)"""
    timezone: str = "UTC"
    """an IANA time zone the cron is read in (UTC, Europe/Berlin)"""
    active: bool = True
    """false: the deployment exists but its schedule is paused"""

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        try:
            CronSim(v, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"schedule.cron {v!r} is not a valid cron expression ({exc})") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"schedule.timezone {v!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return v


class Retries(Section):
    """Retries of the tasks whose failures are transient (tracking server, hub, storage)."""

    count: int = Field(2, ge=0)
    """retries after the first attempt (0: none)"""
    delay_s: list[float] = Field(default_factory=lambda: [10.0, 60.0])
    """backoff, one per retry (last repeats)"""


class Timeouts(Section):
    """Wall-clock limits of the long tasks, in seconds (null: none)."""

    train_s: float | None = Field(None, gt=0)
    """the train task is stopped (checkpoint kept) after this"""
    evaluate_s: float | None = Field(None, gt=0)
    """the evaluate task is stopped after this"""


class Trigger(Section):
    """What starts a pipeline's retrain besides its cron schedule."""

    on_data: bool = True
    """`s2s data add` (a Prefect event s2s.data.added) starts a retrain"""
    poll_s: int | None = Field(None, ge=30)
    """also watch ingest.source every N s (a watch/<name> deployment)"""


class Concurrency(Section):
    """One retrain of a pipeline at a time: what happens to a run that arrives meanwhile."""

    limit: int = Field(1, ge=1)
    """retrains of this pipeline running at once"""
    collision: Literal["enqueue", "cancel_new"] = "enqueue"
    """enqueue: late runs collapse to the newest"""


class Heal(Section):
    """Self-healing of retrains whose worker died (`s2s deploy` creates the Prefect automations)."""

    rerun_crashed: bool = True
    """a crashed retrain is run again (and resumes from its checkpoint)"""
    heartbeat_s: int = Field(30, ge=30)
    """flow run heartbeats; silent for 3 of them: marked Crashed"""
    max_reruns: int = Field(2, ge=0)
    """crashed this many times within the hour: stop re-running"""


class PipelineSpec(Section):
    """One entry of pipelines.yaml. ``data`` / ``params`` / ``gates`` override params.yaml and are
    checked against its sections when the pipeline's configuration is resolved."""

    description: str = ""
    model_name: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    """overrides of the ingest section"""
    params: dict[str, Any] = Field(default_factory=dict)
    """overrides of any other section"""
    gates: dict[str, Any] | None = None
    """promote.gates"""
    schedule: Schedule | None = None
    retries: Retries = Retries()
    timeouts: Timeouts = Timeouts()
    work_pool: str = "s2s"
    tags: list[str] = Field(default_factory=list)
    trigger: Trigger = Trigger()
    concurrency: Concurrency = Concurrency()
    heal: Heal = Heal()


PIPELINE_KEYS = set(PipelineSpec.model_fields)
