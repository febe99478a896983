"""The promotion report: why a candidate was (or was not) promoted, for the person who reviews it.

One self-contained HTML page per decision (``reports/promotion_report.html``, logged on the candidate's
MLflow run as ``promotion/promotion_report.html`` and linked from the version's description), and the same
comparison as text (``s2s compare --with champion``):

* the gate table: every gate, its figure against its threshold, passed or failed;
* candidate against champion on the same test rows: each metric, the difference and its paired
  interval (the evidence the certified gates used);
* the examples where the candidate wins and loses most against the champion on the primary
  metric: input, reference, both predictions, both scores;
* the output-health figures (empty, looping, identical, length ratio) and the data version of each side.

Everything here is pure: it reads the evaluation's result and its per-row predictions
(``reports/predictions.jsonl``, which carry the champion's prediction and score for each row it
was scored on) and returns text.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = 5  # wins and losses shown each
CLIP = 600  # characters of an input shown


@dataclass
class Comparison:
    """Candidate against champion on the same rows, from an evaluation's result and rows."""

    primary: str
    candidate: dict[str, float]  # on the compared rows
    champion: dict[str, float]
    champion_version: str | None
    intervals: dict[str, dict] = field(default_factory=dict)
    rows_compared: int = 0
    left_out: int = 0
    wins: list[dict] = field(default_factory=list)  # candidate better, largest gap first
    losses: list[dict] = field(default_factory=list)  # candidate worse, largest gap first
    ties: int = 0
    n_wins: int = 0  # rows where the candidate scores higher (all of them, not only those shown)
    n_losses: int = 0


def compare(evaluation: dict[str, Any], rows: list[dict[str, Any]], k: int = EXAMPLES) -> Comparison:
    """The comparison an evaluation holds (``evaluation``: ``EvaluateResult`` as saved)."""
    primary = evaluation.get("primary") or "rougeL"
    champ = evaluation.get("champion") or {}
    key = f"champion_{primary}"
    paired = [r for r in rows if r.get(key) is not None and r.get(primary) is not None]
    for r in paired:
        r["_gap"] = float(r[primary]) - float(r[key])
    wins = sorted((r for r in paired if r["_gap"] > 0), key=lambda r: -r["_gap"])
    losses = sorted((r for r in paired if r["_gap"] < 0), key=lambda r: r["_gap"])
    return Comparison(
        primary=primary,
        candidate=dict(champ.get("candidate_metrics") or evaluation.get("metrics") or {}),
        champion=dict(champ.get("metrics") or {}),
        champion_version=str(champ["version"]) if champ.get("version") else None,
        intervals=dict(champ.get("intervals") or {}),
        rows_compared=int(champ.get("rows") or len(paired)),
        left_out=int(champ.get("left_out") or 0),
        wins=wins[:k],
        losses=losses[:k],
        ties=sum(1 for r in paired if r["_gap"] == 0),
        n_wins=len(wins),
        n_losses=len(losses),
    )


