"""Generation for evaluation: length-sorted batches, and a greedy loop that drops finished rows.

Predictions come back in input order; ``decode`` maps the loss's ignore index (-100) to pad
before decoding, for predictions and labels alike.
"""

from __future__ import annotations

import numpy as np


def decode(tokenizer, ids) -> list[str]:
    """Decode generated or label ids; -100 (the loss's ignore index) is mapped to pad first."""
    arr = np.asarray(ids)
    arr = np.where(arr < 0, tokenizer.pad_token_id, arr)
    return [s.strip() for s in tokenizer.batch_decode(arr, skip_special_tokens=True)]


# Generation settings that add logits processors or change greedy search, with their neutral
# values: with any other value, decoding goes through transformers' generate rather than the
# shrinking greedy loop below (and stays off CTranslate2 unless it reproduces the setting).
PROCESSOR_SETTINGS = {
    "min_length": (0, None),
    "min_new_tokens": (None, 0),
    "no_repeat_ngram_size": (0, None),
    "encoder_no_repeat_ngram_size": (0, None),
    "repetition_penalty": (1.0, None),
    "encoder_repetition_penalty": (1.0, None),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "do_sample": (False, None),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (False, None),
    "guidance_scale": (None, 1.0),
    "max_length_penalty": (None,),
}


def shrinking_greedy_applies(model, num_beams: int) -> bool:
    """True when the shrinking greedy loop gives exactly what ``model.generate`` would."""
    from transformers import PreTrainedModel

    if num_beams != 1 or not isinstance(model, PreTrainedModel) or not model.config.is_encoder_decoder:
        return False
    if not hasattr(model, "get_encoder") or "generate" in type(model).__dict__:  # custom generate (the RNN)
        return False
    gc = getattr(model, "generation_config", None)
    return gc is not None and all(getattr(gc, k, None) in ok for k, ok in PROCESSOR_SETTINGS.items())


def shrinking_greedy(model, input_ids, attention_mask, max_new_tokens: int):
    """Greedy decoding that drops each sequence from the batch once it has emitted EOS.

    ``generate`` keeps every row in the batch until the last one finishes, so one sequence that
    never stops (an undertrained model repeating itself) makes all of them run to
    ``max_new_tokens``. Here finished rows leave the batch with their KV cache, encoder states
    and mask, so the remaining steps cost what the unfinished rows cost. The output has
    ``generate``'s layout: the decoder start token, the tokens, pad after EOS (a test checks
    the outputs are identical).
    """
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    from transformers.modeling_outputs import BaseModelOutput

    cfg = model.config
    start, pad = cfg.decoder_start_token_id, cfg.pad_token_id
    eos = model.generation_config.eos_token_id
    eos = torch.tensor(eos if isinstance(eos, list) else [eos], device=input_ids.device)
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    out = torch.full((input_ids.size(0), max_new_tokens + 1), pad, dtype=torch.long, device=input_ids.device)
    out[:, 0] = start
    alive = torch.arange(input_ids.size(0), device=input_ids.device)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    current = out[:, :1]
    mask = attention_mask
    length = 1
    for step in range(1, max_new_tokens + 1):
        step_out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=mask,
            decoder_input_ids=current,
            past_key_values=cache,
            use_cache=True,
        )
        cache = step_out.past_key_values
        nxt = step_out.logits[:, -1].argmax(-1)
        out[alive, step] = nxt
        length = step + 1
        running = ~torch.isin(nxt, eos)
        if not running.all():
            if not running.any():
                break
            keep = running.nonzero().squeeze(1)
            alive, nxt, hidden, mask = alive[keep], nxt[keep], hidden[keep], mask[keep]
            cache.batch_select_indices(keep)
        current = nxt[:, None]
    return out[:, :length]


def generate(
    model,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int,
    num_beams: int,
    max_new_tokens: int,
    max_source: int,
    desc: str = "generate",
    progress: bool = True,
) -> tuple[list[str], list[int]]:
    """Predictions and generated lengths (tokens, pad excluded) for ``texts``, in input order."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_source)["input_ids"]]
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: a too-big batch fails at once
    preds: list[str] = [""] * len(texts)
    gen_lens: list[int] = [0] * len(texts)
    model.eval()
    fast = shrinking_greedy_applies(model, num_beams)
    with torch.inference_mode():
        steps = range(0, len(order), batch_size)
        for start in tqdm(steps, desc=desc, unit="batch", disable=None if progress else True):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=max_source
            ).to(device)
            if fast:
                out = shrinking_greedy(model, batch["input_ids"], batch["attention_mask"], max_new_tokens)
            else:
                out = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False)
            out = out.cpu().numpy()
            texts_out = decode(tokenizer, out)
            for j, i in enumerate(idx):
                preds[i] = texts_out[j]
                gen_lens[i] = int(np.count_nonzero(out[j] != tokenizer.pad_token_id))
    return preds, gen_lens
