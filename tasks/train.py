"""Stage 3, train: fine-tune a seq2seq model with transformers' Seq2SeqTrainer.

Everything AutoTrain's seq2seq trainer, the transformers example scripts and the legacy seq2seq
trainer offer is a ``train.*`` setting: LoRA (optionally on int8/int4 weights), fp16/bf16,
label smoothing, Adafactor, every legacy scheduler, length-grouped batches, frozen encoder or
embeddings, early stopping and best-model-at-end on eval loss or any metric of the registry.

Runs are resumable: checkpoints live in ``paths.checkpoints`` with a fingerprint of the settings
and data; a re-run of the same settings after a crash (even SIGKILL halfway through writing a
checkpoint) continues from the last *complete* checkpoint with the same data order and the same
MLflow run. Under ``torchrun`` only rank 0 talks to MLflow and writes outputs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from tasks import metrics
from tasks.core import logs, paths, signals
from tasks.core.config import Config, Train
from tasks.core.errors import ConfigError, DataError
from tasks.core.results import IngestResult, TrainResult, load_split
from tasks.data import drift
from tasks.modeling import models as modeling
from tasks.modeling.runtime import Runtime
from tasks.tracking import lineage
from tasks.tracking.run import RunHandle, log_validation

logger = logging.getLogger(__name__)

KEPT = "its finished model"  # TrainResult.resumed_from of a finished training kept after a kill
RUN_META = "s2s_run.json"  # beside the checkpoints: which settings + data + MLflow run they belong to
# what a checkpoint needs before it can be resumed from; trainer_state.json is written last
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
SCHEDULERS = {"cosine_w_restarts": "cosine_with_restarts", "constant_w_warmup": "constant_with_warmup"}
# bf16 dense peak FLOP/s by GPU name, for model FLOPs utilisation
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
# A model trained from random weights needs a far higher rate than fine-tuning's 5e-5 (AutoTrain's
# and train.lr's default): warned at or below SLOW_SCRATCH_LR, pointed at SCRATCH_LR, the rate the
# embedded default learns at (params.yaml).
SLOW_SCRATCH_LR = 1e-4
SCRATCH_LR = 2e-3


def learning_rate_warning(t: Train) -> str | None:
    """What to say before training a model from random weights (``scratch``, ``rnn``) at a
    fine-tuning learning rate; None when the rate is not that low or the model is pretrained."""
    if t.model not in modeling.LOCAL_KINDS or t.lr > SLOW_SCRATCH_LR:
        return None
    return (
        f"train.lr={t.lr:g} is a fine-tuning rate, but train.model={t.model} starts from random weights: "
        f"it will likely learn nothing (blank or repeated outputs); try train.lr={SCRATCH_LR:g} "
        f"(--set train.lr={SCRATCH_LR:g})"
    )


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def tokenize(df, tokenizer, max_source: int, max_target: int):
    """A ``datasets.Dataset`` of input_ids / attention_mask / labels (labels end with EOS)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"text": df["text"].tolist(), "target": df["target"].tolist()})

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        enc = tokenizer(batch["text"], max_length=max_source, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["target"], max_length=max_target, truncation=True)["input_ids"]
        return enc

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenize")


# -- checkpoints and resume -------------------------------------------------------------------


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


def fingerprint_of(cfg: Config, ingested: IngestResult) -> str:
    """The settings and the data a training is for: what its checkpoints and its result carry."""
    return f"{cfg.params_hash()}:{ingested.data_version}"


def finished_unrecorded(cfg: Config, ingested: IngestResult) -> TrainResult | None:
    """A training that finished for these very settings and data, whose pipeline was stopped
    (kill -9, power loss) before it recorded the stage: kept, not redone. None when there is none,
    its model is not all there, or its MLflow run finished (a pipeline that completed: whether to
    train again is then the stage cache's and the retrain rules' call)."""
    from tasks.tracking import client as tracking
    from tasks.tracking.run import FLOW_RUN

    reports = cfg.path("reports")
    if not (reports / TrainResult.FILE).is_file():
        return None
    try:
        result = TrainResult.load(reports)
    except DataError:
        return None
    model = cfg.resolve(result.model_dir)
    if result.fingerprint != fingerprint_of(cfg, ingested) or not result.run_id:
        return None
    if not (model / "config.json").is_file() or not any(model.glob("*.safetensors")):
        return None
    if not tracking.run_exists(cfg, result.run_id):
        return None
    run = tracking.client(cfg).get_run(result.run_id)
    if run.info.status == "FINISHED":
        return None
    result.resumed_from = KEPT
    result.resumed_flow_run = (run.data.tags or {}).get(FLOW_RUN, "")
    return result


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


