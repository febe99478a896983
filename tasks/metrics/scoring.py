"""Scoring predictions against references through ``evaluate`` and the shipped metric modules."""

from __future__ import annotations

import os

import numpy as np

_PUNKT = None


def sentence_lines(text: str) -> str:
    """One sentence per line, for rougeLsum, with NLTK's Punkt and its built-in parameters
    (no trained model, so no ``nltk.download('punkt')``, which breaks offline runs)."""
    global _PUNKT
    if _PUNKT is None:
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        _PUNKT = PunktSentenceTokenizer()
    return "\n".join(s.strip() for s in _PUNKT.tokenize(text.strip()))


def score(predictions: list[str], references: list[str], metrics: tuple[str, ...] = ("rouge",)
          ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Corpus scores and per-example scores, through ``evaluate`` and the shipped modules."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate as hf_evaluate

    from tasks.metrics import ROUGE, SACREBLEU

    means: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    if "rouge" in metrics:
        rouge = hf_evaluate.load(ROUGE)
        per = rouge.compute(predictions=[sentence_lines(p) for p in predictions],
                            references=[sentence_lines(r) for r in references],
                            use_stemmer=True, use_aggregator=False)
        per_example.update(per)
        means.update({k: float(np.mean(v)) if len(v) else 0.0 for k, v in per.items()})
    if "bleu" in metrics:
        bleu = hf_evaluate.load(SACREBLEU)
        means["bleu"] = float(bleu.compute(predictions=predictions, references=references)["bleu"])
        per_example["bleu"] = bleu.compute(predictions=predictions, references=references, use_aggregator=False)["bleu"]
    return means, per_example
