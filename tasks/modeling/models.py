"""Models and tokenizers: the locally initialised ``scratch`` T5 and the ``from_pretrained`` path.

A hub id (``google/flan-t5-small``) and a local model folder go through the very same
``from_pretrained`` calls. For ``scratch``, validation fits a tokenizer on the train split and
saves it (``paths.tokenizer``); training initialises a T5 of ``train.scratch``'s size for that
tokenizer, writes it as an ordinary HF folder (``paths.base_model``) and loads it back with
``from_pretrained``, so the default exercises exactly the path a user with network takes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.config import Config, Scratch
from tasks.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SCRATCH = "scratch"  # a T5 initialised locally
RNN = "rnn"  # the GRU/LSTM encoder-decoder of tasks/rnn_model.py
LOCAL_KINDS = (SCRATCH, RNN)  # trained from zero, with a tokenizer fitted on the data


def model_source(cfg: Config) -> str:
    """``train.model`` as ``from_pretrained`` wants it: relative folders resolve against the root."""
    name = cfg.train.model
    local = Path(name).expanduser()
    if not local.is_absolute() and (cfg.root / local).exists():
        return str(cfg.root / local)
    return str(local) if local.is_absolute() else name


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
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
    tok = _canonical(tok)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1024
    )


TAIL_STEP = 1.5e-4  # the Unigram trainer's penalty step between kept characters is 1e-4


def _canonical(tok):
    """Make the trained vocabulary independent of hash-map order.

    Two trainings on the same text differ: the Unigram trainer appends the characters it must
    keep with tiny, decreasing penalty scores in the order a hash map yields them, orders equal
    scores arbitrarily, and its EM sums differ in the last bits. Token ids then differ, and so
    do the models trained on them. Reassigning the tail's scores in token order, rounding, and
    sorting by (score, token) makes the tokenizer (and ``dvc repro``) reproducible byte for byte.
    """
    import json

    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    special = {t["content"] for t in data.get("added_tokens", [])}
    head = [e for e in vocab if e[0] in special]  # pad/eos/unk keep ids 0, 1, 2
    rest = [e for e in vocab if e[0] not in special]
    # the tail: the entries at the end of the trainer's (score-ordered) list that step down by its
    # penalty (1e-4) or less, the characters it had to keep; learned scores lie further apart
    start = len(rest) - 1
    while start > 0 and rest[start - 1][1] - rest[start][1] < TAIL_STEP:
        start -= 1
    tail = list(range(start, len(rest))) if len(rest) - start > 1 else []
    if tail:  # same tokens, same scores, assigned in token order instead of hash order
        tokens = sorted(rest[i][0] for i in tail)
        scores = sorted((rest[i][1] for i in tail), reverse=True)
        for i, token, score in zip(tail, tokens, scores):
            rest[i] = [token, score]
    # Rounded to 1e-6: far coarser than the EM's run-to-run noise (~1e-15, parallel sums), far
    # finer than segmentation cares about; then ties are broken by the token itself.
    rest = sorted(([t, round(s, 6)] for t, s in rest), key=lambda e: (-e[1], e[0]))
    data["model"]["vocab"] = head + rest
    return Tokenizer.from_str(json.dumps(data))


def _within_chars(df, budget: int, seed: int):
    """All rows when their text fits ``budget`` characters, else a seeded sample that does:
    Unigram training time grows with the text it sees (about 5 s per million characters here)."""
    sizes = df["text"].fillna("").astype(str).str.len() + df["target"].fillna("").astype(str).str.len()
    if int(sizes.sum()) <= budget:
        return df
    order = df.sample(frac=1.0, random_state=seed).index
    keep = order[: max(1, int((sizes.loc[order].cumsum() <= budget).sum()))]
    return df.loc[keep]


def prepare_tokenizer(cfg: Config, train_df) -> PreTrainedTokenizerBase:
    """The tokenizer the pipeline uses, saved to ``paths.tokenizer`` for the train stage.

    ``scratch``: fitted on (a seeded sample of) the train split. Otherwise: the model's own.
    """
    out = cfg.path("tokenizer")
    if cfg.train.model in LOCAL_KINDS:
        spec = cfg.train.scratch
        sample = _within_chars(train_df, spec.tokenizer_chars, cfg.train.seed)
        texts = [t for t in sample["text"].tolist() + sample["target"].tolist() if isinstance(t, str)]
        if not texts:
            raise DataError("the train split has no text to fit the scratch tokenizer on")
        tokenizer = train_tokenizer(texts, spec.vocab_size)
    else:
        tokenizer = load_tokenizer(model_source(cfg))
    from tasks.core import paths

    tmp = paths.temp_sibling(out)
    tokenizer.save_pretrained(str(tmp))
    paths.replace_dir(tmp, out)
    return tokenizer


def scratch_config(spec: Scratch, tokenizer: PreTrainedTokenizerBase) -> PreTrainedConfig:
    """A T5 config whose vocabulary matches ``tokenizer`` exactly."""
    from transformers import T5Config

    return T5Config(
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


def build_scratch(spec: Scratch, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A freshly initialised T5 for ``tokenizer``, deterministic for ``seed``."""
    import torch
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    return T5ForConditionalGeneration(scratch_config(spec, tokenizer))


