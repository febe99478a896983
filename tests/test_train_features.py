"""The training surface beyond a plain run: LoRA, freezing, early stopping, best model on ROUGE,
schedulers, label smoothing, Adafactor, curves, and the recurrent model. Tiny models, real code."""

import csv

import pytest
import torch
from conftest import make_project
from safetensors.torch import load_file

from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.ingest import ingest
from tasks.modeling import models as modeling
from tasks.tracking import client as tracking
from tasks.train import train
from tasks.validate import validate

pytestmark = pytest.mark.integration


def run(tmp_path, **train_params):
    root = make_project(tmp_path / "proj", params={"train": train_params})
    cfg = load_config(root=root)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    return cfg, train(cfg, ingested)


def curve(cfg, name="train"):
    with (cfg.path("reports") / "plots" / f"{name}.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_lora_saves_adapter_and_a_merged_model_with_best_model_at_end(tmp_path):
    cfg, result = run(
        tmp_path,
        peft=True,
        lora_r=4,
        lora_alpha=8,
        max_steps=12,
        eval_strategy="steps",
        eval_steps=4,
        save_total_limit=1,
        load_best_model_at_end=True,
    )
    assert (cfg.path("adapter") / "adapter_config.json").is_file()
    assert (cfg.path("adapter") / "adapter_model.safetensors").is_file()
    merged = modeling.load_model(
        str(cfg.resolve(result.model_dir))
    )  # plain transformers model: no PEFT needed to use it
    assert type(merged).__name__ == "T5ForConditionalGeneration"
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert result.metrics["best_step"] in (4.0, 8.0, 12.0)
    base = load_file(str(cfg.path("base_model") / "model.safetensors"))
    tuned = load_file(str(cfg.path("model") / "model.safetensors"))
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k in tuned)  # the adapter was merged in


def test_freeze_encoder_leaves_encoder_weights_untouched(tmp_path):
    cfg, result = run(tmp_path, freeze_encoder=True, max_steps=6, eval_strategy="no")
    base = load_file(str(cfg.path("base_model") / "model.safetensors"))
    tuned = load_file(str(cfg.path("model") / "model.safetensors"))
    enc = [k for k in base if k.startswith("encoder.block")]
    dec = [k for k in base if k.startswith("decoder.block")]
    assert enc and all(torch.equal(base[k], tuned[k]) for k in enc)
    assert any(not torch.equal(base[k], tuned[k]) for k in dec)


def test_early_stopping_stops_before_max_steps(tmp_path):
    # a learning rate this small cannot improve eval loss by 1.0 between evaluations
    cfg, result = run(
        tmp_path,
        lr=1e-7,
        max_steps=60,
        eval_strategy="steps",
        eval_steps=3,
        early_stopping_patience=2,
        early_stopping_threshold=1.0,
        save_total_limit=2,
    )
    assert result.metrics["train_steps"] < 60


def test_best_model_on_rouge_generates_during_evaluation(tmp_path):
    cfg, result = run(tmp_path, max_steps=6, eval_strategy="steps", eval_steps=3, metric_for_best_model="rougeL")
    rows = curve(cfg, "eval")
    assert rows and "eval_rougeL" in rows[0] and rows[0]["eval_rougeL"] != ""
    history = tracking.client(cfg).get_metric_history(result.run_id, "eval_rougeL")
    assert len(history) == 2


@pytest.mark.parametrize(
    "scheduler, check",
    [
        ("constant", lambda lrs: len(set(lrs)) == 1),
        ("linear", lambda lrs: lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]),
        ("cosine", lambda lrs: lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]),
        ("polynomial", lambda lrs: lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]),
        ("constant_w_warmup", lambda lrs: lrs[0] < lrs[-1] and len(set(lrs[2:])) == 1),
        ("cosine_w_restarts", lambda lrs: lrs[-1] < lrs[2]),
    ],
)
def test_every_legacy_scheduler(tmp_path, scheduler, check):
    warmup = 0.2 if scheduler == "constant_w_warmup" else 0.0
    cfg, _ = run(tmp_path, scheduler=scheduler, warmup_ratio=warmup, max_steps=10, logging_steps=1, eval_strategy="no")
    lrs = [float(r["learning_rate"]) for r in curve(cfg)]
    assert len(lrs) == 10 and check(lrs), lrs


