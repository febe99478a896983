"""Batch prediction (`s2s predict --input FILE --output FILE`): every row comes back, in order, with
all its columns and one prediction; bad files and flags get one readable error; an interrupted
run leaves nothing half-written; memory stays flat on a long file.

The unit tests use a plain Python model object (``predict(list[str]) -> list[str]``, the protocol
the registered MLflow pyfunc follows); the system test runs the real CLI on a registered model."""

from __future__ import annotations

import csv
import json
import os
import tracemalloc
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import free_port, run_cli
from docs_text import run_tutorial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.errors import ConfigError, DataError
from tasks.data.text import is_blank, nfc
from tasks.serving.batch import predict_file, read_chunks

FORMATS = ["csv", "jsonl", "parquet"]
FAST = settings(
    max_examples=int(os.environ.get("S2S_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Upper:
    """A real model in the pyfunc protocol: each text upper-cased. Records what it was sent."""

    def __init__(self, fail_on_call: int | None = None, error: type[BaseException] = RuntimeError):
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.error = error

    def predict(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        if len(self.calls) == self.fail_on_call:
            raise self.error("the model failed on this chunk")
        return [t.upper() for t in texts]


def write(path: Path, frame: pd.DataFrame) -> Path:
    """``frame`` as a CSV, JSON Lines (None as null) or Parquet file, by extension."""
    suffix = path.suffix
    if suffix == ".csv":  # the csv module, not DataFrame.to_csv, which leaves a bare "\r" unquoted
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(frame.columns)
            writer.writerows(frame.itertuples(index=False, name=None))
    elif suffix in (".jsonl", ".ndjson"):
        with path.open("w", encoding="utf-8") as fh:
            for record in frame.to_dict(orient="records"):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        frame.to_parquet(path, index=False)
    return path


def read(path: Path) -> pd.DataFrame:
    """An output file back, every cell as written (no NA guessing for CSV)."""
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=object, keep_default_na=False)
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return pd.DataFrame.from_records([json.loads(line) for line in fh])
    return pd.read_parquet(path)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


TEXTS = ["Rain in Oslo", "", "fog, then sun", "   ", 'he said "hi"', "two\nlines", "é", "x", "y", "z"]


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(len(TEXTS))], "text": TEXTS, "note": [f"n{i}" for i in range(len(TEXTS))]}
    )


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("out_fmt", FORMATS)
@pytest.mark.parametrize("in_fmt", [*FORMATS, "ndjson"])
def test_every_row_comes_back_in_order_with_its_columns_and_a_prediction(tmp_path, in_fmt, out_fmt):
    src = write(tmp_path / f"in.{in_fmt}", sample_frame())
    model = Upper()
    summary = predict_file(model, src, tmp_path / f"out.{out_fmt}", chunk_rows=3)
    out = read(tmp_path / f"out.{out_fmt}")
    assert list(out.columns) == ["id", "text", "note", "prediction"]  # schema: every input column, then ours
    assert list(out["id"]) == [f"r{i}" for i in range(len(TEXTS))]  # order
    assert list(out["text"]) == TEXTS
    assert list(out["prediction"]) == [t.upper() if t.strip() else "" for t in TEXTS]
    assert (summary.rows, summary.blanks) == (10, 2)
    assert all(len(call) <= 3 for call in model.calls)  # chunked
    assert "" not in sum(model.calls, []) and "   " not in sum(model.calls, [])  # blanks never generated
    assert leftovers(tmp_path) == []