# -- callbacks --------------------------------------------------------------------------------


def callbacks(cfg: Config, run: RunHandle | None):
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

    def on_log(self, args, state, control, logs=None, **kwargs):
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

    def on_train_begin(self, args, state, control, **kwargs):
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

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.t0
        self.bar.update(state.global_step - self.bar.n)
        if elapsed > 0:
            self.postfix["tok/s"] = f"{(state.num_input_tokens_seen - self.seen0) / elapsed:,.0f}"
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            logger.info("step %d: %s", state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})
            if "loss" in logs:
                self.postfix["loss"] = f"{logs['loss']:.3f}"

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class _StopOnSignal:
    """SIGTERM / Ctrl-C: save a checkpoint at the end of this step and stop (signals.graceful)."""

    def on_step_end(self, args, state, control, **kwargs):
        if signals.stop_requested():
            control.should_save = True
            control.should_training_stop = True
            # at the end of train() transformers deletes the newest checkpoint when it is not
            # the best and save_total_limit is 1: that would be the one saved for the stop
            args.save_total_limit = None
        return control


def compute_scores(cfg: Config, tokenizer):
    """compute_metrics for generation-based evaluation during training (best model, early stop):
    the registry's family of ``train.metric_for_best_model``."""
    from tasks.metrics import score
    from tasks.modeling.generation import decode

    def compute(pred) -> dict[str, float]:
        preds = decode(tokenizer, pred.predictions)
        refs = decode(tokenizer, pred.label_ids)
        means, _ = score(preds, refs, [metrics.family_of(cfg.train.metric_for_best_model)])
        return {k: round(v, 6) for k, v in means.items()}

    return compute


# -- model preparation -------------------------------------------------------------------------


def quantization_config(cfg: Config, runtime: Runtime):
    if not cfg.train.quantization:
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("train.quantization needs bitsandbytes: pip install 's2s-pipeline[gpu]' on the CUDA machine")
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.train.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if runtime.bf16 else torch.float16,
    )


def freeze(model, cfg: Config) -> None:
    """The legacy trainer's freeze_embeds / freeze_encoder."""
    if cfg.train.freeze_embeds:
        for module in model.modules():
            if module.__class__.__name__.endswith(("Embedding", "PositionalEmbedding", "ScaledWordEmbedding")):
                for p in module.parameters():
                    p.requires_grad = False
    if cfg.train.freeze_encoder:
        encoder = model.get_encoder()
        for p in encoder.parameters():
            p.requires_grad = False


def apply_peft(model, cfg: Config):
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    t = cfg.train
    if t.quantization:
        model = prepare_model_for_kbit_training(model)
    lora = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=t.target_modules,
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "LoRA r=%d alpha=%d on %s: %d of %d parameters trainable (%.2f%%)",
        t.lora_r,
        t.lora_alpha,
        t.target_modules,
        trainable,
        total,
        100 * trainable / total,
    )
    return model


