"""The pure promotion decision: ``decide(candidate, champion, gates)`` and what feeds it.

Every gate is a small function that adds its reason (and, failing, its name) to the verdict:
the absolute bounds, the degenerate-output checks, beating the champion on the primary metric
and the regression tolerances, each by a paired-bootstrap interval when one is given (certified)
or by the point estimates. Nothing here reads or writes the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.core.config import Config, Degenerate, Gates
from tasks.core.results import EvaluateResult

EPS = 1e-12  # float noise, not a tolerance


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()  # names of the gates that failed
    # each reason with its gate and outcome: (gate or "", True/False, or None for a note, text)
    checks: tuple[tuple[str, bool | None, str], ...] = ()


@dataclass
class _Verdict:
    """The reasons so far, in order, and the names of the gates that failed."""

    reasons: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool | None, str]] = field(default_factory=list)

    def check(self, ok: bool, gate: str, text: str) -> None:
        self.reasons.append(text)
        self.checks.append((gate, bool(ok), text))
        if not ok:
            self.failed.append(gate)

    def note(self, text: str) -> None:  # a reason that is no gate (a comparison skipped)
        self.reasons.append(text)
        self.checks.append(("", None, text))


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    gates: Gates,
    intervals: dict[str, dict] | None = None,
    paired: dict[str, float] | None = None,
    outputs: tuple[tuple[bool, str, str], ...] = (),
) -> Decision:
    """Pass only if every gate holds. ``champion`` is None when there is none yet.

    Gates: ``min`` / ``max`` absolute bounds; beat the champion on ``primary`` by at least
    ``min_delta`` (null turns it off); lose at most ``max_regression[m]`` on each listed metric.
    "Beat" and "lose" follow each metric's direction in the registry (tasks/metrics/): for a
    lower-is-better metric, a gain is a decrease. A metric the candidate lacks fails its gate;
    one the champion lacks skips the comparison.

    Certified (``gates.confidence`` set and ``intervals`` holding the paired-bootstrap interval of
    candidate - champion for the metric): the *lower bound* of the primary metric's gain must
    reach ``min_delta`` and its observed gain be above zero (a tie never replaces the champion),
    and the *upper bound* of each listed metric's drop must stay within its tolerance. Without
    an interval for a metric (the champion was not re-scored on the same rows) the point
    estimate decides, and the reason says so.

    ``paired``: the candidate's metrics on the rows the champion was re-scored on, when those are
    fewer than the candidate's test rows (the champion trained on the others); the comparisons
    with the champion read these, the absolute bounds the candidate's own.

    ``outputs``: the degenerate-output checks (``degenerate_checks``), (passed, gate, reason) each.
    """
    from tasks import metrics

    verdict = _Verdict()
    for metric, bound in sorted(gates.min.items()):
        _bound(verdict, "min", metric, bound, candidate.get(metric))
    for metric, bound in sorted(gates.max.items()):
        _bound(verdict, "max", metric, bound, candidate.get(metric))
    for ok, gate, text in outputs:
        verdict.check(ok, gate, text)

    primary = gates.primary or metrics.default_primary(list(metrics.families()))
    candidate = {**candidate, **(paired or {})}  # like with like from here on
    if champion is None:
        if gates.min_delta is not None or gates.max_regression:
            verdict.note("no champion yet: nothing to beat")
    else:
        if gates.min_delta is not None:
            _beat_champion(verdict, primary, candidate, champion, gates, intervals)
        for metric, tolerance in sorted(gates.max_regression.items()):
            _regression(verdict, metric, tolerance, candidate, champion, gates, intervals)
    if not verdict.reasons:
        verdict.note("no gates configured: promoted unconditionally")
    return Decision(
        promote=not verdict.failed,
        reasons=tuple(verdict.reasons),
        failed=tuple(verdict.failed),
        checks=tuple(verdict.checks),
    )


# -- the gates -------------------------------------------------------------------------------


def _lower_is_better(metric: str) -> bool:
    from tasks import metrics

    m = metrics.get(metric)
    return m is not None and m.higher_is_better is False


def _gain(metric: str, c: float, h: float) -> float:
    """Candidate over champion, in the better direction."""
    return h - c if _lower_is_better(metric) else c - h


def _gain_interval(metric: str, gates: Gates, intervals: dict[str, dict] | None):
    """(observed gain, its lower bound, its upper bound, the interval) when certified, else None."""
    from tasks.metrics.bootstrap import Interval

    if gates.confidence is None or not intervals or metric not in intervals:
        return None
    iv = Interval.from_dict(intervals[metric])
    if _lower_is_better(metric):
        return -iv.diff, -iv.high, -iv.low, iv
    return iv.diff, iv.low, iv.high, iv


def _bound(verdict: _Verdict, kind: str, metric: str, bound: float, value: float | None) -> None:
    """An absolute bound (``kind`` min or max) on the candidate's own metric."""
    if value is None:
        verdict.check(
            False, f"{kind}.{metric}", f"{metric} is missing from the candidate's metrics (gate {kind} {bound})"
        )
        return
    if kind == "min":
        ok, sign = value >= bound - EPS, ">=" if value >= bound - EPS else "<"
    else:
        ok, sign = value <= bound + EPS, "<=" if value <= bound + EPS else ">"
    verdict.check(ok, f"{kind}.{metric}", f"{metric} {value:.4f} {sign} {bound} ({kind})")


