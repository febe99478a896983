"""The champion now, as files: its registered model downloaded, with its source prefix and the
input hashes of the rows it trained on, so the evaluate stage can score it on the candidate's rows.
A registry that does not answer is a transient error: a candidate is never judged without its rival."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from tasks.core.config import Config
from tasks.tracking import lineage, reads

logger = logging.getLogger(__name__)


def fetch_version(cfg: Config, version, tmp: Path) -> tuple[str, str]:
    """(model folder, source prefix) of a registered version, downloaded into ``tmp``. The store
    not answering is a transient error; a version that is not this pipeline's format raises
    ValueError (its own message)."""
    from mlflow.artifacts import download_artifacts

    local = Path(
        reads.call(
            cfg,
            lambda: download_artifacts(artifact_uri=version.source, dst_path=str(tmp), tracking_uri=cfg.tracking_uri()),
            f"downloading {version.name} v{version.version}",
        )
    )
    try:
        import yaml

        # MLflow names copied artifacts after their source folders, so read where they went
        files = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]["artifacts"]
        model_dir = local / files["hf_model"]["path"]
        settings = json.loads((local / files["settings"]["path"]).read_text())
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{version.name} v{version.version} is not a model of this pipeline's format ({exc})"
        ) from None
    return str(model_dir), settings.get("source_prefix", cfg.ingest.source_prefix)


def champion_model(cfg: Config, tmp: Path) -> tuple[str, str, str, str | None] | None:
    """(version, model folder, its source prefix, its training run id) of the current champion,
    downloaded; None only when the registry says there is no champion. A registry or artifact
    store that does not answer is a transient error (fail closed): the candidate is never judged
    without its rival."""
    version = reads.alias_version(cfg, cfg.register.model_name, cfg.promote.alias)
    if version is None:
        return None
    try:
        folder, prefix = fetch_version(cfg, version, tmp)
    except ValueError as exc:
        logger.warning("%s; promotion compares with its recorded metrics", exc)
        return None
    return str(version.version), folder, prefix, version.run_id


def champion_trained_on(cfg: Config, run_id: str | None, tmp: Path) -> np.ndarray | None:
    """The input hashes of the rows the champion trained on (tasks/data/rowkey.py), from its
    training run; None when that run did not record them (trained before they were kept)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        local = reads.call(
            cfg,
            lambda: download_artifacts(
                run_id=run_id,
                artifact_path=f"data/{lineage.TRAIN_INPUTS}",
                dst_path=str(tmp),
                tracking_uri=cfg.tracking_uri(),
            ),
            "downloading the champion's training-input hashes",
        )
        return np.load(local, allow_pickle=False)
    except (OSError, ValueError, MlflowException) as exc:  # absent: an older champion
        logger.info("the champion's training inputs are not recorded (%s): it is scored on every test row", exc)
        return None