def training_arguments(cfg: Config, runtime: Runtime, steps_per_epoch: int, output_dir: Path, has_eval: bool):
    from transformers import Seq2SeqTrainingArguments

    t = cfg.train
    evaluating = has_eval and t.eval_strategy != "no"
    best = metrics.get(t.metric_for_best_model)
    generating = evaluating and best is not None
    if evaluating:
        save_strategy, save_steps = t.eval_strategy, t.eval_steps
    else:
        save_strategy, save_steps = ("steps", t.save_steps) if t.save_steps else ("no", None)
    # AutoTrain's logging_steps=-1: about five logs per epoch, at least every step on tiny data.
    logging_steps = t.logging_steps if t.logging_steps > 0 else max(1, steps_per_epoch // 5)
    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=max(t.batch_size, 16),
        gradient_accumulation_steps=t.gradient_accumulation,
        auto_find_batch_size=t.auto_find_batch_size,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        lr_scheduler_type=SCHEDULERS.get(t.scheduler, t.scheduler),
        optim=t.optimizer,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        label_smoothing_factor=t.label_smoothing,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=logging_steps,
        eval_strategy=t.eval_strategy if evaluating else "no",
        eval_steps=t.eval_steps if evaluating else None,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=evaluating and t.load_best_model_at_end,
        metric_for_best_model=f"eval_{t.metric_for_best_model}" if evaluating else None,
        greater_is_better=bool(best.higher_is_better) if generating else (False if evaluating else None),
        predict_with_generate=generating,
        generation_max_length=t.generation_max_length if generating else None,
        generation_num_beams=t.generation_num_beams if generating else None,
        bf16=runtime.bf16,
        fp16=runtime.fp16,
        use_cpu=runtime.device == "cpu",
        ddp_backend="gloo" if runtime.device == "cpu" and "WORLD_SIZE" in os.environ else None,
        train_sampling_strategy="group_by_length" if t.length_grouping > 1 else "random",
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,  # our TrainingBar instead, without the per-step dicts on the console
        dataloader_num_workers=0,
        save_only_model=False,
        gradient_checkpointing=t.gradient_checkpointing,
        # non-reentrant: gradients reach LoRA weights even when the embeddings are frozen
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
    )


# -- outputs ----------------------------------------------------------------------------------


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


def save_final(cfg: Config, trainer, tokenizer, runtime: Runtime) -> Path:
    """Write the final model (LoRA merged into its base) to ``paths.model`` atomically, and the
    LoRA adapter itself to ``paths.adapter``."""
    out = cfg.path("model")
    tmp = paths.temp_sibling(out)
    model = trainer.model
    if cfg.train.peft:
        adapter = cfg.path("adapter")
        adapter_tmp = paths.temp_sibling(adapter)
        model.save_pretrained(str(adapter_tmp))
        tokenizer.save_pretrained(str(adapter_tmp))
        paths.replace_dir(adapter_tmp, adapter)
        if cfg.train.quantization:  # merge into a full-precision copy of the base, not into 4-bit weights
            from peft import PeftModel

            base = modeling.load_base_model(cfg, tokenizer, write=False)
            model = PeftModel.from_pretrained(base, str(adapter))
        model = model.merge_and_unload()
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    return paths.replace_dir(tmp, out)  # the model folder appears complete or not at all


def mfu(runtime: Runtime, n_params: int, tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation (6 x parameters per token) against the GPU's bf16 dense peak."""
    if runtime.device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None if peak is None else 6 * n_params * tokens_per_s / (peak * runtime.n_devices)


# -- the stage --------------------------------------------------------------------------------


def train(cfg: Config, ingested: IngestResult, run: RunHandle | None = None) -> TrainResult:
    """Fine-tune ``train.model`` on the train split; return where the model is and the run id.

    ``run`` is the execution's MLflow run (its owner ends it); without one (a test, a library
    call), the run is this call's own and ends with it."""
    if run is None:
        from tasks.tracking.run import owned

        with owned(cfg) as owner:
            return train(cfg, ingested, owner.run(ingested.data_version))
    logs.adopt_libraries()  # transformers, imported by the stage, logs through the project's handlers
    started = time.perf_counter()
    main = is_main_process()
    tokenizer, train_ds, valid_ds = _datasets(cfg, ingested)
    runtime = Runtime.resolve(cfg.train.mixed_precision, cfg.train.quantization)
    fingerprint = fingerprint_of(cfg, ingested)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    t = cfg.train
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (t.batch_size * t.gradient_accumulation * world)))
    args = training_arguments(cfg, runtime, steps_per_epoch, cfg.path("checkpoints"), has_eval=valid_ds is not None)
    with args.main_process_first(desc="checkpoints"):  # rank 0 cleans up first; then every rank reads
        resume_from, run_id = resume_point(cfg, fingerprint, clean=main)
    with args.main_process_first(desc="base model"):  # rank 0 writes it, the others then read it
        model = _model(cfg, tokenizer, runtime, main)
    if resume_from is not None:
        _announce_resume(cfg, resume_from)
    if main:
        _open_record(cfg, ingested, run, runtime, world, (resume_from, run_id), fingerprint)
    trainer = _trainer(cfg, model, args, tokenizer, (train_ds, valid_ds), runtime, run if main else None)
    monitor = _system_metrics(cfg, run.run_id) if main else None
    try:  # checkpoints stay on every way out but success: the next run resumes from them
        with signals.graceful():  # SIGTERM / Ctrl-C: checkpoint, stop, then raise Interrupted
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if monitor is not None:
            monitor.finish()
    if not main:  # other ranks are done: rank 0 writes the outputs
        return TrainResult(
            model_dir=cfg.relative(cfg.path("model")),
            run_id="",
            data_version=ingested.data_version,
            base_model=t.model,
            metrics={},
        )
    result = _close_record(cfg, ingested, trainer, tokenizer, runtime, output, run, resume_from, fingerprint)
    logger.info(
        "train: %d steps in %.1fs (%.0f tokens/s), final loss %.3f, model at %s",
        output.global_step,
        time.perf_counter() - started,
        result.metrics["train_tokens_per_s"],
        result.metrics["train_loss_final"],
        result.model_dir,
    )
    return result


