"""Models and tokenizers: the locally initialised ``scratch`` T5 and the ``from_pretrained`` path.

A hub id (``google/flan-t5-small``) and a local model folder go through the very same
``AutoModelForSeq2SeqLM.from_pretrained`` call. ``scratch`` first writes an ordinary HF model
folder (config, weights as safetensors, tokenizer) and then loads it through that same call, so
the default exercises exactly the path a user with network access takes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from tasks.config import Config, Scratch
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SCRATCH = "scratch"
STAMP = "s2s_base.json"  # what a scratch folder was built from, to rebuild only when that changes


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> "PreTrainedTokenizerBase":
    """A Unigram tokenizer (SentencePiece-style, as T5 uses) trained on ``texts``.

    Ids 0/1/2 are pad/eos/unk, T5's layout; EOS is appended to every encoded sequence, so labels
    end with EOS and the model learns to stop.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], unk_token=UNK, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1024
    )


def build_scratch(spec: Scratch, tokenizer: "PreTrainedTokenizerBase", seed: int) -> "PreTrainedModel":
    """A freshly initialised T5 whose vocabulary matches ``tokenizer`` exactly."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=spec.d_model,
        d_ff=spec.d_ff,
        d_kv=spec.d_kv,
        num_heads=spec.num_heads,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        dropout_rate=spec.dropout_rate,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,  # T5 starts decoding from pad
    )
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)


def prepare_base_model(cfg: Config, train_texts: list[str]) -> str:
    """Resolve ``train.model`` to something ``from_pretrained`` accepts.

    For ``scratch``, build (or reuse, if built from the same settings and data) a local HF folder
    at ``paths.base_model``. Anything else (hub id or folder) is returned unchanged.
    """
    if cfg.train.model != SCRATCH:
        local = Path(cfg.train.model).expanduser()
        if not local.is_absolute() and (cfg.root / local).exists():
            return str(cfg.root / local)
        return cfg.train.model
    out = cfg.path("base_model")
    import hashlib

    digest = hashlib.sha256("\n".join(train_texts).encode()).hexdigest()[:16]
    stamp = {"scratch": cfg.train.scratch.model_dump(), "seed": cfg.train.seed, "data": digest}
    stamp_file = out / STAMP
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        return str(out)
    tokenizer = train_tokenizer(train_texts, cfg.train.scratch.vocab_size)
    model = build_scratch(cfg.train.scratch, tokenizer, cfg.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    model.generation_config.save_pretrained(out)
    stamp_file.write_text(json.dumps(stamp, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("scratch model: %.2fM parameters, vocabulary %d, saved to %s", n_params / 1e6, len(tokenizer), out)
    return str(out)


def load(name_or_path: str, trust_remote_code: bool = False):
    """Tokenizer and seq2seq model from a hub id or a local folder (the one loading path)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=None
        )
    except OSError as exc:
        raise ConfigError(
            f"train.model: cannot load {name_or_path!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
            "give a local model folder, a reachable hub id, or 'scratch'"
        ) from None
    return tokenizer, model


def check_compatible(model, tokenizer) -> None:
    """Preflight the mistakes that otherwise surface as index errors deep inside training."""
    cfg = model.config
    emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > emb:
        raise ConfigError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding matrix has {emb} rows; "
            "use the tokenizer that belongs to train.model (or resize the embeddings)"
        )
    if cfg.decoder_start_token_id is None:
        raise ConfigError("the model config has no decoder_start_token_id; set it in the model's config.json")
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no pad token; add one (e.g. tokenizer.pad_token = tokenizer.eos_token)")
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token, so labels would never end; use a tokenizer with one")
