"""What a retrain flow run asks Prefect about its siblings before it starts working.

- **Collapse.** After an outage, scheduled and triggered retrains of a pipeline pile up behind
  its concurrency limit of 1 (``concurrency.collision: enqueue``). A retrain that starts while a
  newer run of the same deployment waits, runs or has completed is redundant: the newer one sees
  the same or newer data.
  It ends Cancelled, naming the run that supersedes it, and the newest one does the work.
- **Crash streak.** A retrain re-run after its worker died (the `s2s deploy` automation) stops
  re-running after ``heal.max_reruns`` crashes within the hour: a run that crashes every time (out
  of memory, a bad node) needs a person, not a loop.

Outside a deployment (``s2s run``, a test) there are no siblings and both answer None.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _context():
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    return run if run is not None and run.deployment_id else None


def superseded() -> str | None:
    """The name of a newer run of this run's deployment that is waiting, running or done, if
    there is one: this run is late, and the newer one covers what it would do."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    me = _context()
    if me is None:
        return None
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        waiting = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
                    )
                )
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[me.deployment_id])),
        )
    mine = (me.expected_start_time or me.created, me.created)
    newer = [
        r
        for r in waiting
        if r.id != me.id
        and (r.expected_start_time or r.created) <= now + timedelta(seconds=5)  # due now, not tomorrow's
        and ((r.expected_start_time or r.created), r.created) > mine
    ]
    if not newer:
        return None
    newest = max(newer, key=lambda r: ((r.expected_start_time or r.created), r.created))
    return f"{newest.name} ({newest.id})"


def crash_streak() -> int:
    """Crashed runs of this run's deployment within the last hour."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    me = _context()
    if me is None:
        return 0
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
                start_time=FlowRunFilterStartTime(after_=datetime.now(UTC) - timedelta(hours=1)),
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[me.deployment_id])),
        )
    return len(crashed)


def close_crashed(flow_run_id: str) -> int:
    """A resumed training took over the work of flow run ``flow_run_id`` (its process died): its
    task runs still shown Running or Pending are set Crashed, and so is the flow run itself if
    nothing marked it (no heartbeat automation). We hold the project lock, so its process is
    gone. Returns the task runs closed. Best effort: the resumed run's outcome does not depend on it."""
    import logging
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.context import FlowRunContext
    from prefect.states import Crashed

    ctx = FlowRunContext.get()
    me = str(ctx.flow_run.id) if ctx and ctx.flow_run else "another run"
    if not flow_run_id or flow_run_id == me:
        return 0
    message = f"its process died; flow run {me} resumed its work from the last checkpoint"
    open_states = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
    try:
        with get_client(sync_client=True) as client:
            old = client.read_flow_run(UUID(flow_run_id))
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[old.id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=open_states))),
            )
            for task in tasks:
                client.set_task_run_state(task.id, Crashed(message=message), force=True)
            if old.state is not None and old.state.type in open_states:
                client.set_flow_run_state(old.id, Crashed(message=message), force=True)
        return len(tasks)
    except Exception as exc:  # another Prefect server, or the run is gone: say so, go on
        logging.getLogger(__name__).info("could not close crashed flow run %s: %s", flow_run_id, exc)
        return 0


def tag_current(tag: str) -> None:
    """Add ``tag`` to the flow run we are in (the runs list filters by it). Best effort."""
    import logging

    from prefect import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=sorted({*(run.tags or []), tag}))
    except Exception as exc:
        logging.getLogger(__name__).info("could not tag flow run %s %r: %s", run.id, tag, exc)
