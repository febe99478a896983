"""The embedded data set is reproducible: the generator and the shipped file agree byte for byte."""

from conftest import REPO

from tasks.data.sample import generate, write_csv


def test_shipped_file_matches_the_generator(tmp_path):
    out = tmp_path / "reports.csv"
    write_csv(generate(), out)
    assert out.read_bytes() == (REPO / "data" / "sample" / "reports.csv").read_bytes()


def test_rows_are_distinct_and_summaries_are_shorter():
    rows = generate(500, seed=1)
    assert len({r["text"] for r in rows}) == 500
    assert all(len(r["target"]) < len(r["text"]) for r in rows)
    assert generate(50, seed=1) == rows[:50]
