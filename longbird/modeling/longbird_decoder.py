"""BigBird as a decoder (transformers' `is_decoder` / `add_cross_attention`): causal dense
self-attention, cross-attention to an encoder's states, and the key/value cache that `generate()`
fills.

The decoder runs the same layers as the encoder's `original_full` path (`BigBirdLayer`,
`ALL_ATTENTION_FUNCTIONS`), with a causal mask; nothing here touches the block-sparse path.
`BigBirdModel.forward` hands a decoder's batch to `run_decoder`. The cache is transformers':
a `DynamicCache` for a decoder alone, an `EncoderDecoderCache` (self-attention + cross-attention
caches) when there are encoder states, filled as transformers' BERT fills it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

from .longbird_input_checks import check_inputs


def keys_values(
    attention: nn.Module, states: torch.Tensor, cache: Cache | None, cross: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, heads, m, d]` keys and values of a dense attention over `states`.

    Without a cache: just the projections. Self-attention appends them to the (self-attention)
    cache and returns every key so far. Cross-attention projects the encoder states once per
    generation and reads them back from the `EncoderDecoderCache` afterwards (with a plain
    `DynamicCache` it recomputes them: correct, only slower)."""
    layer_idx = attention.layer_idx
    if cross and isinstance(cache, EncoderDecoderCache) and cache.is_updated.get(layer_idx):
        stored = cache.cross_attention_cache.layers[layer_idx]
        return stored.keys, stored.values
    shape = (*states.shape[:2], attention.num_heads, attention.head_dim)
    key = attention.key(states).view(shape).transpose(1, 2)
    value = attention.value(states).view(shape).transpose(1, 2)
    if cache is None:
        return key, value
    if cross:
        if isinstance(cache, EncoderDecoderCache):
            key, value = cache.cross_attention_cache.update(key, value, layer_idx)
            cache.is_updated[layer_idx] = True
        return key, value
    own = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
    return own.update(key, value, layer_idx)


def reject_encoder_inputs(config, encoder_hidden_states, encoder_attention_mask, cache) -> None:
    """An encoder (`is_decoder=False`) refuses the decoder's inputs instead of ignoring them."""
    for name, value in (
        ("encoder_hidden_states", encoder_hidden_states),
        ("encoder_attention_mask", encoder_attention_mask),
        ("cache", cache),
    ):
        if value is not None:
            raise ValueError(
                f"`{name}` was given to an encoder (config.is_decoder=False). Decoding needs a model built with "
                "BigBirdConfig(is_decoder=True, attention_type='original_full'), plus add_cross_attention=True for "
                "encoder_hidden_states."
            )


def _check_decoder_inputs(
    model,
    input_ids,
    inputs_embeds,
    attention_mask,
    token_type_ids,
    position_ids,
    encoder_hidden_states,
    encoder_attention_mask,
    past: int,
    unsupported: dict,
):
    config = model.config
    for name, value in unsupported.items():
        if value is not None:
            raise ValueError(
                f"`{name}` is not available in a decoder (config.is_decoder=True): global tokens would see "
                "later tokens. Leave it out."
            )
    # the cache holds `past` tokens: the mask covers them too, the other inputs only the new ones
    batch, seq_len, device = check_inputs(config, input_ids, inputs_embeds, None, token_type_ids, position_ids, None)
    if position_ids is None and past + seq_len > config.max_position_embeddings:
        raise ValueError(
            f"{past} cached + {seq_len} new tokens exceed max_position_embeddings={config.max_position_embeddings}; "
            "generate fewer tokens (max_new_tokens) or shorten the prompt."
        )
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, past + seq_len):
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but must cover the {past} cached and "
            f"{seq_len} new tokens: ({batch}, {past + seq_len})."
        )
    if encoder_hidden_states is not None:
        if not config.add_cross_attention:
            raise ValueError(
                "`encoder_hidden_states` was given but the model has no cross-attention "
                "(config.add_cross_attention=False); build it with BigBirdConfig(is_decoder=True, "
                "add_cross_attention=True, attention_type='original_full')."
            )
        shape = tuple(encoder_hidden_states.shape)
        if len(shape) != 3 or shape[0] != batch or shape[2] != config.hidden_size:
            raise ValueError(
                f"`encoder_hidden_states` must have shape ({batch}, source_len, {config.hidden_size}), got {shape}."
            )
        if encoder_attention_mask is not None and tuple(encoder_attention_mask.shape) != shape[:2]:
            raise ValueError(
                f"`encoder_attention_mask` has shape {tuple(encoder_attention_mask.shape)} but the encoder states "
                f"are {shape[:2]}; pass the mask of the encoder's input."
            )
    elif encoder_attention_mask is not None:
        raise ValueError("`encoder_attention_mask` was given without `encoder_hidden_states`; pass both.")
    return batch, seq_len, device


def run_decoder(
    model: nn.Module,
    input_ids: torch.LongTensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.LongTensor | None,
    position_ids: torch.LongTensor | None,
    inputs_embeds: torch.Tensor | None,
    encoder_hidden_states: torch.Tensor | None,
    encoder_attention_mask: torch.Tensor | None,
    cache: Cache | None,
    use_cache: bool | None,
    output_attentions: bool,
    output_hidden_states: bool,
    unsupported: dict,
) -> BaseModelOutputWithPoolingAndCrossAttentions:
    """`BigBirdModel.forward` of a decoder, as transformers' BigBird runs it (`original_full`,
    causal). `unsupported`: encoder-only inputs, which must be None."""
    config = model.config
    use_cache = config.use_cache if use_cache is None else use_cache
    if use_cache and cache is None:
        cache = (
            EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
            if encoder_hidden_states is not None
            else DynamicCache(config=config)
        )
    past = cache.get_seq_length() if cache is not None else 0
    batch, seq_len, device = _check_decoder_inputs(
        model,
        input_ids,
        inputs_embeds,
        attention_mask,
        token_type_ids,
        position_ids,
        encoder_hidden_states,
        encoder_attention_mask,
        past,
        unsupported,
    )
    if attention_mask is None:
        attention_mask = torch.ones(batch, past + seq_len, dtype=torch.long, device=device)
    if token_type_ids is None:
        token_type_ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)

    hidden = model.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length=past)
    # eager (used for attention weights) has no is_causal flag: it needs the mask written out
    self_mask = create_causal_mask(
        config=config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        cache=cache,
        allow_is_causal_skip=not output_attentions,
    )
    cross_mask = None
    if encoder_attention_mask is not None:
        cross_mask = create_bidirectional_mask(
            config=config,
            inputs_embeds=hidden,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )

    all_hidden = (hidden,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    all_cross = () if output_attentions and encoder_hidden_states is not None else None
    for layer in model.encoder.layer:
        hidden, weights, *cross = layer(
            hidden,
            None,
            self_mask,
            output_attentions,
            encoder_hidden_states=encoder_hidden_states,
            encoder_mask=cross_mask,
            cache=cache,
        )
        if output_hidden_states:
            all_hidden += (hidden,)
        if output_attentions:
            all_attentions += (weights,)
            if all_cross is not None:
                all_cross += (cross[0],)

    pooled = model.activation(model.pooler(hidden[:, 0])) if model.pooler is not None else None
    return BaseModelOutputWithPoolingAndCrossAttentions(
        last_hidden_state=hidden,
        pooler_output=pooled,
        cache=cache,
        hidden_states=all_hidden,
        attentions=all_attentions,
        cross_attentions=all_cross,
    )
