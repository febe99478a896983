"""Ingest: every source kind, column mapping, cleaning counts, leak-free seeded splits, slicing,
DVC-compatible data versions, and a clear error (never a traceback) for each kind of bad file."""

import json
import subprocess

import pandas as pd
import pytest
import yaml
from conftest import venv_bin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.config import load_config
from tasks.core.errors import DataError
from tasks.core.results import IngestResult, load_split
from tasks.data.sources import dvc_hash, parse_split
from tasks.ingest import ingest


def write(project, name, text, mode="w"):
    path = project / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def pairs(n, start=0):
    return pd.DataFrame(
        {
            "text": [f"input number {i}" for i in range(start, start + n)],
            "target": [f"output {i}" for i in range(start, start + n)],
        }
    )


def run(*overrides):
    return ingest(load_config(overrides=list(overrides)))


def test_ingest_writes_splits_and_manifest(project):
    result = run()
    assert sum(result.rows.values()) == 400  # max_samples
    # each row's split is drawn from its input's hash: about 10% each (binomial, n=400: sd 6)
    assert 20 <= result.rows["validation"] <= 60 and 20 <= result.rows["test"] <= 60
    train = load_split(result, "train")
    assert train["text"].str.startswith("summarize: ").all()
    assert {"text", "target", "source_row", "text_type", "target_type"} <= set(train.columns)
    assert IngestResult.load(project / "data" / "processed") == result  # what the next stage reads
    test = load_split(result, "test")
    assert not set(train["text"]) & set(test["text"])
    assert result.counts["train.read"] == 3000 and result.counts["train.max_samples_dropped"] == 2600


def test_split_is_deterministic(project):
    a = run()
    first = (project / "data" / "processed" / "test.parquet").read_bytes()
    b = run()
    assert (project / "data" / "processed" / "test.parquet").read_bytes() == first
    assert a.data_version == b.data_version


def test_trim_dedup_prefix_are_counted(project):
    src = write(project, "d.csv", "q,a\n  x one ,y\nx one,y\nx two,z\nsummarize: x three,w\n")
    result = run(
        f"ingest.source={src}",
        "ingest.text_column=q",
        "ingest.target_column=a",
        "ingest.test_ratio=0",
        "ingest.valid_ratio=0",
    )
    assert result.counts == {
        "train.read": 4,
        "train.trimmed": 1,
        "train.normalized": 0,
        "train.duplicates_dropped": 1,
        "train.already_prefixed": 1,
        "train.kept": 3,
    }
    assert sorted(load_split(result, "train")["text"]) == ["summarize: x one", "summarize: x three", "summarize: x two"]


def test_same_input_never_lands_in_two_splits(project):
    df = pd.concat([pairs(200), pairs(200).assign(target=lambda d: d["target"] + " (alt)")])
    df.to_csv(project / "data" / "twice.csv", index=False)
    result = run("ingest.source=data/twice.csv")
    seen = {name: set(load_split(result, name)["text"]) for name in ("train", "validation", "test")}
    assert not seen["train"] & seen["validation"] and not seen["train"] & seen["test"]


def _split_of(frames: dict) -> dict[str, str]:
    return {t: role for role, f in frames.items() for t in f["text"]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=120, unique=True),
    extra=st.lists(st.text(min_size=1, max_size=30), max_size=60),
    drop=st.sets(st.integers(min_value=0, max_value=119), max_size=40),
    seed=st.randoms(use_true_random=False),
)
def test_appending_deleting_and_shuffling_rows_moves_no_row_between_splits(project, base, extra, drop, seed):
    """A row's split is a function of its input: a new data version that appends rows, deletes
    some and reorders the rest leaves every surviving input in the split it was in."""
    from tasks.ingest import split

    cfg = load_config()
    roles = ("validation", "test")
    before = pd.DataFrame({"text": base, "target": base})
    kept = [t for i, t in enumerate(base) if i not in drop] + extra
    seed.shuffle(kept)
    after = pd.DataFrame({"text": kept, "target": kept})
    old, new = _split_of(split(before, cfg, roles)), _split_of(split(after, cfg, roles))
    assert all(new[t] == old[t] for t in new if t in old)
    # inputs equal after normalization (case, whitespace, composition) share a split
    variants = pd.DataFrame({"text": [t.upper() + "  " for t in base], "target": base})
    assert all(
        _split_of(split(variants, cfg, roles))[t.upper() + "  "] == old[t]
        for t in base
        if t.upper().casefold() == t.casefold()
    )


def test_split_bands_hold_their_ratios_and_a_provided_test_split_moves_no_validation_row(project):
    from tasks.ingest import split

    cfg = load_config(overrides=["ingest.test_ratio=0.2", "ingest.valid_ratio=0.1"])
    df = pairs(20_000)
    both = split(df, cfg, ("validation", "test"))
    assert abs(len(both["test"]) / 20_000 - 0.2) < 0.015 and abs(len(both["validation"]) / 20_000 - 0.1) < 0.015
    only_validation = split(df, cfg, ("validation",))  # the source brought its own test split
    assert set(only_validation["validation"]["text"]) == set(both["validation"]["text"])


def test_autotrain_folder_layout(project):
    folder = project / "data" / "layout"
    folder.mkdir(parents=True)
    pairs(100).to_csv(folder / "train.csv", index=False)
    pairs(20, 1000).to_json(folder / "validation.jsonl", orient="records", lines=True)
    result = run("ingest.source=data/layout", "ingest.test_ratio=0.1")
    assert result.origins == {"train": "train.csv", "validation": "validation.jsonl"}
    assert result.rows["validation"] == 20 and result.rows["train"] + result.rows["test"] == 100
    assert 3 <= result.rows["test"] <= 20  # the test split off train by each input's seeded hash (~10%)
    assert result.data_version.endswith(".dir")


