"""AutoTrain compatibility: flags and YAML configs map onto params.yaml settings; what AutoTrain
has and s2s does not is refused with a reason; `s2s train` runs the pipeline from them."""

import pytest
import yaml
from conftest import make_project, run_cli

from tasks.core.autotrain import config_overrides, to_overrides
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
        ({"push_to_hub": True}, "push_to_hub' is not supported"),
        ({"log": "wandb"}, "always tracked in MLflow"),
        ({"token": "hf_secret"}, "HF_TOKEN environment variable"),
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
