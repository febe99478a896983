"""Evaluation: -100-safe decoding, ROUGE identical to rouge_score, order-preserving generation."""

import random

import numpy as np
import pytest
from rouge_score import rouge_scorer

from tasks import modeling
from tasks.evaluate import decode, generate, score
from tasks.metrics.rouge.rouge import sentence_lines
from tasks.sample_data import generate as sample_rows


def test_decode_maps_minus_100_to_pad():
    tok = modeling.train_tokenizer(["a b c d", "hello there"] * 20, 40)
    ids = tok(["hello there"])["input_ids"][0]
    labels = np.array([ids + [-100, -100, -100]])
    assert decode(tok, labels) == ["hello there"]


def test_rouge_equals_rouge_score_on_hundreds_of_pairs():
    rng = random.Random(0)
    rows = sample_rows(300, seed=5)
    refs = [r["target"] for r in rows]
    preds = []
    for r in refs:  # perturbed copies: dropped, swapped and replaced words, some multi-sentence
        words = r.split()
        rng.shuffle(words) if rng.random() < 0.3 else None
        words = [w for w in words if rng.random() > 0.2] or ["nothing"]
        preds.append(" ".join(words) + (" Second sentence here." if rng.random() < 0.3 else ""))
    means, per_example = score(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = {k: [] for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    for ref, pred in zip(refs, preds):
        plain = scorer.score(ref, pred)
        lsum = scorer.score(sentence_lines(ref), sentence_lines(pred))  # one sentence per line
        for k in expected:
            expected[k].append((lsum if k == "rougeLsum" else plain)[k].fmeasure)
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert per_example[k] == pytest.approx(expected[k], abs=0), k
        assert means[k] == pytest.approx(float(np.mean(expected[k])), abs=1e-12)


def test_sentence_split_needs_no_download():
    assert sentence_lines("Lyon won 3-1. The coach was happy.  It rained.") == (
        "Lyon won 3-1.\nThe coach was happy.\nIt rained.")
    assert sentence_lines("Prices rose 2.5 percent in Lyon.") == "Prices rose 2.5 percent in Lyon."


def test_metric_module_loads_by_path_without_network(monkeypatch):
    import evaluate

    from tasks.metrics import ROUGE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rouge = evaluate.load(ROUGE)
    assert rouge.compute(predictions=["the cat sat"], references=["the cat sat"]) == {
        "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}


def test_generation_returns_outputs_in_input_order():
    from tasks.config import Scratch

    texts = ["short", "a much longer input with many more words in it", "medium sized input"]
    tok = modeling.train_tokenizer(texts * 30, 50)
    model = modeling.build_scratch(Scratch(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
                                           num_decoder_layers=1), tok, seed=0)
    batched, lens = generate(model, tok, texts, batch_size=2, num_beams=1, max_new_tokens=5, max_source=32)
    single = [generate(model, tok, [t], batch_size=1, num_beams=1, max_new_tokens=5, max_source=32)[0][0]
              for t in texts]
    assert batched == single
    assert all(0 <= n <= 6 for n in lens)
