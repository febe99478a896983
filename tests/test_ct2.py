"""The CTranslate2 backend: float32 greedy outputs equal transformers' generate token for token
(T5-style and BART-style models, trained a little so rows stop at different lengths), int8 scores
within 0.005 ROUGE of float32, conversions cached by content, models it cannot take named."""

import json

import pytest
from conftest import small_trained

from tasks.data.sample import generate as sample_rows
from tasks.metrics import score
from tasks.modeling import ct2
from tasks.modeling.generation import generate


def trained_folder(tmp_path, arch: str):
    """A small model of the family, trained a few epochs on the sample data, saved as a folder."""
    rows = sample_rows(1000, seed=2)
    tok, model = small_trained(arch, rows, vocab=300, d_model=48)
    folder = tmp_path / arch
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    held_out = rows[700:]
    return folder, tok, model, [r["text"] for r in held_out], [r["target"] for r in held_out]


@pytest.fixture(scope="module", params=["t5", "bart"])
def family(request, tmp_path_factory):
    return trained_folder(tmp_path_factory.mktemp("ct2"), request.param)


def test_float32_greedy_equals_generate_token_for_token(family, tmp_path):
    import torch

    folder, tok, model, texts, _ = family
    assert ct2.unsupported(folder) is None
    translator = ct2.translator(ct2.convert(folder, tmp_path / "cache"), "float32")
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=64)
    with torch.inference_mode():
        theirs = model.generate(**batch, max_new_tokens=30, num_beams=1, do_sample=False)
    pad, start = model.config.pad_token_id, model.config.decoder_start_token_id
    expected = []
    for row in theirs.tolist():
        row = row[1:]  # the decoder start token
        expected.append(row[: len(row) - next((i for i, t in enumerate(reversed(row)) if t != pad), len(row))])
    results = translator.translate_batch(
        [tok.convert_ids_to_tokens(ids) for ids in tok(texts, truncation=True, max_length=64)["input_ids"]],
        beam_size=1,
        max_decoding_length=30,
        return_end_token=True,
    )
    got = [tok.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    assert got == expected
    assert len({len(g) for g in got}) > 1  # rows really stopped at different lengths
    # and through the evaluate stage's functions: same texts, same gen_len
    hf_preds, hf_lens = generate(model, tok, texts, batch_size=16, num_beams=1, max_new_tokens=30, max_source=64)
    preds, lens = ct2.generate(
        translator,
        tok,
        texts,
        batch_size=16,
        num_beams=1,
        max_new_tokens=30,
        max_source=64,
        decoder_start_counts=start != pad,
    )
    assert preds == hf_preds and lens == hf_lens


def test_int8_scores_within_0015_rouge_of_float32(family, tmp_path):
    folder, tok, _, texts, refs = family
    converted = ct2.convert(folder, tmp_path / "cache")
    means = {}
    for compute in ("float32", "int8"):
        preds, _ = ct2.generate(
            ct2.translator(converted, compute), tok, texts, batch_size=32, num_beams=1, max_new_tokens=30, max_source=64
        )
        means[compute] = score(preds, refs, ("rouge",))[0]
    assert means["float32"]["rougeL"] > 0.2, means  # the model learnt something worth comparing
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        # a 48-wide model is where int8 costs most (0.0089 seen; 0.0017 on the default model in
        # bench.evaluate); a broken quantization costs tenths
        assert abs(means["int8"][k] - means["float32"][k]) <= 0.015, (k, means)


def test_conversions_are_cached_by_content(family, tmp_path):
    import os

    folder, *_ = family
    cache = tmp_path / "cache"
    first = ct2.convert(folder, cache)
    stamp = os.stat(first / "model.bin").st_mtime_ns
    assert ct2.convert(folder, cache) == first and os.stat(first / "model.bin").st_mtime_ns == stamp
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in folder.iterdir():
        (changed / f.name).write_bytes(f.read_bytes())
    settings = json.loads((changed / "generation_config.json").read_text())
    (changed / "generation_config.json").write_text(json.dumps({**settings, "length_penalty": 0.8}))
    assert ct2.convert(changed, cache) != first  # another content, another entry
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no half-done conversion


def test_the_conversion_cache_keeps_the_most_recently_used_and_no_more(family, tmp_path):
    """Six real conversions (one model, six generation settings) into a cache that keeps four:
    the first one, used again in between, survives; the oldest unused ones are gone."""
    import time

    folder, *_ = family
    cache = tmp_path / "cache"
    entries = []
    for i in range(6):
        variant = tmp_path / f"v{i}"
        variant.mkdir()
        for f in folder.iterdir():
            (variant / f.name).write_bytes(f.read_bytes())
        settings = json.loads((variant / "generation_config.json").read_text())
        (variant / "generation_config.json").write_text(json.dumps({**settings, "length_penalty": 0.5 + i / 10}))
        entries.append(ct2.convert(variant, cache))
        if i == 2:
            time.sleep(0.05)
            assert ct2.convert(tmp_path / "v0", cache) == entries[0]  # used again: now the newest
        time.sleep(0.05)
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == ct2.KEEP
    assert entries[0].name in kept and entries[5].name in kept
    assert entries[1].name not in kept and entries[2].name not in kept


def test_what_ctranslate2_cannot_take_is_named(tmp_path, family):
    from tasks.modeling.rnn_model import RnnSeq2SeqConfig, RnnSeq2SeqModel, register

    folder, tok, *_ = family
    register()
    RnnSeq2SeqModel(RnnSeq2SeqConfig(vocab_size=len(tok), embedding_size=8, hidden_size=8)).save_pretrained(
        tmp_path / "rnn"
    )
    assert "no seq2seq converter" in ct2.unsupported(tmp_path / "rnn")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert "adapter" in ct2.unsupported(tmp_path / "adapter")
    odd = tmp_path / "odd"
    odd.mkdir()
    for f in folder.iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    settings = json.loads((odd / "generation_config.json").read_text())
    (odd / "generation_config.json").write_text(json.dumps({**settings, "repetition_penalty": 1.3}))
    assert "repetition_penalty" in ct2.unsupported(odd)
    with pytest.raises(ValueError, match="float16"):
        ct2.compute_type("float16", "cpu")


def test_auto_compute_type_quantizes_only_models_big_enough_to_gain(family, tmp_path):
    folder, *_ = family
    small = ct2.parameters(ct2.convert(folder, tmp_path / "cache"))
    assert 10_000 < small < ct2.INT8_FROM_PARAMETERS
    assert ct2.compute_type("auto", "cpu", small) == "float32"
    assert ct2.compute_type("auto", "cpu", ct2.INT8_FROM_PARAMETERS) == "int8"
    assert ct2.translator(ct2.convert(folder, tmp_path / "cache")).compute_type == "float32"


def test_a_translator_leaves_torchs_threads_alone(family, tmp_path):
    """CTranslate2 sets the OpenMP thread count torch shares; training after an evaluation in the
    same process would otherwise run on one thread (and round differently: caught by test_resume)."""
    import torch

    folder, *_ = family
    before = torch.get_num_threads()
    ct2.translator(ct2.convert(folder, tmp_path / "cache"), "float32")
    assert torch.get_num_threads() == before


@pytest.mark.system
@pytest.mark.xdist_group("served")
def test_the_registered_version_carries_the_converted_model_and_both_backends_agree(served_project):
    """The pipeline's version holds the CTranslate2 copy beside the HF folder; in a fresh process
    the pyfunc generates with it by default, and in float32 says what transformers says."""
    import subprocess
    import sys

    import pandas as pd

    from tasks.core.config import load_config

    root, _ = served_project
    uri = load_config(root=root).tracking_uri()
    texts = pd.read_parquet(root / "data" / "processed" / "test.parquet")["text"].tolist()[:20]
    code = f"""
import json, os, mlflow
mlflow.set_tracking_uri({uri!r})
out = {{}}
for backend, compute in (("auto", "auto"), ("ct2", "float32"), ("hf", "auto")):
    os.environ["S2S_BACKEND"], os.environ["S2S_COMPUTE_TYPE"] = backend, compute
    m = mlflow.pyfunc.load_model("models:/s2s-default/1")
    out[backend] = (m.unwrap_python_model().backend, m.predict({texts!r}))
reqs = open(mlflow.artifacts.download_artifacts("models:/s2s-default/1") + "/requirements.txt").read()
print(json.dumps({{"out": out, "reqs": reqs}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    out = got["out"]
    assert out["auto"][0] == "ct2" and out["ct2"][0] == "ct2" and out["hf"][0] == "hf"
    assert out["ct2"][1] == out["hf"][1]  # float32: the same text, row for row
    assert sum(bool(t) for t in out["hf"][1]) >= len(texts) // 2  # and text it is, not blanks
    assert len(out["auto"][1]) == len(texts) and "ctranslate2==" in got["reqs"]


def test_an_untrained_model_counts_gen_len_as_generate_does(tmp_path):
    """A model that emits pad tokens (untrained): gen_len counts non-pad tokens on both backends."""
    from tasks.core.config import Scratch
    from tasks.modeling import models as modeling
    from tasks.modeling.generation import generate

    rows = sample_rows(200, seed=3)
    tok = modeling.train_tokenizer([r["text"] for r in rows] + [r["target"] for r in rows], 120)
    model = modeling.build_scratch(
        Scratch(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1), tok, seed=0
    ).eval()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    texts = [r["text"] for r in rows[:40]]
    kw = dict(batch_size=16, num_beams=1, max_new_tokens=12, max_source=64)
    expected = generate(model, tok, texts, **kw)
    got = ct2.generate(ct2.translator(ct2.convert(tmp_path / "m", tmp_path / "c"), "float32"), tok, texts, **kw)
    assert got == expected