def test_missing_and_null_cells_give_empty_predictions_and_numbers_are_text(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": null}\n{"id": 2, "text": 42}\n{"id": 3}\n\n{"id": 4, "text": 1.5}\n')
    model = Upper()
    summary = predict_file(model, src, tmp_path / "out.jsonl")
    out = read(tmp_path / "out.jsonl")
    assert list(out["id"]) == [1, 2, 3, 4]  # the blank line is not a record; ints stay ints
    assert list(out["prediction"]) == ["", "42", "", "1.5"]
    assert summary.blanks == 2
    assert model.calls == [["42", "1.5"]]

    pq_src = tmp_path / "in.parquet"
    pd.DataFrame({"text": ["a", None, "b"], "n": pd.array([1, None, 3], dtype="Int64")}).to_parquet(pq_src)
    predict_file(Upper(), pq_src, tmp_path / "out.parquet")
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert list(back["prediction"]) == ["A", "", "B"]
    assert pq.read_schema(tmp_path / "out.parquet").field("n").type == pa.int64()  # types kept, nulls too
    assert back["n"].isna().tolist() == [False, True, False]


def test_invisible_texts_are_blank_and_decomposed_ones_go_to_the_model_in_nfc(tmp_path):
    src = write(tmp_path / "in.jsonl", pd.DataFrame({"text": ["\u200b\u2060", "cafe\u0301", "ok", "\ufeff "]}))
    model = Upper()
    summary = predict_file(model, src, tmp_path / "out.jsonl")
    assert model.calls == [["CAFÉ".lower(), "ok"]]  # NFC "café" (one code point), blanks never sent
    assert list(read(tmp_path / "out.jsonl")["prediction"]) == ["", "CAFÉ", "OK", ""]
    assert (summary.blanks, summary.normalized) == (2, 1) and "1 normalized to NFC" in summary.line()


def test_an_empty_table_gives_an_empty_output_with_the_columns(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n", encoding="utf-8")
    summary = predict_file(Upper(), src, tmp_path / "out.parquet")
    assert summary.rows == 0
    assert list(pd.read_parquet(tmp_path / "out.parquet").columns) == ["id", "text", "prediction"]


# -- errors a user can fix -----------------------------------------------------------------------


def test_a_missing_column_is_named_with_the_columns_the_file_has(tmp_path):
    src = write(tmp_path / "in.csv", sample_frame())
    with pytest.raises(DataError) as err:
        predict_file(Upper(), src, tmp_path / "out.csv", column="txt")
    msg = str(err.value)
    assert "'txt'" in msg and str(src) in msg and "'id', 'text', 'note'" in msg
    assert "did you mean 'text'" in msg
    assert not (tmp_path / "out.csv").exists() and leftovers(tmp_path) == []


def test_an_output_column_that_exists_is_refused(tmp_path):
    src = write(tmp_path / "in.parquet", sample_frame())
    with pytest.raises(ConfigError, match="--output-column 'note'.*already has a column.*--output-column"):
        predict_file(Upper(), src, tmp_path / "out.csv", output_column="note")


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "in.txt",
            r"--input .*in\.txt: unsupported file type '\.txt'; use \.csv, \.tsv, .*\.jsonl, \.ndjson, \.parquet",
        ),
        ("out.xlsx", r"--output .*out\.xlsx: unsupported file type '\.xlsx'"),
        ("in.csv", r"--output .*in\.csv is the input file"),
    ],
)
def test_unsupported_types_and_overwriting_the_input_are_refused(tmp_path, name, expected):
    src = write(tmp_path / "in.csv", sample_frame())
    if name == "in.txt":
        (tmp_path / name).write_text("text\na\n")
    args = (tmp_path / name, tmp_path / "out.csv") if name == "in.txt" else (src, tmp_path / name)
    with pytest.raises(ConfigError, match=expected):
        predict_file(Upper(), *args)
    assert src.read_text().startswith("id,text,note")  # the input is untouched


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([b'{"text": "a"}', b'{"text": "\xff"}'], r"line 2 is not valid UTF-8"),
        ([b'{"text": "a"}', b"", b'{"text": "b"'], r"line 3 is not valid JSON"),
        ([b'{"text": "a"}', b"[1, 2]"], r"line 2 is a JSON list, not an object"),
        ([b'{"text": NaN}'], r"line 1 is not valid JSON \(NaN is not JSON"),
    ],
)
def test_a_bad_jsonl_line_is_named(tmp_path, lines, expected):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=expected):
        predict_file(Upper(), src, tmp_path / "out.jsonl", chunk_rows=1)
    assert not (tmp_path / "out.jsonl").exists() and leftovers(tmp_path) == []


def test_a_bad_csv_is_refused_with_its_line(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text\n1,a\n2,b\n3,\xff\n")
    with pytest.raises(DataError, match="not valid UTF-8 at line 4"):
        predict_file(Upper(), src, tmp_path / "out.csv", chunk_rows=1)
    src.write_bytes(b"id,text\n1,a\n2,b,c\n")
    with pytest.raises(DataError, match="malformed CSV.*line 3"):
        predict_file(Upper(), src, tmp_path / "out.csv")
    src.write_bytes(b"text,text\n1,a\n")
    with pytest.raises(DataError, match="'text' more than once"):
        predict_file(Upper(), src, tmp_path / "out.csv")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_a_failure_mid_file_leaves_no_output_and_an_old_output_untouched(tmp_path, out_fmt, error):
    src = write(tmp_path / "in.csv", pd.DataFrame({"text": [f"t{i}" for i in range(10)]}))
    out = tmp_path / f"out.{out_fmt}"
    with pytest.raises(error, match="failed on this chunk"):
        predict_file(Upper(fail_on_call=3, error=error), src, out, chunk_rows=2)
    assert not out.exists() and leftovers(tmp_path) == []

    out.write_bytes(b"yesterday's predictions")
    with pytest.raises(error):
        predict_file(Upper(fail_on_call=3, error=error), src, out, chunk_rows=2)
    assert out.read_bytes() == b"yesterday's predictions" and leftovers(tmp_path) == []


# -- streaming -----------------------------------------------------------------------------------


def test_a_long_file_is_read_in_chunks_and_memory_stays_flat(tmp_path):
    rows = 200_000
    src = tmp_path / "big.csv"
    with src.open("w", encoding="utf-8") as fh:
        fh.write("id,text\n")
        fh.writelines(f"{i},report {i} from the north ward on a windy day\n" for i in range(rows))
    size = src.stat().st_size

    sizes = [len(chunk) for chunk in read_chunks(src, 1000)]
    assert max(sizes) <= 1000 and sum(sizes) == rows

    class Plain:  # Upper records every call; this model keeps nothing
        def predict(self, texts):
            return [t.upper() for t in texts]

    def peak_of(run):
        tracemalloc.start()
        try:
            result = run()
            return tracemalloc.get_traced_memory()[1], result
        finally:
            tracemalloc.stop()

    whole, _ = peak_of(lambda: pd.read_csv(src, dtype=object, keep_default_na=False))  # the obvious way
    peak, summary = peak_of(lambda: predict_file(Plain(), src, tmp_path / "out.csv", chunk_rows=1000))
    assert summary.rows == rows
    # one chunk in and out at a time: a few hundred KB, however long the file (~1 MB measured with
    # first-time imports, against ~30 MB for the whole file as Python strings)
    assert peak < whole / 10 and peak < size / 4, f"peak {peak / 1e6:.1f} MB; whole file {whole / 1e6:.1f} MB"
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == rows + 1


# -- any text --------------------------------------------------------------------------------


# NUL is left out: in a text file it means a binary file or a broken export, refused by name
# (tests/test_formats.py), not text to round-trip; so are lone surrogates (category Cs), which no
# UTF-8 file can hold (pandas refuses to build the input frame with one)
cells = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(["", " ", "a,b", 'say "hi"', "line\nbreak", "cr\r\nlf", "\u2028", "#", "NA", "null", "é"]),
)


