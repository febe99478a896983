"""The config surface: strict keys, readable errors, overrides, per-pipeline paths."""

import pytest

from tasks.core.config import load_config, parse_override
from tasks.core.errors import ConfigError


def test_defaults_load_from_the_repo_params(project):
    cfg = load_config()
    assert cfg.pipeline == "default"
    assert cfg.ingest.source_prefix == "summarize: "
    assert cfg.register.model_name == "s2s-default"
    assert cfg.promote.gates.min["rougeL"] > 0
    assert cfg.path("model") == project / "artifacts" / "model"
    assert cfg.tracking_uri() == f"sqlite:///{project}/mlflow.db"


def test_misspelt_key_names_the_key_and_the_fix(project):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.lrr=0.1"])
    assert "train.lrr: unknown setting (did you mean 'lr'?)" in str(err.value)


def test_wrong_type_names_the_setting_and_value(project):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.epochs=many"])
    assert "train.epochs" in str(err.value) and "'many'" in str(err.value)


def test_cross_field_rule(project):
    with pytest.raises(ConfigError, match="leaves less than 10% of the rows for training"):
        load_config(overrides=["ingest.valid_ratio=0.5", "ingest.test_ratio=0.45"])


def test_unknown_pipeline_lists_the_defined_ones(project):
    with pytest.raises(ConfigError, match="no pipeline named 'nightly'.*defined: default"):
        load_config("nightly")


def test_unknown_pipeline_key_is_rejected(project):
    (project / "pipelines.yaml").write_text("default:\n  model_nme: x\n")
    with pytest.raises(ConfigError, match=r"default\.model_nme: unknown key \(did you mean 'model_name'\?\)"):
        load_config()


def test_pipeline_overrides_and_paths(project):
    (project / "pipelines.yaml").write_text(
        "default: {}\n"
        "nightly:\n  model_name: nightly-model\n  data: {text_column: body}\n"
        "  params: {train: {epochs: 2}}\n  gates: {min: {rouge1: 0.3}}\n"
    )
    cfg = load_config("nightly", overrides=["train.lr=0.01"])
    assert cfg.register.model_name == "nightly-model"
    assert cfg.ingest.text_column == "body"
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.01
    assert cfg.promote.gates.min == {"rouge1": 0.3}
    # another pipeline never writes over the default pipeline's artifacts, nor does a one-off run
    assert load_config("nightly").path("model") == project / "runs" / "nightly" / "artifacts" / "model"
    assert cfg.path("model").parent.parent.parent == project / "runs"
    assert cfg.path("model").parts[-3].startswith("nightly.")
    assert load_config("nightly", overrides=["train.lr=0.01"]).path("model") == cfg.path("model")
    assert load_config("nightly", overrides=["train.lr=0.02"]).path("model") != cfg.path("model")
    assert load_config().path("model") == project / "artifacts" / "model"
    assert cfg.experiment_name() == "s2s-nightly"


def test_env_tracking_uri_wins(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_config().tracking_uri() == "http://127.0.0.1:5999"


def test_params_hash_ignores_paths_but_not_training(project):
    a = load_config().params_hash()
    assert load_config(overrides=["paths.model=elsewhere"]).params_hash() == a
    assert load_config(overrides=["train.lr=0.5"]).params_hash() != a


@pytest.mark.parametrize(
    "item, expected",
    [
        ("train.lr=0.001", (["train", "lr"], 0.001)),
        ("ingest.source_prefix=", (["ingest", "source_prefix"], "")),
        ("ingest.max_samples=null", (["ingest", "max_samples"], None)),
        ("promote.gates.min.rougeL=0.5", (["promote", "gates", "min", "rougeL"], 0.5)),
    ],
)
def test_parse_override(item, expected):
    assert parse_override(item) == expected


def test_override_without_section_is_rejected():
    with pytest.raises(ConfigError, match="must name a section and a key"):
        parse_override("lr=0.1")


def test_params_yaml_spells_out_every_setting():
    """params.yaml is the config surface: every field of every section appears in it."""
    import yaml
    from conftest import REPO

    from tasks.core.config import SECTIONS

    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def missing(model, data, prefix):
        out = []
        for name, field in model.model_fields.items():
            if name not in data:
                out.append(f"{prefix}{name}")
            elif isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
                out += missing(field.annotation, data[name], f"{prefix}{name}.")
        return out

    gaps = [
        m
        for name, model in SECTIONS.items()
        if name != "promote"
        for m in missing(model, params.get(name, {}), f"{name}.")
    ]
    assert gaps == []


def test_optimizer_list_matches_transformers():
    from transformers.training_args import OptimizerNames

    from tasks.core.config import OPTIMIZERS

    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.quantization=int4"], "train.quantization needs train.peft: true"),
        (["train.peft=true", "train.freeze_encoder=true"], "have no effect with train.peft"),
        (["train.eval_strategy=steps"], "train.eval_strategy=steps needs train.eval_steps"),
        (
            ["train.metric_for_best_model=blue"],
            "train.metric_for_best_model: 'blue' is not a metric (did you mean 'bleu'?)",
        ),
        (["train.eval_strategy=no", "train.metric_for_best_model=rougeL"], "needs evaluations"),
        (["train.optimizer=adamw"], "unknown optimizer 'adamw'"),
        (["train.scheduler=cosine_restarts"], "train.scheduler"),
    ],
)
def test_contradictory_training_settings_are_named(project, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value)


def test_target_modules_accepts_autotrain_comma_list(project):
    assert load_config(overrides=["train.target_modules=q,v"]).train.target_modules == ["q", "v"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["evaluate.metrics=[rogue]"], "unknown metric family 'rogue' (did you mean 'rouge'?)"),
        (
            ["promote.gates={min: {rougeLL: 0.5}}"],
            "'rougeLL' is not computed by evaluate.metrics [rouge] (did you mean",
        ),
        (["promote.gates={max_regression: {gen_len: 2}}"], "'gen_len' has no better direction"),
        (["promote.gates={primary: bleu}"], "promote.gates.primary: 'bleu' is not computed"),
    ],
)
def test_metric_names_are_checked_against_the_registry(project, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value)
