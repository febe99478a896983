"""The drift figures on real text with a real tokenizer: the same distribution stays below the
thresholds, another length, script or vocabulary crosses them; a profile against itself is all
zeros (hypothesis)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.config import Drift
from tasks.data import drift
from tasks.data.sample import generate

PREFIX = "summarize: "


@pytest.fixture(scope="module")
def tokenizer():
    """A BPE tokenizer fitted here on the sample data (as the scratch model's is)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [r["text"] for r in generate(2000, seed=1)], trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"])
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def _profile(rows, tokenizer, tests=()):
    return drift.profile(
        [PREFIX + r["text"] for r in rows], [r["target"] for r in rows], list(tests), tokenizer, 4, PREFIX
    )


def test_same_distribution_does_not_drift(tokenizer):
    base = _profile(generate(1500, seed=1), tokenizer)
    fresh = generate(1500, seed=2)
    figures = drift.compare(base, _profile(fresh, tokenizer), [PREFIX + r["text"] for r in fresh], PREFIX)
    assert drift.drifted(figures, Drift()) == [], figures


@pytest.mark.parametrize(
    "change, figure",
    [
        (lambda t: " ".join([t] * 4), "input_length_psi"),
        (lambda t: t.translate(str.maketrans("aeiopkmnt", "аеіорктпт")), "script_shift"),  # Cyrillic look-alikes
        (lambda t: " ".join("".join(random.Random(w).sample(w, len(w))) + "xq" for w in t.split()), "poor_token_rise"),
    ],
)
def test_a_real_shift_is_detected_by_its_figure(tokenizer, change, figure):
    base = _profile(generate(1500, seed=1), tokenizer)
    shifted = [{"text": change(r["text"]), "target": r["target"]} for r in generate(1500, seed=2)]
    figures = drift.compare(base, _profile(shifted, tokenizer))
    assert any(line.startswith(figure) for line in drift.drifted(figures, Drift())), figures


def test_overlap_with_the_frozen_test_split(tokenizer):
    rows = generate(600, seed=3)
    base = _profile(rows[:500], tokenizer, tests=[PREFIX + r["text"] for r in rows[500:]])
    leaked = rows[:450] + rows[500:550]  # 50 of the test inputs come back as training data
    figures = drift.compare(base, _profile(leaked, tokenizer), [PREFIX + r["text"] for r in leaked], PREFIX)
    assert figures["test_overlap"] == pytest.approx(50 / 500)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=30))
def test_a_profile_against_itself_is_zero(texts):
    class Chars:  # a tokenizer: one piece per character
        unk_token_id = None

        def __call__(self, words, add_special_tokens=False):
            return {"input_ids": [list(w) for w in words]}

    p = drift.profile(texts, texts, [], Chars(), 4)
    figures = drift.compare(p, p)
    assert all(
        abs(figures[k]) < 1e-9 for k in ("input_length_psi", "target_length_psi", "poor_token_rise", "script_shift")
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.text(max_size=40), st.none(), st.just(float("nan")), st.integers()), min_size=1, max_size=30),
    st.lists(st.one_of(st.text(max_size=40), st.none(), st.just(float("nan"))), min_size=1, max_size=30),
)
def test_missing_or_non_text_cells_count_as_empty_and_never_fail_the_check(inputs, targets):
    """The retrain's drift check reads the raw rows before validation: a blank CSV target (NaN),
    a None or a number must not crash it (found by bench.soak: a bad file's night failed with a
    TypeError instead of validation's message); validation names those rows afterwards."""

    class Chars:
        unk_token_id = None

        def __call__(self, words, add_special_tokens=False):
            return {"input_ids": [list(w) for w in words]}

    p = drift.profile(inputs, targets, inputs, Chars(), 4)
    as_text = drift.profile(drift.texts(inputs), drift.texts(targets), drift.texts(inputs), Chars(), 4)
    assert p == as_text
    assert drift.compare(p, p, inputs)["input_length_psi"] == 0
