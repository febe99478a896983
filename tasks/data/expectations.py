"""The Great Expectations suite of one split, and the columns it reads: characters, tokens
(counted with the run's tokenizer), blanks, control characters, repeats, copies of the input and
rows shared with other splits. ``tasks/validate.py`` runs the suites and explains their results."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from tasks.core.config import Config
from tasks.data.text import blank_mask

logger = logging.getLogger(__name__)

# C0 controls except tab/newline/carriage return, DEL, and U+FFFD (what a wrong decoding leaves)
CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]"


# -- derived columns ----------------------------------------------------------------------


def token_lengths(tokenizer, values: pd.Series, sample: np.ndarray, target: bool) -> np.ndarray:
    """Token counts (specials included, as truncation counts them) for the sampled rows; NaN
    elsewhere, so GX's rate is over the sample only."""
    out = np.full(len(values), np.nan)
    picked = values.iloc[sample]
    ok = picked.notna().to_numpy()
    texts = picked[ok].astype(str).tolist()
    if not texts or tokenizer is None:  # no tokenizer: nothing in train to fit one on (said apart)
        return out
    backend = getattr(tokenizer, "backend_tokenizer", None)
    # Language-pair tokenizers (mBART, NLLB, M2M) encode targets with other special tokens.
    target_mode = target and any(hasattr(tokenizer, a) for a in ("tgt_lang", "target_lang"))
    if backend is not None and not target_mode:
        # the Rust tokenizer directly: transformers' per-encoding Python wrapping costs more
        # than the tokenization itself
        counts = [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=True)]
    else:
        counts = [len(ids) for ids in tokenizer(text_target=texts, verbose=False)["input_ids"]]
    out[sample[ok]] = counts
    return out


def _arrow(values: pd.Series):
    """The column as an Arrow array (zero-copy for pandas' Arrow-backed strings)."""
    import pyarrow as pa

    arr = pa.array(values) if values.dtype != object else pa.array(values.to_numpy(dtype=object, na_value=None))
    return arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr


def _in(values: pd.Series, pool) -> np.ndarray:
    """Vectorised membership test (pandas' isin on Arrow strings falls back to Python)."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.is_in(_arrow(values), value_set=pool), False).to_numpy(zero_copy_only=False)


def derive(cfg: Config, frames: dict[str, pd.DataFrame], tokenizer) -> dict[str, tuple[pd.DataFrame, str | None]]:
    """Add the columns GX checks beyond plain column properties; returns frame and sampling note."""
    import pyarrow.compute as pc

    v = cfg.validate
    train_text = frames["train"]["text"] if "train" in frames else pd.Series([], dtype="str")
    train_inputs = pc.unique(pc.drop_null(_arrow(train_text)))
    prefix = cfg.ingest.source_prefix
    rng = np.random.default_rng(cfg.ingest.seed)
    out = {}
    for name, df in frames.items():
        n = len(df)
        sample = np.arange(n) if n <= v.token_sample else np.sort(rng.choice(n, v.token_sample, replace=False))
        note = (
            None if n <= v.token_sample else f"token lengths checked on a seeded sample of {v.token_sample} of {n} rows"
        )
        text = df["text"]
        bare = text.str.removeprefix(prefix) if prefix else text
        # With ingest.dedup on, ingest dropped exact pairs already: the check holds by construction
        # and hashing a million pairs again would only cost time.
        dup = df.duplicated(["text", "target"], keep="first").to_numpy() if not cfg.ingest.dedup else np.zeros(n, bool)
        derived = df.assign(
            text_tokens=token_lengths(tokenizer, text, sample, target=False),
            target_tokens=token_lengths(tokenizer, df["target"], sample, target=True),
            pair_duplicate=dup,
            # with and without the task prefix on either side: "summarize: x" -> "summarize: x" copies too
            target_is_input=(
                (bare == df["target"])
                | (text == df["target"])
                | (bare == (df["target"].str.removeprefix(prefix) if prefix else df["target"]))
            )
            .fillna(False)
            .to_numpy(dtype=bool),
            in_train=(_in(text, train_inputs) if name != "train" else np.zeros(n, dtype=bool)),
            # blank to a person: only whitespace, control or invisible format characters
            text_blank=blank_mask(text),
            target_blank=blank_mask(df["target"]),
        )
        out[name] = (derived, note)
    return out


# -- the suite ----------------------------------------------------------------------------


def _variety_expectations(add, v, col: str, key: str, present) -> None:
    """Variety of one column, where it has two or more non-blank values (emptiness has its own checks)."""
    import great_expectations.expectations as gxe

    # variety: one target for every input (or one input for every target) leaves nothing to
    # learn; a model that prints the constant scores perfectly on it.
    if present is not None and present.get(col, 0) < 2:
        return
    ratio = v.min_text_distinct_ratio if col == "text" else v.min_target_distinct_ratio
    add(
        gxe.ExpectColumnUniqueValueCountToBeBetween(column=col, min_value=2),
        "variety",
        "more than one distinct value",
        f"ingest.{key}",
        note=f"every {col} is the same: nothing to learn; check that ingest.{key} names the right column",
    )
    if ratio > 0:
        add(
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(column=col, min_value=ratio),
            "variety",
            f"distinct values in at least {ratio:.1%} of rows",
            f"validate.min_{col}_distinct_ratio",
        )


def _column_expectations(add, v, col: str, chars: tuple[int, int], tokens: tuple[int, str], present) -> None:
    """The expectations on one text column (``text`` or ``target``), through ``add`` (build_suite's)."""
    import great_expectations.expectations as gxe

    (lo, hi), (max_tokens, tok_setting) = chars, tokens
    key = "text_column" if col == "text" else "target_column"
    # schema: the model reads exactly these two columns.
    add(gxe.ExpectColumnToExist(column=col), "schema", "column present", f"ingest.{key}")
    # completeness: a missing input or reference is a row the model cannot learn from.
    add(
        gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=v.mostly),
        "completeness",
        "no missing values",
        "validate.mostly",
        col,
    )
    # type: numbers or lists in a text column mean the wrong column was mapped.
    add(
        gxe.ExpectColumnValuesToBeInSet(column=f"{col}_type", value_set=["str", "NoneType"], mostly=v.mostly),
        "type",
        "values are strings",
        f"ingest.{key}",
        col,
    )
    # content: strings that show nothing (whitespace, zero-width and other invisible
    # characters) are empty examples in disguise.
    add(
        gxe.ExpectColumnValuesToBeInSet(column=f"{col}_blank", value_set=[False], mostly=v.mostly),
        "content",
        "not blank (empty, whitespace or invisible characters only)",
        "validate.mostly",
        col,
    )
    _variety_expectations(add, v, col, key, present)
    # encoding: control characters and U+FFFD betray binary junk or a wrong decoding upstream.
    add(
        gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=CONTROL, mostly=v.mostly),
        "encoding",
        "no control characters or U+FFFD",
        "validate.mostly",
        col,
    )
    # size: over-long rows blow up memory; near-empty ones teach nothing.
    add(
        gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=lo, max_value=hi, mostly=v.mostly),
        "size",
        f"{lo}..{hi} characters",
        f"validate.min_{col}_chars / validate.max_{col}_chars",
        col,
    )
    # truncation: tokens past the limit are cut silently; a high rate means lost content.
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column=f"{col}_tokens", max_value=max_tokens, mostly=1.0 - v.max_truncation_rate
        ),
        "truncation",
        f"at most {max_tokens} tokens",
        f"{tok_setting} / validate.max_truncation_rate",
        col,
    )


