"""Training checkpoints: which are complete (a SIGKILL can stop one halfway through its writing),
and which one a re-run of the same settings and data resumes from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tasks.core import paths
from tasks.core.config import Config

logger = logging.getLogger(__name__)

RUN_META = "s2s_run.json"  # beside the checkpoints: which settings + data + MLflow run they belong to
# what a checkpoint needs before it can be resumed from; trainer_state.json is written last
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def complete(checkpoint: Path) -> bool:
    """A checkpoint is complete when its trainer state (written last) parses and names its step,
    and the weights, optimizer and scheduler states are all there."""
    if not all((checkpoint / f).is_file() for f in CHECKPOINT_FILES):
        return False
    if not any(checkpoint.glob("*.safetensors")):
        return False
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return f"checkpoint-{state.get('global_step')}" == checkpoint.name


def last_complete_checkpoint(folder: Path, clean: bool = True) -> Path | None:
    """The newest complete checkpoint; incomplete ones (a crash mid-write) are removed (when
    ``clean``: by the main process) so that neither we nor transformers' checkpoint rotation
    ever pick them up."""
    found = []
    for ckpt in folder.glob("checkpoint-*"):
        if not ckpt.name.split("-")[-1].isdigit():
            continue
        if complete(ckpt):
            found.append(ckpt)
        elif clean:
            logger.warning("removing incomplete checkpoint %s (interrupted while it was written)", ckpt)
            paths.remove_inside(folder, ckpt)
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def resume_point(cfg: Config, fingerprint: str, clean: bool = True) -> tuple[Path | None, str | None]:
    """(checkpoint to resume from, MLflow run id to continue) or (None, None) for a fresh start.

    Every rank of a distributed run asks, so all of them load the same checkpoint; only the
    main one (``clean``) removes what cannot be resumed, before the others look."""
    folder = cfg.path("checkpoints")
    meta = folder / RUN_META
    if cfg.train.resume and meta.is_file():
        try:
            info = json.loads(meta.read_text())
        except ValueError:
            info = {}
        if info.get("fingerprint") == fingerprint:
            ckpt = last_complete_checkpoint(folder, clean)
            if ckpt is not None:
                return ckpt, info.get("run_id")
        elif clean:
            logger.info("checkpoints in %s belong to other settings or data: starting fresh", folder)
    if clean:
        paths.remove_owned(folder)
    return None, None
