"""The params.yaml sections of where things go and what data comes in: ``paths``, ``tracking``,
``ingest``, ``validate`` (and :class:`Section`, the base of every section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
