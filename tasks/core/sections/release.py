"""The params.yaml sections from scores to serving: ``evaluate``, ``register``, ``promote`` (with
its ``gates`` and ``degenerate`` checks), ``drift``, ``notify``, ``serve``."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from tasks.core.errors import suggest
from tasks.core.sections.data import Section


class Evaluate(Section):
    """Generation and scoring on the held-out split."""

    split: Literal["test", "validation"] = "test"
    """test | validation: the rows the scores and the gates use"""
    metrics: list[str] = Field(default_factory=lambda: ["rouge"], min_length=1)
    """rouge (ROUGE-1/2/L/Lsum + gen_len) and/or bleu (sacreBLEU, 0-100)"""
    num_beams: int = Field(1, ge=1)
    """beam search width (1: greedy)"""
    generation_max_length: int = Field(64, gt=0)
    """max new tokens when generating for evaluation"""
    batch_size: int = Field(64, gt=0)
    """inputs per generate call (length-sorted)"""
    backend: Literal["auto", "hf", "ct2"] = "auto"
    """auto (CTranslate2 where it converts the model, else transformers) | ct2 | hf"""
    compute_type: Literal[
        "auto", "float32", "int8", "int8_float32", "float16", "bfloat16", "int8_float16", "int8_bfloat16"
    ] = "auto"
    """CTranslate2: auto (CPU: int8 from 10M parameters, else float32; GPU: bfloat16/float16) | float32 | int8 | ..."""
    max_samples: int | None = Field(None, gt=0)
    """score only the first N rows of the split (smoke runs)"""
    compare_champion: bool = True
    """score the current champion on the same rows and settings"""
    length_buckets: int = Field(4, ge=1)
    """input-length buckets of the score-by-length plot"""

    @field_validator("metrics")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        from tasks import metrics

        known = list(metrics.families())
        for name in v:
            if name not in known:
                raise ValueError(f"unknown metric family {name!r}{suggest(name, known)}; known: {', '.join(known)}")
        return list(dict.fromkeys(v))


class Register(Section):
    """MLflow model registration. The model name comes from the pipeline (pipelines.yaml)."""

    model_name: str = "s2s-default"
    """pipelines.yaml sets this per pipeline"""
    lora_export: Literal["merged", "adapter"] = "merged"
    """with train.peft: merged (self-contained) | adapter (+ base reference)"""
    in_experiments: bool = False
    """dvc exp run registers and promotes its model too (default: the registry is the team's)"""

    def skipped_for_experiment(self) -> str | None:
        """Why this process registers nothing: it is a stage of a DVC experiment (DVC sets
        DVC_EXP_BASELINE_REV) and ``in_experiments`` is off. None otherwise."""
        if self.in_experiments or not os.environ.get("DVC_EXP_BASELINE_REV"):
            return None
        name = os.environ.get("DVC_EXP_NAME") or "this one"
        return (
            f"a DVC experiment ({name}): its model stays out of the team's registry "
            "(register.in_experiments: false); `dvc exp apply` it and `s2s run` to register it"
        )


class Gates(Section):
    """Promotion gates: absolute bounds, beat-the-champion, and regression tolerances."""

    min: dict[str, float] = Field(default_factory=dict)
    """metric >= bound"""
    max: dict[str, float] = Field(default_factory=dict)
    """metric <= bound (e.g. gen_len)"""
    primary: str | None = None
    """default: the leading family's (rougeL; bleu without ROUGE), see tasks/metrics"""
    min_delta: float | None = 0.0
    """candidate - champion on primary must be >= this; null: no champion gate"""
    max_regression: dict[str, float] = Field(default_factory=dict)
    """champion - candidate <= tolerance"""
    confidence: float | None = Field(0.95, gt=0.5, lt=1)
    """certified gates: the paired-bootstrap interval's lower bound of the primary metric's gain must reach min_delta,
    and the upper bound of each listed metric's drop stay within its tolerance (tasks/metrics/bootstrap.py); null:
    compare point estimates"""
    approval: Literal["none", "required"] = "none"
    """required: a candidate that passed waits for a person (the flow pauses with a form; or `s2s approve VERSION
    [--reject]`); after approval_timeout_s the outcome is on_timeout"""
    approval_timeout_s: int = Field(86_400, gt=0)
    """how long a candidate waits for a person"""
    on_timeout: Literal["reject", "promote"] = "reject"
    """what happens when nobody answered in time"""


class Degenerate(Section):
    """The degenerate-output gate: a candidate whose predictions are blank, loop, all say the same
    or collapse in length is refused whatever its scores (figures: tasks/metrics/degenerate.py).
    The defaults pass any model that learned something (the embedded default: 0% empty, 0%
    repeating) and refuse one that wrote nothing or ``a a a a ...``."""

    refuse: bool = True
    """false: still measured, logged and flagged in the run summary"""
    max_empty: float = Field(0.1, ge=0.0, le=1.0)
    """share of empty (whitespace-only) predictions"""
    max_repeating: float = Field(0.1, ge=0.0, le=1.0)
    """share of predictions that loop (a phrase 3 times, a word over half) where their reference does not"""
    max_identical_excess: float = Field(0.5, ge=0.0, le=1.0)
    """the most common prediction's share beyond the references' own"""
    min_length_ratio: float = Field(0.25, ge=0.0)
    """mean prediction words / mean reference words"""


class Promote(Section):
    """Which alias a passing candidate takes, and the gates it must pass."""

    alias: str = "champion"
    """the alias a passing candidate takes (the serving pointer)"""
    gates: Gates = Gates()
    degenerate: Degenerate = Degenerate()
    """refuse a candidate whose outputs are degenerate, whatever its scores"""
    lock_timeout_s: float = Field(600, gt=0)
    """promotions of one model run one at a time"""


class Drift(Section):
    """The drift check before a scheduled retrain (tasks/data/drift.py): below every threshold the
    retrain is skipped, saying why; at or above one, it trains and the figures go on the version."""

    check: bool = True
    """below every threshold: skipped, saying why; else it trains"""
    length_psi: float = Field(0.1, gt=0)
    """input/target length histograms vs the champion's (PSI)"""
    poor_token_rise: float = Field(0.02, gt=0)
    """rise in the share of words the champion's tokenizer splits into more than max_pieces pieces (or an unknown
    token)"""
    script_shift: float = Field(0.05, gt=0)
    """Unicode script mix (total variation distance)"""
    max_pieces: int = Field(4, ge=1)
    """a word in more pieces than this is poorly represented"""
    max_test_overlap: float = Field(0.01, ge=0)
    """new training inputs found in the champion's test split: warned"""


class Notify(Section):
    """Who hears about a run: a webhook receives one JSON event per outcome (promoted, rejected,
    skipped, failed, awaiting_approval). The URL comes from the environment, never a file."""

    webhook_env: str = "S2S_WEBHOOK_URL"
    """the environment variable holding the webhook URL (unset: none)"""
    events: list[Literal["promoted", "rejected", "skipped", "failed", "awaiting_approval"]] = Field(
        default_factory=lambda: ["promoted", "rejected", "skipped", "failed", "awaiting_approval"]
    )
    """which outcomes are sent"""
    timeout_s: float = Field(10.0, gt=0)
    """per attempt"""
    attempts: int = Field(3, ge=1, le=10)
    """a 5xx, a refused connection or a timeout is retried with backoff"""


class Serve(Section):
    """Bounds of `s2s serve` (tasks/serving/request_body.py: Limits): what one request may ask
    for, how long a client may take to send it, and how long a stop waits for the requests in
    flight."""

    max_inputs: int = Field(256, ge=1)
    """inputs per request (over: 413)"""
    max_input_chars: int = Field(20000, ge=1)
    """characters per input (over: 422); tokenizing a 9.5 MB text took 4 GB"""
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """request body (over: 413)"""
    max_request_seconds: float = Field(30.0, gt=0)
    """generation time one request may use (over: 413; shared batches count by its share of the inputs)"""
    max_queued_inputs: int = Field(4096, ge=1)
    """inputs waiting across requests (over: 503 with Retry-After)"""
    read_timeout_s: float = Field(10.0, gt=0)
    """the whole request must arrive within this (slow client: 408/closed)"""
    drain_s: float = Field(20.0, gt=0, le=22)
    """SIGTERM: requests in flight get this long to finish, then a 503"""
