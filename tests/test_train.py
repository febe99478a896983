"""Training: the scratch model, the from_pretrained path on local folders, MLflow logging."""

from pathlib import Path

import pytest
from conftest import make_project

from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.core.results import TrainResult
from tasks.ingest import ingest
from tasks.modeling import models as modeling
from tasks.tracking import client as tracking
from tasks.train import train
from tasks.validate import validate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("train") / "proj")
    cfg = load_config(root=root)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    return cfg, ingested, train(cfg, ingested)


def test_scratch_tokenizer_ends_labels_with_eos_and_matches_the_model():
    tok = modeling.train_tokenizer(["summarize: the council of Lyon met", "Lyon council approves"] * 50, 60)
    ids = tok(text_target="Lyon council approves")["input_ids"]
    assert ids[-1] == tok.eos_token_id == 1 and tok.pad_token_id == 0
    from tasks.core.config import Scratch

    model = modeling.build_scratch(Scratch(), tok, seed=0)
    assert model.config.vocab_size == len(tok)
    modeling.check_compatible(model, tok)


def test_training_writes_a_loadable_model_and_logs_the_run(trained):
    cfg, ingested, result = trained
    assert TrainResult.load(cfg.path("reports")) == result
    tok, model = modeling.load(str(cfg.resolve(result.model_dir)))  # the same call a hub id goes through
    assert model.config.model_type == "t5" and len(tok) == model.config.vocab_size
    assert (cfg.path("model") / "model.safetensors").exists()
    assert not cfg.path("checkpoints").exists()  # intermediate checkpoints cleaned up
    run = tracking.client(cfg).get_run(result.run_id)
    assert run.data.tags["data_version"] == ingested.data_version
    assert run.data.tags["params_hash"] == cfg.params_hash()
    assert run.data.params["train.lr"] == "0.003"
    assert run.data.metrics["train_steps"] == 12
    history = tracking.client(cfg).get_metric_history(result.run_id, "train_loss")
    assert len(history) >= 2  # per-step loss, not only the final value
    artifacts = [a.path for a in tracking.client(cfg).list_artifacts(result.run_id, "validation")]
    assert artifacts == ["validation/data_docs", "validation/validation.json"]  # the data report travels with the run


def test_a_local_model_folder_trains_through_from_pretrained(trained, tmp_path):
    """What a hub id does, on a folder: here a BART-architecture model saved locally."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg, _, _ = trained
    tok, _ = modeling.load(str(cfg.path("base_model")))
    bart = BartForConditionalGeneration(
        BartConfig(
            vocab_size=len(tok),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=256,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            forced_eos_token_id=tok.eos_token_id,
        )
    )
    folder = tmp_path / "my-bart"
    bart.save_pretrained(folder)
    tok.save_pretrained(folder)
    root = make_project(tmp_path / "proj", params={"train": {"model": str(folder), "max_steps": 3}})
    cfg2 = load_config(root=root)
    ingested = ingest(cfg2)
    validate(cfg2, ingested)  # prepares (here: copies) the model's own tokenizer
    result = train(cfg2, ingested)
    _, model = modeling.load(str(cfg2.resolve(result.model_dir)))
    assert model.config.model_type == "bart"
    assert not cfg2.path("base_model").exists()  # nothing built from scratch


def test_vocabulary_mismatch_is_caught_before_training(trained):
    cfg, _, _ = trained
    tok, model = modeling.load(str(cfg.path("base_model")))
    tok.add_tokens([f"<extra_{i}>" for i in range(50)])
    with pytest.raises(ConfigError, match="tokenizer has .* tokens but the model's embedding matrix has"):
        modeling.check_compatible(model, tok)


def test_unloadable_model_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.model: cannot load"):
        modeling.load(str(tmp_path / "no-such-model"))


@pytest.mark.parametrize(
    "model, lr, warned",
    [("scratch", 5e-5, True), ("rnn", 1e-4, True), ("scratch", 2e-3, False), ("google/flan-t5-small", 5e-5, False)],
)
def test_a_model_from_scratch_at_a_fine_tuning_rate_is_warned(model, lr, warned):
    from tasks.core.config import Train
    from tasks.train import learning_rate_warning

    said = learning_rate_warning(Train(model=model, lr=lr))
    assert (said is not None) is warned
    if warned:
        assert f"train.lr={lr:g}" in said and "learn nothing" in said and "--set train.lr=0.002" in said


def test_fp16_on_cpu_is_refused():
    from tasks.modeling.runtime import Runtime

    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Runtime.resolve("fp16")


@pytest.mark.parametrize("source,rows,vocab", [("sample", 800, 300), ("embedded", 0, 1000), ("docstrings", 300, 400)])
def test_scratch_tokenizer_is_reproducible_byte_for_byte(source, rows, vocab):
    """The Unigram trainer alone is not: hash-map order and parallel float sums leak into ids
    (the kept characters' tail sits below or among the lowest learned scores, by the data)."""
    if source == "sample":
        from tasks.data.sample import generate

        pairs = [(r["text"], r["target"]) for r in generate(rows, seed=3)]
    elif source == "embedded":  # the default's own data and vocabulary size
        import pandas as pd

        df = pd.read_csv(Path(__file__).parents[1] / "data" / "sample" / "reports.csv")
        pairs = list(zip(df["text"], df["target"]))
    else:
        from bench.real_text import function_docstring_pairs

        pairs = [(r["text"], r["target"]) for r in function_docstring_pairs(rows, 100, 600, seed=3)]
    texts = [t for pair in pairs for t in pair]
    first = modeling.train_tokenizer(texts, vocab).backend_tokenizer.to_str()
    assert all(modeling.train_tokenizer(texts, vocab).backend_tokenizer.to_str() == first for _ in range(4))
