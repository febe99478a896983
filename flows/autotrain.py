"""AutoTrain compatibility: its seq2seq CLI flags and YAML config, as overrides of params.yaml.

A team moving from ``autotrain seq2seq --train --model ... --data-path ...`` (or an AutoTrain
``config.yml`` with ``task: seq2seq``) can run the same command as ``s2s train ...``: every
flag and key maps onto one setting here, and anything AutoTrain has that this project does not
do is refused with a message saying what to use instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tasks.core.errors import ConfigError, PipelineError

# AutoTrain's Seq2SeqParams that are ``train.*`` settings under the same name.
TRAIN_PARAMS = (
    "lr",
    "epochs",
    "batch_size",
    "max_seq_length",
    "max_target_length",
    "warmup_ratio",
    "gradient_accumulation",
    "optimizer",
    "scheduler",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "logging_steps",
    "eval_strategy",
    "auto_find_batch_size",
    "mixed_precision",
    "save_total_limit",
    "peft",
    "quantization",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "early_stopping_patience",
    "early_stopping_threshold",
)
# Everything else AutoTrain takes, and where it goes here.
OTHER_PARAMS = {
    "model": "train.model",
    "base_model": "train.model",
    "data_path": "ingest.source",
    "text_column": "ingest.text_column",
    "target_column": "ingest.target_column",
    "train_split": "ingest.train_split",
    "valid_split": "ingest.valid_split",
    "max_samples": "ingest.max_samples",
    "project_name": "register.model_name",
    # names from transformers' scripts, accepted too
    "generation_max_length": "evaluate.generation_max_length",
    "generation_num_beams": "evaluate.num_beams",
    "source_prefix": "ingest.source_prefix",
}
# AutoTrain options that turn a setting off: true here is false there
INVERTED = {"disable_gradient_checkpointing": "train.gradient_checkpointing"}
BOOLEAN_FLAGS = ("peft", "auto_find_batch_size", *INVERTED)
IGNORED = ("train", "backend")  # `--train` and `backend: local` mean what s2s does anyway


# AutoTrain flags with no setting behind them (each gets its explanation in to_overrides)
logger = logging.getLogger(__name__)
FLAG_ONLY: dict[str, type] = {"log": str, "push_to_hub": bool, "username": str, "token": str}
FLAG_ONLY_HELP = {
    "log": "mlflow (always on), tensorboard (event files too: train.tensorboard) or none",
    "push_to_hub": "declined with a note: the model is registered in MLflow, never published",
    "username": "accepted and unused (it only names the hub repo AutoTrain would publish to)",
    "token": "a hub token for private models, used from this process's environment (HF_TOKEN), never stored",
}


def cli_flags() -> dict[str, type]:
    """Every AutoTrain flag ``s2s train`` takes, with its type, read off the settings it maps to
    (so the flag list and the settings are one fact)."""
    import typing

    from tasks.core.config import SECTIONS

    def kind(setting: str) -> type:
        section, key = setting.split(".", 1)
        annotation = SECTIONS[section].model_fields[key].annotation
        options = typing.get_args(annotation) or (annotation,)
        for candidate in (bool, int, float):
            if candidate in options or annotation is candidate:
                return candidate
        return str

    flags = {name: bool if name in BOOLEAN_FLAGS else kind(f"train.{name}") for name in TRAIN_PARAMS}
    flags.update({name: kind(setting) for name, setting in OTHER_PARAMS.items() if name != "base_model"})
    flags.update({name: bool for name in INVERTED})
    flags.update(FLAG_ONLY)
    return flags


def setting_of(flag: str) -> str | None:
    """The ``section.key`` an AutoTrain flag sets (None for the flags with no setting behind them)."""
    return f"train.{flag}" if flag in TRAIN_PARAMS else OTHER_PARAMS.get(flag) or INVERTED.get(flag)


# where an AutoTrain YAML config holds what a flag sets (the rest sit under params:)
YAML_KEYS = {
    "data_path": "data.path",
    "train_split": "data.train_split",
    "valid_split": "data.valid_split",
    "text_column": "data.column_mapping.text_column",
    "target_column": "data.column_mapping.target_column",
    "model": "base_model",
    "base_model": "base_model",
    "project_name": "project_name",
}


def user_names(from_config: bool) -> dict[str, str]:
    """setting -> the name an AutoTrain user gave it: the flag (``--text-column``), or the key of
    their YAML config (``data.column_mapping.text_column``)."""
    out: dict[str, str] = {}
    for flag in cli_flags():
        setting = setting_of(flag)
        if setting is None or setting in out:
            continue
        out[setting] = YAML_KEYS.get(flag, f"params.{flag}") if from_config else "--" + flag.replace("_", "-")
    return out


@contextlib.contextmanager
def autotrain_terms(from_config: bool) -> Iterator[None]:
    """A PipelineError raised in the block says its settings in the user's AutoTrain names."""
    try:
        yield
    except PipelineError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (in_autotrain_terms(exc.args[0], from_config), *exc.args[1:])
        raise


def in_autotrain_terms(message: str, from_config: bool) -> str:
    """``message`` with every setting an AutoTrain name maps onto said in the user's own terms
    first: ``ingest.text_column`` -> ``--text-column (ingest.text_column)``."""
    names = user_names(from_config)
    pattern = "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True))
    return re.sub(rf"(?<![\w.])({pattern})(?![\w])", lambda m: f"{names[m.group(1)]} ({m.group(1)})", message)


