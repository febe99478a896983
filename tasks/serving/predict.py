"""Generating with a registered model from the command line: one output line per input line.

Inputs come as arguments or from stdin, one per line. Every input line gets exactly one output
line, in order, so outputs can be pasted beside inputs: a blank input line gives a blank output
line (nothing is generated for it), and a newline inside an output is written as a space.
"""

from __future__ import annotations

from typing import BinaryIO

from tasks.core.errors import DataError
from tasks.data.text import is_blank, nfc


def read_lines(stream: BinaryIO, where: str = "stdin") -> list[str]:
    """Input lines as text, strictly UTF-8 (a byte order mark and CRLF are fine)."""
    raw = stream.read()
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"{where}: a NUL byte on line {line}: binary input; send UTF-8 text, one input per line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{where}: not UTF-8 text (undecodable bytes on line {line}); send UTF-8") from None
    # one input per "\n" (what `wc -l` and editors count), not str.splitlines(), which also
    # splits on form feeds and Unicode separators inside a line and would misalign the outputs
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def predict_lines(model, lines: list[str]) -> list[str]:
    """One output per input, in order; blank inputs (nothing visible: tasks/data/text.py) give
    blank outputs; the others go to the model in NFC, the form ingest trained on."""
    todo = [i for i, line in enumerate(lines) if not is_blank(line)]
    out = [""] * len(lines)
    if todo:
        for i, prediction in zip(todo, model.predict([nfc(lines[i]) for i in todo])):
            out[i] = " ".join(str(prediction).splitlines())
    return out
