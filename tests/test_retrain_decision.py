"""The retrain decision table (tasks/tracking/retrain.py), every cell: data same/changed x settings
same/changed x drift yes/no/unmeasured x tried before or not, plus no champion and an unknown
data version. The flows run it on real Prefect, MLflow and DVC in tests/test_orchestration.py."""

import itertools

import pytest

from tasks.tracking.retrain import Facts, decide

CHAMPION_DATA, CHAMPION_PARAMS = "d" * 32, "p" * 12


def facts(data_changed: bool, settings_changed: bool, drifted, tried: bool, champion="1") -> Facts:
    return Facts(
        champion=champion,
        data_version=("e" * 32) if data_changed else CHAMPION_DATA,
        champion_data=CHAMPION_DATA,
        params_hash=("q" * 12) if settings_changed else CHAMPION_PARAMS,
        champion_params=CHAMPION_PARAMS,
        changed_keys=("train.max_steps: 300 -> 100",) if settings_changed else (),
        tried="v3, rejected" if tried else None,
        drifted=drifted,
        drift_figures={"input_length_psi": 0.001} if drifted is not None else {},
    )


def expected(data_changed: bool, settings_changed: bool, drifted, tried: bool) -> bool:
    """True: train. Written out as the table reads, independent of the code's branch order."""
    if tried:
        return False
    if settings_changed:
        return True
    if not data_changed:
        return True  # same data and settings but never registered (champion lacks tags): train
    return drifted is not False


CELLS = list(itertools.product([False, True], [False, True], [None, False, True], [False, True]))


@pytest.mark.parametrize("data_changed,settings_changed,drifted,tried", CELLS)
def test_every_cell_of_the_table(data_changed, settings_changed, drifted, tried):
    f = facts(data_changed, settings_changed, drifted, tried)
    verdict = decide(f)
    assert verdict.train is expected(data_changed, settings_changed, drifted, tried)
    text = verdict.reason
    if tried:
        assert "already tried (v3, rejected)" in text and CHAMPION_PARAMS[:4] in text or "q" * 12 in text
    elif settings_changed:
        # the skip/train message names the hashes and the keys that differ, and says what the data did
        assert f"params hash {CHAMPION_PARAMS} -> {'q' * 12}" in text and "train.max_steps: 300 -> 100" in text
        assert ("data changed" if data_changed else "data unchanged") in text
    elif data_changed and drifted is False:
        assert text.startswith("no drift against champion v1") and "settings unchanged" in text
    # drift decides only a data change under unchanged settings, and never after a try
    assert f.needs_drift == (data_changed and not settings_changed and not tried)


def test_a_settings_change_is_trained_even_when_the_data_has_not_drifted():
    """The week-long finding: params.yaml edited, the same data added again: it trains."""
    verdict = decide(facts(data_changed=False, settings_changed=True, drifted=False, tried=False))
    assert verdict.train and "settings changed since champion v1" in verdict.reason


def test_no_champion_trains_unless_this_data_and_settings_were_tried():
    assert decide(facts(True, False, None, False, champion=None)).train
    skipped = decide(facts(True, False, None, True, champion=None))
    assert not skipped.train and "already tried (v3, rejected)" in skipped.reason


def test_an_unknown_data_version_trains():
    f = Facts(champion="2", data_version=None, champion_data="d", params_hash="p", champion_params="p")
    assert decide(f).train and not f.needs_drift
