"""CTranslate2: a saved HF seq2seq folder converted once (cached by its content hash) and
generation with the converted model.

The converter handles T5/FLAN-T5/mT5, BART, mBART, Marian, Pegasus and more (it says which by
its loaders); the recurrent model type and adapter-only folders are not convertible and stay on
transformers. Weights are kept in float32 at conversion; the compute type (with ``auto``: int8
on CPU for models big enough to gain from it, float16 or bfloat16 on GPU) is chosen when the
model is loaded, so one converted copy
serves every compute type. Greedy float32 outputs equal ``generate``'s token for token
(tests/test_ct2.py).

The registered model ships this file beside its pyfunc (MLflow ``code_paths``), so it imports
nothing from this project at module level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = "ct2-v1"  # bump when the conversion changes: old cache entries are then not reused
# generation settings CTranslate2 reproduces; any other that adds a logits processor must be at
# its default (generation.py lists them), else the model stays on transformers
_OWN = {"no_repeat_ngram_size"}


def available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def unsupported(model_dir: str | Path) -> str | None:
    """Why ``model_dir`` cannot run on CTranslate2 (None when it can): not installed, an
    adapter-only folder, a model type the converter has no loader for, or generation settings
    it would not reproduce."""
    if not available():
        return "ctranslate2 is not installed"
    folder = Path(model_dir)
    if (folder / "adapter_config.json").is_file():
        return "the folder holds a LoRA adapter only"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable config.json (a hub id or a folder of another format)"
    from ctranslate2.converters.transformers import _MODEL_LOADERS

    arch = (config.get("architectures") or [""])[0]
    kind = config.get("model_type", "?")
    loader = _MODEL_LOADERS.get(_config_class(kind))
    target = getattr(loader, "architecture_name", "")
    if loader is None or not target.endswith(("ConditionalGeneration", "MTModel")) or arch not in ("", target):
        return f"CTranslate2 has no seq2seq converter for model type {kind!r}"
    from tasks.modeling.generation import PROCESSOR_SETTINGS  # the project's side only (not shipped)

    settings = generation_settings(folder)
    odd = [k for k, ok in PROCESSOR_SETTINGS.items() if k not in _OWN and settings.get(k, ok[0]) not in ok]
    if odd:
        return f"its generation settings {', '.join(sorted(odd))} are not reproduced by CTranslate2"
    return None


def _config_class(model_type: str) -> str:
    from transformers import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[model_type].__name__
    except KeyError:
        return ""


def content_hash(model_dir: str | Path) -> str:
    """sha256 over the files a conversion reads (config, weights, generation settings, vocab)."""
    folder = Path(model_dir)
    h = hashlib.sha256(FORMAT.encode())
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def convert(model_dir: str | Path, cache: str | Path) -> Path:
    """The converted copy of ``model_dir`` under ``cache`` (converted now if it is not there).
    Written to a temporary folder and renamed into place: a killed conversion leaves no entry."""
    out = Path(cache) / content_hash(model_dir)[:24]
    if (out / "model.bin").is_file():
        os.utime(out)  # used now: the newest to keep when the cache is pruned
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    try:
        _converter(str(model_dir)).convert(str(tmp / "model"), force=True)
        _fill_tokens(Path(model_dir), tmp / "model" / "config.json")
        try:
            os.replace(tmp / "model", out)
        except OSError:  # another process converted the same model meanwhile
            if not (out / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s for CTranslate2 (%s)", model_dir, out.name)
    prune(Path(cache), keep=KEEP, protect=out)
    return out


KEEP = 4  # converted models kept per project: the candidate, the champion and the last few


def prune(cache: Path, keep: int = KEEP, protect: Path | None = None, stale_s: float = 3600.0) -> list[str]:
    """Remove all but the ``keep`` most recently used converted models (never ``protect``), and
    conversions left half-done by a killed process more than ``stale_s`` ago. Returns the names
    removed. The cache grew by a model's size on every run before (3 MB a run for the tiny one)."""
    import time

    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")] if cache.is_dir() else []
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    doomed = [p for p in entries[keep:] if p != protect]
    now = time.time()
    doomed += [p for p in cache.glob(".converting-*") if now - p.stat().st_mtime > stale_s] if cache.is_dir() else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    if doomed:
        logger.info("pruned %d converted model(s) from %s (kept the %d most recently used)", len(doomed), cache, keep)
    return [p.name for p in doomed]


