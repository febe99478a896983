"""ROUGE-1/2/L/Lsum (F-measure, stemmed), through ``evaluate`` with the module shipped in
``evaluate_modules/rouge`` (offline; rouge-score-rs when installed, bit-identical to rouge_score).
rougeLsum needs one sentence per line: NLTK's Punkt with its built-in parameters (no download)."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.metrics import Family, Metric

MODULE = str(Path(__file__).parent / "evaluate_modules" / "rouge")
_PUNKT = None


def sentence_lines(text: str) -> str:
    """One sentence per line, for rougeLsum, with NLTK's Punkt and its built-in parameters
    (no trained model, so no ``nltk.download('punkt')``, which breaks offline runs)."""
    global _PUNKT
    if _PUNKT is None:
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        _PUNKT = PunktSentenceTokenizer()
    return "\n".join(s.strip() for s in _PUNKT.tokenize(text.strip()))


def compute(predictions: list[str], references: list[str]):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate
    import numpy as np

    per = evaluate.load(MODULE).compute(
        predictions=[sentence_lines(p) for p in predictions],
        references=[sentence_lines(r) for r in references],
        use_stemmer=True,
        use_aggregator=False,
    )
    return {k: float(np.mean(v)) if len(v) else 0.0 for k, v in per.items()}, dict(per)


FAMILY = Family(
    name="rouge",
    metrics=(
        Metric("rouge1", True, "unigram overlap F1"),
        Metric("rouge2", True, "bigram overlap F1"),
        Metric("rougeL", True, "longest common subsequence F1"),
        Metric("rougeLsum", True, "rougeL over sentences (one per line)"),
    ),
    compute=compute,
    primary="rougeL",
    rank=10,
)
