"""AutoTrain compatibility: flags and YAML configs map onto params.yaml settings; what AutoTrain
has and s2s does not is refused with a reason; `s2s train` runs the pipeline from them."""

import csv
import logging

import pytest
import yaml
from conftest import REPO, make_project, run_cli
from docs_text import code_block, run_tutorial
from hypothesis import given
from hypothesis import strategies as st

from flows.autotrain import config_overrides, in_autotrain_terms, to_overrides, user_names
from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.tracking import client as tracking

pytestmark = pytest.mark.system


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"lr": 1e-4, "batch_size": 4}, ["train.lr=0.0001", "train.batch_size=4"]),
        (
            {"text-column": "article", "target_column": "summary"},
            ["ingest.text_column=article", "ingest.target_column=summary"],
        ),
        (
            {"model": "google/flan-t5-small", "data_path": "data/x.csv"},
            ["train.model=google/flan-t5-small", "ingest.source=data/x.csv"],
        ),
        (
            {"peft": True, "quantization": "int8", "target_modules": ["q", "v"]},
            ["train.peft=true", "train.quantization=int8", "train.target_modules=[q, v]"],
        ),
        ({"project_name": "news"}, ["register.model_name=news", "tracking.experiment=news"]),
        ({"generation_num_beams": 4, "train": True, "backend": "local", "log": "mlflow"}, ["evaluate.num_beams=4"]),
    ],
)
def test_flags_map_to_settings(params, expected):
    assert to_overrides(params) == expected


@pytest.mark.parametrize(
    "params, message",
    [
        ({"log": "wandb"}, "always tracked in MLflow"),
        ({"learning_rate": 0.1}, "unknown AutoTrain option 'learning_rate'"),
    ],
)
def test_unsupported_options_say_what_to_do(params, message):
    with pytest.raises(ConfigError, match=message):
        to_overrides(params)


def test_yaml_config(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "seq2seq",
                "base_model": "google/flan-t5-small",
                "project_name": "summarizer",
                "log": "mlflow",
                "backend": "local",
                "data": {
                    "path": "data/news",
                    "train_split": "train",
                    "valid_split": "validation",
                    "column_mapping": {"text_column": "article", "target_column": "highlights"},
                },
                "params": {"epochs": 2, "lr": 3e-4, "peft": True, "max_seq_length": 512},
                "hub": {"username": "x", "push_to_hub": False},
            }
        )
    )
    assert sorted(config_overrides(path)) == sorted(
        [
            "ingest.source=data/news",
            "ingest.train_split=train",
            "ingest.valid_split=validation",
            "ingest.text_column=article",
            "ingest.target_column=highlights",
            "train.epochs=2",
            "train.lr=0.0003",
            "train.peft=true",
            "train.max_seq_length=512",
            "train.model=google/flan-t5-small",
            "register.model_name=summarizer",
            "tracking.experiment=summarizer",
        ]
    )