def generation_settings(model_dir: str | Path) -> dict:
    """The folder's generation_config.json (empty when it has none)."""
    path = Path(model_dir) / "generation_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def decoder_start_counts(model_dir: str | Path) -> bool:
    """True when ``generate``'s output starts with a token that is not pad (BART's EOS start),
    which our gen_len counts as transformers' output does."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return config.get("decoder_start_token_id") != config.get("pad_token_id")


def cache_dir(cfg) -> Path:
    """Where a project keeps converted models (by content hash): its state folder."""
    from tasks.core.paths import STATE_DIR

    return Path(cfg.root) / STATE_DIR / "ct2"


# Layer-norm placement the converter reads from configs that transformers 5 no longer carries
# (hub config.json files still do; a model built in code has none): what the modeling code does.
_NORMS = {
    "BartForConditionalGeneration": {"normalize_before": False, "normalize_embedding": True},
    "MBartForConditionalGeneration": {"normalize_before": True, "normalize_embedding": True},
    "PegasusForConditionalGeneration": {"normalize_before": True, "normalize_embedding": False},
}


def _converter(model_dir: str):
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            model = super().load_model(model_class, model_name_or_path, **kwargs)
            for key, value in _NORMS.get(type(model).__name__, {}).items():
                if key not in model.config.to_dict():
                    setattr(model.config, key, value)
            return model

    return Converter(model_dir, low_cpu_mem_usage=True)


def _fill_tokens(model_dir: Path, ct2_config: Path) -> None:
    """A tokenizer without a BOS token (ours, fitted on the data) leaves ``bos_token`` null,
    which CTranslate2 refuses to load: name the token the model's config gives as BOS (else its
    decoder start token)."""
    config = json.loads(ct2_config.read_text(encoding="utf-8"))
    if config.get("bos_token") is not None:
        return
    hf = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    shared = ct2_config.parent / "shared_vocabulary.json"
    target = ct2_config.parent / "target_vocabulary.json"
    vocab = json.loads((shared if shared.is_file() else target).read_text(encoding="utf-8"))
    bos = hf.get("bos_token_id")
    config["bos_token"] = vocab[bos] if isinstance(bos, int) and bos < len(vocab) else config["decoder_start_token"]
    ct2_config.write_text(json.dumps(config, indent=2), encoding="utf-8")


def device() -> str:
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


# ``auto`` on CPU quantizes to int8 from this many parameters on. Measured on 2 cores: the
# t5-small-shaped 44M model generates 1.45x faster in int8 than in float32; the 0.75M default
# model is no faster (0.18 s either way), and int8 there blurs small differences between models
# (two learning rates gave identical outputs), which a promotion decision must see.
INT8_FROM_PARAMETERS = 10_000_000


def compute_type(wanted: str, on: str, parameters: int | None = None) -> str:
    """``auto``: on CPU int8 for models of ``INT8_FROM_PARAMETERS`` or more (float32 below), on
    GPU bfloat16 (else float16), as the device supports them."""
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types(on)
    if wanted != "auto":
        if wanted not in supported:
            raise ValueError(
                f"evaluate.compute_type {wanted!r} is not supported on {on} here; "
                f"supported: {', '.join(sorted(supported))}"
            )
        return wanted
    if on == "cpu":
        small = parameters is not None and parameters < INT8_FROM_PARAMETERS
        prefs = ["float32"] if small else ["int8", "float32"]
    else:
        prefs = ["bfloat16", "float16", "float32"]
    return next(c for c in prefs if c in supported)


def parameters(ct2_dir: str | Path) -> int:
    """About how many parameters a converted model holds (its weights are stored as float32)."""
    return (Path(ct2_dir) / "model.bin").stat().st_size // 4


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def translator(ct2_dir: str | Path, wanted: str = "auto"):
    """A Translator on the GPU when there is one, else on CPU with one single-threaded worker
    per core: batches run side by side. Measured on 2 cores (0.75M and 44M-parameter T5,
    float32 and int8), that beat one worker of 1, 2 or CTranslate2's default 4 threads every
    time, by 1.4-10x (README, Figures)."""
    import ctranslate2
    import torch

    on = device()
    threads = {"inter_threads": cores(), "intra_threads": 1} if on == "cpu" else {}
    kind = compute_type(wanted, on, parameters(ct2_dir))
    before = torch.get_num_threads()
    made = ctranslate2.Translator(str(ct2_dir), device=on, compute_type=kind, **threads)
    # CTranslate2 sets the process's OpenMP thread count to its intra_threads, which torch shares:
    # without this, every later torch computation in the process (training, the transformers
    # backend) would run on one thread, and differently rounded
    torch.set_num_threads(before)
    return made


def generate(
    model,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int,
    num_beams: int,
    max_new_tokens: int,
    max_source: int,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    decoder_start_counts: bool = False,
    desc: str = "generate",
    progress: bool = True,
) -> tuple[list[str], list[int]]:
    """Predictions and generated lengths for ``texts`` in input order, like
    ``tasks.modeling.generation.generate`` (gen_len counts the non-pad tokens, EOS included, and
    the decoder start token when it is not the pad token: ``decoder_start_counts``)."""
    from tqdm.auto import tqdm

    ids = tokenizer(texts, truncation=True, max_length=max_source)["input_ids"]
    order = np.argsort([len(i) for i in ids], kind="stable")[::-1]
    preds: list[str] = [""] * len(texts)
    gen_lens: list[int] = [0] * len(texts)
    eos = tokenizer.eos_token
    # a few batches per worker and call: the workers run them side by side, the bar still moves
    chunk = batch_size * 2 * max(2, getattr(model, "num_translators", 1))
    with tqdm(total=len(texts), desc=desc, unit="row", disable=None if progress else True) as bar:
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            results = model.translate_batch(
                [tokenizer.convert_ids_to_tokens(ids[i]) for i in idx],
                max_batch_size=batch_size,
                beam_size=num_beams,
                max_decoding_length=max_new_tokens,
                length_penalty=length_penalty,
                no_repeat_ngram_size=no_repeat_ngram_size,
                return_end_token=True,
                return_scores=False,
            )
            for i, result in zip(idx, results):
                tokens = result.hypotheses[0]
                out = tokenizer.convert_tokens_to_ids([t for t in tokens if t != eos])
                preds[i] = tokenizer.decode(out, skip_special_tokens=True).strip()
                # generate's count: every token but pad (an untrained model may emit pad itself)
                gen_lens[i] = sum(t != tokenizer.pad_token for t in tokens) + int(decoder_start_counts)
            bar.update(len(idx))
    return preds, gen_lens
