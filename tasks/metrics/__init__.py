"""The metric registry: one definition per metric, in one file per metric family.

A family is what ``evaluate.metrics`` names (``rouge``, ``bleu``, ``chrf``): it computes one or
more metrics from predictions and references, corpus-level and per example. Each metric says
whether higher is better (None for a length, which gates may bound but never compare on),
whether the run summary shows it, and whether gates may use it. The registry finds the
families itself: every module of this package that defines ``FAMILY`` is one, so a new metric
is one new file here (plus its test) and nothing else: configuration checks, promotion gates
(direction included), the summary, training's best-model selection and the DVC plots all read
it from here.

``gen_len`` (mean generated tokens) is built in: generation measures it, not a family.

Importing this package is cheap: families import their scoring libraries only when they score.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

Scores = tuple[dict[str, float], dict[str, list[float]]]  # corpus means, per-example lists


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool | None  # None: neither (a length): bounded by gates, never compared
    description: str = ""
    summary: bool = True  # shown in the run summary's metrics line
    gateable: bool = True  # may appear in promotion gates


@dataclass(frozen=True)
class Family:
    name: str  # the entry of evaluate.metrics that turns it on
    metrics: tuple[Metric, ...]
    compute: Callable[[list[str], list[str]], Scores]
    primary: str  # the metric promotion compares on when this family leads
    rank: int = 50  # which family's primary is the default when several are on (lowest first)
    scale: str = "0-1"
    notes: dict = field(default_factory=dict)


GEN_LEN = Metric("gen_len", None, "mean generated tokens per example (pad excluded)", gateable=True)


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """Every family defined in this package, by name."""
    found: dict[str, Family] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found[family.name] = family
    return dict(sorted(found.items(), key=lambda kv: (kv[1].rank, kv[0])))


def metrics(enabled: list[str] | tuple[str, ...] | None = None) -> dict[str, Metric]:
    """Metric name -> definition, for the enabled families (all when None), gen_len included."""
    chosen = [f for name, f in families().items() if enabled is None or name in enabled]
    out = {m.name: m for f in chosen for m in f.metrics}
    out[GEN_LEN.name] = GEN_LEN
    return out


def family_of(metric: str) -> str:
    """The family that computes ``metric``."""
    return next(name for name, family in families().items() if any(m.name == metric for m in family.metrics))


def get(name: str) -> Metric | None:
    return metrics().get(name)


def default_primary(enabled: list[str] | tuple[str, ...]) -> str:
    """The primary metric when the gates name none: the leading enabled family's."""
    for name, family in families().items():
        if name in enabled:
            return family.primary
    raise ValueError(f"no metric family among {list(enabled)}; known: {', '.join(families())}")


def score(predictions: list[str], references: list[str], enabled: list[str] | tuple[str, ...]) -> Scores:
    """Corpus and per-example scores of every enabled family."""
    means: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    for name in enabled:
        m, p = families()[name].compute(predictions, references)
        means.update(m)
        per_example.update(p)
    return means, per_example
