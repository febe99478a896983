"""Stage 5, register: log the trained model as an MLflow pyfunc and create a model version.

The version carries the tags a reviewer needs to trust it (tasks/tracking/version_tags.py): data
version (DVC hash), git commit, params hash, pipeline, Prefect flow run id; its scores are the
metrics of its run and logged model, and its model card is the description.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import tempfile
from importlib import metadata
from pathlib import Path

from tasks.core import logs
from tasks.core.config import Config
from tasks.core.errors import TrackingError
from tasks.core.results import EvaluateResult, IngestResult, RegisterResult, TrainResult, load_split
from tasks.modeling import ct2
from tasks.modeling.engines import CT2, GenerationSettings
from tasks.tracking import client as tracking
from tasks.tracking import lineage, reads, registry, version_tags
from tasks.tracking.run import RunHandle

logger = logging.getLogger(__name__)

# shipped as source with every version (loaded by path, never imported here)
SERVING = Path(importlib.util.find_spec("tasks.serving.pyfunc").origin)
# the generation layer it runs (engines.py opens ct2.py or generation.py) and the recurrent type
SHIPPED_CODE = [
    Path(importlib.util.find_spec(m).origin)
    for m in ("tasks.modeling.engines", "tasks.modeling.ct2", "tasks.modeling.generation", "tasks.modeling.rnn_model")
]
RUNTIME_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "sentencepiece", "mlflow")


def pip_requirements(adapter: bool = False, converted: bool = False) -> list[str]:
    """Exact pins of what the pyfunc needs at load time (no slow requirement inference)."""
    reqs = []
    for pkg in RUNTIME_PACKAGES + (("peft",) if adapter else ()) + (("ctranslate2",) if converted else ()):
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def serving_settings(cfg: Config) -> dict:
    """What the version's settings.json holds: the pipeline's GenerationSettings."""
    return GenerationSettings.from_config(cfg).to_dict()


def exported_model(cfg: Config, trained: TrainResult) -> str:
    """What the version holds: the model folder, or with LoRA and ``register.lora_export:
    adapter`` the adapter folder (which names its base model)."""
    if cfg.train.peft and cfg.register.lora_export == "adapter":
        adapter = cfg.path("adapter")
        if not (adapter / "adapter_config.json").is_file():
            raise TrackingError(f"register.lora_export=adapter but {adapter} holds no adapter; re-run training")
        return str(adapter)
    return str(cfg.resolve(trained.model_dir))


# the training settings a model card lists
CARD_SETTINGS = (
    "lr",
    "epochs",
    "max_steps",
    "batch_size",
    "max_seq_length",
    "max_target_length",
    "scheduler",
    "optimizer",
    "peft",
)


def model_card(
    cfg: Config, trained: TrainResult, evaluated: EvaluateResult, ingested: IngestResult, model_dir: str
) -> str:
    """README.md for the registered model: task, data, base model, settings, scores, usage."""
    from tasks.core.config import load_pipelines

    t = cfg.train
    description = load_pipelines(cfg.root).get(cfg.pipeline, {}).get("description", "")
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in evaluated.metrics.items())
    champion = ""
    if evaluated.champion:
        champion = (
            f"\nOn the same rows, champion v{evaluated.champion['version']} scored "
            + ", ".join(f"{k} {v:.4f}" for k, v in evaluated.champion["metrics"].items())
            + ".\n"
        )
    kind = (
        "LoRA adapter (loads its base model)"
        if (Path(model_dir) / "adapter_config.json").is_file()
        else ("LoRA merged into the base model" if t.peft else "full fine-tune")
    )
    settings = ", ".join(f"{k}={getattr(t, k)}" for k in CARD_SETTINGS)
    rows = "/".join(str(ingested.rows.get(k, 0)) for k in ("train", "validation", "test"))
    return f"""# {cfg.register.model_name}

Sequence-to-sequence model trained by the `{cfg.pipeline}` pipeline of s2s-pipeline.
{description}

## Intended use
Input: text (the source prefix `{cfg.ingest.source_prefix}` is added automatically). Output: generated text.
Trained and evaluated only on the data below; check it on your own data before relying on it.

