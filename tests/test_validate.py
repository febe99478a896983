"""The data gate: clean data passes; each kind of bad data fails with the check, the rate, the row
numbers in the raw file and the setting to change; tokenizer/model mismatches are caught."""

import json
import re

import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.core.errors import ValidationFailed
from tasks.ingest import ingest
from tasks.validate import validate

GOOD = [f"report number {i} about the harbour of Lyon,summary {i}" for i in range(60)]


def csv(project, rows, name="bad.csv"):
    path = project / "data" / name
    path.write_text("\n".join(["text,target", *rows]) + "\n", encoding="utf-8")
    return path


def run(src, *extra):
    cfg = load_config(
        overrides=[
            f"ingest.source={src}",
            "ingest.valid_ratio=0",
            "ingest.test_ratio=0",
            "validate.min_rows={train: 10}",
            *extra,
        ]
    )
    return cfg, ingest(cfg)


def failure(src, *extra) -> str:
    cfg, ingested = run(src, *extra)
    with pytest.raises(ValidationFailed) as err:
        validate(cfg, ingested)
    return str(err.value)


def test_clean_data_passes_and_writes_report_docs_and_tokenizer(project):
    cfg = load_config()
    result = validate(cfg, ingest(cfg))
    assert result.success and not result.failures
    report = json.loads((project / "reports" / "validation.json").read_text())
    assert report["success"] and report["failed"] == 0
    assert {c["dimension"] for c in report["checks"]} == {
        "volume",
        "schema",
        "completeness",
        "type",
        "content",
        "encoding",
        "size",
        "truncation",
        "uniqueness",
        "triviality",
        "leakage",
        "variety",
        "preflight",
    }
    assert (project / "reports" / "validation_docs" / "index.html").is_file()  # GX Data Docs
    assert (project / "artifacts" / "tokenizer" / "tokenizer.json").is_file()


def test_empty_target_is_named_with_its_row(project):
    msg = failure(csv(project, GOOD + ["an input with no summary,"]))
    assert "[train target] no missing values: FAILED (completeness); 1 rows" in msg
    assert "row 61" in msg and "setting: validate.mostly" in msg


def test_whitespace_only_text(project):
    msg = failure(csv(project, GOOD + ['"   ",a summary']))
    assert "[train text] not blank (empty, whitespace or invisible characters only): FAILED (content)" in msg
    assert "row 61" in msg


