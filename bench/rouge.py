"""ROUGE scoring alone: the shipped metric module against evaluate's rouge module.

    python -m bench.rouge                  # 5,000 pairs (goal: >= 20x, bit-identical figures)
    python -m bench.rouge --pairs 2000

*ours*: ``evaluate.load("tasks/metrics/evaluate_modules/rouge")`` with its default engine (rouge-score-rs).
*baseline*: evaluate's hub ``rouge`` module: a loop of ``rouge_score.RougeScorer.score`` per pair
inside an ``evaluate.Metric``. The hub script cannot be fetched on these machines, so the
baseline is the same module run with ``engine="python"``, which is exactly that loop.
Both score the same newline-split pairs with stemming, per example; the figures must be equal
to the last bit. Timings are the best of 3 ``compute`` calls each.
"""

from __future__ import annotations

import argparse
import os
import random
import time


def pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from tasks.data.sample import generate
    from tasks.metrics.rouge import sentence_lines

    rng = random.Random(seed)
    refs = [r["target"] for r in generate(n, seed=seed + 5)]
    preds = []
    for r in refs:
        words = r.split()
        if rng.random() < 0.3:
            rng.shuffle(words)
        words = [w for w in words if rng.random() > 0.2]
        preds.append(" ".join(words) + (" The councils were running late. It rained." if rng.random() < 0.3 else ""))
    return [sentence_lines(p) for p in preds], [sentence_lines(r) for r in refs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate

    from tasks.metrics.rouge import MODULE as ROUGE

    preds, refs = pairs(args.pairs)
    rouge = evaluate.load(ROUGE)
    results, times = {}, {}
    for engine in ("rust", "python"):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            out = rouge.compute(
                predictions=preds, references=refs, use_stemmer=True, use_aggregator=False, engine=engine
            )
            best = min(best, time.perf_counter() - start)
        results[engine], times[engine] = out, best
    identical = results["rust"] == results["python"]
    print(f"ROUGE-1/2/L/Lsum on {args.pairs:,} pairs, stemmed, per example (best of 3)")
    print(f"  ours (rouge-score-rs):              {times['rust'] * 1000:8.1f} ms")
    print(f"  evaluate rouge module (rouge_score): {times['python'] * 1000:8.1f} ms")
    print(f"  speed-up: {times['python'] / times['rust']:.1f}x (goal >= 20x); figures bit-identical: {identical}")
    means = {k: sum(v) / len(v) for k, v in results["rust"].items()}
    print("  means: " + ", ".join(f"{k}={v:.6f}" for k, v in means.items()))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
