"""The contracts between stages: small typed results that hold paths and numbers, never tensors.

Each stage returns one of these and also writes it as JSON under ``paths.reports`` (the ingest
manifest lives beside the splits), so the ``dvc repro`` entry point of the next stage, which
runs in a fresh process, can pick it up. Keeping them here means a stage's code depends on this
small module, not on the code of the stages before it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tasks.core.errors import DataError

SPLITS = ("train", "validation", "test")
STAGES = ("ingest", "validate", "train", "evaluate", "register", "promote")  # in the order they run
VALIDATION_REPORT = "validation.json"  # under paths.reports, with the GX Data Docs beside it
VALIDATION_DOCS = "validation_docs"
T = TypeVar("T", bound="StageResult")


class StageResult:
    """JSON round trip for the dataclasses below; ``FILE`` is the name under ``paths.reports``."""

    FILE: ClassVar[str]
    STAGE: ClassVar[str]

    def save(self, folder: Path) -> Path:
        """Write atomically (a unique temporary file, then a rename): a reader sees all or nothing.
        Paths inside are relative to the project root, so a copied or pulled project reads its own."""
        from tasks.core.paths import atomic_write_json

        path = folder / self.FILE
        atomic_write_json(path, asdict(self))
        self._folder = folder
        return path

    @classmethod
    def load(cls: type[T], folder: Path) -> T:
        path = folder / cls.FILE
        if not path.exists():
            raise DataError(f"{path} is missing: run the {cls.STAGE} stage first (s2s run, or dvc repro {cls.STAGE})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); re-run the {cls.STAGE} stage") from None
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        result = cls(**{k: v for k, v in data.items() if k in names})
        result._folder = folder
        return result


@dataclass
class IngestResult(StageResult):
    """Where the splits are and what went into them. Saved beside the splits as manifest.json."""

    FILE: ClassVar[str] = "manifest.json"
    STAGE: ClassVar[str] = "ingest"
    data_dir: str  # relative to the project root, as every path a result stores
    splits: dict[str, str]
    rows: dict[str, int]
    data_version: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)  # "<split>.<step>" -> rows
    origins: dict[str, str] = field(default_factory=dict)  # split -> the file or dataset split it came from


@dataclass
class TrainResult(StageResult):
    FILE: ClassVar[str] = "training.json"
    STAGE: ClassVar[str] = "train"
    model_dir: str
    run_id: str
    data_version: str
    base_model: str
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: str = ""  # the checkpoint a killed training went on from
    resumed_flow_run: str = ""  # the flow run that was training before (closed by the flow)
    fingerprint: str = ""  # the settings and data it was trained on (train.fingerprint)


@dataclass
class EvaluateResult(StageResult):
    FILE: ClassVar[str] = "evaluation.json"
    STAGE: ClassVar[str] = "evaluate"
    split: str
    n_examples: int
    metrics: dict[str, float]
    predictions_path: str
    worst: list[dict[str, Any]] = field(default_factory=list)
    # {"version", "metrics", "intervals"}: the champion on the same rows, and candidate - champion
    # per metric with its paired-bootstrap interval (gates.confidence; absent when null)
    champion: dict[str, Any] | None = None
    primary: str = ""  # the metric promotion compares on (the config resolves it)
    by_length: list[dict[str, Any]] = field(default_factory=list)
    # {"figures", "examples"}: blank, looping, identical and collapsed outputs (tasks/metrics/degenerate.py)
    degenerate: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegisterResult(StageResult):
    FILE: ClassVar[str] = "registration.json"
    STAGE: ClassVar[str] = "register"
    model_name: str
    version: str
    model_uri: str
    run_id: str
    registration_key: str = ""


@dataclass
class PromoteResult(StageResult):
    FILE: ClassVar[str] = "promotion.json"
    STAGE: ClassVar[str] = "promote"
    ALSO: ClassVar[tuple[str, ...]] = ("promotion_report.html",)  # written beside it (tasks/promote)
    model_name: str
    version: str
    promoted: bool
    reasons: list[str]
    failed: list[str]
    alias: str
    previous_champion: str | None = None
    champion: str | None = None
    intervals: dict[str, dict] = field(default_factory=dict)  # candidate - champion, paired bootstrap
    awaiting: bool = False  # passed the gates, waits for a person (gates.approval: required)


def load_split(ingested: IngestResult, name: str, columns: list[str] | None = None):
    """One split as a DataFrame: ``text``, ``target``, ``source_row`` (1-based row in the raw
    file) and ``text_type`` / ``target_type`` (the raw values' Python type names)."""
    import pandas as pd

    # the manifest lives beside the splits: where it was read from (or written to) is where they are
    folder = getattr(ingested, "_folder", None) or Path(ingested.data_dir)
    return pd.read_parquet(Path(folder) / ingested.splits[name], columns=columns)


# the decisions a later stage writes about the model: gone once an earlier stage runs again, so a
# run that fails or is killed before them leaves no earlier run's decision that reads as its own
DECISIONS = (EvaluateResult, RegisterResult, PromoteResult)


def clear_after(reports: Path, stage: str) -> list[str]:
    """Remove the results of the decision stages after ``stage`` (the stage about to run);
    returns the file names removed."""
    later = [r for r in DECISIONS if STAGES.index(r.STAGE) > STAGES.index(stage)]
    removed = []
    for result in later:
        for file in (result.FILE, *getattr(result, "ALSO", ())):
            path = reports / file
            if path.is_file():
                path.unlink()
                removed.append(file)
    return removed