def flag_help() -> dict[str, str]:
    """Help text for every flag of ``s2s train``: the setting it sets, its help (the schema's) and
    the value params.yaml ships; the flags with no setting say what they do."""
    from tasks.core import project
    from tasks.core.config import PARAMS_FILE, parse_yaml, setting_help

    text = (project.templates() / PARAMS_FILE).read_text(encoding="utf-8")
    comments, shipped = setting_help(), parse_yaml(text, PARAMS_FILE)

    def value(setting: str) -> Any:
        node: Any = shipped
        for part in setting.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    out = {}
    for flag in cli_flags():
        setting = setting_of(flag)
        if setting is None:
            out[flag] = FLAG_ONLY_HELP[flag]
            continue
        said = comments.get(setting, "")
        turns = f"turns {setting} off: " if flag in INVERTED else ""
        out[flag] = f"{turns}{said} " if said or turns else ""
        out[flag] += f"({setting}; params.yaml: {_value(value(setting))})"
    return out


def _value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _special(name: str, key, value) -> list[str] | None:
    """The overrides of an option that is not one setting (none for a declined one); None when
    ``name`` is a plain setting."""
    if name == "push_to_hub":
        if value:  # declined, not an error: the run trains and registers as asked, it just does not publish
            logger.warning(
                "push_to_hub: models are not published to the hub here; this run registers the "
                "model in MLflow (publish a registered version yourself; set push_to_hub: false "
                "to silence this)"
            )
        return []
    if name == "username":
        return []  # only used for publishing to the hub
    if name == "log":
        value = str(value).lower()
        if value not in ("mlflow", "none", "tensorboard"):
            raise ConfigError(
                f"log={value!r}: runs are always tracked in MLflow; use log: mlflow, tensorboard "
                "(event files as well) or none"
            )
        return ["train.tensorboard=true"] if value == "tensorboard" else []  # MLflow stays the record
    if name == "token":  # a hub token for private models: used from the environment, never a setting
        if value and not os.environ.get("HF_TOKEN"):
            os.environ["HF_TOKEN"] = str(value)  # this process only; scrubbed from every log
        return []
    if name in INVERTED:
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            raise ConfigError(f"{key}={value!r}: true or false")
        on = not (value if isinstance(value, bool) else str(value).lower() == "true")
        return [f"{INVERTED[name]}={str(on).lower()}"]
    return None


def to_overrides(params: dict[str, Any]) -> list[str]:
    """``{"lr": 1e-4, "text_column": "article", ...}`` (AutoTrain names) -> ``["train.lr=0.0001", ...]``."""
    out: list[str] = []
    for key, value in params.items():
        name = str(key).replace("-", "_")
        if value is None or name in IGNORED:
            continue
        if (special := _special(name, key, value)) is not None:
            out += special
        elif name in TRAIN_PARAMS:
            out.append(f"train.{name}={_value(value)}")
        elif name in OTHER_PARAMS:
            out.append(f"{OTHER_PARAMS[name]}={_value(value)}")
        else:
            raise ConfigError(
                f"unknown AutoTrain option {key!r}; known: "
                + ", ".join(sorted((*TRAIN_PARAMS, *OTHER_PARAMS, *INVERTED)))
            )
    if any(o.startswith("register.model_name=") for o in out):
        name = next(o for o in out if o.startswith("register.model_name=")).split("=", 1)[1]
        out.append(f"tracking.experiment={name}")  # one experiment per project, as in AutoTrain
    return out


ENV_VAR = re.compile(r"\$\{(\w+)\}")


def expand_env(value: Any) -> Any:
    """``${VAR}`` in AutoTrain config values, from the environment (unset: empty), recursively."""
    if isinstance(value, str):
        return ENV_VAR.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def config_overrides(path: Path) -> list[str]:
    """An AutoTrain YAML config (``task: seq2seq``, ``base_model``, ``data``, ``params``, ``hub``),
    as AutoTrain ships them: ``${VAR}`` values come from the environment, ``log: tensorboard``
    writes event files too, ``mixed_precision: none`` means none, the hub token is used for
    private models and publishing is declined with a note."""
    from tasks.core.config import read_yaml

    spec = expand_env(read_yaml(path, what="the AutoTrain config"))
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: an AutoTrain config is a mapping (task, base_model, data, params)")
    task = spec.pop("task", None)
    if task not in ("seq2seq", "text2text"):
        raise ConfigError(f"{path}: task is {task!r}; s2s trains seq2seq models (task: seq2seq)")

    def mapping(value: Any, where: str, keys: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {where} must be a mapping ({keys}), got {value!r}")
        return dict(value)

    flat: dict[str, Any] = {}
    data = mapping(spec.pop("data", None), "data", "path, train_split, valid_split, column_mapping")
    flat["data_path"] = data.pop("path", None)
    for key in ("train_split", "valid_split"):
        flat[key] = data.pop(key, None)
    flat.update(mapping(data.pop("column_mapping", None), "data.column_mapping", "text_column, target_column"))
    if data:
        raise ConfigError(
            f"{path}: unknown data key(s) {sorted(data)}; use path, train_split, valid_split, column_mapping"
        )
    flat.update(mapping(spec.pop("params", None), "params", "epochs, lr, batch_size, ..."))
    hub = mapping(spec.pop("hub", None), "hub", "username, token, push_to_hub")
    unknown = set(hub) - {"username", "token", "push_to_hub"}
    if unknown:
        raise ConfigError(f"{path}: unknown hub key(s) {sorted(unknown)}; use username, token, push_to_hub")
    flat.update(hub)
    flat.update(spec)  # base_model, project_name, log, backend
    return to_overrides(flat)
