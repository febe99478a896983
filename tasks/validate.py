"""Stage 2, validate: the data-quality gate between ingestion and training.

A Great Expectations 1.x suite per split, built in code from ``validate.*`` settings. Checks that
are not a plain column property (token lengths, duplicate pairs, train/test leakage, targets
that copy the input, the raw values' types) are computed as columns first, vectorised, and then
checked by GX like any other column, so every result has the same shape: the expectation, the
quality dimension it protects, the observed rate, offending rows with their row numbers in the
raw file, and the setting that moves the threshold.

The stage also fits or loads the tokenizer the pipeline will use (its checks are token-aware)
and preflights it against the model config: vocabulary size, EOS on labels,
``decoder_start_token_id``, pad token, position limit, the T5 task prefix.

Outputs: ``reports/validation.json``, GX Data Docs in ``reports/validation_docs/`` and the
tokenizer in ``paths.tokenizer``. On failure the stage raises ``ValidationFailed`` with a
readable summary, and the pipeline trains and registers nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core import paths
from tasks.core.config import Config
from tasks.core.errors import DataError, ValidationFailed
from tasks.core.results import SPLITS, VALIDATION_DOCS, VALIDATION_REPORT, IngestResult, load_split
from tasks.data.expectations import build_suite, derive
from tasks.data.text import blank_mask
from tasks.modeling import models as modeling
from tasks.modeling.runtime import T5_FAMILY

logger = logging.getLogger(__name__)

REPORT, DOCS = VALIDATION_REPORT, VALIDATION_DOCS
EXAMPLES = 5  # offending rows shown per failed check


@dataclass
class Check:
    """One check's outcome on one split, in words a user can act on."""

    split: str
    check: str  # what was expected, in plain words
    column: str | None
    dimension: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    setting: str | None = None  # the params.yaml key that sets the threshold
    expectation: str | None = None  # the GX expectation type
    note: str | None = None


@dataclass
class ValidateResult:
    success: bool
    report_path: str
    docs_path: str | None
    tokenizer_path: str
    checks: list[Check]
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.success]