def test_yaml_config_for_another_task_is_refused(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("task: llm-sft\nbase_model: x\n")
    with pytest.raises(ConfigError, match="task is 'llm-sft'; s2s trains seq2seq models"):
        config_overrides(path)


@pytest.mark.integration
@pytest.mark.slow  # make test has docs/tutorials/autotrain.md (a config) and your-data.md (flags)
def test_s2s_train_with_autotrain_config_and_flags(tmp_path):
    root = make_project(tmp_path / "proj", pipelines={"default": {"gates": {"min": {"rougeL": 0.0, "rouge1": 0.0}}}})
    config = root / "autotrain.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "seq2seq",
                "base_model": "scratch",
                "project_name": "my-summarizer",
                "data": {
                    "path": "data/sample/reports.csv",
                    "column_mapping": {"text_column": "text", "target_column": "target"},
                },
                "params": {"epochs": 1, "batch_size": 16},
            }
        )
    )
    proc = run_cli(
        "train", "--config", str(config), "--lr", "0.002", "--max-samples", "300", cwd=root, env={"S2S_ROOT": str(root)}
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    cfg = load_config(root=root)
    client = tracking.client(cfg)
    version = client.get_model_version_by_alias("my-summarizer", "champion")
    run = client.get_run(version.run_id)
    assert run.data.params["train.lr"] == "0.002" and run.data.params["train.epochs"] == "1.0"
    assert client.get_experiment(run.info.experiment_id).name == "my-summarizer"


def test_push_to_hub_is_declined_with_a_warning_and_the_run_goes_on(caplog):
    with caplog.at_level(logging.WARNING):
        assert to_overrides({"push_to_hub": True, "username": "someone", "lr": 1e-4}) == ["train.lr=0.0001"]
    assert "not published to the hub" in caplog.text
    caplog.clear()
    assert to_overrides({"push_to_hub": False}) == [] and not caplog.text


# AutoTrain's own configs/seq2seq/local.yml and hub_dataset.yml (autotrain-advanced), byte for
# byte except the two lines a user edits: data.path and base_model.
LOCAL_YML = """task: seq2seq
base_model: {model}
project_name: autotrain-seq2seq-local
log: tensorboard
backend: local

data:
  path: {path}
  train_split: train
  valid_split: test
  column_mapping:
    text_column: text
    target_column: target


params:
  max_seq_length: 512
  epochs: 3
  batch_size: 4
  lr: 2e-5
  optimizer: adamw_torch
  scheduler: linear
  gradient_accumulation: 1
  mixed_precision: none

hub:
  username: ${{HF_USERNAME}}
  token: ${{HF_TOKEN}}
  push_to_hub: true"""

HUB_DATASET_YML = """task: seq2seq
base_model: {model}
project_name: autotrain-seq2seq-hub-dataset
log: tensorboard
backend: local

data:
  path: {path}
  train_split: train
  valid_split: test
  column_mapping:
    text_column: dialogue
    target_column: summary

params:
  max_seq_length: 512
  epochs: 3
  batch_size: 4
  lr: 2e-5
  optimizer: adamw_torch
  scheduler: linear
  gradient_accumulation: 1
  mixed_precision: none

hub:
  username: ${{HF_USERNAME}}
  token: ${{HF_TOKEN}}
  push_to_hub: true"""


def _sample_rows(root, n):
    with (root / "data" / "sample" / "reports.csv").open(newline="") as f:
        return list(csv.DictReader(f))[:n]


def test_hub_dataset_config_as_shipped(tmp_path, monkeypatch):
    """hub_dataset.yml with data.path pointing at a save_to_disk copy of the data set: every
    setting lands where it should, `${VAR}` comes from the environment, the token becomes HF_TOKEN
    for this process and no setting, and valid_split: test is not reused as the test split."""
    from datasets import Dataset, DatasetDict

    from tasks.data.sources import read_source

    root = make_project(tmp_path / "proj")
    rows = _sample_rows(root, 60)
    dd = DatasetDict(
        {
            "train": Dataset.from_dict(
                {"dialogue": [r["text"] for r in rows[:40]], "summary": [r["target"] for r in rows[:40]]}
            ),
            "test": Dataset.from_dict(
                {"dialogue": [r["text"] for r in rows[40:]], "summary": [r["target"] for r in rows[40:]]}
            ),
        }
    )
    dd.save_to_disk(str(root / "samsum"))
    config = root / "hub_dataset.yml"
    config.write_text(HUB_DATASET_YML.format(model="scratch", path="samsum"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_USERNAME", "someone")
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    overrides = config_overrides(config)
    assert "train.mixed_precision=none" in overrides and "train.tensorboard=true" in overrides
    assert not any("hf_from_the_environment" in o or "someone" in o for o in overrides)
    cfg = load_config(root=root, overrides=overrides)
    assert cfg.train.mixed_precision is None and cfg.train.lr == 2e-5 and cfg.train.optimizer == "adamw_torch"
    assert (cfg.ingest.text_column, cfg.ingest.target_column) == ("dialogue", "summary")
    splits, _ = read_source(cfg)
    assert sorted(splits) == ["train", "validation"]  # test is carved from train, not the validation split again
    assert len(splits["validation"].frame) == 20


@pytest.mark.integration
def test_local_config_as_shipped_trains(tmp_path):
    """docs/tutorials/autotrain.md as written: AutoTrain's local.yml (only data.path and
    base_model edited) beside its data folder, `s2s train --config` in a folder that is no project
    yet. It starts the project AutoTrain's project_name names, trains, writes TensorBoard event
    files, registers in MLflow, declines to publish with one warning, and prints no token."""
    rows = _sample_rows(REPO, 160)
    folder = tmp_path / "my_data"
    folder.mkdir()
    for name, part in (("train.csv", rows[:120]), ("test.csv", rows[120:])):
        with (folder / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "target"])
            writer.writeheader()
            writer.writerows(part)
    shown = code_block("autotrain.md", "yaml")  # the page shows local.yml as shipped
    assert shown.strip() == LOCAL_YML.format(model="google/flan-t5-small", path="my_data").strip()
    (tmp_path / "autotrain.yml").write_text(shown.replace("google/flan-t5-small", "scratch"))  # no hub here
    env = {"S2S_ROOT": "", "HF_TOKEN": "hf_secret_token_value", "HF_USERNAME": "someone"}
    train, _, compare = run_tutorial("autotrain.md", tmp_path, env)
    assert train.text == "s2s train --config autotrain.yml"
    out = train.stdout + train.stderr
    assert "hf_secret_token_value" not in out + compare.stdout + compare.stderr
    assert out.count("not published to the hub") == 1
    root = tmp_path / "autotrain-seq2seq-local"
    assert list(root.rglob("reports/tensorboard/events.out.tfevents.*"))
    assert compare.stdout.splitlines()[0].startswith("autotrain-seq2seq-local"), compare.stdout
    client = tracking.client(load_config(root=root))
    (version,) = client.search_model_versions("name='autotrain-seq2seq-local'")
    params = client.get_run(version.run_id).data.params
    assert params["train.lr"] == "2e-05" and params["train.epochs"] == "3.0"
    assert params["ingest.valid_split"] == "test"


@given(st.sampled_from(sorted(user_names(False))), st.sampled_from(["", "x ", "(", "set "]), st.booleans())
def test_every_mapped_setting_is_said_in_autotrain_terms(setting, before, from_config):
    """A setting an AutoTrain name maps onto is said as that name first, the setting beside it;
    a longer setting that merely starts with it is left alone."""
    said = in_autotrain_terms(f"{before}{setting} is wrong; {setting}_other stays", from_config)
    name = user_names(from_config)[setting]
    assert f"{before}{name} ({setting}) is wrong" in said and f"; {setting}_other stays" in said
    assert name.startswith("--") != from_config


def test_a_wrong_column_is_named_by_the_flag_the_user_typed(tmp_path):
    """`s2s train --text-column body` on data without it: the error names --text-column."""
    data = tmp_path / "d.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "target"])
        w.writerows([f"the council met on day {i} and approved plan {i}", f"plan {i} approved"] for i in range(40))
    proc = run_cli("train", "--data-path", str(data), "--text-column", "body", "--project-name", "cols", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--text-column (ingest.text_column)" in proc.stderr + proc.stdout, proc.stderr
