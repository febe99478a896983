"""Stage 2, validate: a Great Expectations suite on the text and target columns of every split.

The suite is built in code from the configured thresholds; each expectation names the quality
dimension it protects. On failure the report (JSON) lists each failed expectation with its
observed value and a few offending rows by their row number in the raw file, the stage raises
``ValidationFailed``, and the pipeline stops before any training.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.config import Config
from tasks.errors import ValidationFailed
from tasks.results import SPLITS, IngestResult, load_split

logger = logging.getLogger(__name__)

REPORT = "validation.json"
EXAMPLES = 5  # offending rows shown per failed expectation


@dataclass
class Check:
    """One expectation's outcome on one split, in words a user can act on."""

    split: str
    expectation: str
    column: str | None
    dimension: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    setting: str | None = None  # the params.yaml key that sets the threshold


@dataclass
class ValidateResult:
    success: bool
    report_path: str
    checks: list[Check]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.success]


def build_suite(cfg: Config, split_name: str):
    """The expectation suite for one split, from ``validate.*`` settings.

    Returns (suite, settings) where settings maps an expectation's index to the params.yaml key
    a user changes to move its threshold.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    v = cfg.validate
    suite = gx.ExpectationSuite(name=f"{cfg.pipeline}-{split_name}")
    settings: list[str | None] = []

    def add(exp, dimension: str, setting: str | None = None) -> None:
        exp.meta = {"dimension": dimension}
        suite.add_expectation(exp)
        settings.append(setting)

    # volume: GX's per-row expectations pass on an empty table, the row count is what catches it.
    min_rows = v.min_rows.get(split_name, 1)
    add(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows), "volume", f"validate.min_rows.{split_name}")
    for col, lo, hi, key in (
        ("text", v.min_text_chars, v.max_text_chars, "text"),
        ("target", v.min_target_chars, v.max_target_chars, "target"),
    ):
        # schema: the model reads exactly these two columns.
        add(gxe.ExpectColumnToExist(column=col), "schema", f"ingest.{key}_column")
        # completeness: a missing input or reference is a row the model cannot learn from.
        add(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=v.mostly), "completeness", "validate.mostly")
        # type: numbers or lists in a text column mean the wrong column was mapped.
        add(gxe.ExpectColumnValuesToBeOfType(column=col, type_="str", mostly=v.mostly), "type", f"ingest.{key}_column")
        # content: whitespace-only strings are empty examples in disguise.
        add(gxe.ExpectColumnValuesToMatchRegex(column=col, regex=r"\S", mostly=v.mostly), "content", "validate.mostly")
        # size: over-long rows blow up memory or get silently truncated.
        add(
            gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=lo, max_value=hi, mostly=v.mostly),
            "size",
            f"validate.min_{key}_chars / validate.max_{key}_chars",
        )
    return suite, settings


def _run_suite(cfg: Config, frames: dict[str, pd.DataFrame]) -> list[Check]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # One bar per suite is noise in a pipeline log; the stage's own log line says what ran.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("ingested")
    checks: list[Check] = []
    for split_name, df in frames.items():
        batch_def = source.add_dataframe_asset(split_name).add_batch_definition_whole_dataframe("all")
        suite, settings = build_suite(cfg, split_name)
        suite = context.suites.add(suite)
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
        )
        for exp_result, setting in zip(result.results, settings):
            checks.append(_to_check(split_name, exp_result, setting, df))
    return checks


def _to_check(split_name: str, res, setting: str | None, df: pd.DataFrame) -> Check:
    conf = res.expectation_config
    r = res.result or {}
    examples = []
    for idx in (r.get("partial_unexpected_index_list") or [])[:EXAMPLES]:
        if isinstance(idx, dict):  # GX returns dicts when an id column is configured
            idx = next(iter(idx.values()))
        row = df.iloc[int(idx)] if 0 <= int(idx) < len(df) else None
        value = None if row is None else row.get(conf.kwargs.get("column"))
        examples.append(
            {
                "source_row": None if row is None else int(row.get("source_row", idx + 1)),
                "value": _short(value),
            }
        )
    observed = r.get("observed_value")
    if res.exception_info and res.exception_info.get("raised_exception"):
        observed = f"error: {res.exception_info.get('exception_message')}"
    return Check(
        split=split_name,
        expectation=conf.type,
        column=conf.kwargs.get("column"),
        dimension=(conf.meta or {}).get("dimension", ""),
        success=bool(res.success),
        observed=observed,
        unexpected_count=r.get("unexpected_count"),
        unexpected_percent=r.get("unexpected_percent"),
        examples=examples,
        setting=setting,
    )


def _short(value: Any, limit: int = 80) -> Any:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"... ({len(value)} chars)"
    return value


def describe(check: Check) -> str:
    """One line per failed check: what, where, how much, and which rows."""
    what = check.expectation.removeprefix("expect_").replace("_", " ")
    col = f" column {check.column!r}" if check.column else ""
    parts = [f"[{check.split}]{col}: {what} failed ({check.dimension})"]
    if check.unexpected_count:
        parts.append(f"{check.unexpected_count} rows ({check.unexpected_percent:.1f}%)")
    elif check.observed is not None:
        parts.append(f"observed {check.observed}")
    if check.examples:
        rows = ", ".join(f"row {e['source_row']}: {e['value']!r}" for e in check.examples)
        parts.append(f"e.g. {rows}")
    if check.setting:
        parts.append(f"setting: {check.setting}")
    return "; ".join(parts)


def validate(cfg: Config, ingested: IngestResult) -> ValidateResult:
    """Run the suite on every non-empty split; write the JSON report; raise on failure."""
    frames = {}
    for name in SPLITS:
        if name not in ingested.splits:
            continue
        df = load_split(ingested, name)
        if name == "train" or len(df) or cfg.validate.min_rows.get(name, 0) > 0:
            frames[name] = df
    checks = _run_suite(cfg, frames)
    report_dir = cfg.path("reports")
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / REPORT
    result = ValidateResult(success=all(c.success for c in checks), report_path=str(report_path), checks=checks)
    payload = {
        "success": result.success,
        "data_version": ingested.data_version,
        "rows": ingested.rows,
        "failed": len(result.failures),
        "checks": [asdict(c) for c in checks],
    }
    tmp = report_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(report_path)
    if not result.success:
        lines = "\n  - ".join(describe(c) for c in result.failures)
        raise ValidationFailed(
            f"data validation failed: {len(result.failures)} of {len(checks)} checks "
            f"(report: {report_path})\n  - {lines}",
            report_path=str(report_path),
        )
    logger.info("validate: %d checks passed on %s", len(checks), ", ".join(frames))
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_support import stage_main

    def run(cfg: Config) -> ValidateResult:
        ingested = IngestResult.load(cfg.path("data"))
        try:
            return validate(cfg, ingested)
        except ValidationFailed as exc:
            from tasks.tracking import log_failed_validation

            log_failed_validation(cfg, ingested, Path(exc.report_path or ""))
            raise

    return stage_main("validate", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
