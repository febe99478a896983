"""Degenerate outputs are caught: blank, looping, one-for-all and collapsed predictions are
measured (tasks/metrics/degenerate.py), refused by the promotion gate with examples, flagged in
the run summary; a normal model's outputs pass. Pure functions, no training."""

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.core.config import Degenerate, Gates
from tasks.metrics import degenerate
from tasks.promote import decide, degenerate_checks

NORMAL = [  # what the embedded default's model writes: one-line summaries, each its own
    "police arrest man after bank robbery in leeds",
    "storm closes schools across northern scotland",
    "council approves new cycle lanes for the city centre",
    "hospital opens a new cancer ward in cardiff",
]
REFS = [
    "police arrest a man after a bank robbery in leeds",
    "storm closes schools in northern scotland",
    "council approves cycle lanes in the city centre",
    "new cancer ward opens at cardiff hospital",
]
INPUTS = [f"report {i}: " + "a long news article about what happened today " * 3 for i in range(4)]
OPEN = Gates(min_delta=None, confidence=None)  # no score gates: only the outputs decide


def figures(preds, refs=REFS):
    return degenerate.measure(INPUTS[: len(preds)], preds, refs[: len(preds)])["figures"]


def test_normal_outputs_measure_clean():
    f = figures(NORMAL)
    assert f["empty_share"] == 0 and f["repeating_share"] == 0
    assert f["identical_share"] == 0.25 and f["reference_identical_share"] == 0.25  # each once
    assert 0.8 < f["length_ratio"] < 1.2


def test_no_predictions_measure_nothing_degenerate():
    assert degenerate.measure([], [], []) == {
        "figures": {
            "empty_share": 0.0,
            "repeating_share": 0.0,
            "identical_share": 0.0,
            "reference_identical_share": 0.0,
            "reference_repeating_share": 0.0,
            "repeating_unlike_reference_share": 0.0,
            "length_ratio": 1.0,
        },
        "examples": {"empty": [], "repeating": [], "identical": [], "short": []},
    }


def test_all_empty():
    report = degenerate.measure(INPUTS, ["", " ", "\n", "\t "], REFS)
    f = report["figures"]
    assert f["empty_share"] == 1.0 and f["length_ratio"] == 0.0 and f["identical_share"] == 0.0
    assert len(report["examples"]["empty"]) == degenerate.EXAMPLES  # at most three kept


@pytest.mark.parametrize(
    "text, loops",
    [
        ("a a a a a a a a", True),
        ("a a a a", True),  # one word over half of four
        ("the the the", False),  # three words: too short to call
        ("police said x y x y x y x y", True),  # a 3-word sequence three times
        ("x y z x y z x y z", True),
        ("police arrest man after bank robbery in leeds", False),
        ("the man and the dog", False),  # function words repeat in prose
        ("the city council, the city council, the city council", True),  # the last without a comma
        ("Storm hits the coast. storm hits the coast; STORM hits the coast", True),  # case and punctuation aside
        ("a - b - c - d", False),
        ("- - - - -", True),  # punctuation alone is still a token that loops
        ("great !!!!! !!!!! !!!!!", True),
        ("", False),
    ],
)
def test_repeats(text, loops):
    assert degenerate.repeats(text.split()) is loops


def test_one_prediction_for_every_input():
    f = figures(["police arrest man"] * 4)
    assert f["identical_share"] == 1.0 and f["reference_identical_share"] == 0.25


def test_examples_are_shortened_inputs_with_their_predictions():
    report = degenerate.measure(INPUTS, ["a " * 200] * 4, REFS)
    example = report["examples"]["repeating"][0]
    assert len(example["input"]) == degenerate.INPUT_CHARS and example["input"].endswith("…")
    assert example["input"].startswith("report 0:")
    assert len(example["prediction"]) == degenerate.PREDICTION_CHARS


@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40)), max_size=12))
def test_shares_are_shares(pairs):
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    report = degenerate.measure(["x"] * len(pairs), preds, refs)
    f = report["figures"]
    for name in (
        "empty_share",
        "repeating_share",
        "identical_share",
        "reference_identical_share",
        "reference_repeating_share",
        "repeating_unlike_reference_share",
    ):
        assert 0.0 <= f[name] <= 1.0, name
    assert f["length_ratio"] >= 0.0
    assert set(f) == {m.name for m in degenerate.FIGURES}
    assert all(len(v) <= degenerate.EXAMPLES for v in report["examples"].values())


# -- the gate -------------------------------------------------------------------------------


def test_normal_outputs_pass_the_gate_with_one_line_saying_so():
    checks = degenerate_checks(degenerate.measure(INPUTS, NORMAL, REFS), Degenerate())
    decision = decide({}, None, OPEN, outputs=checks)
    assert decision.promote and decision.failed == ()
    assert [r for r in decision.reasons if r.startswith("outputs not degenerate: 0.0% empty")]


@pytest.mark.parametrize(
    "preds, failed",
    [
        (["", "", "", ""], ("degenerate.empty", "degenerate.length")),
        (["a a a a a a"] * 4, ("degenerate.repeating", "degenerate.identical")),
        (["police arrest man in leeds"] * 4, ("degenerate.identical",)),
        (["police", "storm", "council", "hospital"], ("degenerate.length",)),
    ],
)
def test_degenerate_outputs_are_refused_with_examples(preds, failed):
    checks = degenerate_checks(degenerate.measure(INPUTS, preds, REFS), Degenerate())
    decision = decide({}, None, OPEN, outputs=checks)
    assert not decision.promote and decision.failed == failed
    said = " ".join(r for r in decision.reasons if r.startswith("degenerate outputs:"))
    assert said.count(" -> ") == 3, said  # three examples in all, shared among the failed measures
    assert "'report 0: a long news article" in said and "…'" in said  # inputs shortened


