"""Stage 4, evaluate: generate on the held-out split and score ROUGE-1/2/L/Lsum and gen_len.

Batches are sorted by input length so little time goes into padding; predictions are put back
in the original order before scoring. The ROUGE module is the one shipped in
``tasks/metrics/rouge``, loaded by path through ``evaluate`` (no hub access).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from tasks import tracking
from tasks.config import Config
from tasks.errors import DataError
from tasks.results import EvaluateResult, IngestResult, TrainResult, load_split

logger = logging.getLogger(__name__)

METRICS = "metrics.json"  # the DVC metrics file: scores only
PREDICTIONS = "predictions.jsonl"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def decode(tokenizer, ids) -> list[str]:
    """Decode generated or label ids; -100 (the loss's ignore index) is mapped to pad first."""
    arr = np.asarray(ids)
    arr = np.where(arr < 0, tokenizer.pad_token_id, arr)
    return [s.strip() for s in tokenizer.batch_decode(arr, skip_special_tokens=True)]


def generate(model, tokenizer, texts: list[str], *, batch_size: int, num_beams: int,
             max_new_tokens: int, max_source: int, desc: str = "generate") -> tuple[list[str], list[int]]:
    """Predictions and generated lengths (tokens, pad excluded) for ``texts``, in input order."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_source)["input_ids"]]
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: a too-big batch fails at once
    preds: list[str] = [""] * len(texts)
    gen_lens: list[int] = [0] * len(texts)
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=None):
            idx = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                              truncation=True, max_length=max_source).to(device)
            out = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False)
            out = out.cpu().numpy()
            texts_out = decode(tokenizer, out)
            for j, i in enumerate(idx):
                preds[i] = texts_out[j]
                gen_lens[i] = int(np.count_nonzero(out[j] != tokenizer.pad_token_id))
    return preds, gen_lens


def score(predictions: list[str], references: list[str]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Mean ROUGE F-measures and the per-example scores, through ``evaluate`` and the shipped module."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate as hf_evaluate

    from tasks.metrics import ROUGE

    rouge = hf_evaluate.load(ROUGE)
    per_example = rouge.compute(predictions=predictions, references=references,
                                use_stemmer=True, use_aggregator=False)
    means = {k: float(np.mean(v)) if len(v) else 0.0 for k, v in per_example.items()}
    return means, per_example


def evaluate(cfg: Config, trained: TrainResult, ingested: IngestResult) -> EvaluateResult:
    """Score the trained model on ``evaluate.split``; write metrics + predictions; log them."""
    from tasks import modeling

    split_name = cfg.evaluate.split
    df = load_split(ingested, split_name) if split_name in ingested.splits else None
    if df is None or not len(df):
        if split_name == "test" and ingested.rows.get("validation"):
            logger.warning("the test split is empty; evaluating on the validation split instead")
            split_name, df = "validation", load_split(ingested, "validation")
        else:
            raise DataError(f"the {split_name} split is empty; raise ingest.test_ratio or ingest.valid_ratio")
    if cfg.evaluate.max_samples:
        df = df.iloc[: cfg.evaluate.max_samples]
    tokenizer, model = modeling.load(trained.model_dir)
    preds, gen_lens = generate(
        model, tokenizer, df["text"].tolist(),
        batch_size=cfg.evaluate.batch_size, num_beams=cfg.evaluate.num_beams,
        max_new_tokens=cfg.evaluate.generation_max_length, max_source=cfg.train.max_seq_length,
    )
    refs = df["target"].tolist()
    means, per_example = score(preds, refs)
    metrics = {k: round(means[k], 6) for k in ROUGE_TYPES}
    metrics["gen_len"] = round(float(np.mean(gen_lens)) if gen_lens else 0.0, 4)

    reports = cfg.path("reports")
    reports.mkdir(parents=True, exist_ok=True)
    pred_path = reports / PREDICTIONS
    rows = []
    with pred_path.open("w", encoding="utf-8") as fh:
        for i, (src, ref, pred) in enumerate(zip(df["text"], refs, preds)):
            row = {"source_row": int(df["source_row"].iloc[i]) if "source_row" in df else i + 1,
                   "input": src, "reference": ref, "prediction": pred,
                   **{k: round(per_example[k][i], 4) for k in ROUGE_TYPES}}
            rows.append(row)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    worst = sorted(rows, key=lambda r: r["rougeL"])[:3]
    (reports / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    result = EvaluateResult(split=split_name, n_examples=len(df), metrics=metrics,
                            predictions_path=str(pred_path), worst=worst)
    result.save(reports)

    c = tracking.client(cfg)
    tracking.log_metrics(cfg, trained.run_id, metrics)
    c.log_artifact(trained.run_id, str(pred_path), artifact_path="evaluation")
    generation = getattr(model, "generation_config", None)
    c.log_dict(trained.run_id, generation.to_dict() if generation is not None else {}, "evaluation/generation_config.json")
    c.log_dict(trained.run_id, {"split": split_name, "n_examples": len(df), "num_beams": cfg.evaluate.num_beams,
                                "generation_max_length": cfg.evaluate.generation_max_length},
               "evaluation/settings.json")
    logger.info("evaluate on %s (%d examples): %s", split_name, len(df),
                ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_support import stage_main

    def run(cfg: Config) -> EvaluateResult:
        return evaluate(cfg, TrainResult.load(cfg.path("reports")), IngestResult.load(cfg.path("data")))

    return stage_main("evaluate", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