def test_numbers_in_the_text_column_fail_the_type_check(project):
    path = project / "data" / "nums.jsonl"
    rows = [{"text": f"input {i}", "target": f"out {i}"} for i in range(40)] + [{"text": 12345, "target": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    msg = failure(path)
    assert "[train text] values are strings: FAILED (type)" in msg
    assert "row 41: 'summarize: 12345' (text_type=int)" in msg and "setting: ingest.text_column" in msg


def test_nan_in_the_text_column(project):
    path = project / "data" / "nan.jsonl"
    rows = [{"text": f"input {i}", "target": f"out {i}"} for i in range(40)] + [{"text": float("nan"), "target": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows).replace("NaN", "null") + "\n")
    assert "[train text] no missing values: FAILED (completeness)" in failure(path)


def test_control_characters_fail_the_encoding_check(project):
    msg = failure(csv(project, GOOD + ["a bell \x07 in the text,summary"]))
    assert "[train text] no control characters or U+FFFD: FAILED (encoding)" in msg and "row 61" in msg


def test_a_one_megabyte_row_fails_on_size_with_the_setting(project):
    msg = failure(csv(project, GOOD + ['"' + "word " * 200_000 + '",short']))
    assert "[train text] 1..20000 characters: FAILED (size)" in msg and "row 61" in msg
    assert "setting: validate.min_text_chars / validate.max_text_chars" in msg


def test_truncation_rate_above_tolerance(project):
    long = " ".join(f"w{i}" for i in range(300))
    msg = failure(csv(project, GOOD + [f"{long},s{i}" for i in range(5)]), "validate.max_truncation_rate=0.01")
    assert "[train text] at most 128 tokens: FAILED (truncation)" in msg
    assert "setting: train.max_seq_length / validate.max_truncation_rate" in msg
    assert "text_tokens=" in msg
    # the figures and a value that passes: set it, and the same data passes the check
    hint = re.search(r"p50/p95/p99 = (\d+)/(\d+)/(\d+) \(limit 128\); .* set train.max_seq_length: (\d+)", msg)
    assert hint, msg
    p50, p95, p99, keep = map(int, hint.groups())
    assert p50 <= p95 <= p99 <= keep and keep % 8 == 0 and p99 > 128
    assert f"s2s train --max-seq-length {keep}" in msg
    cfg, ingested = run(
        csv(project, GOOD + [f"{long},s{i}" for i in range(5)]),
        "validate.max_truncation_rate=0.01",
        f"train.max_seq_length={keep}",
    )
    result = validate(cfg, ingested)
    assert not [c for c in result.checks if c.dimension == "truncation" and not c.success], result


def test_truncation_within_tolerance_passes(project):
    long = " ".join(f"w{i}" for i in range(300))
    cfg, ingested = run(csv(project, GOOD + [f"{long},s"]), "validate.max_truncation_rate=0.05")
    assert validate(cfg, ingested).success


def test_duplicate_pairs_when_dedup_is_off(project):
    msg = failure(csv(project, GOOD + [GOOD[0], GOOD[1]]), "ingest.dedup=false")
    assert "[train text] no repeated (text, target) pairs: FAILED (uniqueness); 2 rows" in msg


def test_target_identical_to_input(project):
    rows = GOOD + [f"same text {i},same text {i}" for i in range(10)]
    msg = failure(csv(project, rows), "ingest.source_prefix=")
    assert "[train target] target differs from the input: FAILED (triviality)" in msg


def test_validation_split_that_shares_rows_with_train_is_leakage(project):
    folder = project / "data" / "leaky"
    folder.mkdir()
    train = pd.DataFrame({"text": [f"input {i}" for i in range(60)], "target": [f"out {i}" for i in range(60)]})
    train.to_csv(folder / "train.csv", index=False)
    pd.concat([train.iloc[:3], train.iloc[:7].assign(text=lambda d: "other " + d["text"])]).to_csv(
        folder / "validation.csv", index=False
    )
    cfg = load_config(
        overrides=["ingest.source=data/leaky", "ingest.test_ratio=0", "validate.min_rows={train: 10, validation: 5}"]
    )
    with pytest.raises(ValidationFailed) as err:
        validate(cfg, ingest(cfg))
    assert "[validation text] input not also in the train split: FAILED (leakage); 3 rows (30.00%)" in str(err.value)


def test_too_few_rows_fails_on_volume(project):
    msg = failure(csv(project, GOOD), "validate.min_rows={train: 1000}")
    assert "[train] at least 1000 rows: FAILED (volume); observed 60; setting: validate.min_rows.train" in msg


def test_nearly_empty_split_is_caught_by_the_row_count(project):
    cfg, ingested = run(csv(project, GOOD[:2], "tiny.csv"), "validate.min_rows={train: 5}")
    with pytest.raises(ValidationFailed, match=r"\[train\] at least 5 rows: FAILED \(volume\); observed 2"):
        validate(cfg, ingested)


def test_report_lists_failures_in_words(project):
    cfg, ingested = run(csv(project, GOOD + ["an input with no summary,"]))
    with pytest.raises(ValidationFailed):
        validate(cfg, ingested)
    report = json.loads((cfg.path("reports") / "validation.json").read_text())
    assert report["success"] is False and report["failed"] == 1
    assert report["failures"][0].startswith("[train target] no missing values: FAILED")


# -- tokenizer / model preflight ----------------------------------------------------------------


def _saved_t5(tmp_path, tokenizer, **overrides):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = dict(
        vocab_size=len(tokenizer),
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_heads=2,
        num_layers=1,
        num_decoder_layers=1,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    cfg.update(overrides)
    folder = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(**cfg)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_vocabulary_mismatch_is_named(project, tmp_path):
    from tasks.modeling.models import train_tokenizer

    tok = train_tokenizer(GOOD * 3, 120)
    folder = _saved_t5(tmp_path, tok, vocab_size=len(tok) - 10)
    msg = failure(csv(project, GOOD), f"train.model={folder}")
    assert f"vocabulary mismatch: the tokenizer has {len(tok)} tokens" in msg
    assert f"vocab_size is {len(tok) - 10}" in msg
    assert "setting: train.model" in msg


def test_missing_decoder_start_token_is_named(project, tmp_path):
    from tasks.modeling.models import train_tokenizer

    folder = _saved_t5(tmp_path, train_tokenizer(GOOD * 3, 120), decoder_start_token_id=None)
    assert "no decoder_start_token_id" in failure(csv(project, GOOD), f"train.model={folder}")


def test_t5_without_prefix_is_warned_about(project, tmp_path):
    from tasks.modeling.models import train_tokenizer

    folder = _saved_t5(tmp_path, train_tokenizer(GOOD * 3, 120))
    cfg, ingested = run(csv(project, GOOD), f"train.model={folder}", "ingest.source_prefix=")
    result = validate(cfg, ingested)
    assert result.success and any("task prefix" in w for w in result.warnings)
