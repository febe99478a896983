"""The evaluate stage's PNGs: candidate vs champion on the same rows (with the paired intervals
the certified gates judge), and the primary score by input-length bucket."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tasks import metrics as metric_registry
from tasks.core import paths
from tasks.core.config import Config


def scored(name: str) -> bool:
    """A score (it has a better direction), not a length: what the score plots show."""
    metric = metric_registry.get(name)
    return metric is not None and metric.higher_is_better is not None


def plots(cfg: Config, out: Path, candidate: dict, champion: dict | None, buckets: list[dict]) -> list[Path]:
    """Candidate vs champion bars, and the primary score by input-length bucket (PNGs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in candidate if scored(k)]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(names))
    # error bars: where the candidate's score could be, given the champion's on the same rows and
    # the paired-bootstrap interval of their difference (what the certified gates judge)
    ivs = (champion or {}).get("intervals") or {}
    errors = None
    if ivs:
        errors = np.array(
            [
                [ivs[n]["diff"] - ivs[n]["low"], ivs[n]["high"] - ivs[n]["diff"]] if n in ivs else [0.0, 0.0]
                for n in names
            ]
        ).T
    conf = next(iter(ivs.values()))["confidence"] if ivs else None
    ax.bar(
        x - 0.2 if champion else x,
        [candidate[n] for n in names],
        0.4,
        yerr=errors,
        capsize=3,
        label="candidate" + (f" ({conf:.0%} paired interval)" if conf else ""),
    )
    if champion:
        ax.bar(x + 0.2, [champion["metrics"].get(n, 0.0) for n in names], 0.4, label=f"champion v{champion['version']}")
    ax.set_xticks(x, names)
    ax.set_title("candidate vs champion on the same split")
    ax.legend()
    fig.tight_layout()
    versus = out / "candidate_vs_champion.png"
    _save_png(fig, versus)

    metric = cfg.primary_metric
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [b["bucket"] for b in buckets]
    ax.plot(labels, [b["candidate"] for b in buckets], "o-", label="candidate")
    if champion:
        ax.plot(labels, [b.get("champion") for b in buckets], "s--", label=f"champion v{champion['version']}")
    ax.set_xlabel("input length (tokens, quantile buckets)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by input length")
    ax.legend()
    fig.tight_layout()
    by_length = out / "score_by_input_length.png"
    _save_png(fig, by_length)
    return [versus, by_length]


def _save_png(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = paths.temp_sibling(path)
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def length_buckets(lengths: list[int], scores: list[float], other: list[float] | None, n: int) -> list[dict]:
    edges = np.quantile(lengths, np.linspace(0, 1, n + 1)) if lengths else []
    out = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        idx = [
            j for j, length in enumerate(lengths) if (lo <= length <= hi if i == len(edges) - 2 else lo <= length < hi)
        ]
        if not idx:
            continue
        row = {"bucket": f"{int(lo)}-{int(hi)}", "n": len(idx), "candidate": float(np.mean([scores[j] for j in idx]))}
        theirs = [other[j] for j in idx if other[j] is not None] if other is not None else []
        if theirs:
            row["champion"] = float(np.mean(theirs))
        out.append(row)
    return out
