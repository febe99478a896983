"""The file formats ingest and batch prediction read: one table, decided by name and checked by
content.

A data file is a delimited table (``.csv``, sniffed among comma, tab, semicolon and pipe;
``.tsv``/``.tab`` tab; ``.psv`` pipe), JSON (``.jsonl``/``.ndjson`` one object per line;
``.json`` one array of objects, one object of columns, or lines) or Parquet, optionally
compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``) or the only file in a ``.zip``.

The bytes decide what the name cannot: compression is recognised by its magic number whatever
the name says (a browser may have decompressed a ``.csv.gz`` already); text is UTF-8, or UTF-16 /
UTF-32 with a byte order mark (Excel's "Unicode text"); a file that is something else (a web
page saved in place of the download, a Git LFS / git-annex / DVC pointer, a PDF, an image, an
Excel workbook, a SQLite database, other binary) is refused with what it is and what to do.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from tasks.core.errors import DataError

# kind, delimiter (None: sniffed from the content)
FORMATS: dict[str, tuple[str, str | None]] = {
    ".csv": ("delimited", None),
    ".tsv": ("delimited", "\t"),
    ".tab": ("delimited", "\t"),
    ".psv": ("delimited", "|"),
    ".json": ("json", None),
    ".jsonl": ("json", None),
    ".ndjson": ("json", None),
    ".parquet": ("parquet", None),
}
COMPRESSIONS = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".zip": "zip",
}
MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
SNIFF_BYTES = 1 << 16  # the head that decides the delimiter and what a file is
BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def supported() -> str:
    """The names this module reads, for messages."""
    return (
        f"{', '.join(FORMATS)}, optionally compressed ({', '.join(s for s in COMPRESSIONS if s != '.zip')}) or zipped"
    )


def by_name(path) -> tuple[str | None, str | None, str | None] | None:
    """(kind, delimiter, compression) from the name, None when the name is not a data file's.
    ``x.zip`` and ``x.gz`` (no format before the compression) leave the kind to the content."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        return (None, None, compression) if compression else None
    return (*fmt, compression)


def stem(path) -> str:
    """The name without its format and compression suffixes: ``train.csv.gz`` -> ``train``."""
    name = Path(path).name
    for _ in range(2):
        suffix = Path(name).suffix.lower()
        if suffix in FORMATS or suffix in COMPRESSIONS:
            name = name[: -len(suffix)]
    return name


# -- what a file is ---------------------------------------------------------------------------

# (test on the head, what it is, what to do); the first match names the file
_IMPOSTORS: tuple[tuple[Callable[[bytes], bool], str, str], ...] = (
    (
        lambda h: h.startswith(b"version https://git-lfs.github.com/spec/"),
        "a Git LFS pointer file, not the data",
        "run `git lfs pull` to fetch the data it points to",
    ),
    (
        lambda h: b"/annex/objects/" in h[:400] and len(h) < 1000,
        "a git-annex pointer, not the data",
        "run `git annex get` on it",
    ),
    (
        lambda h: h.lstrip().startswith(b"outs:") and b"md5:" in h and len(h) < 4000,
        "a DVC pointer file (.dvc), not the data",
        "run `dvc pull` and point at the data file it names",
    ),
    (
        lambda h: h.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<body")),
        "a web page (HTML)",
        "a login or error page was probably saved instead of the file; download the file itself",
    ),
    (lambda h: h.lstrip().startswith(b"<?xml"), "an XML document", "export the table as CSV, JSON or Parquet"),
    (lambda h: h.startswith(b"%PDF"), "a PDF document", "export the table as CSV, JSON or Parquet"),
    (
        lambda h: h.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")),
        "an image",
        "point at the data file instead",
    ),
    (lambda h: h.startswith(b"SQLite format 3\x00"), "a SQLite database", "export the table as CSV or Parquet"),
    (
        lambda h: h.startswith(b"\xd0\xcf\x11\xe0"),
        "an old-style Excel/Office file",
        "save it as CSV (UTF-8) or export it as Parquet",
    ),
    (lambda h: h[257:262] == b"ustar", "a tar archive", "extract the data file from it"),
)


def impostor(head: bytes) -> str | None:
    """What ``head`` shows the file to be when it is not table data, with what to do, or None."""
    for test, what, todo in _IMPOSTORS:
        if test(head):
            return f"{what}; {todo}"
    return None


