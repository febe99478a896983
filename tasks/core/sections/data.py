"""The params.yaml sections of where things go and what data comes in: ``paths``, ``tracking``,
``ingest``, ``validate`` (and :class:`Section`, the base of every section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    # allow_inf_nan=False: `--set train.epochs=.inf` (YAML infinity) is refused, not trained forever
    model_config = ConfigDict(
        extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False, use_attribute_docstrings=True
    )


def _given(value: Any) -> Any:
    """An empty path (an unset shell variable) would mean the project folder itself."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; an empty path would mean the project folder itself: give a folder below it")
    return value


class Paths(Section):
    """Where each stage writes. Relative paths resolve against the run folder (the project root
    for ``default``); every one is checked by tasks/core/paths.py before anything runs."""

    data: Path = Path("data/processed")
    """the processed splits (Parquet) and manifest.json"""
    reports: Path = Path("reports")
    """metrics, plots, validation and promotion reports (DVC metrics/plots live here)"""
    tokenizer: Path = Path("artifacts/tokenizer")
    """the tokenizer validation checked against; training uses it"""
    base_model: Path = Path("artifacts/base_model")
    """the scratch model as initialised, an ordinary HF folder"""
    model: Path = Path("artifacts/model")
    """the fine-tuned model (LoRA merged in), an ordinary HF folder"""
    adapter: Path = Path("artifacts/adapter")
    """the LoRA adapter alone, when train.peft is on"""
    checkpoints: Path = Path("artifacts/checkpoints")
    """training checkpoints; a re-run resumes from the last complete one"""
    extra_roots: list[str] = Field(default_factory=list)
    """absolute folders outside the project it may also write under (e.g. a scratch disk for checkpoints); nothing else
    outside"""

    @field_validator("data", "reports", "tokenizer", "base_model", "model", "adapter", "checkpoints", mode="before")
    @classmethod
    def _given(cls, v: Any) -> Any:
        return _given(v)


class Tracking(Section):
    """MLflow tracking and registry. ``MLFLOW_TRACKING_URI`` in the environment wins over ``uri``."""

    uri: str = "sqlite:///mlflow.db"
    """MLFLOW_TRACKING_URI in the environment wins"""
    artifacts: Path = Path("mlartifacts")
    """artifact root for experiments this project creates"""
    experiment: str | None = None
    """default: s2s-<pipeline>"""
    retry_s: float = Field(120.0, ge=0)
    """how long a stage waits out an unreachable tracking server (training keeps going and buffers its metrics
    meanwhile)"""

    @field_validator("artifacts", mode="before")
    @classmethod
    def _given(cls, v: Any) -> Any:
        return _given(v)


class Ingest(Section):
    """Where the raw pairs come from and how they are split (AutoTrain's column names)."""

    source: str = "data/sample/reports.csv"
    """a CSV/JSONL/Parquet file, a folder of train/validation/test files, a datasets save_to_disk folder, or a hub
    dataset name"""
    dataset_config: str | None = None
    """a hub dataset's configuration (cnn_dailymail: "3.0.0")"""
    text_column: str = "text"
    """dotted names pick a key of record columns: translation.en"""
    target_column: str = "target"
    """the column the model learns to write (dotted names too)"""
    train_split: str = "train"
    """split names in a folder/dataset; slices work: train[:5000]"""
    valid_split: str | None = None
    """empty: the source's validation split if it has one, else seeded"""
    test_split: str | None = None
    """empty: the source's test split if it has one, else seeded"""
    source_prefix: str = ""
    """T5-style task prefix, prepended to every non-blank input"""
    delimiter: str | None = None
    """of a delimited file (tab, comma, ";", "|"); empty: by name (.tsv tab, .psv pipe), sniffed for .csv"""
    valid_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """share split off train when there is no validation split"""
    test_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """share held out for evaluation and promotion (0: none)"""
    max_samples: int | None = Field(None, gt=0)
    """cap on rows read from the train split"""
    strip: bool = True
    """trim surrounding whitespace (counted)"""
    dedup: bool = True
    """drop exact (text, target) duplicates (counted)"""
    seed: int = Field(42, ge=0)
    """numpy's generators take no negative seed"""

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
    """fewest rows each split must have (GX passes per-row checks on an empty table)"""
    min_text_chars: int = Field(1, ge=1)
    """shortest input, in characters"""
    max_text_chars: int = Field(20_000, gt=0)
    """longest input, in characters"""
    min_target_chars: int = Field(1, ge=1)
    """shortest target, in characters"""
    max_target_chars: int = Field(5_000, gt=0)
    """longest target, in characters"""
    mostly: float = Field(1.0, gt=0.0, le=1.0)
    """share of rows that must pass the per-row checks (nulls, types, blanks, control characters, lengths)"""
    max_truncation_rate: float = Field(0.01, ge=0.0, le=1.0)
    """inputs/targets longer than train.max_seq_length / train.max_target_length tokens"""
    max_duplicate_rate: float = Field(0.0, ge=0.0, le=1.0)
    """repeated (text, target) pairs within a split"""
    max_leakage_rate: float = Field(0.0, ge=0.0, le=1.0)
    """validation/test inputs that also appear in train"""
    max_copy_rate: float = Field(0.05, ge=0.0, le=1.0)
    """targets identical to their input"""
    min_text_distinct_ratio: float = Field(0.01, ge=0.0, le=1.0)
    """distinct inputs / rows (and at least 2 distinct values)"""
    min_target_distinct_ratio: float = Field(0.01, ge=0.0, le=1.0)
    """distinct targets / rows: labels-as-targets need it lower"""
    max_dropped_duplicate_rate: float = Field(0.5, ge=0.0, le=1.0)
    """share of the rows read that ingest.dedup dropped as repeats"""
    token_sample: int = Field(5_000, gt=0)
    """rows per split tokenized for the truncation check (seeded; every row below this size)"""

    @field_validator("min_rows")
    @classmethod
    def _known_splits(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = set(v) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(f"validate.min_rows: unknown split(s) {sorted(unknown)}; use train, validation, test")
        return v
