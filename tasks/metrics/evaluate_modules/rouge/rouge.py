"""ROUGE-1/2/L/Lsum as an ``evaluate`` metric module, loadable offline by path.

A drop-in for the hub's ``rouge`` module (same inputs, same per-example figures, the same
``rouge_score`` algorithm with its Porter stemmer and tokenizer), with two differences:

* the scores come from ``rouge-score-rs`` when it is installed: a Rust port of ``rouge_score``
  that returns bit-identical figures (a differential test holds this on thousands of pairs)
  about 50-100x faster; ``engine="python"`` forces the reference implementation;
* aggregation is the plain mean of per-example F-measures. The hub module reports the median of
  a 1,000-sample bootstrap, which is randomised and moves in the last digits from run to run; a
  promotion gate must not flip on resampling noise.

rougeLsum treats newlines as sentence boundaries; putting one sentence per line is the caller's
preprocessing (``tasks.metrics.rouge.sentence_lines``), as in transformers' summarization example.
"""

import datasets
import evaluate

_DESCRIPTION = "ROUGE F-measures (mean over examples), rouge_score-compatible, offline-safe."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings (or list of lists for several references).
    rouge_types: subset of rouge1..rouge9, rougeL, rougeLsum (default: rouge1, rouge2, rougeL, rougeLsum).
    use_stemmer: Porter stemming before matching (default False, as in the hub module).
    use_aggregator: mean over examples (True) or one score per example (False).
    engine: "auto" (rouge-score-rs when installed), "rust" or "python".
Returns:
    dict of rouge type -> F-measure in [0, 1] (or a list of them per example).
"""

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def scorer(rouge_types, use_stemmer: bool, engine: str = "auto"):
    """A ``RougeScorer`` from rouge-score-rs (when available and allowed) or rouge_score."""
    if engine in ("auto", "rust"):
        try:
            from rouge_score_rs import RougeScorer

            return RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
        except ImportError:
            if engine == "rust":
                raise
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(rouge_types), use_stemmer=use_stemmer)


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
        self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True, engine="auto"
    ):
        rouge_types = list(rouge_types or DEFAULT_TYPES)
        s = scorer(rouge_types, use_stemmer, engine)
        if references and isinstance(references[0], (list, tuple)):
            scores = [s.score_multi(list(ref), pred) for ref, pred in zip(references, predictions)]
        elif hasattr(s, "score_batch"):
            scores = s.score_batch(list(references), list(predictions))
        else:
            scores = [s.score(ref, pred) for ref, pred in zip(references, predictions)]
        per_example = {t: [sc[t].fmeasure for sc in scores] for t in rouge_types}
        if not use_aggregator:
            return per_example
        n = max(len(predictions), 1)
        return {t: sum(v) / n for t, v in per_example.items()}
