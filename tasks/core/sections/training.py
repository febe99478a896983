"""The params.yaml sections of training: ``train`` with its ``scratch`` and ``rnn`` models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.errors import suggest
from tasks.core.sections.data import Section


class Scratch(Section):
    """Architecture of the locally initialised T5 used when ``train.model`` is ``scratch``."""

    d_model: int = 128
    d_ff: int = 256
    d_kv: int = 32
    num_heads: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 2
    dropout_rate: float = 0.0
    vocab_size: int = Field(1000, ge=64)
    tokenizer_chars: int = Field(450_000, gt=0)  # train text the tokenizer is fitted on (seeded sample above)


class Rnn(Section):
    """Architecture of the recurrent encoder-decoder used when ``train.model`` is ``rnn``."""

    cell: Literal["gru", "lstm"] = "gru"
    embedding_size: int = Field(128, gt=0)
    hidden_size: int = Field(256, gt=0)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bidirectional: bool = True


SCHEDULERS = ("linear", "cosine", "cosine_w_restarts", "polynomial", "constant", "constant_w_warmup")


class Train(Section):
    """Fine-tuning settings. AutoTrain's Seq2SeqParams keep their names and defaults; the rest
    follow transformers' example scripts and the legacy seq2seq trainer."""

    # what to train
    model: str = "scratch"  # "scratch" (T5), "rnn" (GRU/LSTM), a hub id or a local folder
    scratch: Scratch = Scratch()
    rnn: Rnn = Rnn()
    trust_remote_code: bool = False
    # AutoTrain Seq2SeqParams
    lr: float = Field(5e-5, gt=0)
    epochs: float = Field(3, gt=0)
    batch_size: int = Field(2, gt=0)
    max_seq_length: int = Field(128, gt=0)
    max_target_length: int = Field(128, gt=0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    gradient_accumulation: int = Field(1, gt=0)
    optimizer: str = "adamw_torch"
    scheduler: Literal[SCHEDULERS] = "linear"  # type: ignore[valid-type]
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    seed: int = Field(42, ge=0)
    logging_steps: int = -1
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    auto_find_batch_size: bool = False
    mixed_precision: Literal["fp16", "bf16"] | None = None
    save_total_limit: int = Field(1, ge=1)
    peft: bool = False
    quantization: Literal["int8", "int4"] | None = None
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    early_stopping_patience: int = Field(5, ge=0)  # 0 turns early stopping off
    early_stopping_threshold: float = Field(0.01, ge=0.0)
    # beyond AutoTrain
    max_steps: int = -1
    max_train_samples: int | None = Field(None, gt=0)
    eval_steps: int | None = Field(None, gt=0)  # with eval_strategy=steps; checkpoints follow evaluations
    save_steps: int | None = Field(None, gt=0)  # checkpoint interval when eval_strategy=no
    metric_for_best_model: str = "loss"  # eval loss, or any metric of the registry (computed by generating)
    generation_max_length: int = Field(64, gt=0)  # new tokens when generating for metric_for_best_model
    generation_num_beams: int = Field(1, ge=1)
    load_best_model_at_end: bool = True
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    length_grouping: int = Field(2, ge=0)  # batches per length-sorted window (0: random batches)
    freeze_encoder: bool = False
    # recompute activations in the backward pass: less memory for ~30% more compute, same gradients
    # (AutoTrain's default; its disable_gradient_checkpointing turns it off)
    gradient_checkpointing: bool = False
    freeze_embeds: bool = False
    resume: bool = True  # continue from the last complete checkpoint of an identical run
    tensorboard: bool = False  # also write TensorBoard event files (reports/tensorboard); MLflow stays the record

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("train.max_steps must be -1 (use epochs) or a positive number of steps")
        return v

    @field_validator("eval_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML 1.1 reads a bare `no` as false

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _no_mixed_precision(cls, v: Any) -> Any:
        # AutoTrain writes `mixed_precision: none` (YAML reads `no` as false): both mean none
        return None if v is False or (isinstance(v, str) and v.strip().lower() in ("none", "no", "fp32", "")) else v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        if v not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {v!r}{suggest(v, OPTIMIZERS)}; e.g. adamw_torch, adafactor, sgd")
        return v

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str) and v != "all-linear":
            return [m.strip() for m in v.split(",") if m.strip()]  # AutoTrain passes "q,v"
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Train:
        problems = []
        if self.quantization and not self.peft:
            problems.append(
                "train.quantization needs train.peft: true (quantized weights are trained through LoRA adapters)"
            )
        if self.peft and (self.freeze_encoder or self.freeze_embeds):
            problems.append(
                "train.freeze_encoder / train.freeze_embeds have no effect with train.peft "
                "(LoRA already freezes the base model)"
            )
        if self.eval_strategy == "steps" and not self.eval_steps:
            problems.append("train.eval_strategy=steps needs train.eval_steps")
        if self.eval_strategy != "steps" and self.eval_steps:
            problems.append("train.eval_steps is only used with train.eval_strategy=steps")
        if self.eval_strategy != "no" and self.save_steps:
            problems.append(
                "train.save_steps is only used with train.eval_strategy=no (checkpoints follow evaluations otherwise)"
            )
        if self.metric_for_best_model != "loss" and self.eval_strategy == "no":
            problems.append("train.metric_for_best_model needs evaluations: set train.eval_strategy to epoch or steps")
        if self.model in ("scratch", "rnn") and self.quantization:
            problems.append("train.quantization applies to pretrained checkpoints, not to a model trained from scratch")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# transformers' OptimizerNames (the pinned version), spelled out so that loading the config does
# not import transformers (3 s); tests/test_config.py checks the two agree.
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_xla",
    "adamw_torch_npu_fused",
    "adafactor",
    "adamw_anyprecision",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "ademamix",
    "sgd",
    "adagrad",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "stable_adamw",
)
