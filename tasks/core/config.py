"""One typed, strict configuration: ``params.yaml`` + a pipeline's overrides + ``--set`` flags.

``load_config(pipeline, overrides)`` is the only place configuration is read. Every section is a
pydantic model with ``extra="forbid"``, so a misspelt key is an error that names the key, the
file and the closest valid spelling, instead of a silently ignored setting. Cross-field rules
live in validators here, not in the stages.

Paths in ``params.yaml`` are relative to the project root (the folder holding ``params.yaml``).
Pipelines other than ``default`` keep their artifacts under ``runs/<pipeline>/`` so that two
pipelines never overwrite each other's splits or models.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.core.errors import ConfigError

PARAMS_FILE = "params.yaml"
RUNS_DIR = "runs"
PIPELINES_FILE = "pipelines.yaml"
DEFAULT_PIPELINE = "default"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    # allow_inf_nan=False: `--set train.epochs=.inf` (YAML infinity) is refused, not trained forever
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)


def _given(value: Any) -> Any:
    """An empty path (an unset shell variable) would mean the project folder itself."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; an empty path would mean the project folder itself: give a folder below it")
    return value


class Paths(Section):
    """Where each stage writes. Relative paths resolve against the run folder (the project root
    for ``default``); every one is checked by tasks/core/paths.py before anything runs."""

    data: Path = Path("data/processed")  # the processed splits (Parquet) and manifest.json
    reports: Path = Path("reports")
    tokenizer: Path = Path("artifacts/tokenizer")
    base_model: Path = Path("artifacts/base_model")
    model: Path = Path("artifacts/model")
    adapter: Path = Path("artifacts/adapter")
    checkpoints: Path = Path("artifacts/checkpoints")
    extra_roots: list[str] = Field(default_factory=list)  # absolute folders outside the project it may write under

    @field_validator("data", "reports", "tokenizer", "base_model", "model", "adapter", "checkpoints", mode="before")
    @classmethod
    def _given(cls, v: Any) -> Any:
        return _given(v)


class Tracking(Section):
    """MLflow tracking and registry. ``MLFLOW_TRACKING_URI`` in the environment wins over ``uri``."""

    uri: str = "sqlite:///mlflow.db"
    artifacts: Path = Path("mlartifacts")
    experiment: str | None = None
    retry_s: float = Field(120.0, ge=0)  # how long a stage waits out an unreachable tracking server

    @field_validator("artifacts", mode="before")
    @classmethod
    def _given(cls, v: Any) -> Any:
        return _given(v)


class Ingest(Section):
    """Where the raw pairs come from and how they are split (AutoTrain's column names)."""

    source: str = "data/sample/reports.csv"
    dataset_config: str | None = None  # a hub dataset's configuration name (e.g. "3.0.0", "de-en")
    text_column: str = "text"
    target_column: str = "target"
    train_split: str = "train"
    valid_split: str | None = None
    test_split: str | None = None
    source_prefix: str = ""
    delimiter: str | None = None  # of a delimited file; None: by name (.tsv tab), sniffed for .csv
    valid_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    test_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    max_samples: int | None = Field(None, gt=0)
    strip: bool = True
    dedup: bool = True
    seed: int = Field(42, ge=0)  # numpy's generators take no negative seed

    @model_validator(mode="after")
    def _ratios_leave_training_data(self) -> Ingest:
        if self.valid_ratio + self.test_ratio >= 0.9:
            raise ValueError(
                f"ingest.valid_ratio ({self.valid_ratio}) + ingest.test_ratio ({self.test_ratio}) "
                "leaves less than 10% of the rows for training; lower one of them"
            )
        if self.text_column == self.target_column:
            raise ValueError("ingest.text_column and ingest.target_column name the same column")
        return self

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        names = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
        v = names.get(v, v) if v is not None else None
        if v is not None and (len(v) != 1 or v in '"\r\n'):
            raise ValueError(
                f"ingest.delimiter {v!r}: give one character, or one of {', '.join(names)} "
                "(null: by name, sniffed for .csv)"
            )
        return v