def _datasets(cfg: Config, ingested: IngestResult):
    """(tokenizer, tokenized train split, tokenized validation split or None)."""
    t = cfg.train
    slow = learning_rate_warning(t)
    if slow and main:
        logger.warning(slow)
    train_df = load_split(ingested, "train", columns=["text", "target"])
    if t.max_train_samples:
        train_df = train_df.iloc[: t.max_train_samples]
    valid_df = load_split(ingested, "validation", columns=["text", "target"])
    tok_dir = cfg.path("tokenizer")
    if not (tok_dir / "tokenizer_config.json").exists():
        raise DataError(f"{tok_dir} is missing: run the validate stage first (it prepares the tokenizer)")
    tokenizer = modeling.load_tokenizer(str(tok_dir))
    train_ds = tokenize(train_df, tokenizer, t.max_seq_length, t.max_target_length)
    valid_ds = tokenize(valid_df, tokenizer, t.max_seq_length, t.max_target_length) if len(valid_df) else None
    if valid_ds is None and t.eval_strategy != "no":
        logger.warning("no validation rows: evaluation, early stopping and best-model selection are off")
    return tokenizer, train_ds, valid_ds


def _model(cfg: Config, tokenizer, runtime: Runtime, main: bool):
    """The base model, checked against the runtime and the tokenizer, frozen and wrapped as set."""
    quant = quantization_config(cfg, runtime)
    model = modeling.load_base_model(cfg, tokenizer, write=main, **({"quantization_config": quant} if quant else {}))
    runtime.check_model(model.config.model_type)
    modeling.check_compatible(model, tokenizer)
    if cfg.train.gradient_checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"train.gradient_checkpointing: the {model.config.model_type} model cannot recompute its "
            "activations; set it false (AutoTrain: disable_gradient_checkpointing: true)"
        )
    freeze(model, cfg)
    return apply_peft(model, cfg) if cfg.train.peft else model


def _announce_resume(cfg: Config, resume_from: Path) -> None:
    logs.progress("train: resuming %s from %s", cfg.pipeline, resume_from)
    logs.explain_once(
        "transformers.trainer",
        "There were missing keys in the checkpoint model loaded",
        "resuming: the tied embedding weights are not stored twice in a checkpoint; they are restored "
        "from the weight they are tied to (transformers reports them as 'missing keys')",
    )


def _open_record(cfg: Config, ingested, run: RunHandle, runtime: Runtime, world: int, resume, fingerprint: str):
    """The run's inputs (or the resumed run adopted), its device, and which run the checkpoints
    about to be written belong to."""
    resume_from, run_id = resume
    if not (run_id and resume_from and run.adopt(run_id, {"resumed_from": resume_from.name})):
        log_inputs(cfg, ingested, run)
    run.set_tags({"device": f"{runtime.device}x{runtime.n_devices * world}/{runtime.precision}"})
    ckpt_dir = cfg.path("checkpoints")
    paths.mark(ckpt_dir)
    paths.atomic_write_json(ckpt_dir / RUN_META, {"fingerprint": fingerprint, "run_id": run.run_id})


