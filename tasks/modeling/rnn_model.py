"""A small GRU/LSTM encoder-decoder with attention, as a transformers model.

It trains with ``Seq2SeqTrainer``, saves and loads with ``save_pretrained`` /
``AutoModelForSeq2SeqLM.from_pretrained`` (after ``register()``), and generates with greedy or
beam search, so it goes through the same train, evaluate and register path as T5 or BART.

Variable-length batches: the Trainer moves a batch to the device by walking it as nested
tuples, and a ``PackedSequence`` *is* a tuple, so a collator that returns one breaks there.
This model therefore takes ordinary padded ``input_ids`` + ``attention_mask`` and packs inside
``forward`` from the mask's lengths: the encoder never reads padding, and a sequence encodes to
the same state whatever it is batched with (a test holds this).

Self-contained on purpose: the registered MLflow model ships this file as code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoConfig, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput

MODEL_TYPE = "s2s_rnn"


class RnnSeq2SeqConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size=1000,
        embedding_size=128,
        hidden_size=256,
        num_layers=1,
        cell="gru",
        dropout=0.0,
        bidirectional=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.dropout = dropout
        self.bidirectional = bidirectional
        kwargs.setdefault("is_encoder_decoder", True)
        super().__init__(
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            **kwargs,
        )


class RnnSeq2SeqModel(PreTrainedModel):
    config_class = RnnSeq2SeqConfig
    base_model_prefix = "rnn"
    main_input_name = "input_ids"

    def __init__(self, config: RnnSeq2SeqConfig):
        super().__init__(config)
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        drop = config.dropout if config.num_layers > 1 else 0.0
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.encoder = rnn(
            config.embedding_size,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=drop,
        )
        enc_out = config.hidden_size * (2 if config.bidirectional else 1)
        self.bridge = nn.Linear(enc_out, config.hidden_size)  # encoder summary -> decoder initial state
        self.decoder = rnn(config.embedding_size, config.hidden_size, config.num_layers, batch_first=True, dropout=drop)
        self.attn_key = nn.Linear(enc_out, config.hidden_size, bias=False)
        self.attn_value = nn.Linear(enc_out, config.hidden_size, bias=False)
        self.combine = nn.Linear(2 * config.hidden_size, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.post_init()
        from transformers import GenerationConfig

        self.generation_config = GenerationConfig(
            decoder_start_token_id=config.decoder_start_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, value):
        self.embed = value

    def get_output_embeddings(self):
        return self.lm_head

    def get_encoder(self):
        return self.encoder

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None):
        """Encoder outputs (padding positions zero), their mask, and the decoder's initial state."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        lengths = attention_mask.sum(dim=1).clamp(min=1)
        emb = self.dropout(self.embed(input_ids))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.size(1))
        h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, batch, hidden)
        layers, dirs = self.config.num_layers, 2 if self.config.bidirectional else 1
        h = h.view(layers, dirs, h.size(1), h.size(2)).transpose(1, 2).reshape(layers, h.size(1), -1)
        h0 = torch.tanh(self.bridge(h)).contiguous()
        init = (h0, torch.zeros_like(h0)) if self.config.cell == "lstm" else h0
        return out, attention_mask, init

    # -- decoder ---------------------------------------------------------------------------
    def decode(self, decoder_input_ids, enc_out, enc_mask, state):
        """Logits for every decoder position (teacher forcing) and the final recurrent state."""
        dec, state = self.decoder(self.dropout(self.embed(decoder_input_ids)), state)
        keys, values = self.attn_key(enc_out), self.attn_value(enc_out)
        scores = torch.bmm(dec, keys.transpose(1, 2)) / keys.size(-1) ** 0.5
        scores = scores.masked_fill(enc_mask[:, None, :] == 0, torch.finfo(scores.dtype).min)
        context = torch.bmm(torch.softmax(scores, dim=-1), values)
        hidden = torch.tanh(self.combine(torch.cat([dec, context], dim=-1)))
        return self.lm_head(self.dropout(hidden)), state

    def prepare_decoder_input_ids_from_labels(self, labels):
        start = torch.full_like(labels[:, :1], self.config.decoder_start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, labels=None, **kwargs):
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("forward needs labels or decoder_input_ids")
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        enc_out, enc_mask, state = self.encode(input_ids, attention_mask)
        logits, _ = self.decode(decoder_input_ids, enc_out, enc_mask, state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100)
        return Seq2SeqLMOutput(loss=loss, logits=logits)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, max_new_tokens=64, num_beams=1, **kwargs):
        """Greedy (num_beams=1) or beam search. Returns ids starting with the decoder start token,
        padded after EOS, like transformers' ``generate`` for encoder-decoders."""
        enc_out, enc_mask, state = self.encode(input_ids, attention_mask)
        if num_beams > 1:
            return self._beam_search(enc_out, enc_mask, state, max_new_tokens, num_beams)
        cfg = self.config
        batch = input_ids.size(0)
        tokens = torch.full((batch, 1), cfg.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits, state = self.decode(tokens[:, -1:], enc_out, enc_mask, state)
            nxt = logits[:, -1].argmax(-1).masked_fill(done, cfg.pad_token_id)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == cfg.eos_token_id
            if done.all():
                break
        return tokens

    def _beam_search(self, enc_out, enc_mask, state, max_new_tokens, beams):
        cfg = self.config
        batch, device = enc_out.size(0), enc_out.device

        enc_out, enc_mask = enc_out.repeat_interleave(beams, dim=0), enc_mask.repeat_interleave(beams, dim=0)
        # recurrent state is (layers, batch, hidden): beams go on dim 1
        state = (
            tuple(s.repeat_interleave(beams, dim=1) for s in state)
            if isinstance(state, tuple)
            else state.repeat_interleave(beams, dim=1)
        )
        tokens = torch.full((batch * beams, 1), cfg.decoder_start_token_id, dtype=torch.long, device=device)
        scores = torch.zeros(batch, beams, device=device)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at first
        done = torch.zeros(batch * beams, dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            logits, state = self.decode(tokens[:, -1:], enc_out, enc_mask, state)
            logp = torch.log_softmax(logits[:, -1], dim=-1)
            # finished beams only extend with pad, at no cost
            logp[done] = float("-inf")
            logp[done, cfg.pad_token_id] = 0.0
            cand = (scores.view(-1, 1) + logp).view(batch, -1)
            top, idx = cand.topk(beams, dim=-1)
            origin = (idx // logp.size(-1)) + torch.arange(batch, device=device)[:, None] * beams
            origin = origin.view(-1)
            nxt = (idx % logp.size(-1)).view(-1)
            tokens = torch.cat([tokens[origin], nxt[:, None]], dim=1)
            state = tuple(s[:, origin] for s in state) if isinstance(state, tuple) else state[:, origin]
            done = done[origin] | (nxt == cfg.eos_token_id)
            scores = top
            if done.all():
                break
        best = scores.argmax(dim=-1) + torch.arange(batch, device=device) * beams
        return tokens[best]


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` know the ``s2s_rnn`` model type."""
    try:
        AutoConfig.register(MODEL_TYPE, RnnSeq2SeqConfig)
        AutoModelForSeq2SeqLM.register(RnnSeq2SeqConfig, RnnSeq2SeqModel)
    except ValueError:  # already registered in this process
        pass
