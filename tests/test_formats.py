"""Inputs users actually have (issue 26), generated: compression x format x delimiter x encoding
load with every row, through ingest's reader and batch prediction's alike (one format table);
files that are something else are refused naming what they are; the data gate refuses text that
only looks present and columns with nothing to learn, leading with the finding that explains it."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import zipfile

import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.config import load_config
from tasks.core.errors import DataError, ValidationFailed
from tasks.data import text as textmod
from tasks.data.sources import read_table
from tasks.ingest import ingest
from tasks.serving.batch import read_chunks
from tasks.validate import validate

EXAMPLES = int(os.environ.get("S2S_FUZZ_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# each example of the gate runs ingest + tokenizer + GX (~10 s on 2 cores): one per class in CI
GATE = settings(
    max_examples=max(1, EXAMPLES // 60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

INVISIBLE = "".join(
    chr(c) for c in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD, 0x200E, 0x3164, 0x2800, 0xFE0F, 0x00A0, 0x3000)
)
invisible_text = st.text(alphabet=st.sampled_from(INVISIBLE + " \t\x0b\x1f\x85"), min_size=1, max_size=6)
# a visible cell: at least one letter, with invisible characters anywhere around it
cells = st.tuples(
    st.text(alphabet=st.sampled_from(INVISIBLE), max_size=2),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=25),
    st.sampled_from(["", ",", ";", "|", "\t", '"', "\n", "é", "e\u0301"]),
).map(lambda t: "a" + t[0] + t[1] + t[2] + "z")
rows = st.lists(st.tuples(cells, cells), min_size=1, max_size=8)

FORMATS = ["csv", "tsv", "psv", "semicolon.csv", "tab.csv", "json-array", "json-columns", "jsonl", "parquet"]
COMPRESSIONS = [None, "gz", "bz2", "xz", "zst", "zip"]


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def encode(pairs, fmt: str, encoding: str) -> tuple[str, bytes]:
    """(file name, bytes) of ``pairs`` as ``fmt``, written as the tool that makes it would."""
    frame = pd.DataFrame(pairs, columns=["text", "target"])
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return "d.parquet", buf.getvalue()
    if fmt == "json-array":
        text, name = json.dumps(frame.to_dict(orient="records"), ensure_ascii=False, indent=1), "d.json"
    elif fmt == "json-columns":
        text, name = json.dumps(frame.to_dict(orient="list"), ensure_ascii=False), "d.json"
    elif fmt == "jsonl":
        text, name = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records")), "d.jsonl"
    else:
        delimiter = {"csv": ",", "tsv": "\t", "psv": "|", "semicolon.csv": ";", "tab.csv": "\t"}[fmt]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(["text", "target"])
        writer.writerows(pairs)
        text, name = out.getvalue(), "d." + fmt.split(".")[-1]
    return name, text.encode(encoding)


def compress(name: str, data: bytes, how: str | None, suffix: bool) -> tuple[str, bytes]:
    if how is None:
        return name, data
    if how == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
        return name.rsplit(".", 1)[0] + ".zip", buf.getvalue()
    packed = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zst": _zstd}[how](data)
    # without the suffix: the magic number decides (a browser may rename or keep the name)
    return (f"{name}.{how}" if suffix else name), packed


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("formats")


@FAST
@given(
    pairs=rows,
    fmt=st.sampled_from(FORMATS),
    how=st.sampled_from(COMPRESSIONS),
    suffix=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_good_files_load_with_every_row_in_ingest_and_batch_alike(folder, pairs, fmt, how, suffix, encoding):
    name, data = encode(pairs, fmt, "utf-8" if fmt == "parquet" else encoding)
    name, data = compress(name, data, how, suffix)
    path = folder / name
    path.write_bytes(data)
    frame = read_table(path)
    assert [tuple(r) for r in frame[["text", "target"]].itertuples(index=False)] == pairs
    batch = pd.concat(list(read_chunks(path, 3)))
    assert [tuple(map(str, r)) for r in batch[["text", "target"]].itertuples(index=False)] == pairs


def test_an_ambiguous_delimiter_is_refused_naming_the_setting(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b;c,d\n1,2;3,4\n")
    with pytest.raises(
        DataError, match=r"cannot tell the delimiter: comma \(3 columns\) and semicolon.*ingest.delimiter"
    ):
        read_table(path)
    assert list(read_table(path, ";").columns) == ["a,b", "c,d"]


def test_plain_tsv_with_unbalanced_quotes_is_read_as_text(tmp_path):
    """IANA tab-separated values have no quoting (Debian's and many tools' exports)."""
    path = tmp_path / "d.tsv"
    path.write_text('text\ttarget\n5" screen\tsmall "tv\nok\tfine\n')
    assert read_table(path).values.tolist() == [['5" screen', 'small "tv'], ["ok", "fine"]]


IMPOSTORS = {
    "page.csv": (b"<!DOCTYPE html><html><body>Sign in</body></html>", "a web page"),
    "lfs.csv": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "Git LFS pointer"),
    "annex.jsonl": (b"../../.git/annex/objects/Xk/12/SHA256E-s1--ab/SHA256E-s1--ab", "git-annex pointer"),
    "pointer.parquet": (b"outs:\n- md5: 0123\n  size: 10\n  path: d.parquet\n", "DVC pointer"),
    "doc.csv": (b"%PDF-1.7\n%\xe2\xe3\n", "a PDF"),
    "image.json": (b"\x89PNG\r\n\x1a\n\x00\x00", "an image"),
    "db.csv": (b"SQLite format 3\x00" + bytes(100), "SQLite database"),
    "old.csv": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "Excel"),
    "wide.csv": ("text,target\na,b\n".encode("utf-16-le"), "UTF-16 text without a byte order mark"),
    "cut.csv.gz": (
        gzip.compress(b"text,target\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(20000)))[:20000],
        "not a readable gzip file.*truncated",
    ),
    "binary.tsv": (b"text\ttarget\n\x00\x01\x02", "NUL byte"),
}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


IMPOSTORS["book.zip"] = (_zip({"[Content_Types].xml": b"<x/>", "xl/workbook.xml": b"<x/>"}), "an Excel workbook")
IMPOSTORS["two.zip"] = (_zip({"a.csv": b"text,target\n", "b.csv": b"text,target\n"}), "exactly one data file")
IMPOSTORS["page.csv.gz"] = (gzip.compress(IMPOSTORS["page.csv"][0]), "a web page")


@pytest.mark.parametrize("name", sorted(IMPOSTORS))
@pytest.mark.parametrize("reader", ["ingest", "batch"])
def test_a_file_that_is_something_else_is_refused_naming_what_it_is(tmp_path, name, reader):
    data, what = IMPOSTORS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=what):
        read_table(path) if reader == "ingest" else list(read_chunks(path, 10))


# -- blank means blank to a person ---------------------------------------------------------------


def test_the_invisible_table_is_this_pythons_unicode():
    assert textmod.INVISIBLE == textmod.invisible_ranges()


@FAST
@given(
    blank=invisible_text,
    visible=st.text(
        alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd", "Po", "Sm", "So")).filter(
            lambda c: not any(lo <= ord(c) <= hi for lo, hi in textmod.INVISIBLE_EXTRA)  # letters that show nothing
        ),
        min_size=1,
    ),
)
def test_blank_is_nothing_visible(blank, visible):
    assert textmod.is_blank(blank) and textmod.blank_mask(pd.Series([blank])).tolist() == [True]
    mixed = blank + visible + blank
    assert not textmod.is_blank(mixed) and textmod.blank_mask(pd.Series([mixed])).tolist() == [False]


# -- the gate: each class of bad data fails, named first -------------------------------------------

GOOD = [(f"report {i} on the harbour of Lyon and its {i % 7} cranes", f"summary {i}") for i in range(80)]


def _gate(root, pairs, name="d.csv", *overrides) -> str:
    path = root / "data" / name
    pd.DataFrame(pairs, columns=["text", "target"]).to_csv(path, index=False)
    cfg = load_config(
        root=root,
        overrides=[f"ingest.source=data/{name}", "validate.min_rows={train: 20, validation: 2, test: 2}", *overrides],
    )
    with pytest.raises(ValidationFailed) as err:
        validate(cfg, ingest(cfg))
    return str(err.value)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("gate") / "proj")


@pytest.mark.parametrize("kind", ["invisible targets", "constant targets", "identical inputs", "repeated pairs"])
@GATE
@given(value=invisible_text, constant=cells)
def test_each_class_of_bad_data_is_refused_and_named_first(root, monkeypatch, kind, value, constant):
    monkeypatch.setenv("S2S_ROOT", str(root))
    if kind == "invisible targets":
        pairs, first = [(t, value) for t, _ in GOOD], "not blank (empty, whitespace or invisible characters only)"
    elif kind == "constant targets":
        pairs, first = [(t, constant) for t, _ in GOOD], "[train target] more than one distinct value: FAILED (variety)"
    elif kind == "identical inputs":
        pairs, first = [(constant, g) for _, g in GOOD], "[all rows text] more than one distinct input: FAILED"
    else:
        pairs, first = [GOOD[0]] * 80, "repeated (text, target) pairs: FAILED (uniqueness)"
    msg = _gate(root, pairs)
    lead = msg.splitlines()[1]
    assert first in lead, msg


def test_empty_targets_lead_with_completeness_even_when_rows_are_few(root, monkeypatch):
    """Before: too few rows was said first, and the emptiness of the targets after it."""
    monkeypatch.setenv("S2S_ROOT", str(root))
    msg = _gate(root, [(t, "") for t, _ in GOOD[:30]], "e.csv", "validate.min_rows={train: 100}")
    lines = msg.splitlines()
    assert "(completeness" in lines[0] and "volume" in lines[0]
    assert lines[1].startswith("  - [train target] no missing values: FAILED (completeness)"), msg
    assert any("at least 100 rows: FAILED (volume)" in line for line in lines[2:]), msg  # listed, after
