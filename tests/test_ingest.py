"""Ingest: column mapping, cleaning counts, leak-free seeded splits, DVC-compatible data version."""

import json
import subprocess

import pandas as pd
import pytest
from conftest import venv_bin

from tasks.config import load_config
from tasks.errors import DataError
from tasks.ingest import dvc_hash, ingest
from tasks.results import IngestResult, load_split


def write(project, name, text):
    path = project / "data" / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ingest_writes_splits_and_manifest(project):
    result = ingest(load_config())
    assert sum(result.rows.values()) == 400  # max_samples
    assert result.rows["validation"] == 40 and result.rows["test"] == 40
    train = load_split(result, "train")
    assert train["text"].str.startswith("summarize: ").all()
    assert {"text", "target", "source_row"} <= set(train.columns)
    # the manifest is what the next stage (in another process) reads
    again = IngestResult.load(project / "data" / "processed")
    assert again == result
    # no input text appears in two splits
    test = load_split(result, "test")
    assert not set(train["text"]) & set(test["text"])


def test_split_is_deterministic(project):
    a = ingest(load_config())
    first = (project / "data" / "processed" / "test.jsonl").read_bytes()
    b = ingest(load_config())
    assert (project / "data" / "processed" / "test.jsonl").read_bytes() == first
    assert a.data_version == b.data_version


def test_dedup_trim_and_counts(project):
    src = write(project, "dups.csv", "q,a\n  x one ,y\nx one,y\nx two,z\n")
    result = ingest(load_config(overrides=[f"ingest.source={src}", "ingest.text_column=q",
                                           "ingest.target_column=a", "ingest.test_ratio=0",
                                           "ingest.valid_ratio=0"]))
    assert result.counts == {"read": 3, "duplicates_dropped": 1, "kept": 2}
    assert sorted(load_split(result, "train")["text"]) == ["summarize: x one", "summarize: x two"]


def test_missing_column_lists_the_columns_that_exist(project):
    src = write(project, "bad.csv", "body,summary\na,b\n")
    with pytest.raises(DataError) as err:
        ingest(load_config(overrides=[f"ingest.source={src}"]))
    msg = str(err.value)
    assert "'text', 'target' not found" in msg and "'body', 'summary'" in msg
    assert "ingest.text_column" in msg


def test_empty_and_missing_files_are_clear_errors(project):
    empty = write(project, "empty.csv", "")
    with pytest.raises(DataError, match="is empty"):
        ingest(load_config(overrides=[f"ingest.source={empty}"]))
    with pytest.raises(DataError, match="does not exist"):
        ingest(load_config(overrides=["ingest.source=data/nope.csv"]))


def test_jsonl_and_parquet_sources(project):
    df = pd.DataFrame({"text": [f"input {i}" for i in range(30)], "target": [f"out {i}" for i in range(30)]})
    df.to_json(project / "data" / "d.jsonl", orient="records", lines=True)
    df.to_parquet(project / "data" / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        result = ingest(load_config(overrides=[f"ingest.source=data/{name}"]))
        assert sum(result.rows.values()) == 30


def test_data_version_is_the_hash_dvc_records(tmp_path):
    """Compared against DVC itself: `dvc add` of a file and of a folder."""
    repo = tmp_path / "repo"
    (repo / "folder" / "sub").mkdir(parents=True)
    (repo / "one.csv").write_text("text,target\na,b\n")
    (repo / "folder" / "a.jsonl").write_text('{"text": "x"}\n')
    (repo / "folder" / "sub" / "b.jsonl").write_text('{"text": "y"}\n')
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([venv_bin("dvc"), "init", "-q"], cwd=repo, check=True)
    subprocess.run([venv_bin("dvc"), "add", "-q", "one.csv", "folder"], cwd=repo, check=True)
    import yaml

    recorded = {p: yaml.safe_load((repo / f"{p}.dvc").read_text())["outs"][0]["md5"] for p in ("one.csv", "folder")}
    assert dvc_hash(repo / "one.csv") == recorded["one.csv"]
    assert dvc_hash(repo / "folder") == recorded["folder"]
