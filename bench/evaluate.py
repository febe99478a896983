"""The evaluate stage against Seq2SeqTrainer.predict(predict_with_generate=True) + rouge_score.

    python -m bench.evaluate               # the default model after 300 steps, 300 test rows
    python -m bench.evaluate --rows 1000   # more held-out rows (a bigger generated split)

Both sides generate for the same rows with the same model and generation settings (greedy,
``evaluate.generation_max_length`` new tokens, batch ``evaluate.batch_size``) and score
ROUGE-1/2/L/Lsum stemmed over one sentence per line.

*ours*: ``tasks.evaluate.evaluate`` as the pipeline calls it: length-sorted batches, the
shipped metric module (rouge-score-rs), predictions table, plots and MLflow logging included.
*baseline*: transformers' ``Seq2SeqTrainer.predict`` with ``predict_with_generate=True`` (the
way ``run_summarization.py`` evaluates), decoded -100-safely, then ``rouge_score`` per pair.
Prints both wall times, the ratio, and whether the scores agree.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prepare(workdir: Path, rows: int, steps: int):
    from tasks.core.config import load_config
    from tasks.data.sample import generate, write_csv
    from tasks.ingest import ingest
    from tasks.train import train
    from tasks.validate import validate

    for name in ("params.yaml", "pipelines.yaml"):
        shutil.copy(REPO / name, workdir / name)
    # a held-out split of `rows` rows: test_ratio of a generated set of the right size
    total = max(3000, rows * 10)
    write_csv(generate(total, seed=13), workdir / "data.csv")
    cfg = load_config(
        root=workdir,
        overrides=[
            f"ingest.source={workdir / 'data.csv'}",
            f"ingest.test_ratio={rows / total}",
            "ingest.valid_ratio=0.05",
            f"train.max_steps={steps}",
            "train.eval_strategy=no",
            "evaluate.compare_champion=false",
        ],
    )
    ingested = ingest(cfg)
    validate(cfg, ingested)
    return cfg, ingested, train(cfg, ingested)


def baseline(cfg, trained, ingested) -> tuple[float, dict[str, float]]:
    """What run_summarization.py does at evaluation time."""
    import numpy as np
    from datasets import Dataset
    from rouge_score import rouge_scorer
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    from tasks.core.results import load_split
    from tasks.metrics.rouge import sentence_lines

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(cfg.resolve(trained.model_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(cfg.resolve(trained.model_dir))
    df = load_split(ingested, "test")
    ev = cfg.evaluate

    def preprocess(batch):
        enc = tokenizer(batch["text"], max_length=cfg.train.max_seq_length, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["target"], max_length=cfg.train.max_target_length, truncation=True)[
            "input_ids"
        ]
        return enc

    ds = Dataset.from_dict({"text": df["text"].tolist(), "target": df["target"].tolist()})
    ds = ds.map(preprocess, batched=True, remove_columns=["text", "target"])
    with tempfile.TemporaryDirectory() as out:
        args = Seq2SeqTrainingArguments(
            output_dir=out,
            per_device_eval_batch_size=ev.batch_size,
            report_to="none",
            predict_with_generate=True,
            generation_max_length=ev.generation_max_length,
            generation_num_beams=ev.num_beams,
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Seq2SeqTrainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        )
        result = trainer.predict(ds, max_new_tokens=ev.generation_max_length, num_beams=ev.num_beams)
    preds = np.where(result.predictions != -100, result.predictions, tokenizer.pad_token_id)
    decoded = [p.strip() for p in tokenizer.batch_decode(preds, skip_special_tokens=True)]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    refs = df["target"].tolist()
    scores = [scorer.score(sentence_lines(r), sentence_lines(p)) for r, p in zip(refs, decoded)]
    means = {k: float(np.mean([s[k].fmeasure for s in scores])) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    return time.perf_counter() - start, means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model evaluated")
    parser.add_argument("--batch-size", type=int, default=None, help="generation batch for both (default: params.yaml)")
    args = parser.parse_args(argv)
    import logging
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.disable(logging.WARNING)
    from tasks.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ingested, trained = prepare(Path(tmp), args.rows, args.steps)
        if args.batch_size:
            from tasks.core.config import load_config

            cfg = load_config(
                root=cfg.root,
                overrides=[
                    f"ingest.source={cfg.ingest.source}",
                    f"ingest.test_ratio={cfg.ingest.test_ratio}",
                    "ingest.valid_ratio=0.05",
                    f"evaluate.batch_size={args.batch_size}",
                    "evaluate.compare_champion=false",
                ],
            )
        runs = []
        for _ in range(3):  # interleaved, best of 3: the first pass also warms caches for both
            start = time.perf_counter()
            ours = evaluate(cfg, trained, ingested)
            ours_s = time.perf_counter() - start
            base_s, base_scores = baseline(cfg, trained, ingested)
            runs.append((ours_s, base_s))
        ours_s, base_s = min(r[0] for r in runs), min(r[1] for r in runs)
    print(
        f"evaluate {ingested.rows['test']} held-out rows, greedy, max {cfg.evaluate.generation_max_length} new tokens, "
        f"batch {cfg.evaluate.batch_size} (best of 3)"
    )
    print(f"  ours (evaluate stage, logging and plots included): {ours_s:6.2f} s")
    print(f"  Seq2SeqTrainer.predict + rouge_score:              {base_s:6.2f} s")
    print(f"  speed-up: {base_s / ours_s:.2f}x (goal >= 2x)")
    worst = max(abs(ours.metrics[k] - base_scores[k]) for k in base_scores)
    print(
        "  scores: "
        + ", ".join(f"{k} {ours.metrics[k]:.4f} vs {base_scores[k]:.4f}" for k in base_scores)
        + f"  (largest difference {worst:.4f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
