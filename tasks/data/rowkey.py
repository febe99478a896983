"""A row's identity: the normalized text of its input, hashed.

One rule for everything that asks "is this the same input?": the split a row lands in, the
overlap of new data with a champion's test split, and the rows a champion trained on (left out
when it is re-scored against a candidate). Two inputs are the same when they differ only in
Unicode composition (NFC), letter case or runs of whitespace.

The split is a function of this identity (a seeded hash), not of the row's position: appending,
deleting or reordering rows never moves an existing input between train, validation and test,
so a test row stays a test row across data versions and a champion is never scored on rows it
trained on because the data grew.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

import numpy as np


def normalize(text: str) -> str:
    """NFC, case-folded, whitespace runs collapsed to one space, ends trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def key(text: str) -> str:
    """A short printable identity of an input (the drift profile's test hashes)."""
    return hashlib.sha1(normalize(text).encode()).hexdigest()[:16]


def hash64(texts: Iterable[str], seed: int = 0) -> np.ndarray:
    """Seeded 64-bit hashes of the normalized inputs (uint64), one per text. Stable across
    processes, platforms and library versions (BLAKE2b, not Python's salted ``hash``)."""
    salt = seed.to_bytes(8, "little", signed=False)
    out = [
        int.from_bytes(hashlib.blake2b(normalize(t).encode(), digest_size=8, salt=salt).digest(), "little")
        for t in texts
    ]
    return np.asarray(out, dtype=np.uint64)


def unit(texts: Iterable[str], seed: int) -> np.ndarray:
    """Each input's seeded position in [0, 1): where it falls decides its split."""
    return hash64(texts, seed).astype(np.float64) / 2.0**64


TEST, VALIDATION, TRAIN = "test", "validation", "train"


def roles(positions: np.ndarray, test_ratio: float, valid_ratio: float) -> np.ndarray:
    """The split of each position: test in [0, test_ratio), validation in [1 - valid_ratio, 1),
    train between. Fixed bands, so whether a source brings its own test (or validation) split
    never moves the rows of the other band. Codes: 0 train, 1 validation, 2 test."""
    codes = np.zeros(len(positions), dtype=np.int8)
    codes[positions >= 1.0 - valid_ratio] = 1
    codes[positions < test_ratio] = 2
    return codes