def _magic(head: bytes) -> str | None:
    return next((name for magic, name in MAGIC if head.startswith(magic)), None)


def _encoding(head: bytes) -> str:
    return next((enc for bom, enc in BOMS if head.startswith(bom)), "utf-8")


def utf16_without_bom(data: bytes) -> bool:
    """ASCII-range text in UTF-16 without a byte order mark: every other byte is NUL."""
    sample = data[:4000]
    return len(sample) >= 4 and (
        sample[1::2].count(0) > 0.9 * len(sample[1::2]) or sample[::2].count(0) > 0.9 * len(sample[::2])
    )


# -- opening --------------------------------------------------------------------------------


class _Raw(io.RawIOBase):
    """A pyarrow stream as a Python file (pandas and ``for line in fh`` need readinto/readline)."""

    def __init__(self, native):
        self.native = native

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.native.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.native.close()
        super().close()


@dataclass(frozen=True)
class Source:
    """A data file as its content says: kind, delimiter, compression, and how to read it."""

    path: Path
    kind: str  # "delimited" | "json" | "parquet"
    delimiter: str | None  # delimited only
    compression: str | None
    member: str | None  # the file inside a .zip
    encoding: str  # of the stored text: utf-8, or utf-16/utf-32 with a byte order mark

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    @property
    def lines_named(self) -> bool:
        """Named JSON Lines (``.jsonl``/``.ndjson``): an object is a record, not a table of columns."""
        return any(s.lower() in (".jsonl", ".ndjson") for s in Path(self.member or self.path).suffixes)

    @property
    def plain(self) -> bool:
        """Read straight from disk (no decompression, no re-encoding)."""
        return self.compression is None and self.encoding == "utf-8"

    def open(self) -> BinaryIO:
        """A fresh stream of the content, decompressed and as UTF-8. Errors in compressed data
        surface while reading; ``read`` turns them into a DataError."""
        stream = _decompressed(self.path, self.compression, self.member)
        if self.encoding == "utf-8":
            return stream
        with stream:
            data = self._guard(stream.read)
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.where}: not valid {self.encoding.upper()} near byte {exc.start} although it starts with "
                f"a {self.encoding.upper()} byte order mark; re-export the file as UTF-8"
            ) from None
        return io.BytesIO(text.encode("utf-8"))

    def read(self) -> bytes:
        """The whole content, decompressed, as UTF-8 bytes (Parquet as stored)."""
        with self.open() as stream:
            return self._guard(stream.read)

    def _guard(self, fn, *args):
        return guard(self.where, self.compression, fn, *args)


def guard(where: str, compression: str | None, fn, *args):
    """``fn(*args)``, with a truncated or corrupt compressed stream as a DataError."""
    try:
        return fn(*args)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        if compression is None:
            raise
        raise DataError(
            f"{where}: not a readable {compression} file ({type(exc).__name__}: {str(exc)[:160]}); "
            "it may be truncated (an interrupted download or copy): compress or fetch it again"
        ) from None


def guarded(where: str, compression: str | None, iterable):
    """``iterable``'s items, lazily, with a truncated or corrupt compressed stream as a DataError."""
    iterator = iter(iterable)
    while True:
        try:
            item = guard(where, compression, next, iterator)
        except StopIteration:
            return
        yield item


def _decompressed(path: Path, compression: str | None, member: str | None) -> BinaryIO:
    if compression is None:
        return path.open("rb")
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zstd":
        import pyarrow as pa

        # pyarrow's codec: no extra dependency for zstd (Python 3.11 has no zstd module)
        return io.BufferedReader(_Raw(pa.CompressedInputStream(pa.OSFile(str(path)), "zstd")), 1 << 16)
    archive = zipfile.ZipFile(path)
    return archive.open(member)


def _zip_member(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                i.filename
                for i in archive.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/") and Path(i.filename).name != ".DS_Store"
            ]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable zip file ({exc}); it may be truncated: zip or fetch it again"
        ) from None
    if "[Content_Types].xml" in names:
        what = "an Excel workbook" if any(n.startswith("xl/") for n in names) else "an Office document"
        raise DataError(f"{path} is {what}, not a data file; save it as CSV (UTF-8) or export it as Parquet")
    if len(names) != 1:
        found = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise DataError(
            f"{path}: a zip must hold exactly one data file; it holds {len(names)} ({found or 'nothing'}); "
            "unzip it and point at one file, or at a folder of train/validation/test files"
        )
    return names[0]


