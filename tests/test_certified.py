"""Certified gates: the paired bootstrap and the decision it feeds. A model against itself is never
promoted; a clearly better one is; noise-level differences are not."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.config import Gates
from tasks.metrics.bootstrap import intervals, paired_interval
from tasks.promote import decide

CERT = Gates(primary="rougeL", min_delta=0.0, max_regression={"rouge1": 0.01}, confidence=0.95)


def _scores(rng, n, mean):
    return np.clip(rng.normal(mean, 0.2, n), 0, 1)


def test_interval_is_seeded_and_covers_the_observed_difference():
    rng = np.random.default_rng(1)
    a, b = _scores(rng, 300, 0.80), _scores(rng, 300, 0.79)
    one, two = paired_interval(a, b, 0.95), paired_interval(a, b, 0.95)
    assert one == two and one.low < one.diff < one.high
    assert paired_interval(a, b, 0.99).low < one.low  # a higher confidence is a wider interval


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=200), st.sampled_from([0.0, 0.005, None]))
def test_a_model_against_itself_is_never_promoted(scores, min_delta):
    metrics = {"rougeL": float(np.mean(scores)), "rouge1": float(np.mean(scores))}
    same = {"rougeL": scores, "rouge1": scores}
    gates = CERT.model_copy(update={"min_delta": min_delta if min_delta is not None else 0.0})
    d = decide(metrics, metrics, gates, intervals(same, same, 0.95))
    assert not d.promote and "beat_champion" in d.failed, d.reasons


def test_a_clearly_better_model_is_promoted():
    rng = np.random.default_rng(2)
    champ = _scores(rng, 300, 0.6)
    cand = np.clip(champ + 0.1 + rng.normal(0, 0.02, 300), 0, 1)
    per_c, per_h = {"rougeL": cand, "rouge1": cand}, {"rougeL": champ, "rouge1": champ}
    m = lambda per: {k: float(np.mean(v)) for k, v in per.items()}  # noqa: E731
    d = decide(m(per_c), m(per_h), CERT, intervals(per_c, per_h, 0.95))
    assert d.promote, d.reasons
    assert "95% interval" in d.reasons[0] and "paired bootstrap, n=300" in d.reasons[0]


IV = lambda diff, low, high: {"diff": diff, "low": low, "high": high, "confidence": 0.95, "n": 300, "resamples": 10}  # noqa: E731


@pytest.mark.parametrize(
    "ivs, gates, promoted, failed",
    [
        # primary: the lower bound decides, not the point estimate
        ({"rougeL": IV(0.010, 0.002, 0.018)}, CERT, True, ()),
        ({"rougeL": IV(0.010, -0.004, 0.024)}, CERT, False, ("beat_champion",)),  # better on average, not surely
        ({"rougeL": IV(0.020, 0.012, 0.028)}, CERT.model_copy(update={"min_delta": 0.015}), False, ("beat_champion",)),
        ({"rougeL": IV(0.0, 0.0, 0.0)}, CERT, False, ("beat_champion",)),  # identical outputs: a tie keeps the champion
        # secondary: the upper bound of the drop decides
        ({"rougeL": IV(0.01, 0.002, 0.02), "rouge1": IV(-0.004, -0.009, 0.001)}, CERT, True, ()),
        ({"rougeL": IV(0.01, 0.002, 0.02), "rouge1": IV(-0.004, -0.015, 0.007)}, CERT, False, ("regression.rouge1",)),
        # confidence null: the point estimates, intervals ignored
        ({"rougeL": IV(0.010, -0.004, 0.024)}, CERT.model_copy(update={"confidence": None}), True, ()),
        # no interval for the primary (champion not re-scored): the point estimate, said so
        ({}, CERT, True, ()),
    ],
)
def test_certified_decision_table(ivs, gates, promoted, failed):
    candidate, champion = {"rougeL": 0.81, "rouge1": 0.85}, {"rougeL": 0.80, "rouge1": 0.85}
    d = decide(candidate, champion, gates, ivs)
    assert d.promote is promoted and d.failed == failed, d.reasons
    if not ivs and gates.confidence is not None:
        assert "point estimates: no paired scores" in d.reasons[0]
