"""Whether a scheduled retrain has anything to do: new data or new settings since the champion."""

from __future__ import annotations

from collections.abc import Callable

from tasks.core.config import Config
from tasks.core.results import IngestResult
from tasks.data.sources import dvc_hash
from tasks.tracking import registry


def current_data_version(cfg: Config) -> str | None:
    """The DVC hash of ``ingest.source`` now, or None when it cannot be known without fetching
    it (a hub dataset): then the retrain runs and ingest decides."""
    src = cfg.source_path()
    return dvc_hash(src) if src.exists() else None


def skip_reason(cfg: Config) -> str | None:
    """Why a retrain can be skipped (same data and settings as the champion), or None to run."""
    version = current_data_version(cfg)
    if version is None:
        return None
    champion = registry.alias_version(cfg, cfg.register.model_name, cfg.promote.alias)  # fails closed
    if champion is None:
        return None
    tags = champion.tags or {}
    if tags.get("data_version") != version or tags.get("params_hash") != cfg.params_hash():
        return None
    return (
        f"data version {version} and settings (params hash {cfg.params_hash()}) are those "
        f"champion v{champion.version} was trained on: nothing to retrain"
    )


def drift_check(cfg: Config, ingest: Callable[[Config], IngestResult]) -> tuple[str | None, dict[str, float]]:
    """(why the retrain can be skipped, the drift figures) of the data now against what the
    champion was trained on (tasks/data/drift.py). No reason (train) when there is no champion,
    the champion has no data profile (trained before profiles existed), or the data drifted.
    ``ingest`` is the ingest stage, given by the flow (support code does not import stages)."""
    import json
    import logging
    import tempfile
    from pathlib import Path

    from mlflow.artifacts import download_artifacts
    from transformers import AutoTokenizer

    from tasks.core.results import load_split
    from tasks.data import drift
    from tasks.tracking import lineage

    log = logging.getLogger(__name__)
    champion = registry.alias_version(cfg, cfg.register.model_name, cfg.promote.alias)  # fails closed
    if champion is None or not champion.run_id:
        return None, {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                registry.call(
                    cfg,
                    lambda: download_artifacts(
                        run_id=champion.run_id, artifact_path="data", dst_path=tmp, tracking_uri=cfg.tracking_uri()
                    ),
                    f"downloading the data profile of champion v{champion.version}",
                )
            )
            base = json.loads((local / lineage.PROFILE).read_text())
            tokenizer = AutoTokenizer.from_pretrained(str(local / "tokenizer"))
        except (OSError, ValueError, KeyError) as exc:
            log.info("drift check skipped: champion v%s has no data profile (%s)", champion.version, exc)
            return None, {}
        ingested = ingest(cfg)  # the data as the run would see it (the run's ingest reuses it)
        train = load_split(ingested, "train", columns=["text", "target"])
        inputs = train["text"].tolist()
        new = drift.profile(
            inputs, train["target"].tolist(), [], tokenizer, cfg.drift.max_pieces, cfg.ingest.source_prefix
        )
        figures = drift.compare(base, new, inputs, cfg.ingest.source_prefix)
    figures["rows_new"] = float(len(inputs))
    figures["rows_champion"] = float(base.get("rows", 0))
    shown = ", ".join(f"{k} {v:g}" for k, v in figures.items())
    if figures["test_overlap"] > cfg.drift.max_test_overlap:
        log.warning(
            "drift: %.1f%% of the new training inputs are in champion v%s's test split: the comparison with "
            "it will flatter the candidate (drift.max_test_overlap %s)",
            100 * figures["test_overlap"],
            champion.version,
            cfg.drift.max_test_overlap,
        )
    over = drift.drifted(figures, cfg.drift)
    if over:
        log.info("drift against champion v%s: %s (%s): retraining", champion.version, "; ".join(over), shown)
        return None, figures
    return f"no drift against champion v{champion.version} ({shown}; every figure below drift.*)", figures


def tag_drift(cfg: Config, version: str, figures: dict[str, float]) -> None:
    """The drift figures that started a retrain, on the version it registered."""
    from tasks.tracking import client as tracking

    c = tracking.client(cfg)
    name = cfg.register.model_name
    for k, v in figures.items():
        registry.call(
            cfg, lambda k=k, v=v: c.set_model_version_tag(name, version, f"drift.{k}", f"{v:g}"), "tagging drift"
        )