def load(reports: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The evaluation result and its per-row predictions from a reports folder."""
    evaluation = json.loads((reports / "evaluation.json").read_text(encoding="utf-8"))
    path = reports / Path(evaluation.get("predictions_path") or "predictions.jsonl").name
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return evaluation, rows


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def metric_rows(c: Comparison) -> list[list[str]]:
    """[metric, candidate, champion, difference, interval] for each metric both have."""
    out = []
    for metric in sorted(set(c.candidate) & set(c.champion), key=lambda m: (m != c.primary, m == "gen_len", m)):
        cand, champ = c.candidate[metric], c.champion[metric]
        iv = c.intervals.get(metric)
        interval = f"[{iv['low']:+.4f}, {iv['high']:+.4f}]" if iv and "low" in iv and "high" in iv else ""
        out.append([metric, _fmt(cand), _fmt(champ), f"{cand - champ:+.4f}", interval])
    return out


def text(c: Comparison, decision: dict[str, Any] | None = None, candidate_version: str | None = None) -> str:
    """The comparison for a terminal (``s2s compare --with champion``)."""
    lines = []
    if c.champion_version is None:
        return "no champion was scored with this candidate (there was none, or evaluate.compare_champion is off)"
    who = f"candidate v{candidate_version}" if candidate_version else "candidate"
    lines.append(
        f"{who} vs champion v{c.champion_version} on the same {c.rows_compared} test rows"
        + (f" ({c.left_out} left out: the champion trained on them)" if c.left_out else "")
    )
    table = [["metric", "candidate", "champion", "difference", "paired interval"], *metric_rows(c)]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for i, row in enumerate(table):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines.append(f"per row on {c.primary}: candidate better on {c.n_wins}, worse on {c.n_losses}, tied on {c.ties}")
    for title, examples in (("largest wins", c.wins), ("largest losses", c.losses)):
        if examples:
            lines.append(f"{title} ({c.primary}, candidate - champion):")
            for r in examples[:3]:
                lines.append(f"  row {r.get('source_row', '?')}: {r['_gap']:+.3f}  input: {_clip(r.get('input'), 90)}")
                lines.append(f"      reference : {_clip(r.get('reference'), 100)}")
                lines.append(f"      candidate : {_clip(r.get('prediction'), 100)}")
                lines.append(f"      champion  : {_clip(r.get('champion_prediction'), 100)}")
    if decision:
        verdict = "PROMOTED" if decision.get("promoted") else "NOT PROMOTED"
        lines.append(f"decision: {verdict}")
        for reason in decision.get("reasons") or []:
            lines.append(f"  - {reason}")
    return "\n".join(lines)


def _clip(value: Any, n: int) -> str:
    s = " ".join(str(value or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4} .pass{color:#166534} .fail{color:#b91c1c;font-weight:600} .note{color:#555}
.verdict{font-size:1.2em;font-weight:700} pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:40em}
"""


def render_html(
    c: Comparison,
    *,
    model: str,
    version: str,
    promoted: bool,
    checks: list[tuple[str, bool | None, str]],
    degenerate: dict[str, Any],
    data_versions: dict[str, str | None],
) -> str:
    """The report page: self-contained (no script, no network), escaped throughout."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>promotion report: {e(model)} v{e(version)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Promotion report: {e(model)} version {e(version)}</h1>",
        f"<p class='verdict {'pass' if promoted else 'fail'}'>{'PROMOTED' if promoted else 'NOT PROMOTED'}</p>",
        *_gates_html(checks),
        *_champion_html(c),
    ]
    figures = (degenerate or {}).get("figures") or {}
    if figures:
        parts.append("<h2>Outputs</h2><table><tr><th>figure</th><th>candidate</th></tr>")
        parts += [f"<tr><td>{e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in figures.items()]
        parts.append("</table>")
    parts.append("<h2>Data</h2><table><tr><th>side</th><th>data version</th></tr>")
    parts += [f"<tr><td>{e(side)}</td><td>{e(dv or 'unknown')}</td></tr>" for side, dv in data_versions.items()]
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _gates_html(checks: list[tuple[str, bool | None, str]]) -> list[str]:
    """Each gate's check: passed, FAILED, or a note (no pass or fail), with its figure."""
    marks = {None: "<span class='note'>note</span>", True: "<span class='pass'>passed</span>"}
    parts = ["<h2>Gates</h2><table><tr><th>gate</th><th>result</th><th>figure against threshold</th></tr>"]
    for gate, ok, reason in checks:
        cell = marks.get(ok, "<span class='fail'>FAILED</span>")
        parts.append(f"<tr><td>{html.escape(gate or '-')}</td><td>{cell}</td><td>{html.escape(reason)}</td></tr>")
    return [*parts, "</table>"]


def _champion_html(c: Comparison) -> list[str]:
    """Candidate against champion on the same rows: the metrics, then the largest wins and losses."""
    e = html.escape
    if not c.champion_version:
        return ["<p class='note'>No champion was scored with this candidate: nothing to compare with.</p>"]
    parts = [
        f"<h2>Against champion v{e(c.champion_version)}, on the same {c.rows_compared} test rows</h2>"
        + (f"<p>{c.left_out} rows left out: the champion trained on them.</p>" if c.left_out else ""),
        "<table><tr><th>metric</th><th>candidate</th><th>champion</th><th>difference</th><th>paired interval</th></tr>",
        *("<tr>" + "".join(f"<td>{e(x)}</td>" for x in row) + "</tr>" for row in metric_rows(c)),
        "</table>",
    ]
    for title, examples in (("Where the candidate wins most", c.wins), ("Where it loses most", c.losses)):
        parts.append(f"<h2>{title} ({e(c.primary)})</h2>")
        if not examples:
            parts.append("<p class='note'>none</p>")
            continue
        parts.append("<table><tr><th>row</th><th>input</th><th>reference</th><th>candidate</th><th>champion</th></tr>")
        for r in examples:
            cand, champ = r.get(c.primary), r.get(f"champion_{c.primary}")
            parts.append(
                f"<tr><td>{e(str(r.get('source_row', '?')))}</td>"
                f"<td><pre>{e(str(r.get('input', ''))[:CLIP])}</pre></td>"
                f"<td>{e(str(r.get('reference', '')))}</td>"
                f"<td>{e(str(r.get('prediction', '')))}<br><b>{_fmt(cand)}</b></td>"
                f"<td>{e(str(r.get('champion_prediction', '')))}<br><b>{_fmt(champ)}</b></td></tr>"
            )
        parts.append("</table>")
    return parts


def description_section(promoted: bool, reasons: list[str], c: Comparison, report_link: str | None) -> str:
    """The decision as markdown for the version's description (MLflow renders it)."""
    lines = ["", "## Promotion decision", "", f"**{'PROMOTED' if promoted else 'NOT PROMOTED'}**", ""]
    lines += [f"- {r}" for r in reasons]
    rows = metric_rows(c) if c.champion_version else []
    if rows:
        lines += [
            "",
            f"Against champion v{c.champion_version} on the same {c.rows_compared} test rows:",
            "",
            "| metric | candidate | champion | difference | paired interval |",
            "|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    if report_link:
        lines += ["", f"Full report (gates, wins and losses, outputs, data): {report_link}"]
    return "\n".join(lines) + "\n"
