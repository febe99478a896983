"""Whether a scheduled retrain has anything to do, decided on the whole identity of a model:
the data version *and* the settings that shape it (``Config.params_hash``).

The decision is a pure table (:func:`decide`), tested cell by cell:

==============================  =============================================================
facts                           decision
==============================  =============================================================
a version was already tried     skip: it names the version and how it ended (a rerun of the
on this data and settings       same data and settings registers the same model again)
no champion yet                 train
the data version is unknown     train (a hub dataset: ingest decides)
the settings changed            train, whatever the data did: names the hash and the keys
the data changed, no drift      skip, naming the figures (settings unchanged)
the data changed and drifted,   train
or drift was not measured
==============================  =============================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from tasks.core.config import Config
from tasks.data.sources import dvc_hash
from tasks.tracking import reads

logger = logging.getLogger(__name__)


def current_data_version(cfg: Config) -> str | None:
    """The DVC hash of ``ingest.source`` now, or None when it cannot be known without fetching
    it (a hub dataset): then the retrain runs and ingest decides."""
    src = cfg.source_path()
    return dvc_hash(src) if src.exists() else None


@dataclass(frozen=True)
class Facts:
    """What a retrain knows before it trains. ``tried``: the newest version registered on this
    data version and params hash and how it ended ("v3, rejected"), if any."""

    champion: str | None  # its version
    data_version: str | None  # now (None: unknown before ingest)
    champion_data: str | None
    params_hash: str
    champion_params: str | None
    changed_keys: tuple[str, ...] = ()  # "train.max_steps: 300 -> 100"
    tried: str | None = None
    drifted: bool | None = None  # None: not measured (off, no profile, or not needed)
    drift_figures: dict[str, float] = field(default_factory=dict)

    @property
    def data_changed(self) -> bool:
        return self.data_version is None or self.data_version != self.champion_data

    @property
    def settings_changed(self) -> bool:
        return self.params_hash != self.champion_params

    @property
    def needs_drift(self) -> bool:
        """Only a data change under unchanged settings is decided by drift."""
        return (
            self.tried is None
            and self.champion is not None
            and self.data_version is not None
            and self.data_changed
            and not self.settings_changed
        )


@dataclass(frozen=True)
class Verdict:
    train: bool
    reason: str


def decide(f: Facts) -> Verdict:
    """The retrain decision on the facts (the module's table), with the reason a person reads."""
    if f.tried is not None:
        return Verdict(
            False,
            f"this data and these settings were already tried ({f.tried}): data version {f.data_version}, "
            f"params hash {f.params_hash}; change either, or run `s2s run --force` to train again",
        )
    if f.champion is None:
        return Verdict(True, "no champion yet")
    if f.data_version is None:
        return Verdict(True, "the data version is known only after ingest (a hub dataset)")
    data = (
        f"data changed since champion v{f.champion} (data version {f.champion_data} -> {f.data_version})"
        if f.data_changed
        else f"data unchanged (data version {f.data_version})"
    )
    if f.settings_changed:
        keys = "; ".join(f.changed_keys) or "keys outside the logged sections"
        return Verdict(
            True,
            f"settings changed since champion v{f.champion} (params hash {f.champion_params} -> "
            f"{f.params_hash}: {keys}); {data}",
        )
    settings = f"settings unchanged (params hash {f.params_hash})"
    if not f.data_changed:  # same data and settings, yet no version records them (an untagged champion)
        return Verdict(True, f"{data}; {settings}; no version records them")
    if f.drifted is False:
        shown = ", ".join(f"{k} {v:g}" for k, v in f.drift_figures.items())
        return Verdict(
            False, f"no drift against champion v{f.champion} ({shown}; every figure below drift.*); {data}; {settings}"
        )
    if f.drifted:
        return Verdict(True, f"{data}, and it drifted; {settings}")
    return Verdict(True, f"{data}; drift not measured; {settings}")


def facts(cfg: Config) -> Facts:
    """The facts of :func:`decide` from the registry (read fail-closed) and the data on disk."""
    name = cfg.register.model_name
    version = current_data_version(cfg)
    champion = reads.alias_version(cfg, name, cfg.promote.alias)
    tags = (champion.tags or {}) if champion else {}
    return Facts(
        champion=str(champion.version) if champion else None,
        data_version=version,
        champion_data=tags.get("data_version"),
        params_hash=cfg.params_hash(),
        champion_params=tags.get("params_hash"),
        changed_keys=changed_settings(cfg, champion.run_id) if champion and champion.run_id else (),
        tried=tried_before(cfg, version, cfg.params_hash()) if version else None,
    )


def changed_settings(cfg: Config, run_id: str) -> tuple[str, ...]:
    """``key: before -> now`` for each setting that differs from the champion's training run."""
    from tasks.tracking import client as tracking

    c = tracking.client(cfg)
    run = reads.call(cfg, lambda: c.get_run(run_id), f"reading the champion's run {run_id}")
    before = dict(run.data.params or {})
    now = {k: v[:6000] for k, v in cfg.flat_params().items()}
    return tuple(
        f"{k}: {before.get(k, '(unset)')} -> {now.get(k, '(unset)')}"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    )


def tried_before(cfg: Config, data_version: str, params_hash: str) -> str | None:
    """The newest version registered on this data version and params hash, with its outcome."""
    from tasks.tracking import client as tracking

    c = tracking.client(cfg)
    name = cfg.register.model_name
    found = reads.call(
        cfg,
        lambda: c.search_model_versions(f"name='{name}'", max_results=10_000),
        f"listing versions of {name!r}",
    )
    same = [
        v
        for v in found
        if (v.tags or {}).get("data_version") == data_version and (v.tags or {}).get("params_hash") == params_hash
    ]
    if not same:
        return None
    newest = max(same, key=lambda v: int(v.version))
    holder = reads.alias_version(cfg, name, cfg.promote.alias)  # fails closed, like facts()
    decision = (newest.tags or {}).get("promotion.decision") or "no decision recorded"
    if holder is not None and str(holder.version) == str(newest.version):
        decision = f"{decision}, champion now"
    return f"v{newest.version}, {decision.replace('_', ' ')}"


def skip_reason(cfg: Config) -> str | None:
    """Why a retrain can be skipped without looking at the data itself, or None."""
    verdict = decide(facts(cfg))
    return None if verdict.train else verdict.reason


def drift_check(cfg: Config, training_inputs: Callable[[Config], pd.DataFrame]) -> tuple[bool | None, dict[str, float]]:
    """(did the data drift, the drift figures) of the data now against what the champion was
    trained on (tasks/data/drift.py). None (not measured) when there is no champion or it has no
    data profile (trained before profiles existed). ``training_inputs`` gives the training split
    as ingest would make it, in memory (support code does not import stages): a check writes
    no DVC output."""
    import json
    import tempfile
    from pathlib import Path

    from mlflow.artifacts import download_artifacts
    from transformers import AutoTokenizer

    from tasks.data import drift
    from tasks.tracking import lineage

    champion = reads.alias_version(cfg, cfg.register.model_name, cfg.promote.alias)  # fails closed
    if champion is None or not champion.run_id:
        return None, {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                reads.call(
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
            logger.info("drift not measured: champion v%s has no data profile (%s)", champion.version, exc)
            return None, {}
        train = training_inputs(cfg)
        inputs = train["text"].tolist()
        new = drift.profile(
            inputs, train["target"].tolist(), [], tokenizer, cfg.drift.max_pieces, cfg.ingest.source_prefix
        )
        figures = drift.compare(base, new, inputs, cfg.ingest.source_prefix)
    figures["rows_new"] = float(len(inputs))
    figures["rows_champion"] = float(base.get("rows", 0))
    shown = ", ".join(f"{k} {v:g}" for k, v in figures.items())
    if figures["test_overlap"] > cfg.drift.max_test_overlap:
        logger.warning(
            "drift: %.1f%% of the new training inputs are in champion v%s's test split (drift.max_test_overlap "
            "%s; its split was drawn otherwise: another seed, other ratios or split files): the champion's "
            "recorded test figures would flatter the candidate, so promotion compares both on the new test "
            "split, without the rows the champion trained on",
            100 * figures["test_overlap"],
            champion.version,
            cfg.drift.max_test_overlap,
        )
    over = drift.drifted(figures, cfg.drift)
    if over:
        logger.info("drift against champion v%s: %s (%s)", champion.version, "; ".join(over), shown)
    return bool(over), figures


def tag_drift(cfg: Config, version: str, figures: dict[str, float]) -> None:
    """The drift figures that started a retrain, in the record of the version it registered."""
    from tasks.tracking import version_tags

    version_tags.record(cfg, cfg.register.model_name, version, {f"drift.{k}": f"{v:g}" for k, v in figures.items()})