def inspect(path, delimiter: str | None = None, setting: str = "ingest.delimiter") -> Source:
    """What ``path`` holds: its format (name first, content where the name leaves it open),
    compression (by magic number), encoding, and for a ``.csv`` the delimiter. ``delimiter``
    overrides the name and the sniffing; ``setting`` is what the messages tell the user to set."""
    path = Path(path)
    named = by_name(path)
    if named is None:
        raise DataError(f"{path}: unsupported file type {''.join(path.suffixes[-2:]) or '(none)'!r}; use {supported()}")
    kind, named_delimiter, _ = named
    with path.open("rb") as fh:
        raw_head = fh.read(SNIFF_BYTES)
    if not raw_head:
        raise DataError(f"{path} is empty")
    compression = _magic(raw_head)
    member = None
    if compression == "zip":
        member = _zip_member(path)
        inner = by_name(member)
        if inner is not None and inner[0] is not None:
            kind, named_delimiter = inner[0], inner[1]
    source = Source(path, kind or "", named_delimiter, compression, member, "utf-8")
    with _decompressed(path, compression, member) as stream:
        head = source._guard(stream.read, SNIFF_BYTES)
    if compression and not head:
        raise DataError(f"{source.where}: the {compression} file holds nothing")
    whole = len(head) < SNIFF_BYTES
    if head.startswith(b"PAR1"):
        return replace(source, kind="parquet", delimiter=None)
    what = impostor(head)
    if what:
        raise DataError(f"{source.where} is {what}")
    if kind == "parquet":
        raise DataError(f"{source.where}: not a Parquet file (Parquet files start with PAR1); re-export it as Parquet")
    encoding = _encoding(head)
    if encoding == "utf-8" and b"\x00" in head:
        line = head[: head.index(b"\x00")].count(b"\n") + 1
        if utf16_without_bom(head):
            raise DataError(f"{source.where}: UTF-16 text without a byte order mark; re-export the file as UTF-8")
        raise DataError(f"{source.where}: a NUL byte on line {line}: a binary file, or a broken export")
    source = replace(source, encoding=encoding)
    text_head = _text_head(head, encoding)
    if not kind:  # a name that leaves the format open (data.gz, a zip member data.txt)
        first = text_head.lstrip("\ufeff \t\r\n")[:1]
        kind = "json" if first in ("[", "{") else "delimited"
    if kind == "delimited":
        if delimiter is not None:
            named_delimiter = delimiter
        elif named_delimiter is None:
            named_delimiter = sniff_delimiter(text_head, whole, source.where, setting)
    return replace(source, kind=kind, delimiter=named_delimiter)


def _text_head(head: bytes, encoding: str) -> str:
    if encoding != "utf-8":
        head = head[: len(head) - len(head) % (4 if encoding == "utf-32" else 2)]
    return head.decode(encoding, errors="ignore")


def sniff_delimiter(head: str, whole: bool, where: str, setting: str) -> str:
    """The delimiter that splits every line of ``head`` into the header's number of fields (more
    than one). None does: the one that splits the header most (the reader then names the line
    that breaks it). More than one does: refused, naming them and ``setting``."""
    head = head.removeprefix("\ufeff")
    if not whole:  # the last line may be cut short
        head = head[: head.rfind("\n") + 1] or head
    consistent: dict[str, int] = {}
    header_width: dict[str, int] = {}
    for d in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(head, newline=""), delimiter=d, strict=True) if r]
        except csv.Error:
            continue
        if not rows:
            continue
        header_width[d] = len(rows[0])
        if len(rows[0]) > 1 and all(len(r) == len(rows[0]) for r in rows):
            consistent[d] = len(rows[0])
    if len(consistent) == 1:
        return next(iter(consistent))
    if not consistent:
        return max(header_width, key=lambda d: (header_width[d], d == ","), default=",")
    names = " and ".join(f"{DELIMITERS[d]} ({w} columns)" for d, w in consistent.items())
    raise DataError(
        f"{where}: cannot tell the delimiter: {names} each split every line into the same number of "
        f"columns; set {setting} (one of {', '.join(map(repr, DELIMITERS))}), or name a tab-separated file .tsv"
    )


# -- JSON documents --------------------------------------------------------------------------
