"""Corpus BLEU (sacreBLEU, 0-100, 13a tokenizer, ``[[ref]]``-wrapped as in transformers'
translation example) through ``evaluate`` with the module shipped in ``evaluate_modules/sacrebleu``.
Per example: sentence BLEU (which does not average to the corpus figure)."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.metrics import Family, Metric

MODULE = str(Path(__file__).parent / "evaluate_modules" / "sacrebleu")


def compute(predictions: list[str], references: list[str]):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate

    bleu = evaluate.load(MODULE)
    corpus = float(bleu.compute(predictions=predictions, references=references)["bleu"])
    per = bleu.compute(predictions=predictions, references=references, use_aggregator=False)["bleu"]
    return {"bleu": corpus}, {"bleu": per}


FAMILY = Family(
    name="bleu",
    metrics=(Metric("bleu", True, "sacreBLEU corpus BLEU, 0-100"),),
    compute=compute,
    primary="bleu",
    rank=20,
    scale="0-100",
)
