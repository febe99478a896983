"""What the train stage hands to transformers: tokenized splits, the model made ready (quantized
base, frozen parts, LoRA), the Seq2SeqTrainingArguments, the Trainer class and its eval scores."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tasks import metrics
from tasks.core.config import Config
from tasks.core.errors import ConfigError
from tasks.modeling.runtime import Runtime

logger = logging.getLogger(__name__)

SCHEDULERS = {"cosine_w_restarts": "cosine_with_restarts", "constant_w_warmup": "constant_with_warmup"}
# bf16 dense peak FLOP/s by GPU name, for model FLOPs utilisation
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def tokenize(df, tokenizer, max_source: int, max_target: int):
    """A ``datasets.Dataset`` of input_ids / attention_mask / labels (labels end with EOS)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"text": df["text"].tolist(), "target": df["target"].tolist()})

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        enc = tokenizer(batch["text"], max_length=max_source, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["target"], max_length=max_target, truncation=True)["input_ids"]
        return enc

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc="tokenize")


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


def mfu(runtime: Runtime, n_params: int, tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation (6 x parameters per token) against the GPU's bf16 dense peak."""
    if runtime.device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None if peak is None else 6 * n_params * tokens_per_s / (peak * runtime.n_devices)


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
