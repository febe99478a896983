"""Degenerate outputs: what a mean score hides. A model that writes nothing, loops on a word, or
says the same thing for every input can still clear a low ROUGE bar (or all of them, on a split
with short references); these figures say it outright, so promotion can refuse it
(``promote.degenerate``) with examples instead of a number.

Measured on words (whitespace tokens; loops on bare words: no case, no punctuation around them),
over the predictions of the held-out split:

- ``empty_share``: predictions that are empty or whitespace only.
- ``repeating_share``: predictions that loop: one 3-word sequence three times or more, or one
  word making up more than half of four words or more (``a a a a``, ``x y x y x y x y``,
  ``x y z x y z x y z``; words compared without case or the punctuation around them). Ordinary
  prose repeats function words, not whole phrases three times;
  beside it ``reference_repeating_share``, the references' own, because long or list-like targets
  (steps, tables read out, legal text) can repeat a phrase; the gate judges
  ``repeating_unlike_reference_share``, the predictions that loop where their own reference does
  not (row by row: loops on some rows cannot be excused by references that loop on others).
- ``identical_share``: the share of the most common non-empty prediction; beside it
  ``reference_identical_share``, the references' own, because a label-like task (``positive`` /
  ``negative``) legitimately repeats itself and the gate compares the two.
- ``length_ratio``: mean prediction words / mean reference words (1.0 when the references have
  no words): length collapse reads near 0.

Not a metric family (it is never in ``metrics.json`` or compared with the champion): the evaluate
stage writes these figures beside the scores and logs them to MLflow; promotion judges them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from tasks.metrics import Metric

LOOP_NGRAM = 3  # a phrase of this many words...
LOOP_COUNT = 3  # ...this many times is a loop
EXAMPLES = 3  # examples kept per kind of degeneration
INPUT_CHARS = 60  # examples are shortened to this many characters (inputs) ...
PREDICTION_CHARS = 80  # ... and this many (predictions)

FIGURES = (
    Metric("empty_share", False, "share of predictions that are empty or whitespace only", summary=False),
    Metric("repeating_share", False, "share of predictions that loop on a word or phrase", summary=False),
    Metric("identical_share", False, "share of the most common non-empty prediction", summary=False),
    Metric("reference_identical_share", None, "share of the most common reference", summary=False),
    Metric("reference_repeating_share", None, "share of references that loop on a word or phrase", summary=False),
    Metric(
        "repeating_unlike_reference_share",
        False,
        "share of predictions that loop where their own reference does not",
        summary=False,
    ),
    Metric("length_ratio", None, "mean prediction words / mean reference words", summary=False),
)
KINDS = ("empty", "repeating", "identical", "short")  # the examples kept, one list per kind


def _bare(word: str) -> str:
    """A word as a loop is counted: case folded, the punctuation around it gone (``Flour,`` is
    ``flour``), so a phrase repeated with a comma after all but the last still counts. A token of
    punctuation or symbols alone stays itself (``- - - -`` loops)."""
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start])[0] in "PS":
        start += 1
    while end > start and unicodedata.category(word[end - 1])[0] in "PS":
        end -= 1
    return word[start:end].casefold() or word


def repeats(words: list[str]) -> bool:
    """The prediction loops: a ``LOOP_NGRAM``-word sequence ``LOOP_COUNT`` times or more, or one
    word more than half of four words or more (words compared bare: no case, no punctuation
    around them)."""
    words = [_bare(w) for w in words]
    if len(words) >= 4 and 2 * Counter(words).most_common(1)[0][1] > len(words):
        return True
    grams = Counter(tuple(words[i : i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1))
    return bool(grams) and grams.most_common(1)[0][1] >= LOOP_COUNT


def _most_common_share(texts: list[str]) -> tuple[str | None, float]:
    """(the most common non-empty text, its share of all ``texts``); (None, 0.0) when none."""
    counts = Counter(" ".join(t.split()) for t in texts if t.strip())
    if not counts:
        return None, 0.0
    text, n = counts.most_common(1)[0]
    return text, n / len(texts)


def shorten(text: str, chars: int) -> str:
    """``text`` on one line, cut to ``chars`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def measure(inputs: list[str], predictions: list[str], references: list[str]) -> dict:
    """The figures (``FIGURES``, rounded) and up to ``EXAMPLES`` shortened (input, prediction)
    pairs per kind of degeneration (``KINDS``): ``{"figures": {...}, "examples": {...}}``.
    An empty split measures 0 everywhere and length ratio 1.0: nothing degenerate was seen."""
    n = len(predictions)
    words = [p.split() for p in predictions]
    ref_words = [r.split() for r in references]
    empty = [not w for w in words]
    looping = [repeats(w) for w in words]
    ref_looping = [repeats(w) for w in ref_words]
    unlike = [looping[i] and not ref_looping[i] for i in range(n)]  # loops its reference does not explain
    common, identical = _most_common_share(predictions)
    _, ref_identical = _most_common_share(references)
    same = [common is not None and identical * n > 1 and " ".join(w) == common for w in words]
    ref_total = sum(map(len, ref_words))
    ratio = sum(map(len, words)) / ref_total if ref_total else 1.0
    # shortest predictions for their reference first: the examples of length collapse
    by_shortness = sorted(range(n), key=lambda i: len(words[i]) / max(1, len(ref_words[i])))

    def examples(rows) -> list[dict[str, str]]:
        return [
            {"input": shorten(inputs[i], INPUT_CHARS), "prediction": shorten(predictions[i], PREDICTION_CHARS)}
            for i in list(rows)[:EXAMPLES]
        ]

    figures = {
        "empty_share": sum(empty) / n if n else 0.0,
        "repeating_share": sum(looping) / n if n else 0.0,
        "identical_share": identical,
        "reference_identical_share": ref_identical,
        "reference_repeating_share": sum(ref_looping) / n if n else 0.0,
        "repeating_unlike_reference_share": sum(unlike) / n if n else 0.0,
        "length_ratio": ratio,
    }
    return {
        "figures": {k: round(v, 4) for k, v in figures.items()},
        "examples": {
            "empty": examples(i for i in range(n) if empty[i]),
            "repeating": examples(sorted((i for i in range(n) if looping[i]), key=lambda i: not unlike[i])),
            "identical": examples(i for i in range(n) if same[i]),
            "short": examples(by_shortness),
        },
    }
