"""BigBird-Pegasus as two graphs, in optimum's seq2seq layout, and a greedy loop over them in ONNX Runtime.

* `encoder_model`: `input_ids`, `attention_mask` -> `last_hidden_state`, plus every decoder layer's
  cross-attention keys / values (`present.{i}.encoder.key/value`). They depend on the encoder output
  only, so computing them once here keeps the per-token decoder graph free of the encoder-length
  projections, and there is no need for a separate first-step decoder graph.
* `decoder_model`: one decoder step with its cache. `input_ids` (the new tokens), `encoder_attention_mask`,
  the cross-attention keys / values (`past_key_values.{i}.encoder.key/value`, from the encoder graph)
  and the self-attention cache `past_key_values.{i}.decoder.key/value` (past length >= 0: the first
  step passes an empty cache) -> `logits` and `present.{i}.decoder.key/value` (past + new tokens).

The decoder step is written on plain tensors with the decoder's own modules (weights, LayerNorms,
projections): transformers' decoder builds a `Cache` and its masks with Python-side bookkeeping that
`torch.export` does not need here, and the step is a dozen lines. Its outputs equal transformers'
decoder with an `EncoderDecoderCache` (tests/test_export_pegasus.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .graphs import ExportGraph, check_exportable

BATCH, ENCODER_LEN, DECODER_LEN, PAST_LEN = (
    "batch_size",
    "encoder_sequence_length",
    "decoder_sequence_length",
    "past_decoder_sequence_length",
)


def _heads(states: torch.Tensor, attention: nn.Module, projection: nn.Linear) -> torch.Tensor:
    """`[B, n, d_model]` -> `[B, heads, n, head_dim]` through `projection`."""
    batch, length, _ = states.shape
    return projection(states).view(batch, length, attention.num_heads, attention.head_dim).transpose(1, 2)


def _attend(attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor):
    """Dense attention with an additive `bias`, then the output projection. Written with `bmm` on
    `[batch * heads, ...]` and the heads joined by `cat`: `torch.matmul` on 4-D tensors, SDPA, and a
    reshape of the transposed heads each leave a guard in the exported program that refuses a query
    length of 1, the length of every step after the first."""
    batch, heads, length, head_dim = query.shape
    flat_key, flat_value = key.reshape(batch * heads, -1, head_dim), value.reshape(batch * heads, -1, head_dim)
    scores = torch.bmm(query.reshape(batch * heads, length, head_dim), flat_key.transpose(1, 2))
    scores = scores.view(batch, heads, length, -1) * attention.scaling + bias
    context = torch.bmm(torch.softmax(scores, dim=-1).view(batch * heads, length, -1), flat_value)
    context = context.view(batch, heads, length, head_dim)
    return attention.out_proj(torch.cat(context.unbind(1), dim=-1))


def _layer_names(num_layers: int, prefix: str, part: str) -> list[str]:
    return [f"{prefix}.{i}.{part}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


class PegasusEncoderGraph(nn.Module):
    """The encoder, and each decoder layer's cross-attention keys / values of its output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder = model.get_encoder()
        self.decoder_layers = model.get_decoder().layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_attentions=False, output_hidden_states=False
        ).last_hidden_state
        outputs = [hidden]
        for layer in self.decoder_layers:
            attention = layer.encoder_attn
            outputs += [_heads(hidden, attention, attention.k_proj), _heads(hidden, attention, attention.v_proj)]
        return tuple(outputs)


