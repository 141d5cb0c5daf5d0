"""ETC (Extended Transformer Construction, Ainslie et al. 2020) on longbird's attention core.

Read top to bottom: embeddings -> layers (ten projections, two fused softmaxes through the global-local executors,
relative-position logits) -> model -> task heads. The inputs become the graph (who attends to
whom) in `longbird_global_local_graph.prepare_inputs`; the executors are
`longbird_global_local_executors`. Numerics follow Google's TF `etcmodel`; its
released checkpoints convert with `longbird.conversion.convert_etc_tf_checkpoint`.

Two inputs travel side by side: the *long* input (tokens) and the *global* input (e.g. one token
per sentence). Long tokens attend to a local window and to every global token; global tokens
attend to every global token and to the long tokens (of their own sentence, with the hard g2l
mask). Memory is linear in the long length.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForMaskedLMLoss, fixed_cross_entropy
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput, can_return_tuple

from ..configuration.configuration_longbird_etc import EtcConfig
from .longbird_global_local_executors import RelativeLogits, etc_attention
from .longbird_global_local_graph import (
    example_ids,
    pack_global_local,
    prepare_inputs,
    sentences_as_examples,
    zeros_after_last_token,
)
from .longbird_input_checks import is_exporting, sequence_classification_loss, table_size, takes_inputs
from .longbird_layer_norm import LayerNorm
from .longbird_packing import flattened_batches
from .remote_code import RemoteCodeMixin

# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def activation(name: str) -> nn.Module:
    """transformers' activation by name; its tanh-GELU ("gelu_new", the reference's) as torch's
    fused kernel (`gelu_pytorch_tanh`: the same formula, ~1e-7 apart, as BigBird's layers use)."""
    return ACT2FN["gelu_pytorch_tanh" if name == "gelu_new" else name]


class EtcEmbeddings(nn.Module):
    """One token table (and one token-type table) for both inputs; a LayerNorm per input."""

    def __init__(self, config: EtcConfig):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.token_embeddings = nn.Embedding(config.vocab_size, width)
        # ALBERT-style factorisation: a projection after the lookup, shared by both inputs
        self.token_projection = nn.Linear(width, config.hidden_size) if width != config.hidden_size else None
        self.segment_embeddings = nn.Embedding(config.segment_vocab_size, config.hidden_size)
        self.has_positions = bool(config.max_absolute_position_embeddings)
        if self.has_positions:
            self.long_position_embeddings = nn.Embedding(config.max_absolute_position_embeddings, config.hidden_size)
            self.global_position_embeddings = nn.Embedding(config.max_absolute_position_embeddings, config.hidden_size)
        self.long_layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.global_layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        embeds = self.token_embeddings(ids)
        return embeds if self.token_projection is None else self.token_projection(embeds)

    def forward(self, ids, embeds, token_type_ids, position_ids, is_global: bool) -> torch.Tensor:
        """The long input's embeddings, or the global input's (`is_global`): the same token and
        token-type tables, each input its own position table and LayerNorm."""
        # `embeds` come from the token table (get_input_embeddings), so they get its projection too
        if embeds is None:
            hidden = self.tokens(ids)
        elif self.token_projection is not None:
            hidden = self.token_projection(embeds)
        else:
            hidden = embeds
        hidden = hidden + self.segment_embeddings(token_type_ids)
        if self.has_positions:
            positions = self.global_position_embeddings if is_global else self.long_position_embeddings
            if position_ids is None:
                position_ids = torch.arange(hidden.shape[1], device=hidden.device).expand(hidden.shape[:2])
            hidden = hidden + positions(position_ids)
        layer_norm = self.global_layer_norm if is_global else self.long_layer_norm
        return self.dropout(layer_norm(hidden))


#: the long input's per-token inputs: a flattened batch (`longbird_packing`) carries them flattened
LONG_TOKEN_INPUTS = ("input_ids", "inputs_embeds", "token_type_ids", "position_ids", "sentence_ids")

#: the ten projections of a layer: (name, the input it projects); queries, keys and values of four pieces
PROJECTIONS = (
    ("long_query", "long"),
    ("l2l_key", "long"),
    ("l2l_value", "long"),
    ("l2g_key", "global"),
    ("l2g_value", "global"),
    ("global_query", "global"),
    ("g2g_key", "global"),
    ("g2g_value", "global"),
    ("g2l_key", "long"),
    ("g2l_value", "long"),
)


def projection_owners(config: EtcConfig) -> dict[str, str]:
    """Which projection's weights each role uses under the sharing flags (a role owns its own
    weights unless shared)."""
    owners = {name: name for name, _ in PROJECTIONS}
    if config.share_qkv_projections:
        owners |= {"global_query": "long_query"}
        owners |= {name: "l2l_key" for name in ("l2g_key", "g2g_key", "g2l_key")}
        owners |= {name: "l2l_value" for name in ("l2g_value", "g2g_value", "g2l_value")}
    elif config.share_kv_projections:
        owners |= {"l2g_key": "l2l_key", "l2g_value": "l2l_value", "g2l_key": "g2g_key", "g2l_value": "g2g_value"}
    return owners


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """`[B, H, n, d] -> [B, n, H d]` as one explicit copy (flattening the transposed heads copies
    anyway; whether it could be a view depends on n being 1, which torch.export would fix)."""
    return x.transpose(1, 2).clone(memory_format=torch.contiguous_format).flatten(2)


class EtcAttention(nn.Module):
    """Fused global-local attention: long queries over [window of long keys; global keys], global
    queries over [global keys; long keys], each one softmax, with relative-position logits from a
    table per query side."""

    def __init__(self, config: EtcConfig):
        super().__init__()
        self.config = config
        self.num_heads, self.head_size = config.num_attention_heads, config.head_size
        inner = self.num_heads * self.head_size
        self.owners = projection_owners(config)
        for name in sorted(set(self.owners.values()), key=[n for n, _ in PROJECTIONS].index):
            self.add_module(name, nn.Linear(config.hidden_size, inner))
        self.long_output = nn.Linear(inner, config.hidden_size)
        self.global_output = None if config.share_att_output_projection else nn.Linear(inner, config.hidden_size)
        shape = (config.relative_vocab_size, self.num_heads)
        self.long_relative_embedding = nn.Parameter(torch.empty(*shape, self.head_size))
        self.long_relative_bias = nn.Parameter(torch.zeros(shape))
        self.global_relative_embedding = nn.Parameter(torch.empty(*shape, self.head_size))
        self.global_relative_bias = nn.Parameter(torch.zeros(shape))

    def forward(self, long: torch.Tensor, global_: torch.Tensor, graph, output_attentions: bool):
        inputs = {"long": long, "global": global_}
        projected = {}  # (owner, input) -> heads: shared projections of one input run once

        def heads(role: str) -> torch.Tensor:
            source = dict(PROJECTIONS)[role]
            memo = (self.owners[role], source)
            if memo not in projected:
                x = getattr(self, self.owners[role])(inputs[source])
                projected[memo] = x.view(*x.shape[:2], self.num_heads, self.head_size).transpose(1, 2)
            return projected[memo]

        long_out, global_out, long_weights, global_weights = etc_attention(
            heads,
            graph,
            self.head_size**-0.5,
            RelativeLogits(self.long_relative_embedding, self.long_relative_bias),
            RelativeLogits(self.global_relative_embedding, self.global_relative_bias),
            "dense" if output_attentions else self.config.attention_backend,
            self.config.attention_probs_dropout_prob,
            self.training,
            output_attentions,
        )
        global_output = self.global_output if self.global_output is not None else self.long_output
        long_out = self.long_output(merge_heads(long_out))
        global_out = global_output(merge_heads(global_out))
        return long_out, global_out, long_weights, global_weights


class EtcFeedForward(nn.Module):
    """Dense -> activation -> Dense as a residual block with its own LayerNorm."""

    def __init__(self, config: EtcConfig):
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.dense_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.use_pre_activation_order

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return hidden + self.dropout(self.dense_out(self.act(self.dense_in(self.layer_norm(hidden)))))
        return self.layer_norm(hidden + self.dropout(self.dense_out(self.act(self.dense_in(hidden)))))


class EtcLayer(GradientCheckpointingLayer):
    """Attention (two inputs, a LayerNorm each) then a feed-forward block per input (shared by
    default). Post-LN like BERT, or pre-LN with `use_pre_activation_order` (no final LayerNorm,
    as in the reference)."""

    def __init__(self, config: EtcConfig):
        super().__init__()
        self.attention = EtcAttention(config)
        self.long_attention_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.global_attention_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.use_pre_activation_order
        self.shared_feed_forward = config.share_feed_forward_params
        if self.shared_feed_forward:
            self.feed_forward = EtcFeedForward(config)
        else:
            self.long_feed_forward = EtcFeedForward(config)
            self.global_feed_forward = EtcFeedForward(config)

    def forward(self, long, global_, graph, output_attentions: bool = False):
        if self.pre_norm:
            long_att, global_att, *weights = self.attention(
                self.long_attention_norm(long), self.global_attention_norm(global_), graph, output_attentions
            )
            long, global_ = long + self.dropout(long_att), global_ + self.dropout(global_att)
        else:
            long_att, global_att, *weights = self.attention(long, global_, graph, output_attentions)
            long = self.long_attention_norm(long + self.dropout(long_att))
            global_ = self.global_attention_norm(global_ + self.dropout(global_att))
        if self.shared_feed_forward:
            return self.feed_forward(long), self.feed_forward(global_), *weights
        return self.long_feed_forward(long), self.global_feed_forward(global_), *weights


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass
class EtcModelOutput(ModelOutput):
    """Both sides' final states; per-layer states and attention weights on request.

    `attentions[i]`: `[B, heads, n_l, n_l + n_g]`, long queries over [long keys; global keys].
    `global_attentions[i]`: `[B, heads, n_g, n_g + n_l]`, global queries over [global; long].
    """

    last_hidden_state: torch.Tensor | None = None
    global_last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    global_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    global_attentions: tuple[torch.Tensor, ...] | None = None


class EtcPreTrainedModel(RemoteCodeMixin, PreTrainedModel):
    config: EtcConfig
    config_class = EtcConfig
    base_model_prefix = "etc"
    supports_gradient_checkpointing = True
    _no_split_modules = ["EtcLayer"]

    def _init_weights(self, module):
        # the reference: truncated normal (2 std) for kernels and tables, zero biases, and
        # relative key embeddings with std 0.5
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, EtcAttention):
            for embedding in (module.long_relative_embedding, module.global_relative_embedding):
                init.trunc_normal_(embedding, std=0.5, a=-1.0, b=1.0)
            init.zeros_(module.long_relative_bias)
            init.zeros_(module.global_relative_bias)
        elif isinstance(module, EtcLMHead):
            init.zeros_(module.bias)