def _run_suites(cfg: Config, frames: dict[str, tuple[pd.DataFrame, str | None]], docs_dir: Path) -> list[Check]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # One bar per metric is noise in a pipeline log; the stage's own log line says what ran.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    staging = paths.temp_sibling(docs_dir)  # the docs replace the old ones only when complete
    context.add_data_docs_site(
        "report",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(staging)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("ingested")
    checks: list[Check] = []
    for split_name, (df, note) in frames.items():
        batch_def = source.add_dataframe_asset(split_name).add_batch_definition_whole_dataframe("all")
        present = {c: int((df[c].notna() & ~df[f"{c}_blank"]).sum()) for c in ("text", "target")}
        suite = context.suites.add(build_suite(cfg, split_name, present))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate-{split_name}", data=batch_def, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"gate-{split_name}",
                validation_definitions=[definition],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": df})
        for suite_result in run.run_results.values():
            for exp_result in suite_result.results:
                check = _to_check(split_name, exp_result, df)
                if check.dimension == "truncation":
                    check.note = "; ".join(filter(None, [token_hint(cfg, df, check), note]))
                checks.append(check)
    context.build_data_docs(site_names=["report"])  # once, for every split (per checkpoint it took seconds)
    if staging.is_dir():
        paths.replace_dir(staging, docs_dir)
    checks.sort(key=lambda c: (SPLIT_ORDER.get(c.split, 9), c.column or "", c.dimension))
    return checks


TOKEN_SETTINGS = {"text": "max_seq_length", "target": "max_target_length"}  # train.<key>, s2s train --<key>


def token_hint(cfg: Config, df: pd.DataFrame, check: Check) -> str | None:
    """For a failed truncation check: the column's token lengths (p50/p95/p99) and a value of its
    setting that keeps 99% of the rows whole, with where to set it."""
    if check.success or check.column not in TOKEN_SETTINGS:
        return None
    lengths = df[f"{check.column}_tokens"].dropna().to_numpy()
    if not len(lengths):
        return None
    p50, p95, p99 = (int(np.ceil(np.percentile(lengths, q))) for q in (50, 95, 99))
    key = TOKEN_SETTINGS[check.column]
    keep = int(np.ceil(p99 / 8) * 8)  # a multiple of 8 (what tensor cores pad to)
    now = getattr(cfg.train, key)
    return (
        f"token lengths p50/p95/p99 = {p50}/{p95}/{p99} (limit {now}); to keep 99% of rows whole set "
        f"train.{key}: {keep} in params.yaml (s2s train --{key.replace('_', '-')} {keep}), "
        "or raise validate.max_truncation_rate to accept the cut"
    )


def _to_check(split_name: str, res, df: pd.DataFrame) -> Check:
    conf = res.expectation_config
    meta = conf.meta or {}
    r = res.result or {}
    show = meta.get("show")
    checked = conf.kwargs.get("column")
    examples = []
    for idx in (r.get("partial_unexpected_index_list") or [])[:EXAMPLES]:
        if isinstance(idx, dict):  # GX returns dicts when an id column is configured
            idx = next(iter(idx.values()))
        idx = int(idx)
        if not 0 <= idx < len(df):
            continue
        row = df.iloc[idx]
        example = {"source_row": int(row["source_row"]), "value": _short(row[show] if show else None)}
        if checked and checked != show and checked in df.columns:
            example[checked] = _short(row[checked])
        examples.append(example)
    observed = r.get("observed_value")
    if res.exception_info and res.exception_info.get("raised_exception"):
        observed = f"error: {res.exception_info.get('exception_message')}"
    return Check(
        split=split_name,
        check=meta.get("label") or conf.type,
        column=show or (checked if checked in ("text", "target") else None),
        dimension=meta.get("dimension", ""),
        success=bool(res.success),
        observed=observed,
        unexpected_count=r.get("unexpected_count"),
        unexpected_percent=r.get("unexpected_percent"),
        examples=examples,
        setting=meta.get("setting"),
        expectation=conf.type,
        note=meta.get("note"),
    )


def _short(value: Any, limit: int = 80) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"... ({len(value)} chars)"
    return value


def describe(check: Check) -> str:
    """One line per failed check: what, where, how much, which rows, and what to change."""
    col = f" {check.column}" if check.column else ""
    parts = [f"[{check.split}{col}] {check.check}: FAILED ({check.dimension})"]
    if check.unexpected_count:
        parts.append(f"{check.unexpected_count} rows ({check.unexpected_percent:.2f}%)")
    elif check.observed is not None:
        parts.append(f"observed {check.observed}")
    if check.examples:
        rows = ", ".join(
            f"row {e['source_row']}: {e['value']!r}"
            + "".join(f" ({k}={e[k]})" for k in e if k not in ("source_row", "value"))
            for e in check.examples
        )
        parts.append(f"e.g. {rows}")
    if check.note:
        parts.append(check.note)
    if check.setting:
        parts.append(f"setting: {check.setting}")
    return "; ".join(parts)


# -- what explains the data first -----------------------------------------------------------

# When several checks fail, these name the problem the data has (nothing there, the same rows
# again, the same value everywhere); the rest (too few rows, too long, a model setting) are
# often their consequence, and are listed after them.
LEADING = ("completeness", "content", "uniqueness", "variety", "volume")


# checks on all rows together come first, then the splits in their order
ALL_ROWS = "all rows"
SPLIT_ORDER = {ALL_ROWS: -1} | {name: i for i, name in enumerate(SPLITS)}


def _rank(dimension: str) -> int:
    return LEADING.index(dimension) if dimension in LEADING else len(LEADING)


def ingest_checks(cfg: Config, ingested: IngestResult) -> list[Check]:
    """Checks on what ingest did: a split whose rows were mostly repeats of other rows (dropped
    by ``ingest.dedup``) fails here by name, not only as "too few rows" after the drop."""
    limit = cfg.validate.max_dropped_duplicate_rate
    checks = []
    for role in ingested.origins:
        counts = ingested.counts
        read = counts.get(f"{role}.read", 0) - counts.get(f"{role}.max_samples_dropped", 0)
        dropped = counts.get(f"{role}.duplicates_dropped")
        if dropped is None or read <= 0:
            continue
        share = dropped / read
        checks.append(
            Check(
                split=role,
                check=f"at most {limit:.0%} of rows are repeated (text, target) pairs",
                column=None,
                dimension="uniqueness",
                success=share <= limit,
                observed=f"{dropped} of {read} rows ({share:.1%}) repeat an earlier row; ingest.dedup dropped them",
                setting="validate.max_dropped_duplicate_rate",
            )
        )
    return checks


def data_checks(frames: dict[str, pd.DataFrame]) -> list[Check]:
    """Checks on all rows together. Equal inputs share a split (the split is drawn from the
    input), so inputs that are all the same fill one split and leave the others empty: that is
    said as what it is, before the empty splits."""
    texts = pd.concat([df["text"] for df in frames.values()]).dropna()
    texts = texts[~blank_mask(texts)]
    if len(texts) < 2:
        return []
    distinct = texts.nunique()
    return [
        Check(
            split=ALL_ROWS,
            check="more than one distinct input",
            column="text",
            dimension="variety",
            success=distinct >= 2,
            observed=f"{distinct} distinct of {len(texts)} inputs",
            note="every input is the same: nothing to learn; check that ingest.text_column names the right column",
            setting="ingest.text_column",
        )
    ]


# -- preflight ----------------------------------------------------------------------------


def preflight(cfg: Config, tokenizer, train_df: pd.DataFrame) -> tuple[list[Check], list[str]]:
    """Tokenizer/model checks (failures) and advice (warnings)."""
    config = modeling.model_config(cfg, tokenizer)
    problems = modeling.preflight(config, tokenizer, cfg.train.max_seq_length)
    checks = [
        Check(split="model", check=p, column=None, dimension="preflight", success=False, setting="train.model")
        for p in problems
    ]
    if not problems:
        checks.append(
            Check(
                split="model",
                check="tokenizer and model config agree",
                column=None,
                dimension="preflight",
                success=True,
                setting="train.model",
            )
        )
    warnings = []
    if getattr(config, "model_type", "") in T5_FAMILY and not cfg.ingest.source_prefix:
        head = train_df["text"].dropna().astype(str).head(200)
        if not head.str.match(r"^[\w ]{2,40}: ").mean() > 0.9:
            warnings.append(
                "T5 models are trained with a task prefix (e.g. 'summarize: '); "
                "set ingest.source_prefix, or results may be much worse"
            )
    return checks, warnings


# -- the stage ----------------------------------------------------------------------------


def _tokenizer_and_preflight(cfg: Config, train: pd.DataFrame) -> tuple[Any, list[Check], list[str]]:
    """The tokenizer and the preflight checks and advice; no tokenizer (None) and one failed check
    when a scratch tokenizer has no train text to be fitted on (the suites then say why)."""
    try:
        tokenizer = modeling.prepare_tokenizer(cfg, train)
    except DataError as err:
        check = Check(
            split="model",
            check="a tokenizer fitted on the train split",
            column=None,
            dimension="volume",
            success=False,
            observed=str(err),
            setting="train.model",
        )
        return None, [check], []
    return tokenizer, *preflight(cfg, tokenizer, train)


def _splits_to_check(cfg: Config, ingested: IngestResult) -> list[str]:
    ratios = {"validation": cfg.ingest.valid_ratio, "test": cfg.ingest.test_ratio}
    names = []
    for name in SPLITS:
        expected = name == "train" or name in ingested.origins or ratios.get(name, 0) > 0
        if ingested.rows.get(name) or (expected and cfg.validate.min_rows.get(name, 0) > 0):
            names.append(name)
    return names


def validate(cfg: Config, ingested: IngestResult) -> ValidateResult:
    """Prepare the tokenizer, run preflight and the suites; write the report; raise on failure."""
    # the Data Docs are no DVC output (GX stamps them with the time): an earlier run's go first,
    # so a validation stopped before its own are built leaves none that could pass for them
    shutil.rmtree(cfg.path("reports") / DOCS, ignore_errors=True)
    frames = {name: load_split(ingested, name) for name in _splits_to_check(cfg, ingested)}
    tokenizer, checks, warnings = _tokenizer_and_preflight(cfg, frames["train"])
    checks += data_checks(frames)
    report_dir = cfg.path("reports")
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / DOCS
    checks += _run_suites(cfg, derive(cfg, frames, tokenizer), docs_dir) + ingest_checks(cfg, ingested)
    checks.sort(key=lambda c: (_rank(c.dimension), SPLIT_ORDER.get(c.split, 9)))  # stable: suite order within

    report_path = report_dir / REPORT
    result = ValidateResult(
        success=all(c.success for c in checks),
        report_path=str(report_path),
        docs_path=str(docs_dir / "index.html"),
        tokenizer_path=str(cfg.path("tokenizer")),
        checks=checks,
        warnings=warnings,
    )
    payload = {
        "success": result.success,
        "data_version": ingested.data_version,
        "rows": ingested.rows,
        "ingest_counts": ingested.counts,
        "failed": len(result.failures),
        "warnings": warnings,
        "failures": [describe(c) for c in result.failures],
        "checks": [asdict(c) for c in checks],
    }
    paths.atomic_write_json(report_path, payload)
    for w in warnings:
        logger.warning("validate: %s", w)
    if not result.success:
        lines = "\n  - ".join(describe(c) for c in result.failures)
        kinds = ", ".join(dict.fromkeys(c.dimension for c in result.failures))
        raise ValidationFailed(
            f"data validation failed: {len(result.failures)} of {len(checks)} checks ({kinds}) "
            f"(report: {report_path}, data docs: {result.docs_path})\n  - {lines}",
            report_path=str(report_path),
            result=result,
        )
    logger.info("validate: %d checks passed on %s (report %s)", len(checks), ", ".join(frames), report_path)
    return result


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> ValidateResult:
        ingested = IngestResult.load(cfg.path("data"))
        try:
            return validate(cfg, ingested)
        except ValidationFailed:
            from tasks.tracking.run import log_validation

            log_validation(cfg, owner.run(ingested.data_version))  # the owner ends the run FAILED
            raise

    return stage_main("validate", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
