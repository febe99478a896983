"""False promotions: how often does a candidate of the *same* configuration replace the champion?

Trains the default configuration with K+1 seeds (seed 0 is the champion), scores every model on
the same frozen test rows, and asks the gate of pipelines.yaml's `default` pipeline, once with
the old point-estimate rule (`gates.confidence: null`) and once certified (paired bootstrap at
`gates.confidence`, default 0.95). The candidates are no better by construction (same settings,
same data; only the seed differs), so every promotion is a false one.

    python -m bench.promotion --seeds 10          # about 11 trainings of the default model
    python -m bench.promotion --seeds 4 --steps 300   # shorter: fewer optimizer steps each

Goal (the promotion issue): at most 5% false promotions with certification.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def trained_model(workdir: Path, seed: int, steps: int | None):
    """(cfg, ingested, model folder) of the default configuration trained with ``seed``."""
    from tasks.core.config import load_config
    from tasks.ingest import ingest
    from tasks.train import train
    from tasks.validate import validate

    for name in ("params.yaml", "pipelines.yaml"):
        shutil.copy(REPO / name, workdir / name)
    (workdir / "data" / "sample").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "data" / "sample" / "reports.csv", workdir / "data" / "sample")
    overrides = [f"train.seed={seed}"] + ([f"train.max_steps={steps}"] if steps else [])
    cfg = load_config(root=workdir, overrides=overrides)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    result = train(cfg, ingested)
    return cfg, ingested, str(cfg.resolve(result.model_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="candidates (K), each against the seed-0 champion")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per training (default: the config's)")
    args = parser.parse_args(argv)

    from tasks.core import logs
    from tasks.evaluate import held_out, run_model
    from tasks.metrics.bootstrap import intervals
    from tasks.promote import decide

    logs.configure(None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="s2s-bench-promotion-") as tmp:
        scored = []
        for seed in range(args.seeds + 1):
            t0 = time.perf_counter()
            workdir = Path(tmp) / f"seed{seed}"
            workdir.mkdir()
            cfg, ingested, model_dir = trained_model(workdir, seed, args.steps)
            split, df = held_out(cfg, ingested)
            metrics, per_example, *_ = run_model(
                cfg, model_dir, df["text"].tolist(), df["target"].tolist(), cfg.ingest.source_prefix, f"seed {seed}"
            )
            scored.append((seed, metrics, per_example))
            print(
                f"seed {seed:>2}: rougeL {metrics['rougeL']:.4f}  rouge1 {metrics['rouge1']:.4f}  "
                f"({time.perf_counter() - t0:.0f} s, {len(df)} {split} rows)",
                flush=True,
            )
        gates = cfg.promote.gates.model_copy(update={"primary": cfg.primary_metric})
        old_rule = gates.model_copy(update={"confidence": None})
        _, champ_metrics, champ_per = scored[0]
        old = certified = 0
        widths = []
        for seed, metrics, per in scored[1:]:
            ivs = intervals(per, champ_per, gates.confidence or 0.95)
            widths.append(ivs[gates.primary]["high"] - ivs[gates.primary]["low"])
            a = decide(metrics, champ_metrics, old_rule).promote
            b = decide(metrics, champ_metrics, gates, ivs).promote
            old += a
            certified += b
            d = ivs[gates.primary]
            print(
                f"seed {seed:>2} vs seed 0: {gates.primary} {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]  "
                f"old rule: {'PROMOTED' if a else 'kept'}  certified: {'PROMOTED' if b else 'kept'}"
            )
    k = args.seeds
    print()
    print(f"false promotions of a same-configuration candidate, {k} seeds against one champion")
    print(f"  old rule (point estimate, min_delta {gates.min_delta}): {old}/{k} = {old / k:.0%}")
    print(
        f"  certified ({gates.confidence:.0%} paired bootstrap, {len(champ_per[gates.primary])} rows): "
        f"{certified}/{k} = {certified / k:.0%}   (goal <= 5%)"
    )
    print(
        f"  {gates.primary} interval width: median {sorted(widths)[len(widths) // 2]:.4f}; "
        f"wall {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
