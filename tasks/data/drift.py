"""Data drift for seq2seq: has the data moved away from what the champion was trained on?

A *profile* summarises one training split as the champion saw it (written when a model trains,
logged with its run): input and target length histograms over fixed log-spaced bins, the share
of words the model's tokenizer represents poorly (an unknown token, or more than
``drift.max_pieces`` pieces), the Unicode script mix of the letters, and hashes of the frozen
test split's inputs. ``compare`` sets a new data set's figures beside it:

- ``input_length_psi`` / ``target_length_psi``: population stability index of the length
  histograms (0: same; 0.1: a moderate shift; 0.25: a large one);
- ``poor_token_rise``: how much the share of poorly represented words grew (new words, another
  domain or language the vocabulary does not cover);
- ``script_shift``: total variation distance of the script mix (0: same; 1: disjoint);
- ``test_overlap``: the share of the new training inputs that are in the champion's frozen test
  split (reported and warned about: such rows make the comparison with the champion unfair).

The data drifted when any of the first four reaches its threshold (``drift.*``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tasks.data import rowkey

EDGES = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, math.inf]  # characters
WORD = re.compile(r"\w+", re.UNICODE)
SAMPLE = 5000  # rows profiled per split (its first rows: the splits are already seeded shuffles)


def histogram(lengths: Iterable[int]) -> list[float]:
    counts = [0] * (len(EDGES) - 1)
    n = 0
    for value in lengths:
        n += 1
        for i in range(len(EDGES) - 1):
            if value < EDGES[i + 1]:
                counts[i] += 1
                break
    return [c / n for c in counts] if n else counts


def psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """Population stability index of two histograms over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def script_of(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "OTHER"
    first = name.split(" ", 1)[0]
    return "CJK" if first in ("CJK", "HIRAGANA", "KATAKANA") else first


def script_mix(texts: Iterable[str]) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for text in texts:
        for ch in text:
            if ch.isalpha():
                counts[script_of(ch)] += 1
    n = sum(counts.values())
    return {k: v / n for k, v in counts.most_common()} if n else {}


def tvd(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def poor_token_share(texts: Iterable[str], tokenizer, max_pieces: int) -> float:
    """Share of words the tokenizer turns into an unknown token or more than ``max_pieces`` pieces."""
    words = Counter(w for text in texts for w in WORD.findall(text))
    if not words:
        return 0.0
    unk = getattr(tokenizer, "unk_token_id", None)
    vocab = list(words)
    ids = tokenizer(vocab, add_special_tokens=False)["input_ids"]
    poor = sum(
        words[w] for w, pieces in zip(vocab, ids) if len(pieces) > max_pieces or (unk is not None and unk in pieces)
    )
    return poor / sum(words.values())


def text_hash(text: str) -> str:
    return rowkey.key(text)


def texts(values: Iterable[Any]) -> list[str]:
    """Cells as text: a missing or non-text cell (a blank CSV field reads as NaN) counts as empty.
    The drift check runs before validation, which names such rows; it must not fail on them."""
    return [v if isinstance(v, str) else "" for v in values]


def profile(
    inputs: list[str], targets: list[str], test_inputs: list[str], tokenizer, max_pieces: int, prefix: str = ""
) -> dict[str, Any]:
    """The profile of a training split (and the hashes of its frozen test split's inputs)."""
    inputs = [t.removeprefix(prefix) for t in texts(inputs[:SAMPLE])]
    targets = texts(targets[:SAMPLE])
    test_inputs = texts(test_inputs)
    return {
        "rows": len(inputs),
        "input_lengths": histogram(len(t) for t in inputs),
        "target_lengths": histogram(len(t) for t in targets),
        "poor_token_share": poor_token_share(inputs, tokenizer, max_pieces),
        "script_mix": script_mix(inputs),
        "test_hashes": sorted({text_hash(t.removeprefix(prefix)) for t in test_inputs}),
        "max_pieces": max_pieces,
    }


def compare(
    champion: dict[str, Any], new: dict[str, Any], new_inputs: Iterable[str] = (), prefix: str = ""
) -> dict[str, float]:
    """The drift figures of ``new`` against the champion's profile (``new_inputs``: every new
    training input, for the overlap with the champion's frozen test split)."""
    tests = set(champion.get("test_hashes") or ())
    hashes = [text_hash(t.removeprefix(prefix)) for t in texts(new_inputs)]
    return {
        "input_length_psi": round(psi(champion["input_lengths"], new["input_lengths"]), 4),
        "target_length_psi": round(psi(champion["target_lengths"], new["target_lengths"]), 4),
        "poor_token_rise": round(new["poor_token_share"] - champion["poor_token_share"], 4),
        "script_shift": round(tvd(champion["script_mix"], new["script_mix"]), 4),
        "test_overlap": round(sum(h in tests for h in hashes) / max(len(hashes), 1), 4),
    }


def drifted(figures: dict[str, float], thresholds) -> list[str]:
    """The figures at or above their thresholds (``drift.*``), as readable lines."""
    limits = {
        "input_length_psi": thresholds.length_psi,
        "target_length_psi": thresholds.length_psi,
        "poor_token_rise": thresholds.poor_token_rise,
        "script_shift": thresholds.script_shift,
    }
    return [f"{k} {figures[k]:.4f} >= {limit}" for k, limit in limits.items() if figures[k] >= limit]
