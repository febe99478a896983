"""What a training records: step metrics to MLflow (buffered through outages), the progress bar,
a clean stop on a signal, the loss curves, the inputs, system metrics and the data's drift profile."""

from __future__ import annotations

import csv
import logging
import math
import os
import time

from tasks import metrics
from tasks.core import paths, signals
from tasks.core.config import Config
from tasks.core.results import IngestResult, load_split
from tasks.data import drift
from tasks.tracking import lineage
from tasks.tracking.run import RunHandle, log_validation

logger = logging.getLogger(__name__)


def callbacks(run: RunHandle | None):
    """MLflow step metrics (rank 0, buffered through tracking outages), tokens/s on the progress
    bar, and a clean stop (checkpoint, then return) when the process is asked to stop."""
    from transformers import TrainerCallback

    names = {
        "loss": "train_loss",
        "learning_rate": "learning_rate",
        "grad_norm": "grad_norm",
        "eval_loss": "eval_loss",
        **{f"eval_{m}": f"eval_{m}" for m in metrics.metrics()},
    }
    # transformers' callback base class is imported here, not at module import (stage start-up)
    mixin = {"__module__": __name__}
    step_metrics = type("MlflowMetrics", (_MlflowMetrics, TrainerCallback), mixin)(run, names)
    bar = type("TrainingBar", (_TrainingBar, TrainerCallback), mixin)()
    stop = type("StopOnSignal", (_StopOnSignal, TrainerCallback), mixin)()
    return step_metrics, bar, stop


class _MlflowMetrics:
    """Step metrics to the run (rank 0; buffered through tracking outages)."""

    def __init__(self, run: RunHandle | None, names: dict[str, str]):
        self.run, self.names = run, names

    def on_log(self, _args, state, _control, logs=None, **kwargs):
        if self.run is None or not state.is_world_process_zero or not logs:
            return
        figures = {
            self.names[k]: float(v)
            for k, v in logs.items()
            if k in self.names and isinstance(v, (int, float)) and math.isfinite(float(v))
        }
        if "loss" in logs and state.num_input_tokens_seen:
            figures["tokens_seen"] = float(state.num_input_tokens_seen)
        if figures:
            self.run.log_metrics(figures, step=state.global_step, buffered=True)


