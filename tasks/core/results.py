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
# what only one run knows (its MLflow run id, its timings) is kept beside a result, in this folder
# under the result's, and not in the file DVC records: then a fresh clone's `make run` or `dvc
# repro` writes the dvc.lock it was cloned with, and `git status` stays clean
RUN_FACTS = ".run"
T = TypeVar("T", bound="StageResult")


class StageResult:
    """JSON round trip for the dataclasses below; ``FILE`` is the name under ``paths.reports``.

    ``RUN_FIELDS`` (``"field"`` or ``"field.key"`` of a dict field) are this run's own facts: they
    go to ``RUN_FACTS/FILE`` with the digest of the file they belong to, and are read back only
    beside that very file (a stale or missing one reads as unknown: empty)."""

    FILE: ClassVar[str]
    STAGE: ClassVar[str]
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ()

    def save(self, folder: Path) -> Path:
        """Write atomically (a unique temporary file, then a rename): a reader sees all or nothing.
        Paths inside are relative to the project root, so a copied or pulled project reads its own.
        The run's facts are written first: a stop between the two leaves a result without them."""
        from tasks.core.paths import atomic_write_json

        path = folder / self.FILE
        stable, facts = _split(asdict(self), self.RUN_FIELDS)
        text = _dumps(stable)
        if self.RUN_FIELDS:
            atomic_write_json(folder / RUN_FACTS / self.FILE, {"for": _digest(text), **facts})
        atomic_write_json(path, stable)
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
        if cls.RUN_FIELDS:
            data = _merge(data, _facts(folder / RUN_FACTS / cls.FILE, _digest(_dumps(data))))
            data.update({n: "" for n in cls.RUN_FIELDS if "." not in n and n not in data})  # unknown here
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        result = cls(**{k: v for k, v in data.items() if k in names})
        result._folder = folder
        return result


def _dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _split(data: dict, run_fields: tuple[str, ...]) -> tuple[dict, dict]:
    """``data`` without the run's facts, and the facts (dotted keys for a dict field's entries)."""
    stable = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    facts = {}
    for name in run_fields:
        field_name, _, key = name.partition(".")
        if key:
            if key in stable.get(field_name, {}):
                facts[name] = stable[field_name].pop(key)
        elif field_name in stable:
            facts[name] = stable.pop(field_name)
    return stable, facts


def _facts(path: Path, digest: str) -> dict:
    """The run's facts saved beside the result whose digest is ``digest``; {} when none are."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # none, or not whole: unknown (a denied read still fails)
        return {}
    return saved if isinstance(saved, dict) and saved.pop("for", None) == digest else {}


def _merge(data: dict, facts: dict) -> dict:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, value in facts.items():
        field_name, _, key = name.partition(".")
        if key:
            merged.setdefault(field_name, {})[key] = value
        else:
            merged[field_name] = value
    return merged


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
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "run_id",
        "resumed_from",
        "resumed_flow_run",
        "metrics.train_runtime_s",
        "metrics.train_tokens_per_s",
    )
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
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("run_id", "registration_key")  # the key hashes the run id
    model_name: str
    version: str
    model_uri: str
    run_id: str = ""
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
            (reports / RUN_FACTS / file).unlink(missing_ok=True)
    return removed
