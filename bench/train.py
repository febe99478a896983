"""Training throughput: the train stage against a plain Seq2SeqTrainer reference script.

    python -m bench.train                 # 300 optimizer steps of the default scratch T5
    python -m bench.train --steps 600 --batch-size 32

*ours*: ``tasks.train.train`` exactly as the pipeline runs it (length-grouped batches, padding
to a multiple of 8, MLflow logging, system metrics, curves), evaluation off.
*reference*: transformers' ``Seq2SeqTrainer`` used directly the way ``run_summarization.py``
does: ``DataCollatorForSeq2Seq`` with dynamic padding (no multiple on CPU), random batches.
Same base model weights, tokenizer, training rows, learning rate, schedule, batch size, seed
and number of steps. Each side runs in its own process (peak RSS is its own).

Tokens/s counts real input tokens (padding excluded) per second of training, as transformers
counts them (``num_input_tokens_seen``). The loss curves of both are printed side by side.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench._worker import report, run_worker

REPO = Path(__file__).resolve().parents[1]


def setup(workdir: Path, steps: int, batch: int):
    """A project copy with the default data, prepared up to training (ingest + validate)."""
    from tasks.core.config import load_config
    from tasks.ingest import ingest
    from tasks.validate import validate

    for name in ("params.yaml", "pipelines.yaml"):
        shutil.copy(REPO / name, workdir / name)
    (workdir / "data" / "sample").mkdir(parents=True)
    shutil.copy(REPO / "data" / "sample" / "reports.csv", workdir / "data" / "sample")
    cfg = load_config(
        root=workdir,
        overrides=[
            f"train.max_steps={steps}",
            f"train.batch_size={batch}",
            "train.eval_strategy=no",
            "train.logging_steps=10",
        ],
    )
    ingested = ingest(cfg)
    validate(cfg, ingested)
    return cfg, ingested


def validation_loss(model_dir: str, cfg, ingested) -> float:
    """Token-level cross-entropy of a saved model on the validation split (the same for both)."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from tasks.core.results import load_split
    from tasks.modeling import models as modeling
    from tasks.modeling.trainer_setup import tokenize

    tokenizer, model = modeling.load(model_dir)
    ds = tokenize(load_split(ingested, "validation"), tokenizer, cfg.train.max_seq_length, cfg.train.max_target_length)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ds), 64):
            batch = collate([ds[j] for j in range(i, min(i + 64, len(ds)))])
            n = int((batch["labels"] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    return total / tokens


def run_ours(workdir: Path, steps: int, batch: int) -> dict:
    from tasks.train import train

    cfg, ingested = setup(workdir, steps, batch)
    start = time.perf_counter()
    result = train(cfg, ingested)
    wall = time.perf_counter() - start
    curve = [
        (int(r["step"]), float(r["loss"]))
        for r in __import__("csv").DictReader((cfg.path("reports") / "plots" / "train.csv").open())
    ]
    return {
        "tokens_per_s": result.metrics["train_tokens_per_s"],
        "train_s": result.metrics["train_runtime_s"],
        "wall_s": wall,
        "curve": curve,
        "eval_loss": validation_loss(str(cfg.resolve(result.model_dir)), cfg, ingested),
    }


def run_reference(workdir: Path, steps: int, batch: int) -> dict:
    """What a hand-written script does, straight from the transformers example."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    cfg, ingested = setup(workdir, steps, batch)
    from tasks.core.results import load_split
    from tasks.modeling import models as modeling

    tokenizer = AutoTokenizer.from_pretrained(cfg.path("tokenizer"))
    modeling.load_base_model(cfg, tokenizer)  # the same initial weights, written to base_model/
    model = AutoModelForSeq2SeqLM.from_pretrained(cfg.path("base_model"))
    df = load_split(ingested, "train")
    t = cfg.train

    def preprocess(batch_rows):
        inputs = tokenizer(batch_rows["text"], max_length=t.max_seq_length, truncation=True)
        inputs["labels"] = tokenizer(text_target=batch_rows["target"], max_length=t.max_target_length, truncation=True)[
            "input_ids"
        ]
        return inputs

    ds = Dataset.from_dict({"text": df["text"].tolist(), "target": df["target"].tolist()})
    ds = ds.map(preprocess, batched=True, remove_columns=["text", "target"])
    args = Seq2SeqTrainingArguments(
        output_dir=str(workdir / "reference"),
        learning_rate=t.lr,
        max_steps=steps,
        per_device_train_batch_size=batch,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        include_num_input_tokens_seen="non_padding",  # measurement only
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
    )
    start = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - start
    curve = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    runtime = out.metrics["train_runtime"]
    trainer.save_model(str(workdir / "reference-model"))
    return {
        "tokens_per_s": trainer.state.num_input_tokens_seen / runtime,
        "train_s": runtime,
        "wall_s": wall,
        "curve": curve,
        "eval_loss": validation_loss(str(workdir / "reference-model"), cfg, ingested),
    }


def worker(kind: str, steps: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_ours if kind == "ours" else run_reference)(Path(tmp), steps, batch)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    report(result)


def measure(kind: str, steps: int, batch: int) -> dict:
    env = {**os.environ, "S2S_LOG_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return run_worker("bench.train", ["--worker", kind, "--steps", str(steps), "--batch-size", str(batch)], env, kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per side (median reported)")
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.batch_size)
        return 0
    import torch

    print(
        f"train stage vs Seq2SeqTrainer reference: default scratch T5, {args.steps} steps x batch "
        f"{args.batch_size}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    )
    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    for _ in range(args.repeat):  # interleaved: drift on a shared machine hits both sides alike
        for kind in runs:
            runs[kind].append(measure(kind, args.steps, args.batch_size))
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    ours, ref = runs["ours"][0], runs["reference"][0]
    speed = {k: median([r["tokens_per_s"] for r in v]) for k, v in runs.items()}
    print(f"{'':10} {'tokens/s':>10} {'train s':>8} {'wall s':>7} {'peak RSS':>9}   (median of {args.repeat} runs)")
    for name, rs in runs.items():
        print(
            f"{name:10} {speed[name]:10,.0f} {median([r['train_s'] for r in rs]):8.1f} "
            f"{median([r['wall_s'] for r in rs]):7.1f} {max(r['peak_rss_gib'] for r in rs):8.2f}G   "
            "(each run: " + ", ".join(format(r["tokens_per_s"], ",.0f") for r in rs) + ")"
        )
    print(f"tokens/s ratio (ours / reference): {speed['ours'] / speed['reference']:.2f}x  (goal >= 1.2x)")
    print("loss every 10 steps (ours | reference):")
    pairs = list(zip(ours["curve"], ref["curve"]))
    for (s, a), (_, b) in pairs[:: max(1, len(pairs) // 10)]:
        print(f"  step {s:4d}: {a:.3f} | {b:.3f}")
    tail = max(1, len(pairs) // 5)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    if pairs:  # none with fewer than 10 steps
        a_end, b_end = mean([a for (_, a), _ in pairs[-tail:]]), mean([b for _, (_, b) in pairs[-tail:]])
        print(
            f"mean train loss over the last {tail * 10} steps: ours {a_end:.3f}, reference {b_end:.3f} "
            f"({100 * (a_end - b_end) / b_end:+.1f}%)"
        )
    print(
        f"validation loss of the final model: ours {ours['eval_loss']:.3f}, reference {ref['eval_loss']:.3f} "
        f"({100 * (ours['eval_loss'] - ref['eval_loss']) / ref['eval_loss']:+.1f}%; random batches vary about "
        "+-2% from seed to seed at 300 steps)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
