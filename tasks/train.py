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

import logging
import math
import os
import time
from pathlib import Path

from tasks.core import logs, paths, signals
from tasks.core.config import Config, Train
from tasks.core.errors import ConfigError, DataError
from tasks.core.results import IngestResult, TrainResult, load_split
from tasks.modeling import models as modeling
from tasks.modeling.checkpoints import RUN_META, resume_point
from tasks.modeling.runtime import Runtime
from tasks.modeling.trainer_setup import (
    apply_peft,
    compute_scores,
    freeze,
    mfu,
    quantization_config,
    tokenize,
    trainer_class,
    training_arguments,
)
from tasks.tracking.run import RunHandle
from tasks.tracking.training_log import callbacks, log_data_profile, log_inputs, system_metrics, write_curves

logger = logging.getLogger(__name__)

KEPT = "its finished model"  # TrainResult.resumed_from of a finished training kept after a kill
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


# -- checkpoints and resume -------------------------------------------------------------------


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


# -- callbacks --------------------------------------------------------------------------------


# -- model preparation -------------------------------------------------------------------------


# -- outputs ----------------------------------------------------------------------------------


def save_final(cfg: Config, trainer, tokenizer) -> Path:
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
    monitor = system_metrics(cfg, run.run_id) if main else None
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
        callbacks=[*callbacks(run), *extra],
    )
    trainer.remove_callback(PrinterCallback)  # prints every log dict: the log file has them (TrainingBar)
    return trainer


def _close_record(cfg: Config, ingested, trainer, tokenizer, runtime: Runtime, output, run, resume_from, fingerprint):
    """Save the model, log the run's final figures, curves and data profile, and write the
    stage's result; the checkpoints then go (a re-run starts fresh)."""
    out = save_final(cfg, trainer, tokenizer)
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


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> TrainResult:
        ingested = IngestResult.load(cfg.path("data"))
        return train(cfg, ingested, owner.run(ingested.data_version))

    return stage_main("train", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
