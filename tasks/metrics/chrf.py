"""chrF (character n-gram F-score, sacreBLEU's CHRF with its defaults: n=6, beta=2), 0-100: the
translation metric that rewards partly right words and morphology, where BLEU gives nothing.
Corpus chrF from sacreBLEU's corpus statistics; per example, sentence chrF."""

from __future__ import annotations

from tasks.metrics import Family, Metric


def compute(predictions: list[str], references: list[str]):
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    corpus = chrf.corpus_score(predictions, [references]).score if predictions else 0.0
    per = [chrf.sentence_score(p, [r]).score for p, r in zip(predictions, references)]
    return {"chrf": float(corpus)}, {"chrf": per}


FAMILY = Family(
    name="chrf",
    metrics=(Metric("chrf", True, "sacreBLEU chrF (n=6, beta=2), 0-100"),),
    compute=compute,
    primary="chrf",
    rank=30,
    scale="0-100",
)
