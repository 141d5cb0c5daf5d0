"""BigBird encoders on longbird's sparse-attention core.

Read top to bottom: embeddings -> layers (attention = projections + graph + executor) -> model
-> the language-model head; the task heads are in `modeling_longbird_bigbird_heads.py`. Module
and weight names are transformers' BigBird names, so its checkpoints load as they are. The graph
(who attends to whom) and the sequence layout it is built on come from `longbird_block_graph.py`;
how it is computed from `longbird_block_executors.py`; input checks from `longbird_input_checks.py`;
the decoder (`is_decoder`, cross-attention, cache) from `longbird_decoder.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    BaseModelOutputWithPoolingAndCrossAttentions,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.pytorch_utils import apply_chunking_to_forward
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from ..configuration.configuration_longbird_bigbird import BigBirdConfig
from .longbird_block_executors import run_attention, run_packed_attention
from .longbird_block_graph import BlockGraph, layer_graphs, make_layout, sparse_pattern, strip_attention, to_internal
from .longbird_decoder import keys_values, reject_encoder_inputs, run_decoder
from .longbird_input_checks import (
    ValueChecks,
    check_global_inputs,
    check_inputs,
    table_size,
)
from .longbird_layer_norm import LayerNorm
from .longbird_packing import PackedGraph, flattened_batches
from .remote_code import RemoteCodeMixin


def activation(name: str) -> nn.Module:
    """transformers' activation by name; its tanh-GELU ("gelu_new", BigBird's default) as torch's
    single fused kernel instead of seven elementwise ops (same formula, ~1e-7 apart; it was
    a quarter of a training step)."""
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return ACT2FN[name]


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class BigBirdEmbeddings(nn.Module):
    """Word + position + token type embeddings (BERT's), plus BigBird-ETC's extra global tokens."""

    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        if config.num_global_tokens > 0:
            self.global_token_embeddings = nn.Embedding(config.num_global_tokens, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.rescale = config.hidden_size**0.5 if config.rescale_embeddings else None
        self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False)

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds, past_length: int = 0) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if self.rescale is not None:
            inputs_embeds = inputs_embeds * self.rescale
        seq_len = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, past_length : past_length + seq_len]  # after a decoder's cache
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(self.dropout(embeddings))
        return embeddings

    def global_inputs(self, global_input_ids: torch.Tensor) -> torch.Tensor:
        """`[B, g, H]` embeddings of caller-given global tokens (e.g. one per sentence from
        `EtcFeaturizer`): word embeddings, no position, like the learned global tokens."""
        return self.LayerNorm(self.dropout(self.word_embeddings(global_input_ids)))

    def global_tokens(self, batch: int) -> torch.Tensor:
        """`[B, num_global_tokens, H]` embeddings of the extra global tokens (BigBird-ETC)."""
        weight = self.global_token_embeddings.weight
        return self.LayerNorm(self.dropout(weight)).unsqueeze(0).expand(batch, -1, -1)


class BigBirdSelfAttention(nn.Module):
    """q/k/v projections; the graph decides who attends to whom, an executor computes it. In a
    decoder (dense only): causal self-attention, or cross-attention to `encoder_hidden_states`."""

    def __init__(self, config: BigBirdConfig, layer_idx: int, cross: bool = False):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = config.is_decoder and not cross
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)

    def forward(
        self,
        hidden_states,
        graph: BlockGraph | PackedGraph | None,
        full_mask,
        output_attentions: bool,
        encoder_hidden_states=None,
        cache: Cache | None = None,
    ):
        b, n, _ = hidden_states.shape
        if isinstance(graph, PackedGraph):  # a padding-free row [1, T, H] (longbird_packing)
            q, k, v = (
                proj(hidden_states.squeeze(0)).view(n, self.num_heads, -1)
                for proj in (self.query, self.key, self.value)
            )
            dropout = self.dropout if self.training else 0.0
            out = run_packed_attention(q, k, v, graph, self.scaling, self.config.attention_backend, dropout)
            return out.unsqueeze(0), None
        shape = (b, n, self.num_heads, self.head_dim)
        if graph is None:  # original_full and decoders: dense attention through transformers' interface
            q = self.query(hidden_states).view(shape).transpose(1, 2)
            cross = encoder_hidden_states is not None
            k, v = keys_values(self, encoder_hidden_states if cross else hidden_states, cache, cross)
            impl = "eager" if output_attentions else self.config._attn_implementation
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention_forward)
            out, weights = attention(
                self,
                q,
                k,
                v,
                full_mask,
                dropout=self.dropout if self.training else 0.0,
                scaling=self.scaling,
                is_causal=self.is_causal and not cross,
            )
            return out.reshape(b, n, -1), weights
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        # Like the reference, the block-sparse path has no dropout on attention weights. q/k/v stay
        # [B, n, H, d]-strided views: SDPA's CPU kernel reads that layout without a copy.
        out, weights = run_attention(
            q, k, v, graph, self.scaling, backend=self.config.attention_backend, output_attentions=output_attentions
        )
        return out.transpose(1, 2).reshape(b, n, -1), weights


def eager_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Plain matmul-softmax-matmul; returns weights (used when attentions are requested)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # the mask made for SDPA
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:  # clamped: in fp16, finfo.min + a negative score is -inf, a masked row NaN
        scores = scores + attention_mask
        scores = scores.clamp_min(torch.finfo(scores.dtype).min)
    weights = nn.functional.dropout(torch.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class BigBirdSelfOutput(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BigBirdAttention(nn.Module):
    def __init__(self, config: BigBirdConfig, layer_idx: int, cross: bool = False):
        super().__init__()
        self.self = BigBirdSelfAttention(config, layer_idx, cross)
        self.output = BigBirdSelfOutput(config)

    def forward(self, hidden_states, graph, full_mask, output_attentions, encoder_hidden_states=None, cache=None):
        out, weights = self.self(hidden_states, graph, full_mask, output_attentions, encoder_hidden_states, cache)
        return self.output(out, hidden_states), weights


class BigBirdIntermediate(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class BigBirdOutput(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BigBirdLayer(GradientCheckpointingLayer):
    def __init__(self, config: BigBirdConfig, layer_idx: int):
        super().__init__()
        self.attention = BigBirdAttention(config, layer_idx)
        if config.add_cross_attention:  # a decoder's (config.check_decoder)
            self.crossattention = BigBirdAttention(config, layer_idx, cross=True)
        self.intermediate = BigBirdIntermediate(config)
        self.output = BigBirdOutput(config)
        self.chunk_size_feed_forward = config.chunk_size_feed_forward
        self.transformers_layout = config.decoder_layout == "transformers"

    def forward(
        self,
        hidden_states,
        graph=None,
        full_mask=None,
        output_attentions=False,
        encoder_hidden_states=None,
        encoder_mask=None,
        cache=None,
    ):
        """`(hidden_states, attention weights)`; with `encoder_hidden_states` (a decoder's
        cross-attention) the cross-attention weights come third."""
        if encoder_hidden_states is not None and self.transformers_layout:
            # transformers' BigBird: the first attention attends to the encoder states (uncached) too;
            # the cache still takes the decoder's keys, which count the tokens (positions) as usual
            attention_output, weights = self.attention(
                hidden_states, None, encoder_mask, output_attentions, encoder_hidden_states
            )
            if cache is not None:
                keys_values(self.attention.self, hidden_states, cache, cross=False)
        else:
            attention_output, weights = self.attention(hidden_states, graph, full_mask, output_attentions, cache=cache)
        if encoder_hidden_states is None:
            return self.feed_forward(attention_output), weights
        if self.transformers_layout:  # transformers' cross-attention drops the mask (padding is attended)
            encoder_mask = None
        attention_output, cross_weights = self.crossattention(
            attention_output, None, encoder_mask, output_attentions, encoder_hidden_states, cache
        )
        return self.feed_forward(attention_output), weights, cross_weights

    def feed_forward(self, attention_output):
        if self.chunk_size_feed_forward:  # the same per-token FFN, a chunk of tokens at a time (less memory)
            return apply_chunking_to_forward(self.feed_forward_chunk, self.chunk_size_feed_forward, 1, attention_output)
        return self.feed_forward_chunk(attention_output)

    def feed_forward_chunk(self, attention_output):
        return self.output(self.intermediate(attention_output), attention_output)


class BigBirdEncoder(nn.Module):
    """Only the layer list (no forward: `BigBirdModel` runs the layers), so weights are named
    `encoder.layer.N` as in transformers' BigBird."""

    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.layer = nn.ModuleList([BigBirdLayer(config, i) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass
class BigBirdModelOutput(BaseModelOutputWithPooling):
    """`BaseModelOutputWithPooling` plus the extra global tokens' states (BigBird-ETC).

    `hidden_states` cover the caller's tokens only (no global tokens, no block padding);
    `attentions` are `[B, heads, g + L, g + L]` over global tokens then tokens.
    """

    global_last_hidden_state: torch.Tensor | None = None


class BigBirdPreTrainedModel(RemoteCodeMixin, PreTrainedModel):
    config: BigBirdConfig
    config_class = BigBirdConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BigBirdLayer"]
    _supports_sdpa = True  # the original_full path dispatches through ALL_ATTENTION_FUNCTIONS

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, BigBirdLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, BigBirdEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class BigBirdModel(BigBirdPreTrainedModel):
    """The BigBird encoder: `last_hidden_state [B, L, H]` and a tanh pooler over the first token.

    With `config.is_decoder` a decoder, as transformers' BigBird: causal dense self-attention,
    cross-attention to `encoder_hidden_states` (`add_cross_attention`), a `cache` for generation
    (`longbird_decoder.run_decoder`)."""

    def __init__(self, config: BigBirdConfig, add_pooling_layer: bool = True):
        config.check_decoder()  # EncoderDecoderModel sets the decoder flags after the config was checked
        super().__init__(config)
        self.embeddings = BigBirdEmbeddings(config)
        self.encoder = BigBirdEncoder(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.activation = nn.Tanh() if add_pooling_layer else None
        self.sparse_pattern = sparse_pattern(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        **flattening,
    ) -> BigBirdModelOutput | BaseModelOutputWithPoolingAndCrossAttentions | tuple:
        r"""
        global_prefix_length (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Make the first `k` tokens of each example global (they see and are seen by every
            token), rounded up to whole blocks. The QA head uses it for the question.
        global_input_ids (`torch.LongTensor` of shape `(batch_size, g)`, *optional*):
            BigBird-ETC with a global input given per example (e.g. one token per sentence, as
            `EtcFeaturizer` makes): these tokens, instead of the learned ones, are put in front
            of the sequence; they see and are seen by every token. `global_attention_mask`
            marks padding among them.
        encoder_hidden_states, encoder_attention_mask, cache, use_cache:
            A decoder's (`config.is_decoder`), as in transformers' BigBird; `attention_mask` then
            covers the cached tokens too.
        flattening: an encoder's flattened batch (`cu_seq_lens_q`, ..., see `flattened_batches`).
        """
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if config.is_decoder:
            if flattening:
                raise TypeError(f"a decoder takes no flattened batch; got unexpected arguments {sorted(flattening)}.")
            encoder_only = {
                "global_prefix_length": global_prefix_length,
                "global_input_ids": global_input_ids,
                "global_attention_mask": global_attention_mask,
            }
            return run_decoder(
                self,
                input_ids,
                attention_mask,
                token_type_ids,
                position_ids,
                inputs_embeds,
                encoder_hidden_states,
                encoder_attention_mask,
                cache,
                use_cache,
                output_attentions,
                output_hidden_states,
                encoder_only,
            )
        reject_encoder_inputs(config, encoder_hidden_states, encoder_attention_mask, cache)
        return self.encode(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length,
            output_attentions,
            output_hidden_states,
            global_input_ids,
            global_attention_mask,
            **flattening,
        )

    @flattened_batches()
    def encode(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.LongTensor | None,
        position_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        global_prefix_length: torch.LongTensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        global_input_ids: torch.LongTensor | None,
        global_attention_mask: torch.Tensor | None,
    ) -> BigBirdModelOutput:
        """The encoder (block-sparse or original_full); also takes flattened batches."""
        config = self.config
        checks, vocab_size = ValueChecks(), table_size(self.embeddings.word_embeddings, config)
        batch, seq_len, device = check_inputs(
            config,
            input_ids,
            inputs_embeds,
            attention_mask,
            token_type_ids,
            position_ids,
            global_prefix_length,
            checks=checks,
            vocab_size=vocab_size,
        )
        if global_input_ids is not None:
            check_global_inputs(global_input_ids, global_attention_mask, batch, vocab_size, checks)
            if global_attention_mask is None:
                global_attention_mask = torch.ones_like(global_input_ids)
        elif global_attention_mask is not None:
            raise ValueError("`global_attention_mask` was given without `global_input_ids`; pass both.")
        if attention_mask is None:
            attention_mask = torch.ones(batch, seq_len, dtype=torch.long, device=device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)

        # settles the value checks: no embedding lookup before it
        layout = make_layout(
            config, attention_mask, global_prefix_length, global_attention_mask, checks, pack=not output_attentions
        )
        global_embeds = None
        if global_input_ids is not None:
            global_embeds = self.embeddings.global_inputs(global_input_ids)
        elif layout.num_global:
            global_embeds = self.embeddings.global_tokens(batch)
        if layout.packing is None:
            hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
            hidden = to_internal(hidden, layout, global_embeds)
        else:  # padding-free: only the real tokens are embedded
            packing = layout.packing
            ids, types, positions, embeds = packing.tokens(input_ids, token_type_ids, position_ids, inputs_embeds)
            positions = packing.positions() if positions is None else positions
            hidden = packing.assemble(self.embeddings(ids, types, positions, embeds), global_embeds)
        graphs, full_mask = layer_graphs(config, self.sparse_pattern, layout, hidden)

        all_hidden = (layout.strip(hidden),) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer, graph in zip(self.encoder.layer, graphs):
            hidden, weights = layer(hidden, graph, full_mask, output_attentions)
            if output_hidden_states:
                all_hidden += (layout.strip(hidden),)
            if output_attentions:
                all_attentions += (strip_attention(weights, layout),)

        sequence_output = layout.strip(hidden)
        global_output = layout.global_states(hidden)
        pooled = None
        if self.pooler is not None:
            first = global_output[:, 0] if global_output is not None else sequence_output[:, 0]
            pooled = self.activation(self.pooler(first))
        output = BigBirdModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_attentions,
            global_last_hidden_state=global_output,
        )
        return output


# The language-model head: masked LM, pre-training and causal LM heads share it, and
# `_init_weights` above resets its bias.


class BigBirdPredictionHeadTransform(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BigBirdLMPredictionHead(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.transform = BigBirdPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BigBirdOnlyMLMHead(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.predictions = BigBirdLMPredictionHead(config)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)