def test_adafactor_and_label_smoothing_train(tmp_path):
    cfg, result = run(tmp_path, optimizer="adafactor", label_smoothing=0.1, max_steps=6, eval_strategy="no")
    assert result.metrics["train_steps"] == 6 and result.metrics["train_loss_final"] > 0


def test_curves_are_written_for_dvc_and_mlflow(tmp_path):
    cfg, result = run(tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4, logging_steps=2)
    assert [r["step"] for r in curve(cfg)] == ["2", "4", "6", "8"]
    assert [r["step"] for r in curve(cfg, "eval")] == ["4", "8"]
    logged = {a.path for a in tracking.client(cfg).list_artifacts(result.run_id, "plots")}
    assert {"plots/loss.png", "plots/train.csv", "plots/eval.csv"} <= logged
    assert (cfg.path("reports") / "plots" / "loss.png").stat().st_size > 1000


def test_quantization_on_cpu_is_refused_before_training(tmp_path):
    root = make_project(
        tmp_path / "proj", params={"train": {"model": "google/flan-t5-small", "peft": True, "quantization": "int4"}}
    )
    cfg = load_config(root=root)
    from tasks.modeling.runtime import Runtime

    with pytest.raises(ConfigError, match="quantization=int4 needs a CUDA GPU"):
        Runtime.resolve(cfg.train.mixed_precision, cfg.train.quantization)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_model_trains_through_the_same_path(tmp_path, cell):
    cfg, result = run(
        tmp_path,
        model="rnn",
        rnn={"cell": cell, "embedding_size": 32, "hidden_size": 48},
        max_steps=20,
        lr=0.01,
        eval_strategy="steps",
        eval_steps=10,
    )
    model = modeling.load_model(str(cfg.resolve(result.model_dir)))
    assert type(model).__name__ == "RnnSeq2SeqModel" and model.config.cell == cell
    first, last = float(curve(cfg)[0]["loss"]), float(curve(cfg)[-1]["loss"])
    assert last < first  # it learns


def test_packed_encoding_ignores_padding():
    """The PackedSequence contract: a sequence encodes the same alone or padded in a batch."""
    from tasks.modeling.rnn_model import RnnSeq2SeqConfig, RnnSeq2SeqModel

    torch.manual_seed(0)
    model = RnnSeq2SeqModel(RnnSeq2SeqConfig(vocab_size=30, embedding_size=8, hidden_size=12, num_layers=2)).eval()
    batch = torch.tensor([[5, 6, 7, 8, 9, 1], [3, 4, 1, 0, 0, 0]])
    mask = (batch != 0).long()
    labels = torch.tensor([[7, 1], [8, 1]])
    alone = model(input_ids=batch[1:, :3], attention_mask=mask[1:, :3], labels=labels[1:])
    together = model(input_ids=batch, attention_mask=mask, labels=labels)
    assert torch.allclose(alone.logits[0], together.logits[1], atol=1e-6)
    assert model.generate(batch, mask, max_new_tokens=4).shape[0] == 2
    assert model.generate(batch, mask, max_new_tokens=4, num_beams=3).shape[0] == 2


def test_gradient_checkpointing_gives_the_same_training(tmp_path):
    """Activations recomputed in the backward pass: the same gradients, so the same losses step
    by step (AutoTrain's default; disable_gradient_checkpointing maps onto it)."""
    from flows.autotrain import to_overrides

    assert to_overrides({"disable_gradient_checkpointing": False}) == ["train.gradient_checkpointing=true"]
    assert to_overrides({"disable_gradient_checkpointing": True}) == ["train.gradient_checkpointing=false"]
    steps = {"max_steps": 4, "eval_strategy": "no", "logging_steps": 1}
    plain_cfg, _ = run(tmp_path / "plain", **steps)
    ckpt_cfg, result = run(tmp_path / "ckpt", gradient_checkpointing=True, **steps)
    assert result.metrics["train_steps"] == 4
    plain = [float(r["loss"]) for r in curve(plain_cfg)]
    recomputed = [float(r["loss"]) for r in curve(ckpt_cfg)]
    assert len(plain) == 4 and recomputed == pytest.approx(plain, rel=1e-4, abs=1e-5)


def test_gradient_checkpointing_on_a_model_without_it_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="train.gradient_checkpointing: the .* model cannot recompute"):
        run(tmp_path, model="rnn", gradient_checkpointing=True, max_steps=2, eval_strategy="no")
