"""What a registered model version carries: at most eight tags, so its page reads at a glance.

- from its run (``FROM_RUN``): pipeline, data version, git commit, params hash, Prefect flow run;
- ``registration_key``: what makes the registration this one (tasks/register.py);
- ``promotion.decision``: promoted, rejected or awaiting_approval, written with the alias change;
- ``promotion``: the decision's facts as one JSON object (reasons, champion before, what it was
  compared on, failed gates, intervals, approvals, rollbacks, the drift that started it).

Scores are not tags: they are the run's and the logged model's metrics, where MLflow shows them
as metrics (``metrics_of``), and the decision is also the version's description, as markdown.
Versions registered by older releases carry one tag per fact (``metric.*``, ``promotion.*``,
``drift.*``); ``facts`` and ``metrics_of`` read both layouts.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.core.config import Config
from tasks.tracking import client as tracking
from tasks.tracking import reads

FROM_RUN = ("pipeline", "data_version", "git_commit", "params_hash", "prefect_flow_run_id")
DECISION = "promotion.decision"
RECORD = "promotion"
_PREFIX = "promotion."
_LEGACY_METRIC = "metric."


def from_run(run_tags: dict[str, str]) -> dict[str, str]:
    """The run tags a version repeats (tracking.run_tags)."""
    return {k: v for k, v in run_tags.items() if k in FROM_RUN}


def facts(version) -> dict[str, str]:
    """The decision's facts of ``version`` under their ``promotion.*`` / ``drift.*`` names
    (the JSON record, over the one-tag-per-fact layout of older versions)."""
    tags = (version.tags or {}) if version is not None else {}
    out = {k: v for k, v in tags.items() if k.startswith((_PREFIX, "drift.")) and k != DECISION}
    try:
        record = json.loads(tags.get(RECORD) or "{}")
    except ValueError:
        record = {}
    if isinstance(record, dict):
        out.update({(k if k.startswith("drift.") else _PREFIX + k): str(v) for k, v in record.items()})
    if DECISION in tags:
        out[DECISION] = tags[DECISION]
    return out


def record(cfg: Config, name: str, version: str, new: dict[str, Any]) -> None:
    """Merge ``new`` (``promotion.*`` / ``drift.*`` names) into the version's record: one read,
    one write of the whole object (callers hold the model's lock)."""
    current = reads.get_version(cfg, name, str(version))
    merged = {k: v for k, v in facts(current).items() if k != DECISION}
    merged.update({k: str(v) for k, v in new.items()})
    stored = {k.removeprefix(_PREFIX): v for k, v in sorted(merged.items())}
    text = json.dumps(stored, ensure_ascii=False, sort_keys=True)
    c = tracking.client(cfg)
    reads.call(cfg, lambda: c.set_model_version_tag(name, str(version), RECORD, text), "recording the decision")


def metrics_of(cfg: Config, version) -> dict[str, float]:
    """The scores ``version`` was registered with: its run's metrics that are evaluation metrics
    (tasks/metrics), or the ``metric.*`` tags of a version an older release registered."""
    from tasks import metrics

    tags = version.tags or {}
    legacy = {k.removeprefix(_LEGACY_METRIC): float(v) for k, v in tags.items() if k.startswith(_LEGACY_METRIC)}
    if legacy or not version.run_id:
        return legacy
    c = tracking.client(cfg)
    run = reads.call(cfg, lambda: c.get_run(version.run_id), f"reading the run of version {version.version}")
    return {k: float(v) for k, v in run.data.metrics.items() if metrics.get(k) is not None}
