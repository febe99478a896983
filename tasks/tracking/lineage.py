"""Lineage in MLflow's own views: datasets, the logged model's metrics, the experiment's kind.

- The train/validation/test splits are logged as MLflow datasets on the run (context training,
  validation, testing). Their digest is the DVC data version (the md5 DVC records for
  ``ingest.source``) and their source names the DVC-tracked path, so the run page and the
  experiment's Datasets view show which data version a model saw (mlflow#867).
- The evaluation metrics are logged on the LoggedModel and linked to the test dataset (MLflow 3),
  so the model page shows them as metrics, per dataset, not as a pile of ``metric.*`` tags.
- The experiment is tagged as a model-training experiment (``mlflow.experimentKind``) so the UI
  opens in that mode, with the pipeline's primary metric as its primary metric.
"""

from __future__ import annotations

from typing import Any

from tasks.core.config import Config
from tasks.core.results import SPLITS, IngestResult, load_split

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
PRIMARY_TAG = "mlflow.experiment.primaryMetric.name"
CONTEXT = {"train": "training", "validation": "validation", "test": "testing"}


def experiment_tags(cfg: Config) -> dict[str, str]:
    """What every experiment of the project carries from its creation (the primary metric is set
    by the evaluate stage, the one that reads the gates)."""
    return {KIND_TAG: KIND}


def digest(data_version: str) -> str:
    return data_version[:36]  # MLflow keeps at most 36 characters of a digest; DVC's md5 has 32


def _dvc_source(path: str, data_version: str):
    """A DatasetSource naming the DVC-tracked path and version (source type ``dvc`` in the UI)."""
    from mlflow.data.dataset_source import DatasetSource

    class DvcDatasetSource(DatasetSource):
        def __init__(self, path: str, version: str):
            self.path, self.version = path, version

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self, **kwargs):
            raise NotImplementedError(f"`dvc pull {self.path}` at data version {self.version}, then read it")

        @staticmethod
        def _can_resolve(raw_source) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source):
            raise NotImplementedError

        def to_dict(self) -> dict[str, str]:
            return {"path": self.path, "data_version": self.version}

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict["path"], source_dict["data_version"])

    return DvcDatasetSource(path, data_version)


def split_dataset(cfg: Config, ingested: IngestResult, split: str):
    """One split as an MLflow dataset named after the split, digest = the data version."""
    from mlflow.data.pandas_dataset import PandasDataset

    frame = load_split(ingested, split, columns=["text", "target"])
    return PandasDataset(
        frame,
        source=_dvc_source(str(cfg.ingest.source), ingested.data_version),
        targets="target",
        name=split,
        digest=digest(ingested.data_version),
    )


def dataset_inputs(cfg: Config, ingested: IngestResult) -> list[Any]:
    """The splits as DatasetInputs for ``MlflowClient.log_inputs`` (empty splits left out)."""
    from mlflow.entities import DatasetInput, InputTag

    out = []
    for split in SPLITS:
        if not ingested.rows.get(split):
            continue
        ds = split_dataset(cfg, ingested, split)
        out.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", CONTEXT[split])]))
    return out


def model_metrics(metrics: dict[str, float], model_id: str, run_id: str, data_version: str, split: str) -> list[Any]:
    """Metric entities of the LoggedModel, linked to the dataset they were measured on."""
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    return [
        Metric(
            k,
            float(v),
            ts,
            0,
            model_id=model_id,
            dataset_name=split,
            dataset_digest=digest(data_version),
            run_id=run_id,
        )
        for k, v in metrics.items()
        if v is not None
    ]


PROFILE = "data_profile.json"  # the training data's drift profile (tasks/data/drift.py), a run artifact in data/
TRAIN_INPUTS = "train_inputs.npy"  # hashes of the training inputs (tasks/data/rowkey.py), a run artifact in data/