def _beat_champion(
    verdict: _Verdict,
    primary: str,
    candidate: dict[str, float],
    champion: dict[str, float],
    gates: Gates,
    intervals: dict[str, dict] | None,
) -> None:
    """The candidate beats the champion on the primary metric by at least ``min_delta``."""
    c, h = candidate.get(primary), champion.get(primary)
    if c is None:
        verdict.check(False, "beat_champion", f"{primary} is missing from the candidate's metrics")
    elif h is None:
        verdict.note(f"the champion has no {primary}: beat-the-champion skipped")
    elif (certified := _gain_interval(primary, gates, intervals)) is not None:
        observed, low, high, iv = certified
        reached = low >= gates.min_delta - EPS
        verdict.check(
            reached and observed > EPS,
            "beat_champion",
            f"{primary} {c:.4f} vs champion {h:.4f}: gain {observed:+.4f}, {iv.confidence:.0%} interval "
            f"[{low:+.4f}, {high:+.4f}]: lower bound {low:+.4f} "
            + (
                f"{'>=' if reached else '<'} min_delta {gates.min_delta}"
                if observed > EPS or not reached
                else "but no gain at all (a tie keeps the champion)"
            )
            + f" (paired bootstrap, n={iv.n})",
        )
    else:
        delta = _gain(primary, c, h)
        verdict.check(
            delta >= gates.min_delta - EPS,
            "beat_champion",
            f"{primary} {c:.4f} vs champion {h:.4f}: {delta:+.4f} "
            f"{'>=' if delta >= gates.min_delta - EPS else '<'} min_delta {gates.min_delta}"
            + (" (point estimates: no paired scores)" if gates.confidence is not None else ""),
        )


def _regression(
    verdict: _Verdict,
    metric: str,
    tolerance: float,
    candidate: dict[str, float],
    champion: dict[str, float],
    gates: Gates,
    intervals: dict[str, dict] | None,
) -> None:
    """The candidate loses at most ``tolerance`` of ``metric`` against the champion."""
    c, h = candidate.get(metric), champion.get(metric)
    if c is None:
        verdict.check(False, f"regression.{metric}", f"{metric} is missing from the candidate's metrics")
    elif h is None:
        verdict.note(f"the champion has no {metric}: regression check skipped")
    elif (certified := _gain_interval(metric, gates, intervals)) is not None:
        observed, low, _, iv = certified
        worst = -low  # the upper bound of the drop
        verdict.check(
            worst <= tolerance + EPS,
            f"regression.{metric}",
            f"{metric} {c:.4f} vs champion {h:.4f}: drop {max(-observed, 0):.4f}, {iv.confidence:.0%} "
            f"upper bound {max(worst, 0):.4f} {'<=' if worst <= tolerance + EPS else '>'} "
            f"tolerance {tolerance}",
        )
    else:
        drop = -_gain(metric, c, h)
        verdict.check(
            drop <= tolerance + EPS,
            f"regression.{metric}",
            f"{metric} {c:.4f} vs champion {h:.4f}: drop {max(drop, 0):.4f} "
            f"{'<=' if drop <= tolerance + EPS else '>'} tolerance {tolerance}",
        )