class PegasusDecoderStep(nn.Module):
    """One decoder step: new tokens + caches -> logits + the self-attention cache grown by the new tokens.

    Inputs: `input_ids`, `encoder_attention_mask`, then per layer the self-attention key, value
    (`[B, heads, past, head_dim]`) and the cross-attention key, value (`[B, heads, encoder_len, head_dim]`).
    One `*inputs` argument: the number of inputs follows the number of layers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.get_decoder()
        self.lm_head = model.lm_head
        self.final_logits_bias = model.final_logits_bias

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        input_ids, encoder_attention_mask, *caches = inputs
        decoder = self.decoder
        past, new = caches[0].shape[2], input_ids.shape[1]
        positions = torch.arange(new, device=input_ids.device) + past
        hidden = decoder.embed_tokens(input_ids) + decoder.embed_positions(input_ids.shape, position_ids=positions)
        lowest = torch.finfo(hidden.dtype).min
        # causal over past + new keys: new token i sits at position past + i
        keys_at = torch.arange(past + new, device=input_ids.device)
        self_bias = torch.where(keys_at[None, :] <= positions[:, None], 0.0, lowest).to(hidden.dtype)[None, None]
        cross_bias = ((1.0 - encoder_attention_mask[:, None, None, :].to(hidden.dtype)) * lowest).to(hidden.dtype)

        presents = []
        for i, layer in enumerate(decoder.layers):
            past_key, past_value, cross_key, cross_value = caches[4 * i : 4 * i + 4]
            attention, states = layer.self_attn, layer.self_attn_layer_norm(hidden)
            key = torch.cat([past_key, _heads(states, attention, attention.k_proj)], dim=2)
            value = torch.cat([past_value, _heads(states, attention, attention.v_proj)], dim=2)
            presents += [key, value]
            hidden = hidden + _attend(attention, _heads(states, attention, attention.q_proj), key, value, self_bias)

            attention, states = layer.encoder_attn, layer.encoder_attn_layer_norm(hidden)
            query = _heads(states, attention, attention.q_proj)
            hidden = hidden + _attend(attention, query, cross_key, cross_value, cross_bias)

            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        logits = self.lm_head(decoder.layernorm_embedding(hidden)) + self.final_logits_bias
        return (logits, *presents)


def check_seq2seq_exportable(config) -> None:
    """Clear errors for configs the two graphs do not cover (and those no graph does)."""
    check_exportable(config)
    if getattr(config, "encoder_type", "bigbird") != "bigbird":
        raise ValueError(
            f"config.encoder_type={config.encoder_type!r}: only the BigBird encoder (encoder_type='bigbird') "
            "is exported; the ETC encoder's structure inputs have no graph layout yet."
        )


def pegasus_graphs(model: nn.Module, encoder_length: int | None = None) -> list[ExportGraph]:
    """`encoder_model` and `decoder_model` of a `BigBirdPegasusForConditionalGeneration` (module docstring).

    `encoder_length`: the source length to trace with (default: long enough for the block-sparse pattern,
    so that is the path traced; both graphs then take any length up to `max_position_embeddings`)."""
    if not (hasattr(model, "lm_head") and hasattr(model, "get_encoder") and hasattr(model, "final_logits_bias")):
        raise ValueError(
            f"{type(model).__name__} does not export as encoder + decoder graphs; "
            "load the checkpoint as BigBirdPegasusForConditionalGeneration."
        )
    config = model.config
    check_seq2seq_exportable(config)
    num_layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads
    encoder_length = encoder_length or min(config.max_position_embeddings, 16 * config.block_size)
    batch, new, past = 2, 2, 3  # >= 2 each: torch.export specialises sizes 0 and 1
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    input_ids = torch.full((batch, encoder_length), 5, dtype=torch.long, device=device)
    attention_mask = torch.ones(batch, encoder_length, dtype=torch.long, device=device)
    attention_mask[1, -5:] = 0

    cross_names = _layer_names(num_layers, "present", "encoder")
    encoder = ExportGraph(
        name="encoder_model",
        module=PegasusEncoderGraph(model),
        inputs={"input_ids": input_ids, "attention_mask": attention_mask},
        dynamic_axes={"input_ids": {0: BATCH, 1: ENCODER_LEN}, "attention_mask": {0: BATCH, 1: ENCODER_LEN}},
        output_names=["last_hidden_state", *cross_names],
        dim_ranges={ENCODER_LEN: (1, config.max_position_embeddings)},
    )

    def cache(length: int) -> torch.Tensor:
        return torch.randn(batch, heads, length, head_dim, dtype=dtype, device=device)

    inputs = {
        "input_ids": torch.full((batch, new), 5, dtype=torch.long, device=device),
        "encoder_attention_mask": attention_mask,
    }
    axes = {"input_ids": {0: BATCH, 1: DECODER_LEN}, "encoder_attention_mask": {0: BATCH, 1: ENCODER_LEN}}
    for i in range(num_layers):
        for part, length, dim in (("decoder", past, PAST_LEN), ("encoder", encoder_length, ENCODER_LEN)):
            for kind in ("key", "value"):
                name = f"past_key_values.{i}.{part}.{kind}"
                inputs[name], axes[name] = cache(length), {0: BATCH, 2: dim}
    decoder = ExportGraph(
        name="decoder_model",
        module=PegasusDecoderStep(model),
        inputs=inputs,
        dynamic_axes=axes,
        output_names=["logits", *_layer_names(num_layers, "present", "decoder")],
        # an empty self-attention cache (past 0) is the first step
        dim_ranges={ENCODER_LEN: (1, config.max_position_embeddings), PAST_LEN: (0, None)},
    )
    return [encoder, decoder]


# --------------------------------------------------------------------------------------------
# Greedy generation in ONNX Runtime
# --------------------------------------------------------------------------------------------

#: generation settings whose logits processors `greedy_generate` does not apply: refused, not ignored
UNSUPPORTED_GENERATION = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "min_new_tokens": None,
}


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, Sequence) else [int(value)]


def greedy_generate(
    encoder_session,
    decoder_session,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    max_new_tokens: int,
    config,
) -> np.ndarray:
    """Greedy ids from the two graphs, as `model.generate(do_sample=False, num_beams=1,
    max_new_tokens=...)` gives them: `[batch, 1 + generated]`, starting with the decoder start token,
    finished rows padded with `pad_token_id`, stopping early once every row has produced EOS.

    `config`: the model's `generation_config` (or its config): `decoder_start_token_id`, `eos_token_id`,
    `pad_token_id`, and `min_length`, `forced_bos_token_id`, `forced_eos_token_id` where set."""
    for name, neutral in UNSUPPORTED_GENERATION.items():
        if getattr(config, name, neutral) not in (neutral, None):
            raise ValueError(f"{name}={getattr(config, name)!r} is not applied by greedy_generate; unset it.")
    start = config.decoder_start_token_id
    if start is None:
        raise ValueError("decoder_start_token_id is None; set it in the (generation) config.")
    eos = _ids(config.eos_token_id)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
    min_length = getattr(config, "min_length", 0) or 0
    forced_bos, forced_eos = (
        getattr(config, "forced_bos_token_id", None),
        _ids(getattr(config, "forced_eos_token_id", None)),
    )
    max_length = 1 + max_new_tokens

    input_ids, attention_mask = np.asarray(input_ids, dtype=np.int64), np.asarray(attention_mask, dtype=np.int64)
    encoded = encoder_session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
    feeds = {"encoder_attention_mask": attention_mask}
    for output, value in zip(encoder_session.get_outputs(), encoded):
        if output.name.startswith("present."):  # cross-attention keys / values, fixed for every step
            feeds[output.name.replace("present.", "past_key_values.", 1)] = value
    batch, heads, _, head_dim = value.shape
    for model_input in decoder_session.get_inputs():  # the first step's self-attention cache is empty
        if model_input.name.endswith((".decoder.key", ".decoder.value")):
            feeds[model_input.name] = np.zeros((batch, heads, 0, head_dim), dtype=value.dtype)
    present_names = [output.name for output in decoder_session.get_outputs()][1:]

    tokens = np.full((batch, 1), start, dtype=np.int64)
    unfinished = np.ones(batch, dtype=bool)
    while tokens.shape[1] < max_length and unfinished.any():
        logits, *presents = decoder_session.run(None, {**feeds, "input_ids": tokens[:, -1:]})
        scores = logits[:, -1, :].astype(np.float32)
        length = tokens.shape[1]
        # the logits processors generate() adds for these settings, in its order
        if length < min_length and eos:
            scores[:, eos] = -np.inf
        if forced_bos is not None and length == 1:
            scores[:] = -np.inf
            scores[:, forced_bos] = 0
        if forced_eos and length == max_length - 1:
            scores[:] = -np.inf
            scores[:, forced_eos] = 0
        next_tokens = np.where(unfinished, scores.argmax(-1), pad)
        tokens = np.concatenate([tokens, next_tokens[:, None]], axis=1)
        unfinished &= ~np.isin(next_tokens, eos)
        for name, present in zip(present_names, presents):
            feeds[name.replace("present.", "past_key_values.", 1)] = present
    return tokens