## Model
- base model: `{t.model}` ({kind})
- parameters: {int(trained.metrics.get("n_parameters", 0)):,}
- training: {settings}
- MLflow run: `{trained.run_id}`, params hash `{cfg.params_hash()}`,
  git commit `{tracking.git_commit(cfg.root)}`

## Data
- source: `{cfg.ingest.source}` (data version `{ingested.data_version}`, the md5 DVC records)
- rows train/validation/test: {rows}

## Evaluation ({evaluated.split} split, {evaluated.n_examples} examples, beams {cfg.evaluate.num_beams}, \
max {cfg.evaluate.generation_max_length} new tokens)
| metric | value |
|---|---|
{metrics}
{champion}
## Usage
```python
import mlflow
model = mlflow.pyfunc.load_model("models:/{cfg.register.model_name}@champion")
model.predict(["your input text"])
```
"""


def log_pyfunc(cfg: Config, run_id: str, model_dir: str, examples: list[str], card: str = "", name: str = "model"):
    """Save the pyfunc wrapper around ``model_dir`` and log it as a LoggedModel ``name`` of ``run_id``.

    The client-side equivalent of ``mlflow.pyfunc.log_model``, which only works through the
    process-global fluent state. Returns the LoggedModel.
    """
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model
    from mlflow.pyfunc import save_model

    c = tracking.client(cfg)
    logged = c.create_logged_model(
        tracking.experiment_id(cfg, c),
        name=name,
        source_run_id=run_id,
        model_type="seq2seq",
    )
    c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    with tempfile.TemporaryDirectory() as tmp:
        settings = Path(tmp) / "settings.json"
        settings.write_text(json.dumps(serving_settings(cfg), indent=2))
        local = Path(tmp) / "model"
        meta = Model(
            artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id, model_uuid=logged.model_id
        )
        artifacts = {"hf_model": model_dir, "settings": str(settings)}
        if cfg.evaluate.backend != "hf" and CT2.unsupported(model_dir, cache=ct2.cache_dir(cfg)) is None:
            artifacts["ct2_model"] = str(ct2.convert(model_dir, ct2.cache_dir(cfg)))  # the converted copy beside it
        save_model(
            path=str(local),
            python_model=str(SERVING),  # model from code: stored as source, nothing pickled
            artifacts=artifacts,
            code_paths=[str(p) for p in SHIPPED_CODE],
            pip_requirements=pip_requirements(
                adapter=(Path(model_dir) / "adapter_config.json").is_file(), converted="ct2_model" in artifacts
            ),
            input_example=examples,
            mlflow_model=meta,
        )
        if card:
            (local / "README.md").write_text(card, encoding="utf-8")
        c.log_model_artifacts(logged.model_id, str(local))
    return c.finalize_logged_model(logged.model_id, "READY")


def registration_key(cfg: Config, trained: TrainResult, evaluated: EvaluateResult) -> str:
    """What makes a registration this one: the training run, its evaluation, the serving settings."""
    return hashlib.sha256(
        json.dumps(
            {
                "run": trained.run_id,
                "metrics": evaluated.metrics,
                "serving": serving_settings(cfg),
                "export": cfg.register.lora_export,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:20]


def register(
    cfg: Config, trained: TrainResult, evaluated: EvaluateResult, ingested: IngestResult, run: RunHandle | None = None
) -> RegisterResult:
    """Log the trained model as a pyfunc of the training run and register a new version, once.

    A retry after a failure (or ``s2s register`` after an outage) never registers twice: under the
    model's lock, a version carrying this registration key is the result. Registry errors are
    transient (retried); the trained model stays on disk meanwhile."""
    name = cfg.register.model_name
    c = tracking.client(cfg)
    tags = version_tags.from_run(tracking.run_tags(cfg, ingested.data_version))
    key = tags["registration_key"] = registration_key(cfg, trained, evaluated)
    try:
        registry.ensure_model(cfg, name, f"seq2seq model of the {cfg.pipeline!r} pipeline")
        with registry.locked_model(cfg, name):
            done = reads.call(
                cfg,
                lambda: c.search_model_versions(f"name='{name}' and tags.registration_key='{key}'"),
                f"looking up earlier registrations of {name!r}",
            )
            if done:
                version = str(max(int(v.version) for v in done))
                logger.info(
                    "register: run %s (same evaluation and settings) is already %s version %s; "
                    "not registering it again",
                    trained.run_id,
                    name,
                    version,
                )
            else:
                version = _new_version(cfg, c, name, trained, evaluated, ingested, tags)
                logger.info("register: %s version %s (run %s)", name, version, trained.run_id)
        if run is not None:
            run.set_tags({"registered_version": version})
    except TrackingError as exc:
        raise TrackingError(
            f"{exc}. The trained and evaluated model stays in place: `s2s register` completes the registration later",
            transient=exc.transient,
        ) from None
    result = RegisterResult(
        model_name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        run_id=trained.run_id,
        registration_key=key,
    )
    result.save(cfg.path("reports"))
    return result


def is_current(cfg: Config, result: RegisterResult) -> bool:
    """A cached registration still holds: that version exists in the store the run points at now,
    with the same registration key (a cache must never vouch for a registry it has not read)."""
    version = reads.get_version(cfg, result.model_name, result.version)
    return version is not None and (version.tags or {}).get("registration_key") == result.registration_key


def _new_version(
    cfg: Config, c, name: str, trained: TrainResult, evaluated: EvaluateResult, ingested: IngestResult, tags: dict
) -> str:
    examples = [t.removeprefix(cfg.ingest.source_prefix) for t in load_split(ingested, evaluated.split)["text"][:2]]
    exported = exported_model(cfg, trained)
    card = model_card(cfg, trained, evaluated, ingested, exported)
    # named after the version it becomes: the next number, as registrations of this model are
    # serialized by its lock (a version deleted at the top, or one registered without the lock,
    # shifts it: then the mlflow.modelVersions tag set below is what links the two)
    expected = next_version(cfg, c, name)
    logged = reads.call(
        cfg,
        lambda: log_pyfunc(
            cfg, trained.run_id, exported, examples, card, name=lineage.logged_model_name(name, expected)
        ),
        "logging the model",
    )
    linked = lineage.model_metrics(evaluated.metrics, logged.model_id, trained.run_id, ingested.data_version, "test")
    reads.call(  # the model page shows them as metrics, measured on the test dataset
        cfg, lambda: c.log_batch(trained.run_id, metrics=linked), "logging the model's metrics"
    )
    mv = reads.call(
        cfg,
        lambda: c.create_model_version(
            # the artifact location, not "models:/<id>": that form is resolved via the global store
            name,
            source=logged.artifact_location,
            run_id=trained.run_id,
            model_id=logged.model_id,
            tags=tags,
            description=card,
        ),
        f"creating a version of {name!r}",
    )
    version = str(mv.version)
    if version != expected:
        logger.warning("register: logged model %s became %s version %s", logged.name, name, version)
    link_logged_model(cfg, c, logged.model_id, name, version)
    return version


def next_version(cfg: Config, c, name: str) -> str:
    """The number the next version of ``name`` gets when nothing else registers meanwhile."""
    latest = reads.call(
        cfg,
        lambda: c.search_model_versions(f"name='{name}'", max_results=1, order_by=["version_number DESC"]),
        f"reading the latest version of {name!r}",
    )
    return str(int(latest[0].version) + 1 if latest else 1)


def link_logged_model(cfg: Config, c, model_id: str, name: str, version: str) -> None:
    """Tag the LoggedModel with the registered version it is (``mlflow.modelVersions``, the
    experiment's Models list shows it), unless the tracking server already did."""
    model = reads.call(cfg, lambda: c.get_logged_model(model_id), "reading the logged model")
    existing = (model.tags or {}).get(lineage.MODEL_VERSIONS_TAG)
    value = lineage.model_versions_tag(existing, name, version)
    if value != existing:
        reads.call(
            cfg,
            lambda: c.set_logged_model_tags(model_id, {lineage.MODEL_VERSIONS_TAG: value}),
            "linking the logged model to its version",
        )


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> RegisterResult:
        reports = cfg.path("reports")
        trained = TrainResult.load(reports)
        if why := cfg.register.skipped_for_experiment():
            logs.progress("register: not registered: %s", why)
            result = RegisterResult(model_name=cfg.register.model_name, version="", model_uri="", run_id="")
            result.save(reports)
            return result
        return register(
            cfg,
            trained,
            EvaluateResult.load(reports),
            IngestResult.load(cfg.path("data")),
            owner.attach(trained.run_id, trained.data_version),
        )

    return stage_main("register", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