class EtcModel(EtcPreTrainedModel):
    """The ETC encoder: `last_hidden_state [B, n_l, H]` (long) and `global_last_hidden_state
    [B, n_g, H]` (global). No pooler (the reference has none)."""

    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.embeddings = EtcEmbeddings(config)
        self.layers = nn.ModuleList([EtcLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.token_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.token_embeddings = value

    @can_return_tuple
    @flattened_batches(token_inputs=LONG_TOKEN_INPUTS)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        global_token_type_ids: torch.LongTensor | None = None,
        long_breakpoints: torch.Tensor | None = None,
        global_breakpoints: torch.Tensor | None = None,
        sentence_ids: torch.LongTensor | None = None,
        l2l_att_mask: torch.Tensor | None = None,
        g2g_att_mask: torch.Tensor | None = None,
        l2g_att_mask: torch.Tensor | None = None,
        g2l_att_mask: torch.Tensor | None = None,
        l2l_relative_att_ids: torch.LongTensor | None = None,
        g2g_relative_att_ids: torch.LongTensor | None = None,
        l2g_relative_att_ids: torch.LongTensor | None = None,
        g2l_relative_att_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        global_position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> EtcModelOutput | tuple:
        r"""
        global_input_ids (`torch.LongTensor` of shape `(batch_size, global_length)`, *optional*):
            The global input (e.g. one token per sentence, id `config.global_token_id`). Left out:
            one global token per `config.num_tokens_per_block` long tokens.
        long_breakpoints / global_breakpoints (`(batch_size, length)` 0/1, *optional*):
            A 1 at the last token of each packed example; examples never attend to each other.
            Left out: one example per row, its real tokens given by the attention masks.
        sentence_ids (`torch.LongTensor` of shape `(batch_size, long_length)`, *optional*):
            Each long token's global token (its index in the global input): the l2g/g2l relation
            ids and the hard g2l/l2g masks come from it. Required with `global_input_ids` unless
            the l2g/g2l pieces are passed explicitly.
        {l2l,g2g,l2g,g2l}_att_mask / {l2l,g2g,l2g,g2l}_relative_att_ids (*optional*):
            Flexible masking: any of the graph's pieces, as the reference defines them (l2l in
            window layout `[B, n_l, 2 * local_radius + 1]`); they replace the built ones.
        """
        # every input goes to prepare_inputs by name (the first statement: nothing else is local yet)
        given = {name: value for name, value in locals().items() if name != "self"}
        config = self.config
        output_attentions = given.pop("output_attentions")
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = given.pop("output_hidden_states")
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        inputs = prepare_inputs(config, vocab_size=table_size(self.embeddings.token_embeddings, config), **given)
        long = self.embeddings(inputs.input_ids, inputs_embeds, inputs.token_type_ids, position_ids, is_global=False)
        global_ = self.embeddings(  # the global input (is_global=True)
            inputs.global_input_ids, global_inputs_embeds, inputs.global_token_type_ids, global_position_ids, True
        )
        # padding-free (longbird_packing) unless weights are wanted or the caller gave graph pieces;
        # not under torch.export either: packing plans on the host (`.tolist()`), so an exported
        # graph runs the padded batch on the same graph (the outputs agree: padding is in no example)
        graph, (strip_long, strip_global) = inputs.graph, map(zeros_after_last_token, inputs.examples)
        unpacked = output_attentions or inputs.explicit_graph or is_exporting()
        packed = None if unpacked else pack_global_local(graph, *inputs.examples)
        if packed is not None:
            graph, long, global_ = packed, packed.long.pack(long), packed.global_.pack(global_)
            strip_long, strip_global = packed.long.strip, packed.global_.strip
        all_long = (strip_long(long),) if output_hidden_states else None
        all_global = (strip_global(global_),) if output_hidden_states else None
        long_attentions = () if output_attentions else None
        global_attentions = () if output_attentions else None
        for layer in self.layers:
            long, global_, long_weights, global_weights = layer(long, global_, graph, output_attentions)
            if output_hidden_states:
                all_long += (strip_long(long),)
                all_global += (strip_global(global_),)
            if output_attentions:
                long_attentions += (long_weights,)
                global_attentions += (global_weights,)
        return EtcModelOutput(
            last_hidden_state=strip_long(long),
            global_last_hidden_state=strip_global(global_),
            hidden_states=all_long,
            global_hidden_states=all_global,
            attentions=long_attentions,
            global_attentions=global_attentions,
        )


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------

#: the encoder's inputs, forwarded by every head as they are
ENCODER_INPUTS = tuple(p for p in inspect.signature(EtcModel.forward).parameters if p != "self")
#: their type hints, as the encoder's forward gives them
ENCODER_ANNOTATIONS = {
    name: p.annotation for name, p in inspect.signature(EtcModel.forward).parameters.items() if name != "self"
}


#: a head's `forward(self, inputs, <its own inputs>, **kwargs)` with the explicit signature of the
#: encoder's inputs plus its own (`longbird_input_checks.takes_inputs`), type hints included
takes_encoder_inputs = functools.partial(takes_inputs, ENCODER_INPUTS, annotations=ENCODER_ANNOTATIONS)


def _head_output(output_class, encoded: EtcModelOutput, **fields):
    return output_class(**fields, hidden_states=encoded.hidden_states, attentions=encoded.attentions)


class EtcLMHead(nn.Module):
    """BERT's MLM head over long tokens, decoder tied to the token table (through the embedding
    width when embeddings are factorised)."""

    def __init__(self, config: EtcConfig):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.act = activation(config.hidden_act)
        self.layer_norm = LayerNorm(width, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(width, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(hidden)))) + self.bias


class EtcForMaskedLM(EtcPreTrainedModel):
    _tied_weights_keys = {"lm_head.decoder.weight": "etc.embeddings.token_embeddings.weight"}

    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.etc = EtcModel(config)
        self.lm_head = EtcLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    @flattened_batches(("logits",), LONG_TOKEN_INPUTS, token_labels=True)
    @takes_encoder_inputs("labels")
    def forward(self, inputs: dict[str, Any], labels: torch.LongTensor | None = None, **kwargs) -> MaskedLMOutput:
        """`labels` `[B, n_l]`: token ids to predict, -100 where nothing is predicted."""
        encoded = self.etc(**inputs, return_dict=True)
        logits = self.lm_head(encoded.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return _head_output(MaskedLMOutput, encoded, loss=loss, logits=logits)


@dataclass
class EtcForPreTrainingOutput(ModelOutput):
    """`loss = (1 - w) * mlm_loss + w * cpc_loss` with `w = config.cpc_loss_weight`."""

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    cpc_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cpc_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class EtcForPreTraining(EtcPreTrainedModel):
    """Masked language modelling plus sentence-level contrastive predictive coding (CPC).

    CPC, as implemented here (the paper's pretraining code is not public; README documents the
    choices): some sentences have every long token masked while their global tokens stay. For each
    such sentence, the prediction is `cpc_head(global state of its global token)` in the masked
    document; the target is the global state of a global token that reads only that sentence,
    unmasked (every masked sentence is encoded alone, by the same encoder, in one packed extra
    pass; gradients flow through both sides). The loss is InfoNCE: cross-entropy of the cosine
    similarities / `config.cpc_temperature` between each prediction and all targets of the batch
    (the other masked sentences are the negatives).
    """

    _tied_weights_keys = {"lm_head.decoder.weight": "etc.embeddings.token_embeddings.weight"}
    #: the loss is a weighted mean of two means (MLM, CPC): Trainer scales it for gradient
    #: accumulation itself rather than passing `num_items_in_batch`
    accepts_loss_kwargs = False

    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.etc = EtcModel(config)
        self.lm_head = EtcLMHead(config)
        self.cpc_head = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            activation(config.hidden_act),
            nn.Linear(config.hidden_size, config.hidden_size),
        )
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    @takes_encoder_inputs("labels", "cpc_sentence_mask", "cpc_target_input_ids")
    def forward(
        self,
        inputs: dict[str, Any],
        labels: torch.LongTensor | None = None,
        cpc_sentence_mask: torch.Tensor | None = None,
        cpc_target_input_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> EtcForPreTrainingOutput:
        r"""
        labels (`[B, n_l]`): MLM targets, -100 where nothing is predicted.
        cpc_sentence_mask (`[B, n_g]` 0/1): global tokens whose sentences are masked for CPC.
        cpc_target_input_ids (`[B, n_l]`): the long input before masking (CPC targets read it).
        """
        encoded = self.etc(**inputs, return_dict=True)
        logits = self.lm_head(encoded.last_hidden_state)
        mlm_loss = None if labels is None else ForMaskedLMLoss(logits, labels, vocab_size=self.config.vocab_size)
        cpc_loss = cpc_logits = None
        if cpc_sentence_mask is not None:
            cpc_logits = self.cpc_logits(encoded, cpc_sentence_mask, cpc_target_input_ids, inputs)
            if cpc_logits is not None:
                cpc_loss = fixed_cross_entropy(cpc_logits, torch.arange(len(cpc_logits), device=cpc_logits.device))
        weight = self.config.cpc_loss_weight
        losses = [(1 - weight, mlm_loss), (weight, cpc_loss)]
        present = [(w, term) for w, term in losses if term is not None]
        loss = None
        if present:
            loss = (
                sum(w * term for w, term in present) / sum(w for w, _ in present) if len(present) > 1 else present[0][1]
            )
        return _head_output(
            EtcForPreTrainingOutput,
            encoded,
            loss=loss,
            mlm_loss=mlm_loss,
            cpc_loss=cpc_loss,
            logits=logits,
            cpc_logits=cpc_logits,
        )

    def cpc_logits(self, encoded, cpc_sentence_mask, target_ids, inputs) -> torch.Tensor | None:
        """`[N, N]` similarities of the N masked sentences' predictions (rows) and targets (columns)."""
        sentence_ids = inputs.get("sentence_ids")
        if target_ids is None or sentence_ids is None:
            raise ValueError(
                "CPC needs `cpc_target_input_ids` (the unmasked long input) and `sentence_ids`; "
                "EtcPretrainingCollator provides both."
            )
        real = inputs.get("attention_mask")
        real = torch.ones_like(target_ids, dtype=torch.bool) if real is None else real.bool()
        rows, globals_ = cpc_sentence_mask.bool().nonzero(as_tuple=True)
        sentences = [target_ids[b][(sentence_ids[b] == g) & real[b]] for b, g in zip(rows.tolist(), globals_.tolist())]
        keep = [i for i, s in enumerate(sentences) if len(s)]
        if len(keep) < 2:  # InfoNCE needs a negative
            return None
        sentences = [sentences[i] for i in keep]
        predictions = self.cpc_head(encoded.global_last_hidden_state[rows[keep], globals_[keep]])
        targets = self.etc(
            **sentences_as_examples(sentences, self.config.global_token_id), return_dict=True
        ).global_last_hidden_state[0]
        similarity = F.normalize(predictions, dim=-1) @ F.normalize(targets, dim=-1).t()
        return similarity / self.config.cpc_temperature


class EtcForSequenceClassification(EtcPreTrainedModel):
    """Single-label, multi-label or regression (by `config.problem_type`) from the first global
    token (the question or first sentence global; it reads every global token)."""

    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.etc = EtcModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @flattened_batches(token_inputs=LONG_TOKEN_INPUTS)
    @takes_encoder_inputs("labels")
    def forward(
        self, inputs: dict[str, Any], labels: torch.LongTensor | None = None, **kwargs
    ) -> SequenceClassifierOutput:
        encoded = self.etc(**inputs, return_dict=True)
        pooled = torch.tanh(self.dense(self.dropout(encoded.global_last_hidden_state[:, 0])))
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self, logits, labels, **kwargs)
        return _head_output(SequenceClassifierOutput, encoded, loss=loss, logits=logits)


class EtcForTokenClassification(EtcPreTrainedModel):
    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.etc = EtcModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @flattened_batches(("logits",), LONG_TOKEN_INPUTS, token_labels=True)
    @takes_encoder_inputs("labels")
    def forward(
        self, inputs: dict[str, Any], labels: torch.LongTensor | None = None, **kwargs
    ) -> TokenClassifierOutput:
        """`labels` `[B, n_l]`: one label per long token, -100 where ignored."""
        encoded = self.etc(**inputs, return_dict=True)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))
        loss = None if labels is None else self.loss_function(logits, labels, self.config, **kwargs)
        return _head_output(TokenClassifierOutput, encoded, loss=loss, logits=logits)