def _trainer(cfg: Config, model, args, tokenizer, splits, runtime: Runtime, run: RunHandle | None):
    """The Seq2SeqTrainer with the project's callbacks (``run`` None on ranks other than 0)."""
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, PrinterCallback

    t = cfg.train
    train_ds, valid_ds = splits
    extra = []
    if t.tensorboard and run is not None:  # AutoTrain's `log: tensorboard`: event files too; MLflow stays the record
        from tensorboardX import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        extra.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(cfg.path("reports") / "tensorboard"))))
    if valid_ds is not None and t.eval_strategy != "no" and t.early_stopping_patience > 0:
        extra.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    trainer = trainer_class(t.length_grouping)(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds if args.eval_strategy != "no" else None,
        # multiples of 8 feed tensor cores; on a CPU they are only extra padding
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=8 if runtime.device == "cuda" else None
        ),
        processing_class=tokenizer,
        compute_metrics=compute_scores(cfg, tokenizer) if args.predict_with_generate else None,
        callbacks=[*callbacks(cfg, run), *extra],
    )
    trainer.remove_callback(PrinterCallback)  # prints every log dict: the log file has them (TrainingBar)
    return trainer


def _close_record(cfg: Config, ingested, trainer, tokenizer, runtime: Runtime, output, run, resume_from, fingerprint):
    """Save the model, log the run's final figures, curves and data profile, and write the
    stage's result; the checkpoints then go (a re-run starts fresh)."""
    out = save_final(cfg, trainer, tokenizer, runtime)
    runtime_s = float(output.metrics.get("train_runtime", 0.0)) or 1e-9
    tokens = float(trainer.state.num_input_tokens_seen or 0)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    figures = {
        "train_loss_final": float(output.training_loss),
        "train_steps": float(output.global_step),
        "train_runtime_s": runtime_s,
        "train_tokens_per_s": tokens / runtime_s,
        "n_parameters": float(n_params),
    }
    if (u := mfu(runtime, n_params, tokens / runtime_s)) is not None:
        figures["train_mfu"] = u
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if evals:
        figures["eval_loss_final"] = float(evals[-1]["eval_loss"])
    if trainer.state.best_model_checkpoint:
        figures["best_step"] = float(trainer.state.best_model_checkpoint.rsplit("-", 1)[-1])
    run.log_metrics(figures, step=output.global_step)
    write_curves(cfg, trainer.state.log_history, run)
    log_data_profile(cfg, ingested, tokenizer, run)  # what a later drift check compares with
    run.flush()  # every buffered step metric is in before training counts as done
    result = TrainResult(
        model_dir=cfg.relative(out),
        run_id=run.run_id,
        data_version=ingested.data_version,
        base_model=cfg.train.model,
        metrics=figures,
        resumed_from=resume_from.name if resume_from is not None else "",
        resumed_flow_run=(run.previous_flow_run or "") if resume_from is not None else "",
        fingerprint=fingerprint,
    )
    result.save(cfg.path("reports"))
    paths.remove_owned(cfg.path("checkpoints"))  # finished and recorded: a re-run starts fresh
    return result


def trainer_class(window: int):
    """Seq2SeqTrainer whose length-grouped batches come from windows of ``window`` batches.

    transformers sorts windows of 50 batches by length: the least padding, but on data whose
    length follows its content (here, the kind of report) batches become uniform and the model
    learns measurably worse. Two batches per window keep batches mixed (eval loss within
    seed-to-seed noise of random batches, see bench/train.py) and still cut the padding by a
    third. Same RNG use as transformers' sampler, so resume replays the same order.
    """
    from transformers import Seq2SeqTrainer
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class WindowedLengthSampler(LengthGroupedSampler):
        def __iter__(self):
            return iter(
                get_length_grouped_indices(
                    self.lengths, self.batch_size, mega_batch_mult=window, generator=self.generator
                )
            )

    class Trainer(Seq2SeqTrainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                sampler.__class__ = WindowedLengthSampler
            return sampler

    return Trainer


def log_inputs(cfg: Config, ingested: IngestResult, run: RunHandle) -> None:
    """What a fresh run records before training: the validation report, the split sizes, and
    the splits as MLflow datasets whose digest is the data version (tasks/tracking/lineage.py)."""
    log_validation(cfg, run)
    run.log_metrics({f"data_rows_{k}": v for k, v in ingested.rows.items()})
    run.log_inputs(lineage.dataset_inputs(cfg, ingested))


def _system_metrics(cfg: Config, run_id: str):
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


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> TrainResult:
        ingested = IngestResult.load(cfg.path("data"))
        return train(cfg, ingested, owner.run(ingested.data_version))

    return stage_main("train", run, argv)


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


if __name__ == "__main__":
    raise SystemExit(main())
