"""ROUGE-1/2/L/Lsum as an ``evaluate`` metric module, loadable offline by path.

Scores come from Google's ``rouge_score`` package (the reference implementation that
``evaluate``'s hub module wraps), with two deliberate differences from that module:

* aggregation is the plain mean of per-example F-measures. The hub module reports the median
  of a 1,000-sample bootstrap, which is randomised and differs from run to run in the last
  digits; a promotion gate must not flip on resampling noise.
* rougeLsum needs one sentence per line. Sentences are split with NLTK's Punkt algorithm using
  its built-in (untrained) parameters, so nothing is downloaded (``nltk.download('punkt')`` is
  what breaks offline runs of the transformers example scripts).
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE F-measures (mean over examples) computed with rouge_score; offline-safe."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings (or list of lists for several references).
    rouge_types: subset of rouge1, rouge2, rougeL, rougeLsum (default: all four).
    use_stemmer: Porter stemming before matching (default True, as in the summarisation examples).
    use_aggregator: mean over examples (True) or one score per example (False).
    split_sentences: put each sentence on its own line before scoring (needed by rougeLsum).
Returns:
    dict of rouge type -> F-measure in [0, 1] (or a list of them per example).
"""

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_PUNKT = None


def sentence_lines(text: str) -> str:
    """One sentence per line, with NLTK's Punkt defaults (no trained model, no download)."""
    global _PUNKT
    if _PUNKT is None:
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        _PUNKT = PunktSentenceTokenizer()
    return "\n".join(s.strip() for s in _PUNKT.tokenize(text.strip()))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, Chin-Yew. ROUGE: A Package for Automatic Evaluation of Summaries. 2004.",
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

    def _compute(
        self,
        predictions,
        references,
        rouge_types=None,
        use_stemmer=True,
        use_aggregator=True,
        split_sentences=True,
    ):
        rouge_types = list(rouge_types or DEFAULT_TYPES)
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        prep = sentence_lines if split_sentences and "rougeLsum" in rouge_types else (lambda s: s)
        per_example = {t: [] for t in rouge_types}
        for ref, pred in zip(references, predictions):
            if isinstance(ref, (list, tuple)):
                score = scorer.score_multi([prep(r) for r in ref], prep(pred))
            else:
                score = scorer.score(prep(ref), prep(pred))
            for t in rouge_types:
                per_example[t].append(score[t].fmeasure)
        if not use_aggregator:
            return per_example
        n = max(len(predictions), 1)
        return {t: sum(v) / n for t, v in per_example.items()}
