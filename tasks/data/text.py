"""Text as a person reads it: one Unicode form (NFC), and "blank" meaning nothing visible.

A string of zero-width spaces, joiners, direction marks, byte order marks, control characters or
exotic spaces looks empty on a screen and teaches a model nothing; ``str.strip()`` and the regex
``\\S`` both call it text. Here a string is blank when every character is in one of the Unicode
categories Cc (control), Cf (format), Zs/Zl/Zp (separators) or is one of the few letters and
marks that render as nothing (Hangul fillers, the Braille blank, variation selectors, the
combining grapheme joiner). The ingest stage, the data gate and every prediction path (batch,
``s2s predict``, the HTTP server) use these two functions, so they agree on what is blank.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

import numpy as np
import pandas as pd

BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# letters, symbols and marks that render as nothing although their category says otherwise
INVISIBLE_EXTRA = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong / jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x2800, 0x2800),  # Braille pattern blank
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xE0100, 0xE01EF),  # variation selectors supplement
)


INVISIBLE = (  # computed by invisible_ranges() (Unicode 14, Python 3.11); a test keeps them equal
    (0x0000, 0x0020),
    (0x007F, 0x00A0),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x1680, 0x1680),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x2064),
    (0x2066, 0x206F),
    (0x2800, 0x2800),
    (0x3000, 0x3000),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF),
)


def invisible_ranges() -> tuple[tuple[int, int], ...]:
    """Code point ranges of the characters that show nothing, from this Python's Unicode tables
    (a second or two: the constant INVISIBLE holds the result; tests compare the two)."""
    extra = {cp for lo, hi in INVISIBLE_EXTRA for cp in range(lo, hi + 1)}
    ranges: list[list[int]] = []
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # surrogates never reach here from decoded text
        if cp in extra or unicodedata.category(chr(cp)) in BLANK_CATEGORIES:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return tuple((lo, hi) for lo, hi in ranges)


@functools.cache
def _python_blank() -> re.Pattern:
    cls = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in INVISIBLE)
    return re.compile(f"[{cls}]*")


@functools.cache
def _re2_blank() -> str:
    cls = "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in INVISIBLE)
    return f"^[{cls}]*$"


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: empty, or only whitespace, control, format (zero-width,
    direction marks, BOM) and other invisible characters."""
    return _python_blank().fullmatch(text) is not None


def blank_mask(values: pd.Series) -> np.ndarray:
    """``is_blank`` over a column, vectorised (Arrow's RE2); missing values are not blank (the
    completeness check counts them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype == object:
        arr = pa.array([v if isinstance(v, str) else None for v in values], type=pa.large_string())
    else:
        arr = pa.array(values)
        if not pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.large_string())
    hit = pc.fill_null(pc.match_substring_regex(arr, _re2_blank()), False)
    return hit.to_numpy(zero_copy_only=False).astype(bool)


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C (composed: "e" + U+0301 becomes "é")."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def nfc_column(values: pd.Series) -> tuple[pd.Series, int]:
    """The column in NFC and how many values that changed (missing values and non-strings stay as
    they are). Only non-ASCII strings can change; they are found with one Arrow kernel."""
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = values.map(lambda v: v if isinstance(v, str) else None) if values.dtype == object else values
    ascii_ = pc.fill_null(pc.string_is_ascii(pa.array(strings, type=pa.large_string())), True)
    todo = np.flatnonzero(~ascii_.to_numpy(zero_copy_only=False))
    if not len(todo):
        return values, 0
    picked = values.iloc[todo]
    normalized = picked.map(nfc)
    changed = normalized.ne(picked).to_numpy(dtype=bool)
    if not changed.any():
        return values, 0
    out = values.copy()
    out.iloc[todo[changed]] = normalized[changed].to_numpy()
    return out, int(changed.sum())
