"""The evaluate stage against Seq2SeqTrainer.predict(predict_with_generate=True) + rouge_score,
and CTranslate2 against transformers' generate on a t5-small-shaped model.

    python -m bench.evaluate               # the default model after 300 steps, 300 test rows
    python -m bench.evaluate --rows 1000   # more held-out rows (a bigger generated split)
    python -m bench.evaluate --repeats 5   # timing runs per side (median and range printed)

Part 1, the stage: the evaluate stage with each generation backend (``auto`` = CTranslate2,
float32 for this 0.75M-parameter model; CTranslate2 int8; ``hf`` = transformers with the
shrinking greedy loop)
against the baseline below, interleaved, each ``--repeats`` times.

Part 2, the engine: a T5 of t5-small's shape (6+6 layers, d_model 512, 8 heads, d_ff 2048;
the default tokenizer's vocabulary), randomly initialised, so every row generates the full
``evaluate.generation_max_length`` tokens: ``model.generate`` vs CTranslate2 (int8 and
float32), same rows, same batch.

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


def _spread(times: list[float]) -> str:
    import statistics

    return f"median {statistics.median(times):6.2f} s (range {min(times):.2f}-{max(times):.2f})"


def stage(cfg, trained, ingested, repeats: int) -> None:
    """Part 1: the evaluate stage per backend vs Seq2SeqTrainer.predict + rouge_score."""
    from tasks.core.config import load_config
    from tasks.evaluate import evaluate

    backends = {
        "auto (ct2 float32 here)": [],
        "ct2 int8": ["evaluate.backend=ct2", "evaluate.compute_type=int8"],
        "hf (shrinking greedy)": ["evaluate.backend=hf"],
    }
    base = [
        f"ingest.source={cfg.ingest.source}",
        f"ingest.test_ratio={cfg.ingest.test_ratio}",
        "ingest.valid_ratio=0.05",
        f"evaluate.batch_size={cfg.evaluate.batch_size}",
        "evaluate.compare_champion=false",
    ]
    cfgs = {name: load_config(root=cfg.root, overrides=base + extra) for name, extra in backends.items()}
    times: dict[str, list[float]] = {name: [] for name in [*backends, "baseline"]}
    scores: dict[str, dict] = {}
    for _ in range(repeats):  # interleaved: drift in the machine's speed hits every side alike
        for name, c in cfgs.items():
            start = time.perf_counter()
            scores[name] = evaluate(c, trained, ingested).metrics
            times[name].append(time.perf_counter() - start)
        base_s, scores["baseline"] = baseline(cfg, trained, ingested)
        times["baseline"].append(base_s)
    import statistics

    print(
        f"Part 1: evaluate stage, {ingested.rows['test']} held-out rows, greedy, max "
        f"{cfg.evaluate.generation_max_length} new tokens, batch {cfg.evaluate.batch_size}, {repeats} runs each"
    )
    b = statistics.median(times["baseline"])
    print(f"  {'Seq2SeqTrainer.predict + rouge_score':38s} {_spread(times['baseline'])}")
    keys = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    for name in backends:
        m = statistics.median(times[name])
        diff = max(abs(scores[name][k] - scores["baseline"][k]) for k in keys)
        print(
            f"  {'ours, ' + name:38s} {_spread(times[name])}  speed-up {b / m:5.2f}x  "
            f"rougeL {scores[name]['rougeL']:.4f} (largest ROUGE difference to the baseline {diff:.4f})"
        )
    print(f"  baseline rougeL {scores['baseline']['rougeL']:.4f}; goal: >= 3x at the same scores (within 0.005)")


def engine(cfg, trained, ingested, repeats: int) -> None:
    """Part 2: CTranslate2 vs model.generate on a t5-small-shaped model."""
    import statistics

    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from tasks.core.results import load_split
    from tasks.modeling import ct2
    from tasks.modeling import models as modeling
    from tasks.modeling.generation import generate

    tok = modeling.load_tokenizer(str(cfg.resolve(trained.model_dir)))
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(tok),
            d_model=512,
            d_kv=64,
            d_ff=2048,
            num_layers=6,
            num_decoder_layers=6,
            num_heads=8,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
    ).eval()
    n_params = sum(p.numel() for p in model.parameters())
    texts = load_split(ingested, "test")["text"].tolist()
    ev = cfg.evaluate
    kw = dict(
        batch_size=ev.batch_size,
        num_beams=1,
        max_new_tokens=ev.generation_max_length,
        max_source=cfg.train.max_seq_length,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "t5-small-shaped"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        start = time.perf_counter()
        converted = ct2.convert(folder, Path(tmp) / "cache")
        convert_s = time.perf_counter() - start
        sides = {"ct2 int8": ct2.translator(converted, "int8"), "ct2 float32": ct2.translator(converted, "float32")}
        times: dict[str, list[float]] = {"generate": [], **{k: [] for k in sides}}
        outs = {}
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.inference_mode():
                ids = []
                for i in range(0, len(texts), ev.batch_size):
                    batch = tok(
                        texts[i : i + ev.batch_size],
                        return_tensors="pt",
                        padding=True,
                        truncation=True,
                        max_length=cfg.train.max_seq_length,
                    )
                    ids.extend(
                        model.generate(
                            **batch, num_beams=1, max_new_tokens=ev.generation_max_length, do_sample=False
                        ).tolist()
                    )
            outs["generate"] = [s.strip() for s in tok.batch_decode(ids, skip_special_tokens=True)]
            times["generate"].append(time.perf_counter() - start)
            for name, tr in sides.items():
                start = time.perf_counter()
                outs[name] = ct2.generate(tr, tok, texts, progress=False, **kw)[0]
                times[name].append(time.perf_counter() - start)
        shrinking = []
        for _ in range(repeats):
            start = time.perf_counter()
            generate(model, tok, texts, **kw)
            shrinking.append(time.perf_counter() - start)
    g = statistics.median(times["generate"])
    print(
        f"Part 2: t5-small-shaped T5 ({n_params / 1e6:.1f}M parameters with this {len(tok):,}-token vocabulary), "
        f"{len(texts)} rows, {ev.generation_max_length} new tokens each, batch {ev.batch_size}, {repeats} runs; "
        f"conversion {convert_s:.2f} s"
    )
    print(f"  {'transformers generate':28s} {_spread(times['generate'])}")
    print(
        f"  {'ours, shrinking greedy (hf)':28s} {_spread(shrinking)}  speed-up {g / statistics.median(shrinking):5.2f}x"
    )
    for name in sides:
        same = sum(a == b for a, b in zip(outs[name], outs["generate"]))
        print(
            f"  {name:28s} {_spread(times[name])}  speed-up {g / statistics.median(times[name]):5.2f}x  "
            f"outputs equal to generate's: {same}/{len(texts)}"
        )
    print("  goal: ct2 >= 2x generate on this CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model evaluated")
    parser.add_argument("--batch-size", type=int, default=None, help="generation batch for both (default: params.yaml)")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per side (default: %(default)s)")
    parser.add_argument("--part", choices=["all", "stage", "engine"], default="all")
    args = parser.parse_args(argv)
    import logging
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.disable(logging.WARNING)
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
        if args.part in ("all", "stage"):
            stage(cfg, trained, ingested, args.repeats)
        if args.part in ("all", "engine"):
            engine(cfg, trained, ingested, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