def rnn_config(cfg: Config, tokenizer) -> PreTrainedConfig:
    from tasks.modeling.rnn_model import RnnSeq2SeqConfig

    r = cfg.train.rnn
    return RnnSeq2SeqConfig(
        vocab_size=len(tokenizer),
        embedding_size=r.embedding_size,
        hidden_size=r.hidden_size,
        num_layers=r.num_layers,
        cell=r.cell,
        dropout=r.dropout,
        bidirectional=r.bidirectional,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def model_config(cfg: Config, tokenizer) -> PreTrainedConfig:
    """The config of the model that will be trained (no weights loaded): for preflight checks."""
    if cfg.train.model == SCRATCH:
        return scratch_config(cfg.train.scratch, tokenizer)
    if cfg.train.model == RNN:
        return rnn_config(cfg, tokenizer)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_source(cfg), trust_remote_code=cfg.train.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(cfg.train.model, exc) from None


def _load_error(name: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"train.model: cannot load {name!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}); "
        "give a local model folder, a reachable hub id, or 'scratch'"
    )


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(name_or_path, exc) from None


def load_model(name_or_path: str, trust_remote_code: bool = False, **kwargs):
    """``AutoModelForSeq2SeqLM.from_pretrained`` (safetensors only), with our RNN type registered.

    A folder holding a LoRA adapter (``adapter_config.json``) loads its base model and the
    adapter through PEFT."""
    from transformers import AutoModelForSeq2SeqLM

    from tasks.modeling import rnn_model

    rnn_model.register()
    try:
        if (Path(name_or_path) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForSeq2SeqLM

            return AutoPeftModelForSeq2SeqLM.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        return AutoModelForSeq2SeqLM.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise _load_error(name_or_path, exc) from None


def load(name_or_path: str, trust_remote_code: bool = False):
    """Tokenizer and seq2seq model from a hub id or a local folder (the one loading path)."""
    return load_tokenizer(name_or_path, trust_remote_code), load_model(name_or_path, trust_remote_code)


def load_base_model(cfg: Config, tokenizer, write: bool = True, **kwargs) -> PreTrainedModel:
    """The model to fine-tune. ``scratch`` and ``rnn`` are initialised, written to
    ``paths.base_model`` (by the main process only, when ``write``) and loaded back through
    ``from_pretrained`` like any other model folder. ``kwargs`` go to ``from_pretrained``
    (quantization)."""
    if cfg.train.model not in LOCAL_KINDS:
        return load_model(model_source(cfg), cfg.train.trust_remote_code, **kwargs)
    out = cfg.path("base_model")
    if write:
        import torch

        if cfg.train.model == SCRATCH:
            model = build_scratch(cfg.train.scratch, tokenizer, cfg.train.seed)
        else:
            from tasks.modeling.rnn_model import RnnSeq2SeqModel

            torch.manual_seed(cfg.train.seed)
            model = RnnSeq2SeqModel(rnn_config(cfg, tokenizer))
        from tasks.core import paths

        tmp = paths.temp_sibling(out)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        paths.replace_dir(tmp, out)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info(
            "%s model: %.2fM parameters, vocabulary %d, saved to %s",
            cfg.train.model,
            n_params / 1e6,
            len(tokenizer),
            out,
        )
    return load_model(str(out))


def check_compatible(model, tokenizer) -> None:
    """Preflight the mistakes that otherwise surface as index errors deep inside training."""
    problems = preflight(model.config, tokenizer)
    emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > emb:
        problems.insert(
            0,
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding matrix has {emb} rows; "
            "use the tokenizer that belongs to train.model (or resize the embeddings)",
        )
    if problems:
        raise ConfigError("; ".join(problems))


def preflight(config, tokenizer, max_seq_length: int | None = None) -> list[str]:
    """Tokenizer/model mismatches, each as a sentence naming the setting to change."""
    problems = []
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        problems.append(
            f"vocabulary mismatch: the tokenizer has {len(tokenizer)} tokens but the model config's vocab_size is "
            f"{vocab}, so some token ids would index past the embeddings; use the tokenizer saved with train.model"
        )
    if getattr(config, "decoder_start_token_id", None) is None:
        problems.append(
            "the model config has no decoder_start_token_id; set it in the model's config.json "
            "(T5: the pad id; BART: the eos id)"
        )
    if tokenizer.pad_token_id is None:
        problems.append(
            "the tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token) "
            "and save it with the model"
        )
    if tokenizer.eos_token_id is None:
        problems.append("the tokenizer has no EOS token, so labels would never end; use a tokenizer with one")
    else:
        ids = tokenizer(text_target="a short reference")["input_ids"]
        if not ids or ids[-1] != tokenizer.eos_token_id:
            problems.append(
                "labels do not end with EOS: the tokenizer does not append it, so the model never "
                "learns to stop; use a tokenizer whose post-processor adds EOS"
            )
    limit = getattr(config, "max_position_embeddings", None)
    if max_seq_length and limit and max_seq_length > limit:
        problems.append(
            f"train.max_seq_length={max_seq_length} exceeds the model's max_position_embeddings={limit}; "
            f"lower train.max_seq_length to {limit} or less"
        )
    return problems
