"""Stage 3, train: fine-tune a seq2seq model with transformers' Seq2SeqTrainer.

Opens the pipeline's MLflow run (params, tags, the validation report, per-step loss, learning
rate and grad norm, per-epoch eval loss), trains on the train split with evaluation on the
validation split, and writes the final model as an ordinary HF folder at ``paths.model``.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from tasks import modeling, tracking
from tasks.config import Config
from tasks.errors import DataError
from tasks.results import IngestResult, TrainResult, load_split
from tasks.runtime import Runtime

logger = logging.getLogger(__name__)

def tokenize(df, tokenizer, max_source: int, max_target: int):
    """A ``datasets.Dataset`` of input_ids / attention_mask / labels (labels end with EOS)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"text": df["text"].tolist(), "target": df["target"].tolist()})

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        enc = tokenizer(batch["text"], max_length=max_source, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["target"], max_length=max_target, truncation=True)["input_ids"]
        return enc

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenize")


class MlflowMetrics:
    """Trainer callback: step metrics to the pipeline's MLflow run, under stable names."""

    NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm", "eval_loss": "eval_loss"}

    def __new__(cls, cfg: Config, run_id: str):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if not state.is_world_process_zero or not logs:
                    return
                metrics = {
                    MlflowMetrics.NAMES[k]: float(v)
                    for k, v in logs.items()
                    if k in MlflowMetrics.NAMES and isinstance(v, (int, float)) and math.isfinite(float(v))
                }
                if metrics:
                    tracking.log_metrics(cfg, run_id, metrics, step=state.global_step)

        return _Callback()


def training_arguments(cfg: Config, runtime: Runtime, steps_per_epoch: int, output_dir: Path):
    from transformers import Seq2SeqTrainingArguments

    t = cfg.train
    # AutoTrain's logging_steps=-1: about five logs per epoch, at least every step on tiny data.
    logging_steps = t.logging_steps if t.logging_steps > 0 else max(1, steps_per_epoch // 5)
    scheduler = {"cosine_w_restarts": "cosine_with_restarts", "constant_w_warmup": "constant_with_warmup"}
    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=max(t.batch_size, 16),
        gradient_accumulation_steps=t.gradient_accumulation,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        lr_scheduler_type=scheduler.get(t.scheduler, t.scheduler),
        optim=t.optimizer,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=logging_steps,
        eval_strategy=t.eval_strategy,
        save_strategy=t.eval_strategy if t.eval_strategy != "no" else "no",
        save_total_limit=t.save_total_limit,
        bf16=runtime.bf16,
        fp16=runtime.fp16,
        use_cpu=runtime.device == "cpu",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
        predict_with_generate=False,  # generation-based scoring is the evaluate stage's job
    )


def train(cfg: Config, ingested: IngestResult, validated: Any = None) -> TrainResult:
    """Fine-tune ``train.model`` on the train split; return where the model is and the run id."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    started = time.perf_counter()
    train_df = load_split(ingested, "train")
    valid_df = load_split(ingested, "validation")
    tok_dir = cfg.path("tokenizer")
    if not (tok_dir / "tokenizer_config.json").exists():
        raise DataError(f"{tok_dir} is missing: run the validate stage first (it prepares the tokenizer)")
    tokenizer = modeling.load_tokenizer(str(tok_dir))
    model = modeling.load_base_model(cfg, tokenizer)
    modeling.check_compatible(model, tokenizer)
    runtime = Runtime.resolve(cfg.train.mixed_precision, model.config.model_type)

    t = cfg.train
    train_ds = tokenize(train_df, tokenizer, t.max_seq_length, t.max_target_length)
    valid_ds = tokenize(valid_df, tokenizer, t.max_seq_length, t.max_target_length) if len(valid_df) else None
    eval_strategy_ok = valid_ds is not None or t.eval_strategy == "no"
    if not eval_strategy_ok:
        logger.warning("no validation rows: evaluation during training is off")

    run_id = tracking.start_run(cfg, ingested.data_version)
    c = tracking.client(cfg)
    tracking.log_validation_artifacts(cfg, run_id, cfg.path("reports") / "validation.json")
    c.set_tag(run_id, "device", f"{runtime.device}x{runtime.n_devices}/{runtime.precision}")

    ckpt_dir = cfg.path("checkpoints")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (t.batch_size * t.gradient_accumulation)))
    args = training_arguments(cfg, runtime, steps_per_epoch, ckpt_dir)
    if not eval_strategy_ok:
        args.eval_strategy = "no"
        args.save_strategy = "no"
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds if eval_strategy_ok else None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, pad_to_multiple_of=8, label_pad_token_id=-100),
        processing_class=tokenizer,
        callbacks=[MlflowMetrics(cfg, run_id)],
    )
    try:
        output = trainer.train()
    except BaseException:
        tracking.end_run(cfg, run_id, "FAILED")
        raise

    out = cfg.path("model")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    model.generation_config.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)  # the model folder appears complete or not at all
    shutil.rmtree(ckpt_dir, ignore_errors=True)

    n_tokens = sum(len(x) for x in train_ds["input_ids"]) + sum(len(x) for x in train_ds["labels"])
    epochs_done = float(output.metrics.get("epoch", t.epochs))
    metrics = {
        "train_loss_final": float(output.training_loss),
        "train_steps": float(output.global_step),
        "train_runtime_s": float(output.metrics.get("train_runtime", 0.0)),
        "train_tokens_per_s": n_tokens * epochs_done / max(output.metrics.get("train_runtime", 1e-9), 1e-9),
        "n_parameters": float(sum(p.numel() for p in model.parameters())),
    }
    if valid_ds is not None and eval_strategy_ok:
        evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        if evals:
            metrics["eval_loss_final"] = float(evals[-1])
    tracking.log_metrics(cfg, run_id, metrics, step=output.global_step)
    result = TrainResult(model_dir=str(out), run_id=run_id, data_version=ingested.data_version, base_model=cfg.train.model, metrics=metrics)
    result.save(cfg.path("reports"))
    logger.info(
        "train: %d steps in %.1fs (%.0f tokens/s), final loss %.3f, model at %s",
        output.global_step, time.perf_counter() - started, metrics["train_tokens_per_s"],
        metrics["train_loss_final"], out,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_support import stage_main

    return stage_main("train", lambda cfg: train(cfg, IngestResult.load(cfg.path("data"))), argv)


if __name__ == "__main__":
    raise SystemExit(main())