class _TrainingBar:
    """One live bar (on a terminal): steps, ETA, input tokens (padding excluded) per second and
    the latest loss. The per-step log dicts transformers prints go to the log file instead."""

    bar = None

    def __init__(self):
        self.postfix: dict = {}

    def on_train_begin(self, _args, state, _control, **kwargs):
        from tqdm.auto import tqdm

        self.t0, self.seen0 = time.perf_counter(), state.num_input_tokens_seen
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="train",
                unit="step",
                disable=None,
                dynamic_ncols=True,
                leave=False,
            )

    def on_step_end(self, _args, state, _control, **kwargs):
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.t0
        self.bar.update(state.global_step - self.bar.n)
        if elapsed > 0:
            self.postfix["tok/s"] = f"{(state.num_input_tokens_seen - self.seen0) / elapsed:,.0f}"
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(self, _args, state, _control, logs=None, **kwargs):
        if logs:
            logger.info("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})
            if "loss" in logs:
                self.postfix["loss"] = f"{logs['loss']:.3f}"

    def on_train_end(self, _args, _state, _control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class _StopOnSignal:
    """SIGTERM / Ctrl-C: save a checkpoint at the end of this step and stop (signals.graceful)."""

    def on_step_end(self, args, _state, control, **kwargs):
        if signals.stop_requested():
            control.should_save = True
            control.should_training_stop = True
            # at the end of train() transformers deletes the newest checkpoint when it is not
            # the best and save_total_limit is 1: that would be the one saved for the stop
            args.save_total_limit = None
        return control


def write_curves(cfg: Config, history: list[dict], run: RunHandle | None) -> None:
    """Train/eval curves as CSV (for ``dvc plots``) and a PNG (for the MLflow run)."""
    plots = cfg.path("reports") / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    train_rows = [h for h in history if "loss" in h and "step" in h]
    eval_rows = [h for h in history if "eval_loss" in h and "step" in h]
    extra = [k for k in (f"eval_{m}" for m in metrics.metrics()) if any(k in h for h in eval_rows)]
    paths.atomic_write_text(
        plots / "train.csv",
        _csv(
            [["step", "loss", "learning_rate", "grad_norm"]]
            + [[h["step"], h["loss"], h.get("learning_rate", ""), h.get("grad_norm", "")] for h in train_rows]
        ),
    )
    paths.atomic_write_text(
        plots / "eval.csv",
        _csv(
            [["step", "eval_loss", *extra]]
            + [[h["step"], h["eval_loss"], *(h.get(k, "") for k in extra)] for h in eval_rows]
        ),
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in train_rows], [h["loss"] for h in train_rows], label="train loss")
    if eval_rows:
        ax.plot([h["step"] for h in eval_rows], [h["eval_loss"] for h in eval_rows], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(f"{cfg.pipeline}: {cfg.train.model}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = paths.temp_sibling(plots / "loss.png")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, plots / "loss.png")
    if run is not None:
        run.log_artifacts(plots, artifact_path="plots")


def _csv(rows: list[list]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def log_inputs(cfg: Config, ingested: IngestResult, run: RunHandle) -> None:
    """What a fresh run records before training: the validation report, the split sizes, and
    the splits as MLflow datasets whose digest is the data version (tasks/tracking/lineage.py)."""
    log_validation(cfg, run)
    run.log_metrics({f"data_rows_{k}": v for k, v in ingested.rows.items()})
    run.log_inputs(lineage.dataset_inputs(cfg, ingested))


def system_metrics(cfg: Config, run_id: str):
    """CPU, memory, disk, network (and GPU) use sampled into the run as system/* metrics."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # 2 s: MLflow drops the sample in progress at shutdown, so short runs need short intervals
        monitor = SystemMetricsMonitor(run_id, sampling_interval=2, tracking_uri=cfg.tracking_uri())
        monitor.start()
        return monitor
    except Exception as exc:  # monitoring must never stop a training run
        logger.warning("system metrics are off: %s", exc)
        return None


def log_data_profile(cfg: Config, ingested: IngestResult, tokenizer, run) -> None:
    """The training data's drift profile (tasks/data/drift.py) and the tokenizer it was measured
    with, as run artifacts ``data/``: a later retrain compares new data with them."""
    import io
    import json
    import tempfile
    from pathlib import Path

    import numpy as np

    from tasks.data import rowkey

    train = load_split(ingested, "train", columns=["text", "target"])
    test = load_split(ingested, "test", columns=["text"]) if ingested.rows.get("test") else None
    profile = drift.profile(
        train["text"].tolist(),
        train["target"].tolist(),
        test["text"].tolist() if test is not None else [],
        tokenizer,
        cfg.drift.max_pieces,
        cfg.ingest.source_prefix,
    )
    path = cfg.path("reports") / lineage.PROFILE
    paths.atomic_write_text(path, json.dumps(profile))
    run.log_artifact(path, artifact_path="data")
    # the inputs it trained on, so a later candidate is compared with it only on rows it never saw
    seen = np.unique(rowkey.hash64(t.removeprefix(cfg.ingest.source_prefix) for t in train["text"].tolist()))
    hashes = cfg.path("reports") / lineage.TRAIN_INPUTS
    buffer = io.BytesIO()
    np.save(buffer, seen, allow_pickle=False)
    paths.atomic_write_bytes(hashes, buffer.getvalue())
    run.log_artifact(hashes, artifact_path="data")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(str(Path(tmp) / "tokenizer"))
        run.log_artifacts(Path(tmp) / "tokenizer", artifact_path="data/tokenizer")
