"""The params.yaml sections of training: ``train`` with its ``scratch`` and ``rnn`` models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.errors import suggest
from tasks.core.sections.data import Section


class Scratch(Section):
    """Architecture of the locally initialised T5 used when ``train.model`` is ``scratch``."""

    d_model: int = 128
    """hidden size of the scratch T5"""
    d_ff: int = 256
    """feed-forward size"""
    d_kv: int = 32
    """size of each attention head"""
    num_heads: int = 4
    """attention heads per layer"""
    num_layers: int = 2
    """encoder layers"""
    num_decoder_layers: int = 2
    """decoder layers"""
    dropout_rate: float = 0.0
    """dropout of the scratch T5 (0: none)"""
    vocab_size: int = Field(1000, ge=64)
    """of the tokenizer trained on the train split"""
    tokenizer_chars: int = Field(450_000, gt=0)
    """characters of train text the tokenizer is fitted on (a seeded sample of rows above that; ~2 s per 450,000
    characters here)"""


class Rnn(Section):
    """Architecture of the recurrent encoder-decoder used when ``train.model`` is ``rnn``."""

    cell: Literal["gru", "lstm"] = "gru"
    """gru | lstm"""
    embedding_size: int = Field(128, gt=0)
    """token embedding size"""
    hidden_size: int = Field(256, gt=0)
    """recurrent state size (per direction)"""
    num_layers: int = Field(1, ge=1)
    """stacked recurrent layers"""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout between layers"""
    bidirectional: bool = True
    """the encoder reads both ways"""


SCHEDULERS = ("linear", "cosine", "cosine_w_restarts", "polynomial", "constant", "constant_w_warmup")


class Train(Section):
    """Fine-tuning settings. AutoTrain's Seq2SeqParams keep their names and defaults; the rest
    follow transformers' example scripts and the legacy seq2seq trainer."""

    model: str = "scratch"
    """`scratch` (T5), `rnn` (GRU/LSTM encoder-decoder), a hub id (google/flan-t5-small) or a local model folder"""
    scratch: Scratch = Scratch()
    """~0.75M parameters: learns the sample task in ~1 min on 2 cores"""
    rnn: Rnn = Rnn()
    """used when model: rnn (the scratch tokenizer, too)"""
    trust_remote_code: bool = False
    """never run a model repo's own Python unless you say so"""
    lr: float = Field(5e-5, gt=0)
    """from-scratch rate; ~5e-5 (full) or ~3e-4 (LoRA) for pretrained"""
    epochs: float = Field(3, gt=0)
    """rougeL ~0.85 in ~55 s here (12 epochs at lr 0.001: ~0.92 in ~2 min)"""
    batch_size: int = Field(2, gt=0)
    """examples per device per step"""
    max_seq_length: int = Field(128, gt=0)
    """input tokens (longer inputs are truncated: see validate)"""
    max_target_length: int = Field(128, gt=0)
    """label tokens"""
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """share of the steps the learning rate warms up over"""
    gradient_accumulation: int = Field(1, gt=0)
    """steps whose gradients add up before one optimizer step"""
    optimizer: str = "adamw_torch"
    """any transformers optimizer name (AutoTrain's default is the unfused adamw_torch: same maths, slower); adafactor
    = legacy"""
    scheduler: Literal[SCHEDULERS] = "linear"  # type: ignore[valid-type]
    """linear cosine cosine_w_restarts polynomial constant constant_w_warmup"""
    weight_decay: float = Field(0.0, ge=0.0)
    """not applied to biases and LayerNorm weights"""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """gradient clipping norm (0: off)"""
    seed: int = Field(42, ge=0)
    """seeds the model init, data order and dropout (same seed, same model)"""
    logging_steps: int = -1
    """-1: about five logs per epoch"""
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    """epoch | steps | "no"; checkpoints are saved at each evaluation"""
    auto_find_batch_size: bool = False
    """halve the batch on out-of-memory (CUDA) and retry"""
    mixed_precision: Literal["fp16", "bf16"] | None = None
    """fp16 | bf16 on GPU; T5 overflows in fp16, use bf16"""
    save_total_limit: int = Field(1, ge=1)
    """checkpoints kept (the best one is always kept)"""
    peft: bool = False
    """LoRA adapters instead of full fine-tuning"""
    quantization: Literal["int8", "int4"] | None = None
    """int4 | int8 base weights (CUDA + bitsandbytes; needs peft)"""
    lora_r: int = Field(16, gt=0)
    """LoRA rank (with peft)"""
    lora_alpha: int = Field(32, gt=0)
    """LoRA scaling (with peft)"""
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """dropout on the LoRA path (with peft)"""
    target_modules: str | list[str] = "all-linear"
    """or a list / comma-separated names, e.g. q,v"""
    early_stopping_patience: int = Field(5, ge=0)
    """evaluations without improvement before stopping (0: off)"""
    early_stopping_threshold: float = Field(0.01, ge=0.0)
    """the least change that counts as improvement"""
    max_steps: int = -1
    """> 0 stops after that many optimizer steps"""
    max_train_samples: int | None = Field(None, gt=0)
    """train on the first N rows only (smoke runs)"""
    eval_steps: int | None = Field(None, gt=0)
    """evaluation (and checkpoint) interval with eval_strategy: steps"""
    save_steps: int | None = Field(None, gt=0)
    """checkpoint interval with eval_strategy: "no" """
    metric_for_best_model: str = "loss"
    """loss, or any metric of tasks/metrics (rougeL, bleu, chrf...: generates at each evaluation, with the two settings
    below)"""
    generation_max_length: int = Field(64, gt=0)
    """new tokens per example when generating during training"""
    generation_num_beams: int = Field(1, ge=1)
    """beams when generating during training"""
    load_best_model_at_end: bool = True
    """the final model is the best evaluated checkpoint"""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """fairseq-style, padding excluded"""
    length_grouping: int = Field(2, ge=0)
    """batches per length-sorted window: 2 cuts padding by a third and keeps batches mixed; 0 = random; transformers'
    group_by_length = 50"""
    freeze_encoder: bool = False
    """train the decoder only (no effect with peft)"""
    gradient_checkpointing: bool = False
    """recompute activations in the backward pass: less memory, ~30% more compute"""
    freeze_embeds: bool = False
    """token and position embeddings"""
    resume: bool = True
    """a re-run continues from the last complete checkpoint"""
    tensorboard: bool = False
    """AutoTrain's `log: tensorboard`: TensorBoard event files in reports/tensorboard too (MLflow stays the record)"""

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
