"""Corpus BLEU through sacreBLEU as an ``evaluate`` metric module, loadable offline by path.

As in transformers' translation example: one reference per prediction is wrapped as
``[[ref]]`` (sacreBLEU takes reference *streams*), the 13a tokenizer is the default, and the
score is sacreBLEU's 0-100 figure. ``use_aggregator=False`` returns sentence-level BLEU per
example (for the per-example table), which does not average to the corpus score.
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "sacreBLEU corpus BLEU (0-100), offline-safe."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings, or list of lists (several references each).
    tokenize: sacreBLEU tokenizer name (default "13a").
    lowercase: case-insensitive BLEU (default False).
    use_aggregator: corpus BLEU (True) or sentence BLEU per example (False).
Returns:
    {"bleu": float, "brevity_penalty": float, ...} or {"bleu": [per-example floats]}.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class SacreBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, Matt. A Call for Clarity in Reporting BLEU Scores. WMT 2018.",
            inputs_description=_KWARGS,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, use_aggregator=True):
        refs = [r if isinstance(r, (list, tuple)) else [r] for r in references]
        if not use_aggregator:
            return {
                "bleu": [
                    sacrebleu.sentence_bleu(p, list(r), tokenize=tokenize, lowercase=lowercase).score
                    for p, r in zip(predictions, refs)
                ]
            }
        n_refs = max(len(r) for r in refs) if refs else 1
        if any(len(r) != n_refs for r in refs):
            raise ValueError("sacreBLEU needs the same number of references for every prediction")
        streams = [[r[i] for r in refs] for i in range(n_refs)]  # the [[ref]] transpose
        bleu = sacrebleu.corpus_bleu(predictions, streams, tokenize=tokenize, lowercase=lowercase)
        return {
            "bleu": bleu.score,
            "brevity_penalty": bleu.bp,
            "length_ratio": bleu.sys_len / max(bleu.ref_len, 1),
            "precisions": list(bleu.precisions),
        }
