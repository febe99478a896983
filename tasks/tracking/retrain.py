"""Whether a scheduled retrain has anything to do: new data or new settings since the champion."""

from __future__ import annotations

from tasks.core.config import Config
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
