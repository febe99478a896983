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
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tasks.core.errors import ConfigError, suggest  # noqa: F401 (suggest: imported from here too)
from tasks.core.sections.data import Ingest, Paths, Section, Tracking, Validate
from tasks.core.sections.pipeline import PIPELINE_KEYS, PipelineSpec  # noqa: F401
from tasks.core.sections.release import Degenerate, Drift, Evaluate, Gates, Notify, Promote, Register, Serve  # noqa: F401
from tasks.core.sections.training import OPTIMIZERS, Scratch, Train  # noqa: F401 (imported from here)
from tasks.core.yaml_files import parse_yaml, read_yaml, setting_comments  # noqa: F401

PARAMS_FILE = "params.yaml"
RUNS_DIR = "runs"
PIPELINES_FILE = "pipelines.yaml"
DEFAULT_PIPELINE = "default"


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


def setting_help(model: type[BaseModel] | None = None, prefix: str = "") -> dict[str, str]:
    """``section.key`` -> the setting's help: the docstring under its field in the schema
    (tasks/core/sections/), its one home. params.yaml's comments quote it (a test holds them to it)."""
    out: dict[str, str] = {}
    for name, model_ in {prefix: model}.items() if model else SECTIONS.items():
        for key, field_ in model_.model_fields.items():
            dotted = f"{name}.{key}" if name else key
            out[dotted] = " ".join((field_.description or "").split())
            nested = _section_type(field_.annotation)
            if isinstance(nested, type) and issubclass(nested, BaseModel):
                out.update(setting_help(nested, dotted))
    return out


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