# -- the degenerate-output gate ----------------------------------------------------------------


def degenerate_checks(report: dict, limits: Degenerate) -> tuple[tuple[bool, str, str], ...]:
    """The degenerate-output gate on the evaluate stage's figures (tasks/metrics/degenerate.py):
    (passed, gate, reason) per failed measure, each reason with up to three examples (input
    shortened, prediction) shared among them; one passing line when none fails. No figures (an
    evaluation from before they were measured) fails closed: the outputs were never looked at."""
    figures, examples = report.get("figures") or {}, report.get("examples") or {}
    if not figures:
        return ((False, "degenerate", "no degenerate-output figures in the evaluation: re-run evaluate"),)
    measures = degenerate_measures(figures, limits)
    failed = [m for m in measures if m[0]]
    if not failed:
        return ((True, "degenerate", "outputs not degenerate: " + ", ".join(m[2] for m in measures)),)
    out, budget = [], 3
    for _, gate, found, kind in failed:
        shown = (examples.get(kind) or [])[:budget]
        budget -= len(shown)
        cases = ", ".join(f"{e['input']!r} -> {e['prediction']!r}" for e in shown)
        out.append((False, f"degenerate.{gate}", f"degenerate outputs: {found}" + (f", e.g. {cases}" if cases else "")))
    return tuple(out)


def degenerate_measures(figures: dict[str, float], limits: Degenerate) -> list[tuple[bool, str, str, str]]:
    """(failed, measure, what was found against its limit, example kind) per measure."""
    pct = "{:.1%}".format
    empty, looping = figures["empty_share"], figures["repeating_share"]
    # loops where the row's own reference does not loop (an evaluation from before that figure: all loops)
    unlike = figures.get("repeating_unlike_reference_share", looping)
    loops_too = figures.get("reference_repeating_share", 0.0)
    same, theirs = figures["identical_share"], figures["reference_identical_share"]
    ratio = figures["length_ratio"]
    return [
        (empty > limits.max_empty + EPS, "empty", f"{pct(empty)} empty (max {pct(limits.max_empty)})", "empty"),
        (
            unlike > limits.max_repeating + EPS,
            "repeating",
            (
                f"{pct(unlike)} repeating where the reference does not (all {pct(looping)}, references "
                f"{pct(loops_too)}; max {pct(limits.max_repeating)})"
                if loops_too
                else f"{pct(looping)} repeating (max {pct(limits.max_repeating)})"
            ),
            "repeating",
        ),
        (
            same - theirs > limits.max_identical_excess + EPS,
            "identical",
            f"the most common prediction is {pct(same)} of them (references: {pct(theirs)}, "
            f"excess max {pct(limits.max_identical_excess)})",
            "identical",
        ),
        (
            ratio < limits.min_length_ratio - EPS,
            "length",
            f"length {ratio:.2f}x the references' (min {limits.min_length_ratio}x)",
            "short",
        ),
    ]


# -- what the decision reads and writes beside it ----------------------------------------------


def interval_tags(intervals: dict[str, dict] | None) -> dict[str, str]:
    """``promotion.interval.<metric>``: candidate - champion with its paired-bootstrap interval."""
    from tasks.metrics.bootstrap import Interval

    return {f"promotion.interval.{k}": Interval.from_dict(v).text() for k, v in (intervals or {}).items()}


def same_rows_basis(evaluated: EvaluateResult) -> str:
    """How the champion was compared: on how many of the test rows, and why not all."""
    champ = evaluated.champion or {}
    rows, left_out = champ.get("rows", evaluated.n_examples), champ.get("left_out", 0)
    text = f"champion v{champ.get('version')} re-scored on the same {rows} test rows"
    if left_out:
        text += f" ({left_out} it trained on left out)"
    return text


def _gates(cfg: Config, primary: str | None = None) -> Gates:
    return cfg.promote.gates.model_copy(update={"primary": primary or cfg.primary_metric})