@FAST
@given(
    texts=st.lists(cells, min_size=1, max_size=12),
    in_fmt=st.sampled_from(FORMATS),
    out_fmt=st.sampled_from(FORMATS),
    chunk_rows=st.integers(1, 5),
)
def test_any_text_round_trips_in_order(tmp_path, texts, in_fmt, out_fmt, chunk_rows):
    src = write(tmp_path / f"in.{in_fmt}", pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts}))
    out = tmp_path / f"out.{out_fmt}"
    predict_file(Upper(), src, out, chunk_rows=chunk_rows)
    back = read(out)
    assert list(back["id"]) == [str(i) for i in range(len(texts))]
    assert list(back["text"]) == texts
    # blank means nothing visible (tasks/data/text.py); the model sees the NFC form
    assert list(back["prediction"]) == [nfc(t).upper() if not is_blank(t) else "" for t in texts]


# -- the real CLI on a registered model ------------------------------------------------------------


@pytest.mark.system
@pytest.mark.xdist_group("served")
def test_cli_batch_predicts_what_predict_prints_for_the_same_texts(served_project, tmp_path):
    """docs/tutorials/serving.md as written: one text, a whole file, the HTTP server; the three
    give the same prediction for the same text, the file keeps its rows, columns and blanks."""
    root, _ = served_project
    env = {"S2S_ROOT": str(root)}
    texts = [
        "Councillors in Lisbon approved 12 million euros for a tram line on Friday.",
        "",
        "Forecasters expect a sunny Monday in Bergen, with temperatures around 14 degrees.",
        "Police in Turin said the road would reopen on Sunday, after the storm.",
    ]
    work = tmp_path / "work"
    work.mkdir()
    src = write(work / "in.csv", pd.DataFrame({"id": ["a", "b", "c", "d"], "text": texts}))
    out = work / "out.parquet"

    bad = run_cli("predict", "--input", str(src), "--output", str(out), "--column", "body", cwd=root, env=env)
    assert bad.returncode == 1 and "error: --column 'body'" in bad.stderr and "Traceback" not in bad.stderr
    half = run_cli("predict", "--input", str(src), cwd=root, env=env)
    assert half.returncode == 2 and "--output" in half.stderr and "Traceback" not in half.stderr

    one, batch, _, _, served = run_tutorial("serving.md", work, env, subs={"5001": str(free_port())})
    assert one.text.startswith('s2s predict "Councillors') and batch.text.startswith("s2s predict --input")
    assert "4 rows (1 blank, not generated; 0 normalized to NFC)" in batch.stderr and "-> out.parquet" in batch.stderr
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["id", "text", "prediction"]
    assert list(frame["id"]) == ["a", "b", "c", "d"] and list(frame["text"]) == texts
    printed = one.stdout.splitlines()
    assert len(printed) == 1  # one line per text (the tiny model may well print an empty one)
    assert frame["prediction"][0] == printed[0] and frame["prediction"][1] == ""
    assert json.loads(served.stdout) == {"predictions": [printed[0]]}, served.stdout

    direct = run_cli("predict", *[t for t in texts if t], cwd=root, env=env)
    assert direct.returncode == 0, direct.stderr
    assert list(frame["prediction"]) == [direct.stdout.splitlines()[0], "", *direct.stdout.splitlines()[1:]]