@dataclass
class EtcQuestionAnsweringOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    supporting_fact_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class EtcForQuestionAnswering(EtcPreTrainedModel):
    """Answer span over the long tokens, plus (HotpotQA style) a supporting-fact logit per global
    token. Padding positions can never be predicted."""

    def __init__(self, config: EtcConfig):
        super().__init__(config)
        self.etc = EtcModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.supporting_facts = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    @flattened_batches(("start_logits", "end_logits"), LONG_TOKEN_INPUTS)
    @takes_encoder_inputs("start_positions", "end_positions", "supporting_fact_labels")
    def forward(
        self,
        inputs: dict[str, Any],
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        supporting_fact_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> EtcQuestionAnsweringOutput:
        r"""
        start_positions / end_positions (`[B]`): the answer span in long-token positions;
            positions outside the input are ignored.
        supporting_fact_labels (`[B, n_g]`): 1/0 per global token, -100 where not a fact.
        """
        encoded = self.etc(**inputs, return_dict=True)
        logits = self.qa_outputs(encoded.last_hidden_state)
        attention_mask, breakpoints = inputs.get("attention_mask"), inputs.get("long_breakpoints")
        if attention_mask is not None or breakpoints is not None:
            mask = torch.ones_like(logits[..., 0], dtype=torch.long) if attention_mask is None else attention_mask
            real = example_ids(breakpoints, mask) > 0  # padding: after the last breakpoint or masked
            logits = logits.masked_fill(~real.unsqueeze(-1), torch.finfo(logits.dtype).min)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        fact_logits = self.supporting_facts(encoded.global_last_hidden_state).squeeze(-1)
        losses = []
        if start_positions is not None and end_positions is not None:
            start, end = start_positions.reshape(-1), end_positions.reshape(-1)
            losses.append(self.loss_function(start_logits, end_logits, start, end, **kwargs))
        if supporting_fact_labels is not None:
            labelled = supporting_fact_labels != -100
            if bool(labelled.any()):
                facts = supporting_fact_labels[labelled].to(fact_logits.dtype)
                losses.append(F.binary_cross_entropy_with_logits(fact_logits[labelled], facts))
        loss = sum(losses) / len(losses) if losses else None
        return _head_output(
            EtcQuestionAnsweringOutput,
            encoded,
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            supporting_fact_logits=fact_logits,
        )


__all__ = [
    "EtcModel",
    "EtcPreTrainedModel",
    "EtcForMaskedLM",
    "EtcForPreTraining",
    "EtcForSequenceClassification",
    "EtcForTokenClassification",
    "EtcForQuestionAnswering",
]