def build_suite(cfg: Config, split_name: str, present: dict[str, int] | None = None):
    """The expectation suite for one split; ``present``: its non-blank values per column (variety
    is checked where there are two or more: emptiness has its own checks). Each expectation's ``meta`` carries
    its quality dimension, a plain-words label, the setting that moves its threshold, and which
    column to show for offending rows."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    v, t = cfg.validate, cfg.train
    suite = gx.ExpectationSuite(name=f"{cfg.pipeline}-{split_name}")

    def add(exp, dimension: str, label: str, setting: str | None, show: str | None = None, note=None) -> None:
        exp.meta = {"dimension": dimension, "label": label, "setting": setting, "show": show, "note": note}
        suite.add_expectation(exp)

    # volume: GX's per-row expectations pass on an empty table; the row count is what catches it.
    add(
        gxe.ExpectTableRowCountToBeBetween(min_value=v.min_rows.get(split_name, 1)),
        "volume",
        f"at least {v.min_rows.get(split_name, 1)} rows",
        f"validate.min_rows.{split_name}",
    )
    for col, lo, hi, max_tokens, tok_setting in (
        ("text", v.min_text_chars, v.max_text_chars, t.max_seq_length, "train.max_seq_length"),
        ("target", v.min_target_chars, v.max_target_chars, t.max_target_length, "train.max_target_length"),
    ):
        _column_expectations(add, v, col, (lo, hi), (max_tokens, tok_setting), present)
    # uniqueness: repeated pairs over-weight some examples and inflate scores.
    add(
        gxe.ExpectColumnValuesToBeInSet(column="pair_duplicate", value_set=[False], mostly=1.0 - v.max_duplicate_rate),
        "uniqueness",
        "no repeated (text, target) pairs",
        "validate.max_duplicate_rate (or ingest.dedup)",
        "text",
    )
    # triviality: a target equal to its input teaches the model to copy.
    add(
        gxe.ExpectColumnValuesToBeInSet(column="target_is_input", value_set=[False], mostly=1.0 - v.max_copy_rate),
        "triviality",
        "target differs from the input",
        "validate.max_copy_rate",
        "target",
    )
    if split_name != "train":
        # leakage: an input seen in training makes held-out scores meaningless.
        add(
            gxe.ExpectColumnValuesToBeInSet(column="in_train", value_set=[False], mostly=1.0 - v.max_leakage_rate),
            "leakage",
            "input not also in the train split",
            "validate.max_leakage_rate",
            "text",
        )
    return suite