def test_folder_without_train_file_lists_what_it_found(project):
    folder = project / "data" / "notrain"
    folder.mkdir(parents=True)
    pairs(5).to_csv(folder / "validation.csv", index=False)
    with pytest.raises(
        DataError, match=r"no train split named 'train'; found validation.*a train file: train.csv, train.jsonl"
    ):
        run("ingest.source=data/notrain")


def test_hf_save_to_disk_folder_with_split_slicing(project):
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {
            "train": Dataset.from_pandas(pairs(120)),
            "validation": Dataset.from_pandas(pairs(30, 500)),
            "test": Dataset.from_pandas(pairs(30, 900)),
        }
    ).save_to_disk(str(project / "data" / "hf"))
    result = run("ingest.source=data/hf", "ingest.train_split=train[:50%]", "ingest.valid_split=validation[:10]")
    assert result.rows == {"train": 60, "validation": 10, "test": 30}
    assert result.origins["train"] == "hf:train"
    assert load_split(result, "test")["text"].iloc[0] == "summarize: input number 900"


def test_hub_dataset_offline_is_a_clear_error(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load hub dataset 'someone/news'.*save_to_disk"):
        run("ingest.source=someone/news", "ingest.train_split=train[:5000]")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("train", ("train", None, None)),
        ("train[:5000]", ("train", None, "5000")),
        ("validation[10%:20%]", ("validation", "10%", "20%")),
        ("test[-100:]", ("test", "-100", None)),
    ],
)
def test_parse_split(spec, expected):
    assert parse_split(spec) == expected


def test_jsonl_and_parquet_sources(project):
    df = pairs(30)
    df.to_json(project / "data" / "d.jsonl", orient="records", lines=True)
    df.to_parquet(project / "data" / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        assert sum(run(f"ingest.source=data/{name}").rows.values()) == 30


# -- bad input: a DataError naming the file, line, column or setting, never a traceback -------


def test_missing_column_lists_the_columns_that_exist(project):
    src = write(project, "bad.csv", "body,summary\na,b\n")
    with pytest.raises(DataError) as err:
        run(f"ingest.source={src}")
    msg = str(err.value)
    assert "'text', 'target' not found" in msg and "'body', 'summary'" in msg
    assert "ingest.text_column" in msg


def test_empty_and_missing_files(project):
    with pytest.raises(DataError, match="is empty"):
        run(f"ingest.source={write(project, 'empty.csv', '')}")
    with pytest.raises(DataError, match="does not exist"):
        run("ingest.source=data/nope.csv")


def test_malformed_csv_line_is_named(project):
    src = write(project, "malformed.csv", "text,target\na,b\nc,d,e\nf,g\n")
    with pytest.raises(DataError, match=r"malformed CSV at line 3: 3 fields where the header has 2"):
        run(f"ingest.source={src}")


def test_non_utf8_bytes_name_the_line(project):
    src = write(project, "latin1.csv", "text,target\nfine,ok\ncaf\xe9 au lait,x\n".encode("latin-1"), mode="wb")
    with pytest.raises(DataError, match=r"not valid UTF-8 at line 3 .*re-export the file as UTF-8"):
        run(f"ingest.source={src}")


def test_numbers_and_nan_pass_through_for_validation_to_report(project):
    rows = [{"text": "a text", "target": "t"}, {"text": 12345, "target": "t2"}, {"text": None, "target": "t3"}]
    write(project, "mixed.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    result = run("ingest.source=data/mixed.jsonl", "ingest.test_ratio=0", "ingest.valid_ratio=0")
    train = load_split(result, "train").sort_values("source_row")
    assert train["text_type"].tolist() == ["str", "int", "NoneType"]
    # a number is carried as text (validation reports its original type); a missing value stays missing
    assert train["text"].iloc[1] == "summarize: 12345" and pd.isna(train["text"].iloc[2])


def test_a_one_megabyte_row_is_read(project):
    big = "word " * 200_000
    src = write(project, "big.csv", f'text,target\n"{big}",short\nsmall,x\n')
    result = run(f"ingest.source={src}", "ingest.test_ratio=0", "ingest.valid_ratio=0")
    assert load_split(result, "train")["text"].str.len().max() > 900_000  # validation rejects it, see test_validate


# -- DVC ------------------------------------------------------------------------------------


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
    recorded = {p: yaml.safe_load((repo / f"{p}.dvc").read_text())["outs"][0]["md5"] for p in ("one.csv", "folder")}
    assert dvc_hash(repo / "one.csv") == recorded["one.csv"]
    assert dvc_hash(repo / "folder") == recorded["folder"]


def test_dvc_push_pull_round_trip_through_a_local_remote(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    pairs(50).to_csv(repo / "raw.csv", index=False)
    dvc = venv_bin("dvc")
    for cmd in (
        ["git", "init", "-q"],
        [dvc, "init", "-q"],
        [dvc, "remote", "add", "-d", "local", str(remote)],
        [dvc, "add", "-q", "raw.csv"],
        [dvc, "push", "-q"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    before = dvc_hash(repo / "raw.csv")
    (repo / "raw.csv").unlink()
    subprocess.run(["rm", "-rf", str(repo / ".dvc" / "cache")], check=True)
    subprocess.run([dvc, "pull", "-q"], cwd=repo, check=True, capture_output=True)
    assert dvc_hash(repo / "raw.csv") == before
