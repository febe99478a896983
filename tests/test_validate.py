"""The data gate: clean data passes; each kind of bad row fails with its row number and setting."""

import json

import pytest

from tasks.config import load_config
from tasks.errors import ValidationFailed
from tasks.ingest import ingest
from tasks.validate import validate


def bad_csv(project, rows):
    lines = ["text,target"] + [f"report number {i} about the harbour,summary {i}" for i in range(60)] + rows
    path = project / "data" / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(project, src, *extra):
    cfg = load_config(overrides=[f"ingest.source={src}", "ingest.valid_ratio=0", "ingest.test_ratio=0",
                                 "validate.min_rows={train: 10}", *extra])
    return cfg, ingest(cfg)


def test_clean_data_passes_and_writes_the_report(project):
    cfg = load_config()
    result = validate(cfg, ingest(cfg))
    assert result.success and not result.failures
    report = json.loads((project / "reports" / "validation.json").read_text())
    assert report["success"] and report["failed"] == 0
    assert {c["dimension"] for c in report["checks"]} >= {"volume", "schema", "completeness", "type", "content", "size"}


def test_empty_target_and_whitespace_rows_are_named(project):
    # data rows 61 and 62 of the file (after the 60 good ones)
    src = bad_csv(project, ['an input with no summary,', 'another input,"   "'])
    cfg, ingested = run(project, src)
    with pytest.raises(ValidationFailed) as err:
        validate(cfg, ingested)
    msg = str(err.value)
    assert "column 'target': column values to not be null failed (completeness)" in msg
    assert "row 61" in msg
    report = json.loads((project / "reports" / "validation.json").read_text())
    assert report["success"] is False and report["failed"] >= 1


def test_numbers_in_the_text_column_fail_the_type_check(project):
    path = project / "data" / "nums.jsonl"
    rows = [{"text": f"input {i}", "target": f"out {i}"} for i in range(40)] + [{"text": 12345, "target": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg, ingested = run(project, path)
    with pytest.raises(ValidationFailed) as err:
        validate(cfg, ingested)
    assert "column 'text': column values to be of type failed (type)" in str(err.value)
    assert "row 41: 12345" in str(err.value)


def test_too_few_rows_fails_on_volume(project):
    src = bad_csv(project, [])
    cfg, ingested = run(project, src, "validate.min_rows={train: 1000}")
    with pytest.raises(ValidationFailed, match=r"\[train\]: table row count to be between failed \(volume\); observed 60; setting: validate.min_rows.train"):
        validate(cfg, ingested)


def test_over_long_rows_fail_with_the_setting_to_change(project):
    src = bad_csv(project, ["x" * 500 + ",short"])
    cfg, ingested = run(project, src, "validate.max_text_chars=200")
    with pytest.raises(ValidationFailed, match="validate.max_text_chars"):
        validate(cfg, ingested)
