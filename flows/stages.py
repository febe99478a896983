"""The stage functions as Prefect tasks. DVC owns artifact caching, so Prefect caches nothing."""

from prefect import task
from prefect.cache_policies import NONE

from tasks.errors import TrackingError
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote
from tasks.register import register
from tasks.train import train
from tasks.validate import validate

ingest_task = task(ingest, name="ingest", cache_policy=NONE)
validate_task = task(validate, name="validate", cache_policy=NONE)
train_task = task(train, name="train", cache_policy=NONE)
evaluate_task = task(evaluate, name="evaluate", cache_policy=NONE)


def _transient(task, task_run, state) -> bool:
    """Retry only what a retry can fix: tracking-server outages, not refusals or bad data."""
    try:
        state.result()
    except TrackingError as exc:
        return exc.transient
    except Exception:
        return False
    return False


# Registration talks to the tracking server: a transient outage is worth two more tries.
register_task = task(register, name="register", cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30],
                     retry_condition_fn=_transient)
promote_task = task(promote, name="promote", cache_policy=NONE)
