"""Lineage in MLflow's own views: datasets, the logged model's metrics, the experiment's kind.

- The train/validation/test splits are logged as MLflow datasets on the run (context training,
  validation, testing). Their digest is the DVC data version (the md5 DVC records for
  ``ingest.source``) and their source names the DVC-tracked path, so the run page and the
  experiment's Datasets view show which data version a model saw (mlflow#867).
- The evaluation metrics are logged on the LoggedModel and linked to the test dataset (MLflow 3),
  so the model page shows them as metrics, per dataset, not as a pile of ``metric.*`` tags.
- The experiment opens in MLflow's model-training mode, on its runs with the metrics as columns.
  MLflow 3.x UIs up to about 3.9 read the mode from the experiment's ``mlflow.experimentKind`` tag
  (:data:`KIND`). Later ones (3.17 included) ignore that tag: the mode is a global switch of
  the UI, read from the page address's ``workflowType`` parameter, else from the browser's local
  storage (``mlflow.workflowType``), else ``genai`` (server/js: WorkflowTypeContext.tsx,
  useExperimentKind in ExperimentKindUtils.ts). So every UI address the project gives out
  (:func:`experiment_page`, :func:`model_page`) carries ``workflowType`` =
  :data:`WORKFLOW_TYPE`, the UI's name for the same kind.
- The runs list shows the metrics only as chosen columns; the experiment carries a shared view
  (tag ``mlflow.sharedViewState.<key>``, the UI's "share view") with the evaluation metrics as
  columns, sorted by the primary metric, and :func:`experiment_page` opens it.
- Logged models are named after the registered model and version (:func:`logged_model_name`)
  and carry the ``mlflow.modelVersions`` tag that links them to it.
"""

from __future__ import annotations

from typing import Any

from tasks.core.config import Config
from tasks.core.results import SPLITS, IngestResult, load_split

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"  # model training ("Machine learning" in the UI)
WORKFLOW_TYPE = "machine_learning"  # the newer UIs' name for KIND (their "genai" is genai_development)
PRIMARY_TAG = "mlflow.experiment.primaryMetric.name"
VIEW_KEY = "s2s-runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # what the UI reads for a logged model's registered versions
CONTEXT = {"train": "training", "validation": "validation", "test": "testing"}


def experiment_tags() -> dict[str, str]:
    """What every experiment of the project carries (the primary metric's tag and the runs view
    sorted by it are set by the evaluate stage, the one that reads the gates and the metrics)."""
    return {KIND_TAG: KIND}


def runs_view(cfg: Config) -> str:
    """The experiment's shared runs view: the evaluation metrics and the logged model as columns,
    best primary metric first (the UI's column keys: ``metrics.`name```)."""
    import json

    from tasks import metrics

    primary = cfg.primary_metric
    higher = getattr(metrics.get(primary), "higher_is_better", True)
    names = list(metrics.metrics(cfg.evaluate.metrics))
    return json.dumps(
        {
            "selectedColumns": [f"metrics.`{n}`" for n in names] + ["attributes.`Models`"],
            "orderByKey": f"metrics.`{primary}`",
            "orderByAsc": higher is False,
            **compare_charts(primary, names),
        }
    )


# the runs page's chart view (MLflow's run comparison): the settings a team varies, on the way to the
# primary metric. Params not logged by a run are left out by the chart, so a fixed list is safe.
COMPARED_PARAMS = ("train.lr", "train.epochs", "train.batch_size")
MODEL_SECTION = "Model metrics"  # MLflow's name of the section that holds the runs' own metrics


def compare_charts(primary: str, scores: list[str]) -> dict:
    """The chart view's first charts: parallel coordinates from the training settings to
    ``primary`` (MLflow's own default axis is the first metric a run logged, ``data_rows_train``
    here), then one bar chart per score. The section counts as arranged by hand, so MLflow appends
    the charts it generates for the other metrics after these instead of sorting them in."""
    section = {"uuid": "s2s-model-metrics", "name": MODEL_SECTION, "display": True}
    section |= {"isReordered": True, "deleted": False, "isGenerated": True}
    common = {"runsCountToCompare": 10, "metricSectionId": section["uuid"], "deleted": False}
    charts = [
        {"uuid": "s2s-parallel", "type": "PARALLEL", "isGenerated": False, **common}
        | {"selectedParams": list(COMPARED_PARAMS), "selectedMetrics": [primary], "showAllRuns": False}
    ]
    for name in scores:
        charts.append(
            {"uuid": f"s2s-bar-{name}", "type": "BAR", "isGenerated": True, **common}
            | {"metricKey": name, "displayName": name}
        )
    return {"compareRunCharts": charts, "compareRunSections": [section]}


def experiment_page(experiment_id: str) -> str:
    """The UI address (after ``#/``) of the experiment's runs, in model-training mode, with the
    metrics as columns."""
    return f"experiments/{experiment_id}/runs?workflowType={WORKFLOW_TYPE}&viewStateShareKey={VIEW_KEY}"


def compare_page(experiment_id: str) -> str:
    """The UI address (after ``#/``) of the experiment's runs compared as charts (MLflow's chart
    view): the parallel coordinates on the primary metric first (:func:`compare_charts`)."""
    return experiment_page(experiment_id) + "&compareRunsMode=CHART"


def model_page(name: str, version: str | None = None) -> str:
    """The UI address (after ``#/``) of a registered model or one of its versions, the UI in
    model-training mode."""
    from urllib.parse import quote

    path = f"models/{quote(name, safe='')}" + (f"/versions/{version}" if version is not None else "")
    return f"{path}?workflowType={WORKFLOW_TYPE}"


def logged_model_name(model_name: str, version: str) -> str:
    """The LoggedModel's name: the registered model and the version it becomes (characters
    MLflow refuses in a logged model's name become ``-``)."""
    import re

    return re.sub(r"""[/:.%"']""", "-", f"{model_name}-v{version}")


def model_versions_tag(existing: str | None, name: str, version: str) -> str:
    """The ``mlflow.modelVersions`` value with ``name`` ``version`` added (as the tracking server
    writes it for a registration through it; a direct database store does not)."""
    import json

    entries = json.loads(existing) if existing else []
    entry = {"name": name, "version": int(version)}
    return json.dumps(entries if entry in entries else [*entries, entry])


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
        def _can_resolve(raw_source) -> bool:  # noqa: ARG004 (MLflow's DatasetSource interface)
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