def test_limits_are_settings():
    looping = degenerate.measure(INPUTS, ["a a a a a"] + NORMAL[1:], REFS)  # one in four loops
    assert degenerate_checks(looping, Degenerate())[0][1] == "degenerate.repeating"
    assert degenerate_checks(looping, Degenerate(max_repeating=0.25))[0][0]  # at the limit: passes


def test_labels_repeat_like_their_references():
    """A label-like task: the most common prediction is as common as the most common reference."""
    refs = ["positive", "positive", "positive", "negative"]
    checks = degenerate_checks(degenerate.measure(INPUTS, ["positive"] * 4, refs), Degenerate())
    assert checks[0][0], checks


def test_targets_that_repeat_a_phrase_are_not_held_against_a_model_that_writes_them():
    """Long or list-like targets (steps, a table read out) can repeat a phrase three times: a model
    that writes them is not looping; one that loops where its references do not is."""
    refs = [
        "stir in the flour, stir in the sugar, stir in the eggs",
        "mix it well, add the salt, mix it well, then mix it well, and serve",
        "storm closes schools in northern scotland",
        "council approves cycle lanes in the city centre",
    ]
    f = figures(refs, refs)
    assert f["repeating_share"] == f["reference_repeating_share"] == 0.5
    assert f["repeating_unlike_reference_share"] == 0.0
    assert degenerate_checks(degenerate.measure(INPUTS, refs, refs), Degenerate())[0][0]
    looping = ["add the flour, add the flour, add the flour"] * 2 + refs[2:]
    checks = degenerate_checks(degenerate.measure(INPUTS, looping, REFS), Degenerate())
    assert [c[1] for c in checks if not c[0]] == ["degenerate.repeating"], checks
    assert "50.0% repeating (max 10.0%)" in checks[0][2]
    # against looping references, a loop counts on a row whose own reference does not loop, and
    # the refusal says so, with that row's example first
    more = ["add the flour, add the flour, add the flour"] * 3 + refs[3:]
    report = degenerate.measure(INPUTS, more, refs)
    checks = degenerate_checks(report, Degenerate())
    said = "25.0% repeating where the reference does not (all 75.0%, references 50.0%; max 10.0%)"
    assert said in checks[0][2], checks
    assert report["examples"]["repeating"][0]["input"].startswith("report 2:")
    # row by row: loops on clean rows are not excused by references that loop on other rows
    swapped = refs[2:] + ["add the flour, add the flour, add the flour"] * 2
    assert degenerate.measure(INPUTS, swapped, refs)["figures"]["repeating_share"] == 0.5
    assert not degenerate_checks(degenerate.measure(INPUTS, swapped, refs), Degenerate())[0][0]


_WORDS = st.lists(
    st.sampled_from(["add", "the", "The", "a", "salt,", "storm.", "closes", "-", "!!", "x"]), min_size=1, max_size=30
)


@given(st.lists(_WORDS.map(" ".join), min_size=1, max_size=12))
def test_a_model_that_writes_its_references_is_never_degenerate(refs):
    """Whatever the targets look like (repeating words and phrases, all alike, one word each),
    predictions equal to them pass every degenerate measure: the gate judges the model, not the data."""
    checks = degenerate_checks(degenerate.measure(["x"] * len(refs), refs, refs), Degenerate())
    assert all(ok for ok, *_ in checks), checks


def test_figures_from_before_the_references_loops_judge_every_loop():
    """An evaluation measured before the references' loops were (an older version's figures):
    every looping prediction counts, as it did then."""
    f = dict(figures(["a a a a a"] + NORMAL[1:]))
    del f["reference_repeating_share"], f["repeating_unlike_reference_share"]
    assert degenerate_checks({"figures": f, "examples": {}}, Degenerate())[0][1] == "degenerate.repeating"


def test_no_figures_fail_closed():
    checks = degenerate_checks({}, Degenerate())
    assert checks == ((False, "degenerate", "no degenerate-output figures in the evaluation: re-run evaluate"),)


def test_the_summary_flags_degenerate_outputs_even_with_the_gate_off():
    from flows.summary import outputs_text

    def text(preds, refuse=True):
        cfg = SimpleNamespace(promote=SimpleNamespace(degenerate=Degenerate(refuse=refuse)))
        return outputs_text(cfg, SimpleNamespace(degenerate=degenerate.measure(INPUTS, preds, REFS)))

    assert text(NORMAL).startswith("0.0% empty, 0.0% repeating, most common 25.0% (references 25.0%)")
    loops = "stir in the flour, stir in the sugar, stir in the eggs"
    listed = outputs_text(
        SimpleNamespace(promote=SimpleNamespace(degenerate=Degenerate())),
        SimpleNamespace(degenerate=degenerate.measure(INPUTS, [loops] + NORMAL[1:], [loops] + REFS[1:])),
    )
    assert listed.startswith("0.0% empty, 25.0% repeating (references 25.0%), most common"), listed
    assert text([""] * 4) == "DEGENERATE: 100.0% empty (max 10.0%), length 0.00x the references' (min 0.25x)"
    assert text([""] * 4, refuse=False).endswith("(promote.degenerate.refuse is off)")
    assert outputs_text(None, SimpleNamespace(degenerate={})) == ""  # not measured: no line