class Validate(Section):
    """Thresholds of the data-quality gate that stands between ingestion and training."""

    min_rows: dict[str, int] = Field(default_factory=lambda: {"train": 100, "validation": 10, "test": 10})
    min_text_chars: int = Field(1, ge=1)
    max_text_chars: int = Field(20_000, gt=0)
    min_target_chars: int = Field(1, ge=1)
    max_target_chars: int = Field(5_000, gt=0)
    mostly: float = Field(1.0, gt=0.0, le=1.0)
    max_truncation_rate: float = Field(0.01, ge=0.0, le=1.0)
    max_duplicate_rate: float = Field(0.0, ge=0.0, le=1.0)
    max_leakage_rate: float = Field(0.0, ge=0.0, le=1.0)
    max_copy_rate: float = Field(0.05, ge=0.0, le=1.0)
    # variety: distinct values / rows; a split needs two distinct values in each column anyway
    min_text_distinct_ratio: float = Field(0.01, ge=0.0, le=1.0)
    min_target_distinct_ratio: float = Field(0.01, ge=0.0, le=1.0)
    max_dropped_duplicate_rate: float = Field(0.5, ge=0.0, le=1.0)  # share of read rows ingest.dedup dropped
    token_sample: int = Field(5_000, gt=0)  # rows per split tokenized (seeded sample above)

    @field_validator("min_rows")
    @classmethod
    def _known_splits(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = set(v) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(f"validate.min_rows: unknown split(s) {sorted(unknown)}; use train, validation, test")
        return v


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


class Evaluate(Section):
    """Generation and scoring on the held-out split."""

    split: Literal["test", "validation"] = "test"
    metrics: list[str] = Field(default_factory=lambda: ["rouge"], min_length=1)  # families of tasks/metrics/
    num_beams: int = Field(1, ge=1)
    generation_max_length: int = Field(64, gt=0)
    batch_size: int = Field(64, gt=0)
    # generation engine: CTranslate2 where it converts the model (auto), always (ct2), or
    # transformers' generate (hf); compute_type auto = on CPU int8 from 10M parameters (float32
    # below), on GPU bfloat16/float16
    backend: Literal["auto", "hf", "ct2"] = "auto"
    compute_type: Literal[
        "auto", "float32", "int8", "int8_float32", "float16", "bfloat16", "int8_float16", "int8_bfloat16"
    ] = "auto"
    max_samples: int | None = Field(None, gt=0)
    compare_champion: bool = True  # score the current champion on the same rows, same settings
    length_buckets: int = Field(4, ge=1)  # input-length buckets for the score-by-length plot

    @field_validator("metrics")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        from tasks import metrics

        known = list(metrics.families())
        for name in v:
            if name not in known:
                raise ValueError(f"unknown metric family {name!r}{suggest(name, known)}; known: {', '.join(known)}")
        return list(dict.fromkeys(v))


class Register(Section):
    """MLflow model registration. The model name comes from the pipeline (pipelines.yaml)."""

    model_name: str = "s2s-default"
    lora_export: Literal["merged", "adapter"] = "merged"  # with train.peft: what the version holds
    in_experiments: bool = False  # `dvc exp run`: register (and promote) the experiment's model too

    def skipped_for_experiment(self) -> str | None:
        """Why this process registers nothing: it is a stage of a DVC experiment (DVC sets
        DVC_EXP_BASELINE_REV) and ``in_experiments`` is off. None otherwise."""
        if self.in_experiments or not os.environ.get("DVC_EXP_BASELINE_REV"):
            return None
        name = os.environ.get("DVC_EXP_NAME") or "this one"
        return (
            f"a DVC experiment ({name}): its model stays out of the team's registry "
            "(register.in_experiments: false); `dvc exp apply` it and `s2s run` to register it"
        )


class Gates(Section):
    """Promotion gates: absolute bounds, beat-the-champion, and regression tolerances."""

    min: dict[str, float] = Field(default_factory=dict)  # metric >= bound
    max: dict[str, float] = Field(default_factory=dict)  # metric <= bound (e.g. gen_len)
    primary: str | None = None  # default: the leading family's (rougeL; bleu without ROUGE), see tasks/metrics
    min_delta: float | None = 0.0  # candidate - champion on primary must be >= this; null: no champion gate
    max_regression: dict[str, float] = Field(default_factory=dict)  # champion - candidate <= tolerance
    # certified gates: the paired-bootstrap interval's lower bound of the primary metric's gain must
    # reach min_delta, and the upper bound of each listed metric's drop stay within its tolerance
    # (tasks/metrics/bootstrap.py); null: compare point estimates
    confidence: float | None = Field(0.95, gt=0.5, lt=1)
    # required: a candidate that passed waits for a person (the flow pauses with a form; or
    # `s2s approve VERSION [--reject]`); after approval_timeout_s the outcome is on_timeout
    approval: Literal["none", "required"] = "none"
    approval_timeout_s: int = Field(86_400, gt=0)  # how long a candidate waits for a person
    on_timeout: Literal["reject", "promote"] = "reject"  # what happens when nobody answered in time


class Degenerate(Section):
    """The degenerate-output gate: a candidate whose predictions are blank, loop, all say the same
    or collapse in length is refused whatever its scores (figures: tasks/metrics/degenerate.py).
    The defaults pass any model that learned something (the embedded default: 0% empty, 0%
    repeating) and refuse one that wrote nothing or ``a a a a ...``."""

    refuse: bool = True  # off: the figures are still measured, logged and flagged in the summary
    max_empty: float = Field(0.1, ge=0.0, le=1.0)  # share of empty / whitespace-only predictions
    max_repeating: float = Field(0.1, ge=0.0, le=1.0)  # share of predictions looping on a word or phrase
    # the most common prediction's share beyond the references' own (label-like targets repeat)
    max_identical_excess: float = Field(0.5, ge=0.0, le=1.0)
    min_length_ratio: float = Field(0.25, ge=0.0)  # mean prediction words / mean reference words


class Promote(Section):
    """Which alias a passing candidate takes, and the gates it must pass."""

    alias: str = "champion"
    gates: Gates = Gates()
    degenerate: Degenerate = Degenerate()
    lock_timeout_s: float = Field(600, gt=0)  # wait this long for another promotion of the same model


class Drift(Section):
    """The drift check before a scheduled retrain (tasks/data/drift.py): below every threshold the
    retrain is skipped, saying why; at or above one, it trains and the figures go on the version."""

    check: bool = True  # off: a retrain trains whenever the data or settings changed
    length_psi: float = Field(0.1, gt=0)  # input/target length histograms (population stability index)
    poor_token_rise: float = Field(0.02, gt=0)  # more words the champion's tokenizer represents poorly
    script_shift: float = Field(0.05, gt=0)  # Unicode script mix (total variation distance)
    max_pieces: int = Field(4, ge=1)  # a word in more pieces than this is poorly represented
    max_test_overlap: float = Field(0.01, ge=0)  # new train inputs in the champion's test split: warn above


class Notify(Section):
    """Who hears about a run: a webhook receives one JSON event per outcome (promoted, rejected,
    skipped, failed, awaiting_approval). The URL comes from the environment, never a file."""

    webhook_env: str = "S2S_WEBHOOK_URL"  # the variable holding the URL; unset or empty: no webhook
    events: list[Literal["promoted", "rejected", "skipped", "failed", "awaiting_approval"]] = Field(
        default_factory=lambda: ["promoted", "rejected", "skipped", "failed", "awaiting_approval"]
    )
    timeout_s: float = Field(10.0, gt=0)  # per attempt
    attempts: int = Field(3, ge=1, le=10)  # 503s and timeouts are retried with backoff


class Serve(Section):
    """Bounds of `s2s serve` (tasks/serving/http_server.py): what one request may ask for, how long
    a client may take to send it, and how long a stop waits for the requests in flight."""

    max_inputs: int = Field(256, ge=1)  # inputs per request (over: 413)
    max_input_chars: int = Field(20000, ge=1)  # characters per input, as validate.max_text_chars (over: 422)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)  # request body (over: 413)
    max_request_seconds: float = Field(30.0, gt=0)  # generation time one request may use (over: 413)
    max_queued_inputs: int = Field(4096, ge=1)  # inputs waiting in all requests (over: 503, retry later)
    read_timeout_s: float = Field(10.0, gt=0)  # a whole request (headers + body) must arrive within this
    drain_s: float = Field(20.0, gt=0, le=22)  # SIGTERM: in-flight requests get this long, then a 503
    #   (le 22: the process is ended 25 s after a SIGTERM, tasks/core/signals.py GRACE_S)


SECTIONS: dict[str, type[Section]] = {
    "paths": Paths,
    "tracking": Tracking,
    "ingest": Ingest,
    "validate": Validate,
    "train": Train,
    "evaluate": Evaluate,
    "register": Register,
    "promote": Promote,
    "drift": Drift,
    "notify": Notify,
    "serve": Serve,
}


class Schedule(Section):
    """When a pipeline's retrain deployment runs: a cron expression in a time zone."""

    cron: str  # a cron expression (`0 3 * * *`: every night at 03:00)
    timezone: str = "UTC"  # an IANA time zone the cron is read in (UTC, Europe/Berlin)
    active: bool = True  # false: the deployment exists but its schedule is paused

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        try:
            CronSim(v, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"schedule.cron {v!r} is not a valid cron expression ({exc})") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"schedule.timezone {v!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return v


class Retries(Section):
    """Retries of the tasks whose failures are transient (tracking server, hub, storage)."""

    count: int = Field(2, ge=0)  # retries after the first attempt (0: none)
    delay_s: list[float] = Field(default_factory=lambda: [10.0, 60.0])  # backoff, one per retry (last repeats)


class Timeouts(Section):
    """Wall-clock limits of the long tasks, in seconds (null: none)."""

    train_s: float | None = Field(None, gt=0)  # the train task is stopped (checkpoint kept) after this
    evaluate_s: float | None = Field(None, gt=0)  # the evaluate task is stopped after this


class Trigger(Section):
    """What starts a pipeline's retrain besides its cron schedule."""

    on_data: bool = True  # `s2s data add` (a Prefect event s2s.data.added) starts a retrain
    poll_s: int | None = Field(None, ge=30)  # also watch ingest.source every N s (a watch/<name> deployment)


class Concurrency(Section):
    """One retrain of a pipeline at a time: what happens to a run that arrives meanwhile."""

    limit: int = Field(1, ge=1)  # retrains of this pipeline running at once
    collision: Literal["enqueue", "cancel_new"] = "enqueue"  # enqueue: late runs collapse to the newest


class Heal(Section):
    """Self-healing of retrains whose worker died (`s2s deploy` creates the Prefect automations)."""

    rerun_crashed: bool = True  # a crashed retrain is run again (and resumes from its checkpoint)
    heartbeat_s: int = Field(30, ge=30)  # flow run heartbeats; silent for 3 of them: marked Crashed
    max_reruns: int = Field(2, ge=0)  # crashed this many times within the hour: stop re-running


class PipelineSpec(Section):
    """One entry of pipelines.yaml. ``data`` / ``params`` / ``gates`` override params.yaml and are
    checked against its sections when the pipeline's configuration is resolved."""

    description: str = ""
    model_name: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # overrides of the ingest section
    params: dict[str, Any] = Field(default_factory=dict)  # overrides of any other section
    gates: dict[str, Any] | None = None  # promote.gates
    schedule: Schedule | None = None
    retries: Retries = Retries()
    timeouts: Timeouts = Timeouts()
    work_pool: str = "s2s"
    tags: list[str] = Field(default_factory=list)
    trigger: Trigger = Trigger()
    concurrency: Concurrency = Concurrency()
    heal: Heal = Heal()


PIPELINE_KEYS = set(PipelineSpec.model_fields)


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one pipeline run. Sections are named as the stages."""

    pipeline: str
    root: Path
    paths: Paths
    tracking: Tracking
    ingest: Ingest
    validate: Validate
    train: Train
    evaluate: Evaluate
    register: Register
    promote: Promote
    drift: Drift
    notify: Notify
    serve: Serve = field(default_factory=Serve)
    spec: PipelineSpec = field(default_factory=PipelineSpec)
    overrides: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- resolved locations -------------------------------------------------------------
    def base(self) -> Path:
        """The run folder every relative ``paths.*`` resolves in: the project root for the
        ``default`` pipeline as params.yaml has it (what dvc.yaml describes), ``runs/<pipeline>``
        for another pipeline, ``runs/<pipeline>.<hash of the overrides>`` with ``--set`` overrides,
        so a one-off run never overwrites the outputs DVC tracks."""
        if self.overrides:
            tag = hashlib.sha256(json.dumps(list(self.overrides)).encode()).hexdigest()[:10]
            return self.root / RUNS_DIR / f"{self.pipeline}.{tag}"
        return self.root if self.pipeline == DEFAULT_PIPELINE else self.root / RUNS_DIR / self.pipeline

    def path(self, name: str) -> Path:
        """Absolute location of ``paths.<name>`` for this run."""
        rel = getattr(self.paths, name)
        return rel if rel.is_absolute() else self.base() / rel

    def resolve(self, stored: str | Path) -> Path:
        """A path a stage result stores (relative to the project root) as an absolute path."""
        p = Path(stored)
        return p if p.is_absolute() else self.root / p

    def relative(self, path: str | Path) -> str:
        """``path`` as stage results store it: relative to the project root when inside it."""
        from tasks.core.paths import relative

        return relative(path, self.root)

    def source_path(self) -> Path:
        """``ingest.source`` as a local path (relative ones resolve against the project root)."""
        src = Path(self.ingest.source).expanduser()
        return src if src.is_absolute() else self.root / src

    def tracking_uri(self) -> str:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = "sqlite:///" + str(self.root / uri[len("sqlite:///") :])
        return uri

    def sqlite_path(self) -> Path | None:
        """The SQLite file of a ``sqlite:///`` tracking store, else None (the one place that parses it)."""
        uri = self.tracking_uri()
        return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None

    def artifact_root(self) -> Path:
        loc = self.tracking.artifacts
        return loc if loc.is_absolute() else self.root / loc

    def artifact_location(self) -> str:
        return self.artifact_root().as_uri()

    @property
    def primary_metric(self) -> str:
        """The metric promotion compares on: ``gates.primary``, else the leading family's (the registry's)."""
        from tasks import metrics

        return self.promote.gates.primary or metrics.default_primary(self.evaluate.metrics)

    def experiment_name(self) -> str:
        return self.tracking.experiment or f"s2s-{self.pipeline}"

    def params_hash(self) -> str:
        """Short hash of everything that shapes the model (paths, tracking, notify, drift, serve excluded)."""
        shaping = {k: v for k, v in self.raw.items() if k not in ("paths", "tracking", "notify", "drift", "serve")}
        blob = json.dumps(shaping, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def flat_params(self) -> dict[str, str]:
        """``section.key`` -> value for MLflow params; same names in every run of every pipeline."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = "" if value is None else str(value)

        from tasks.core.results import STAGES

        for name in STAGES:  # the params.yaml sections that shape a model, one per stage
            walk(name, self.raw.get(name, {}))
        return out


# -- loading ------------------------------------------------------------------------------


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (else $S2S_ROOT, else the cwd) holding params.yaml."""
    env = os.environ.get("S2S_ROOT")
    here = Path(start) if start else Path(env) if env else Path.cwd()
    here = here.resolve()
    for candidate in (here, *here.parents):
        if (candidate / PARAMS_FILE).is_file():
            return candidate
    raise ConfigError(
        f"no {PARAMS_FILE} found in {here} or any folder above it; run from the project folder or set S2S_ROOT to it"
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not {type(key).__name__}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                f"key {key!r} first given on line {seen[key] + 1}",
                node.start_mark,
                f"repeated on line {key_node.start_mark.line + 1} (YAML would keep only the last)",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text, strictly: duplicate keys refused; errors name the line and what to fix."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        raise ConfigError(f"{where}:{line} not valid YAML ({problem or str(exc).splitlines()[0]})") from None


def read_yaml(path: Path, what: str = "") -> dict[str, Any]:
    """A YAML file holding a mapping; every way it can be unreadable is one ConfigError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte order mark is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (undecodable bytes on line {line}); save it as UTF-8") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: holds NUL bytes (a binary file?); {what or 'it'} must be YAML text")
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping at the top level, found {type(data).__name__}" + (f" ({what})" if what else "")
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level keys must be names, found {bad[0]!r}")
    return data


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
_COMMENT = re.compile(r"\s#\s?(?P<text>.*)$")


def setting_comments(text: str) -> dict[str, str]:
    """``section.key`` -> what params.yaml's comment says of it: the comment on its line and the
    indented continuation lines below it (``#   ...``). params.yaml is the documented config
    surface; help that quotes it (``s2s train --help``) stays what the file says."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if last is not None and stripped.startswith("#   "):
                out[last] += " " + stripped[1:].strip()
            elif stripped:
                last = None
            continue
        m = _KEY_LINE.match(line)
        if not m:
            last = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        dotted = ".".join(k for _, k in stack)
        rest = m["rest"].lstrip()
        if rest[:1] in ("'", '"'):  # a quoted value may hold what looks like a comment
            rest = rest[rest.find(rest[0], 1) + 1 :]
        comment = _COMMENT.search(" " + rest)
        if comment and comment["text"].startswith("  ") and last is not None:
            out[last] += " " + comment["text"].strip()  # the comment above it, continued on this line
            continue
        last = dotted if comment else None
        if comment:
            out[dotted] = comment["text"].strip()
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lr=0.001`` -> (["train", "lr"], 0.001). Values are parsed as YAML scalars."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.lr=0.001)")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"override {item!r} must name a section and a key, e.g. train.epochs=1")
    try:
        value = parse_yaml(raw, f"--set {key.strip()}") if raw.strip() else ""
    except ConfigError:
        value = raw  # not YAML: the text as it is (the setting's type check has the last word)
    return parts, value


def _apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(parts)}: {part} is a value, not a section")
    node[parts[-1]] = value


def suggest(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or nothing: every "unknown name" error uses it."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_metrics(cfg: Config) -> None:
    """Cross-section rules on metric names: gates and best-model selection may only name metrics
    the enabled families compute, and compare only on metrics that have a direction."""
    from tasks import metrics

    known = metrics.metrics(cfg.evaluate.metrics)
    enabled = ", ".join(cfg.evaluate.metrics)
    problems = []

    def name_ok(setting: str, name: str, directional: bool) -> None:
        metric = known.get(name)
        if metric is None:
            problems.append(
                f"{setting}: {name!r} is not computed by evaluate.metrics [{enabled}]"
                f"{suggest(name, known)}; computed: {', '.join(known)}"
            )
        elif directional and metric.higher_is_better is None:
            problems.append(
                f"{setting}: {name!r} has no better direction (it is a length); "
                "bound it with gates.min / gates.max instead"
            )

    gates = cfg.promote.gates
    for name in gates.min:
        name_ok("promote.gates.min", name, False)
    for name in gates.max:
        name_ok("promote.gates.max", name, False)
    for name in gates.max_regression:
        name_ok("promote.gates.max_regression", name, True)
    if gates.primary is not None:
        name_ok("promote.gates.primary", gates.primary, True)
    best = cfg.train.metric_for_best_model
    if best != "loss":
        metric = metrics.get(best)
        if metric is None or metric.name == metrics.GEN_LEN.name:
            problems.append(
                f"train.metric_for_best_model: {best!r} is not a metric{suggest(best, metrics.metrics())}; "
                f"use loss or one of {', '.join(m for m in metrics.metrics() if m != 'gen_len')}"
            )
    if problems:
        raise ConfigError(f"invalid configuration for pipeline {cfg.pipeline!r}: " + "; ".join(problems))


def _section_type(annotation: Any) -> Any:
    """The Section class inside an annotation like ``Schedule | None``."""
    import typing

    if isinstance(annotation, type):
        return annotation
    return next(
        (a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), annotation
    )


def _format_validation_error(section: str, exc: ValidationError, model: type[Section]) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{section}.{loc}" if loc else section
        if err["type"] == "extra_forbidden":
            parent = model
            for part in err["loc"][:-1]:
                ann = getattr(parent, "model_fields", {}).get(str(part))
                parent = _section_type(ann.annotation) if ann else parent
            options = list(getattr(parent, "model_fields", {}).keys())
            hint = suggest(str(err["loc"][-1]), options) or (f"; allowed: {', '.join(options)}" if options else "")
            lines.append(f"{where}: unknown setting{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg} (got {err.get('input')!r})")
    return "; ".join(lines)


def load_pipelines(root: Path) -> dict[str, dict[str, Any]]:
    """The named pipelines of ``pipelines.yaml`` as raw mappings, each checked against the
    strict schema (unknown keys, cron, time zone, types) with errors naming pipeline and key."""
    path = root / PIPELINES_FILE
    data = read_yaml(path) if path.exists() else {DEFAULT_PIPELINE: {}}
    for name, spec in data.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"{PIPELINES_FILE}: pipeline {name!r} must be a mapping")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", str(name)):
            raise ConfigError(f"{PIPELINES_FILE}: pipeline name {name!r}: use lowercase letters, digits, - and _")
        for key in spec:
            if key not in PIPELINE_KEYS:
                raise ConfigError(
                    f"{PIPELINES_FILE}: {name}.{key}: unknown key{suggest(key, sorted(PIPELINE_KEYS))}; "
                    f"allowed: {', '.join(sorted(PIPELINE_KEYS))}"
                )
        try:
            PipelineSpec.model_validate(spec)
        except ValidationError as exc:
            raise ConfigError(f"{PIPELINES_FILE}: " + _format_validation_error(name, exc, PipelineSpec)) from None
        data[name] = spec
    return data


def validate_all(root: Path | None = None) -> dict[str, Config]:
    """Resolve every pipeline of pipelines.yaml (as `s2s deploy` does): all or a named error."""
    root = find_root(root)
    return {name: load_config(name, root=root) for name in load_pipelines(root)}


def load_config(
    pipeline: str = DEFAULT_PIPELINE,
    overrides: list[str] | tuple[str, ...] = (),
    root: Path | None = None,
) -> Config:
    """Resolve ``params.yaml`` + ``pipelines.yaml[pipeline]`` + ``overrides`` into a Config.

    Raises ConfigError naming the file, the key and the fix for anything unknown or invalid.
    """
    root = find_root(root)
    params = read_yaml(root / PARAMS_FILE)
    for key in params:
        if key not in SECTIONS:
            raise ConfigError(
                f"{PARAMS_FILE}: unknown section {key!r}{suggest(key, list(SECTIONS))}; "
                f"sections are: {', '.join(SECTIONS)}"
            )
    pipelines = load_pipelines(root)
    if pipeline not in pipelines:
        raise ConfigError(
            f"no pipeline named {pipeline!r} in {PIPELINES_FILE}{suggest(pipeline, list(pipelines))}; "
            f"defined: {', '.join(pipelines)}"
        )
    spec = pipelines[pipeline]
    merged = _deep_merge(params, spec.get("params") or {})
    if spec.get("data"):
        merged = _deep_merge(merged, {"ingest": spec["data"]})
    if spec.get("model_name"):
        merged = _deep_merge(merged, {"register": {"model_name": spec["model_name"]}})
    if spec.get("gates") is not None:
        merged = _deep_merge(merged, {"promote": {"gates": spec["gates"]}})
    for item in overrides:
        parts, value = parse_override(item)
        if parts[0] not in SECTIONS:
            raise ConfigError(f"override {item!r}: unknown section {parts[0]!r}{suggest(parts[0], list(SECTIONS))}")
        _apply_override(merged, parts, value)

    sections: dict[str, Section] = {}
    errors = []
    for name, model in SECTIONS.items():
        try:
            sections[name] = model.model_validate(merged.get(name) or {})
        except ValidationError as exc:
            errors.append(_format_validation_error(name, exc, model))
    if errors:
        raise ConfigError(f"invalid configuration for pipeline {pipeline!r}: " + "; ".join(errors))
    raw = {name: sec.model_dump(mode="json") for name, sec in sections.items()}
    cfg = Config(
        pipeline=pipeline,
        root=root,
        spec=PipelineSpec.model_validate(spec),
        overrides=tuple(overrides),
        raw=raw,
        **sections,
    )
    check_metrics(cfg)
    from tasks.core import paths

    paths.check(cfg)  # before any stage: no configured folder may reach outside the run folder
    return cfg
