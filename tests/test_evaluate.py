"""Evaluation: -100-safe decoding, ROUGE identical to rouge_score, order-preserving generation."""

import random

import numpy as np
import pytest
from conftest import small_trained
from rouge_score import rouge_scorer

from tasks.data.sample import generate as sample_rows
from tasks.metrics import score
from tasks.metrics.rouge import sentence_lines
from tasks.modeling import models as modeling
from tasks.modeling.generation import decode, generate


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
    means, per_example = score(preds, refs, ("rouge",))
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


def perturbed_pairs(n: int, seed: int = 0):
    rng = random.Random(seed)
    refs = [r["target"] for r in sample_rows(n, seed=seed + 5)]
    preds = []
    for r in refs:  # dropped, shuffled and added words; some multi-sentence, some empty
        words = r.split()
        rng.shuffle(words) if rng.random() < 0.3 else None
        words = [w for w in words if rng.random() > 0.2]
        extra = " Running dogs were happier. Cats ran." if rng.random() < 0.3 else ""
        preds.append(" ".join(words) + extra if rng.random() > 0.02 else "")
    return preds, refs


def test_fast_engine_is_bit_identical_to_rouge_score_on_thousands_of_pairs():
    """rouge-score-rs behind the metric module must give exactly rouge_score's figures."""
    import evaluate

    from tasks.metrics.rouge import MODULE as ROUGE

    preds, refs = perturbed_pairs(2500)
    preds, refs = [sentence_lines(p) for p in preds], [sentence_lines(r) for r in refs]
    rouge = evaluate.load(ROUGE)
    fast = rouge.compute(predictions=preds, references=refs, use_stemmer=True, use_aggregator=False, engine="rust")
    slow = rouge.compute(predictions=preds, references=refs, use_stemmer=True, use_aggregator=False, engine="python")
    assert fast == slow  # exact, every example, every type
    plain = rouge.compute(predictions=preds, references=refs, use_aggregator=False, engine="rust")
    assert plain == rouge.compute(predictions=preds, references=refs, use_aggregator=False, engine="python")


def test_bleu_equals_sacrebleu_with_wrapped_references():
    import sacrebleu

    preds, refs = perturbed_pairs(300, seed=1)
    means, per_example = score(preds, refs, ("bleu",))
    assert means["bleu"] == sacrebleu.corpus_bleu(preds, [refs]).score
    assert per_example["bleu"][7] == sacrebleu.sentence_bleu(preds[7], [refs[7]]).score


def test_sentence_split_needs_no_download():
    assert sentence_lines("Lyon won 3-1. The coach was happy.  It rained.") == (
        "Lyon won 3-1.\nThe coach was happy.\nIt rained."
    )
    assert sentence_lines("Prices rose 2.5 percent in Lyon.") == "Prices rose 2.5 percent in Lyon."


def test_metric_module_loads_by_path_without_network(monkeypatch):
    import evaluate

    from tasks.metrics.rouge import MODULE as ROUGE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rouge = evaluate.load(ROUGE)
    assert rouge.compute(predictions=["the cat sat"], references=["the cat sat"]) == {
        "rouge1": 1.0,
        "rouge2": 1.0,
        "rougeL": 1.0,
        "rougeLsum": 1.0,
    }


def test_generation_returns_outputs_in_input_order():
    from tasks.core.config import Scratch

    texts = ["short", "a much longer input with many more words in it", "medium sized input"]
    tok = modeling.train_tokenizer(texts * 30, 50)
    model = modeling.build_scratch(
        Scratch(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1), tok, seed=0
    )
    batched, lens = generate(model, tok, texts, batch_size=2, num_beams=1, max_new_tokens=5, max_source=32)
    single = [
        generate(model, tok, [t], batch_size=1, num_beams=1, max_new_tokens=5, max_source=32)[0][0] for t in texts
    ]
    assert batched == single
    assert all(0 <= n <= 6 for n in lens)


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_shrinking_greedy_equals_generate(tmp_path, arch):
    """The fast path must decode exactly what transformers' generate does (greedy)."""
    import torch

    from tasks.modeling.generation import shrinking_greedy, shrinking_greedy_applies

    rows = sample_rows(700, seed=2)
    tok, model = small_trained(arch, rows, vocab=200, d_model=32)
    assert shrinking_greedy_applies(model, 1) and not shrinking_greedy_applies(model, 4)
    batch = tok([r["text"] for r in rows[640:700]], return_tensors="pt", padding=True)
    with torch.inference_mode():
        theirs = model.generate(**batch, max_new_tokens=30, num_beams=1, do_sample=False)
        ours = shrinking_greedy(model, batch["input_ids"], batch["attention_mask"], 30)
    stops = [(row[1:] == 1).nonzero()[0].item() if (row[1:] == 1).any() else None for row in theirs]
    assert len(set(stops)) > 1, stops  # rows finished at different steps: the batch really shrank
    assert torch.equal(ours, theirs)
