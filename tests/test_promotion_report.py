"""The promotion report's comparison and page (tasks/promotion/report.py), on any rows."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.promotion import report

pytestmark = pytest.mark.unit

score = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))
row = st.fixed_dictionaries(
    {"input": st.text(max_size=40), "reference": st.text(max_size=20), "prediction": st.text(max_size=20)},
    optional={"rougeL": st.floats(0, 1, allow_nan=False), "champion_rougeL": score},
)


@settings(max_examples=200, deadline=None)
@given(st.lists(row, max_size=40))
def test_wins_and_losses_account_for_every_compared_row(rows):
    evaluation = {"primary": "rougeL", "metrics": {"rougeL": 0.5}, "champion": {"version": "3", "metrics": {}}}
    c = report.compare(evaluation, [dict(r) for r in rows], k=5)
    paired = [r for r in rows if r.get("rougeL") is not None and r.get("champion_rougeL") is not None]
    assert c.n_wins + c.n_losses + c.ties == len(paired)
    gaps = [r["_gap"] for r in c.wins]
    assert all(g > 0 for g in gaps) and gaps == sorted(gaps, reverse=True) and len(c.wins) <= 5
    assert all(r["_gap"] < 0 for r in c.losses)
    if c.wins and c.n_wins > 5:  # the largest gaps are the ones shown
        assert min(gaps) >= sorted((r["rougeL"] - r["champion_rougeL"] for r in paired), reverse=True)[4] - 1e-12


def test_the_page_escapes_what_the_data_holds():
    rows = [
        {
            "input": "<script>alert(1)</script>",
            "reference": "a&b",
            "prediction": "<b>x",
            "rougeL": 0.9,
            "champion_rougeL": 0.1,
            "champion_prediction": "</td>",
        },
    ]
    evaluation = {
        "primary": "rougeL",
        "metrics": {"rougeL": 0.9},
        "champion": {"version": "1", "metrics": {"rougeL": 0.1}, "candidate_metrics": {"rougeL": 0.9}, "rows": 1},
    }
    c = report.compare(evaluation, rows)
    page = report.render_html(
        c,
        model="m<",
        version="2",
        promoted=True,
        checks=[("min.rougeL", True, "rougeL 0.9 >= 0.6 <ok>")],
        degenerate={"figures": {"empty_share": 0.0}},
        data_versions={"candidate v2": "abc", "champion v1": None},
    )
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;/td&gt;" in page
    assert "&lt;ok&gt;" in page and "unknown" in page and "+0.8000" in page
    text = report.text(c, {"promoted": True, "reasons": ["r1"]}, "2")
    assert "candidate v2 vs champion v1 on the same 1 test rows" in text and "decision: PROMOTED" in text
