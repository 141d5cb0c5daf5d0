"""BigBird-Pegasus: longbird's sparse encoder under transformers' Pegasus-style decoder.

The encoder is BigBird's attention (`BigBirdSelfAttention` over the block-sparse core: layout
and graphs from `longbird_block_graph`, executors from `longbird_block_executors`) in Pegasus'
pre-LayerNorm layers, with transformers' module and weight names, so folders written
by `transformers.BigBirdPegasus*.save_pretrained` load as they are. The decoder (causal
self-attention + cross-attention through transformers' attention interface, SDPA by default,
with an `EncoderDecoderCache`), the heads and `generate()` are transformers' own: we only build
the models with our encoder in place of theirs. `encoder_type="etc"` puts an ETC encoder
(sentence-level global tokens) under the same decoder. The encoders are `PreTrainedModel`s, as
transformers' is (`get_encoder()` saves and loads alone); `BigBirdPegasusForCausalLM` is
transformers' decoder-only class on our config (it has no encoder).
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.bigbird_pegasus import modeling_bigbird_pegasus as reference

from ..configuration.configuration_longbird_bigbird_pegasus import BigBirdPegasusConfig
from ..configuration.configuration_longbird_etc import EtcConfig
from ..tokenization.etc_inputs import ETC_STRUCTURE_INPUTS
from .longbird_block_graph import layer_graphs, make_layout, sparse_pattern, strip_attention, to_internal
from .longbird_input_checks import ValueChecks, check_inputs, table_size
from .modeling_longbird_bigbird import BigBirdSelfAttention, activation
from .modeling_longbird_etc import EtcModel
from .remote_code import RemoteCodeMixin


class BigBirdPegasusPreTrainedModel(RemoteCodeMixin, reference.BigBirdPegasusPreTrainedModel):
    config: BigBirdPegasusConfig
    config_class = BigBirdPegasusConfig
    #: transformers' heads (whose forward we run) take `**kwargs` but compute a mean loss that ignores
    #: `num_items_in_batch`: Trainer must divide by the accumulation steps itself, or
    #: --gradient_accumulation_steps k would scale the loss k-fold
    accepts_loss_kwargs = False


# --------------------------------------------------------------------------------------------
# Encoder on the sparse core
# --------------------------------------------------------------------------------------------


class BigBirdPegasusEncoderAttention(nn.Module):
    """`self` (q/k/v + graph + executor, BigBird's) and the output projection."""

    def __init__(self, config: BigBirdPegasusConfig, layer_idx: int):
        super().__init__()
        self.self = BigBirdSelfAttention(config, layer_idx)
        self.output = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states, graph, full_mask, output_attentions):
        out, weights = self.self(hidden_states, graph, full_mask, output_attentions)
        return self.output(out), weights


class BigBirdPegasusEncoderLayer(GradientCheckpointingLayer):
    """Pre-LayerNorm: x + attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: BigBirdPegasusConfig, layer_idx: int):
        super().__init__()
        self.self_attn = BigBirdPegasusEncoderAttention(config, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.activation_fn = activation(config.activation_function)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, graph=None, full_mask=None, output_attentions=False):
        attended, weights = self.self_attn(
            self.self_attn_layer_norm(hidden_states), graph, full_mask, output_attentions
        )
        hidden_states = hidden_states + self.dropout(attended)
        ffn = self.fc2(self.activation_fn(self.fc1(self.final_layer_norm(hidden_states))))
        return hidden_states + self.dropout(ffn), weights


def check_encoder_type(encoder: nn.Module, config: BigBirdPegasusConfig, encoder_type: str) -> None:
    if config.encoder_type != encoder_type:
        right = "EtcPegasusEncoder" if config.encoder_type == "etc" else "BigBirdPegasusEncoder"
        raise ValueError(
            f"{type(encoder).__name__} needs config.encoder_type={encoder_type!r}, got {config.encoder_type!r}; "
            f"use {right} (or model.get_encoder(), which has the right class)."
        )


class PegasusEncoderPreTrainedModel(BigBirdPegasusPreTrainedModel):
    """An encoder that is a model of its own (`get_encoder().save_pretrained`, `from_pretrained`).
    Built inside a full model (`init_now=False`), it leaves its weights to the full model's
    `post_init`, which initialises them in module order: the same seed gives the same weights as
    when the encoder was a plain module."""

    def init_weights(self):
        if self._init_now:
            super().init_weights()
        else:
            self.tie_weights(recompute_mapping=False)


class BigBirdPegasusEncoder(PegasusEncoderPreTrainedModel):
    """Scaled token embeddings + learned positions -> pre-LN sparse layers -> final LayerNorm
    (named `layernorm_embedding`, as in transformers). A `PreTrainedModel` like transformers'
    encoder: `get_encoder()` saves and loads on its own (`save_pretrained` / `from_pretrained`)."""

    def __init__(self, config: BigBirdPegasusConfig, init_now: bool = True):
        super().__init__(config)
        check_encoder_type(self, config, "bigbird")
        self._init_now = init_now
        scale = config.d_model**0.5 if config.scale_embedding else 1.0
        self.embed_tokens = reference.BigBirdPegasusScaledWordEmbedding(
            config.vocab_size, config.d_model, config.pad_token_id, embed_scale=scale
        )
        self.embed_positions = reference.BigBirdPegasusLearnedPositionalEmbedding(
            config.max_position_embeddings, config.d_model
        )
        self.layers = nn.ModuleList([BigBirdPegasusEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        if config.num_global_tokens:  # BigBird-ETC: extra learned global tokens in front
            self.global_token_embeddings = nn.Embedding(config.num_global_tokens, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.sparse_pattern = sparse_pattern(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        checks = ValueChecks()
        batch, seq_len, device = check_inputs(
            config,
            input_ids,
            inputs_embeds,
            attention_mask,
            None,
            None,
            None,
            checks=checks,
            vocab_size=table_size(self.embed_tokens, config),
        )
        if attention_mask is None:
            attention_mask = torch.ones(batch, seq_len, dtype=torch.long, device=device)
        # settles the checks: before any lookup
        layout = make_layout(config, attention_mask, None, checks=checks, pack=not output_attentions)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        hidden = self.dropout(inputs_embeds + self.embed_positions((batch, seq_len)).to(inputs_embeds.dtype))

        global_embeds = None
        if config.num_global_tokens:
            global_embeds = self.dropout(self.global_token_embeddings.weight).unsqueeze(0).expand(batch, -1, -1)
        hidden = to_internal(hidden, layout, global_embeds)
        graphs, full_mask = layer_graphs(config, self.sparse_pattern, layout, hidden)
        all_hidden = (layout.strip(hidden),) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer, graph in zip(self.layers, graphs):
            # LayerDrop in training, drawn as transformers draws it (one torch.rand per layer)
            if self.training and config.encoder_layerdrop > 0 and torch.rand([]) < config.encoder_layerdrop:
                continue
            hidden, weights = layer(hidden, graph, full_mask, bool(output_attentions))
            if output_hidden_states:
                all_hidden += (layout.strip(hidden),)
            if output_attentions:
                all_attentions += (strip_attention(weights, layout),)
        hidden = self.layernorm_embedding(layout.strip(hidden))
        if output_hidden_states:  # like transformers: the last entry is the final (normalised) output
            all_hidden = all_hidden[:-1] + (hidden,)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=all_hidden, attentions=all_attentions)


class EtcPegasusEncoder(PegasusEncoderPreTrainedModel):
    """An ETC encoder for the Pegasus decoder: the decoder reads the long tokens' final states,
    which have read the sentence-level global tokens (fixed blocks when no global input is
    given). Shares the token table with the decoder (`embed_tokens`). A `PreTrainedModel`, so
    `get_encoder()` saves and loads on its own."""

    def __init__(self, config: BigBirdPegasusConfig, init_now: bool = True):
        super().__init__(config)
        check_encoder_type(self, config, "etc")
        self._init_now = init_now
        etc_fields = dict(config.etc_config or {})
        self.etc = EtcModel(
            EtcConfig(
                **{
                    "vocab_size": config.vocab_size,
                    "hidden_size": config.d_model,
                    "num_hidden_layers": config.encoder_layers,
                    "num_attention_heads": config.encoder_attention_heads,
                    "intermediate_size": config.encoder_ffn_dim,
                    "hidden_dropout_prob": config.dropout,
                    "attention_probs_dropout_prob": config.attention_dropout,
                    "hidden_act": config.activation_function,
                    "initializer_range": config.init_std,
                    "pad_token_id": config.pad_token_id,
                    **etc_fields,
                }
            )
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    @property
    def embed_tokens(self) -> nn.Embedding:
        """The token table (tied to the decoder's); one module, reachable under ETC's own name."""
        return self.etc.embeddings.token_embeddings

    def __setattr__(self, name, value):
        # nn.Module.__setattr__ would register a second module "embed_tokens" beside ETC's (the
        # property above still returning the old one). ETC keeps its own, unscaled lookup and takes
        # the given table's weight (tied), as the decoder's scaled table is shared by weight.
        if name == "embed_tokens":
            table = self.etc.embeddings.token_embeddings
            table.weight = value.weight
            table.num_embeddings = value.num_embeddings
        else:
            super().__setattr__(name, value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        global_token_type_ids: torch.LongTensor | None = None,
        long_breakpoints: torch.Tensor | None = None,
        global_breakpoints: torch.Tensor | None = None,
        sentence_ids: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        out = self.etc(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            token_type_ids=token_type_ids,
            global_input_ids=global_input_ids,
            global_attention_mask=global_attention_mask,
            global_token_type_ids=global_token_type_ids,
            long_breakpoints=long_breakpoints,
            global_breakpoints=global_breakpoints,
            sentence_ids=sentence_ids,
            # the Pegasus config's flags, not the inner EtcConfig's
            output_attentions=self.config.output_attentions if output_attentions is None else output_attentions,
            output_hidden_states=self.config.output_hidden_states
            if output_hidden_states is None
            else output_hidden_states,
        )
        return BaseModelOutput(
            last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states, attentions=out.attentions
        )


#: structure inputs an ETC encoder takes beside input_ids/attention_mask (named once, in etc_inputs)
ETC_ENCODER_INPUTS = ETC_STRUCTURE_INPUTS


def build_encoder(config: BigBirdPegasusConfig) -> nn.Module:
    encoder = EtcPegasusEncoder if config.encoder_type == "etc" else BigBirdPegasusEncoder
    return encoder(config, init_now=False)  # the model's post_init initialises it


# --------------------------------------------------------------------------------------------
# Models: transformers' classes, built with our encoder
# --------------------------------------------------------------------------------------------


def check_decoder_inputs(config: BigBirdPegasusConfig, inputs: dict) -> None:
    """Clear errors for decoder-side input that would fail deep inside transformers."""
    labels, decoder_input_ids = inputs.get("labels"), inputs.get("decoder_input_ids")
    if labels is not None and decoder_input_ids is None and inputs.get("decoder_inputs_embeds") is None:
        for field in ("decoder_start_token_id", "pad_token_id"):
            if getattr(config, field) is None:
                raise ValueError(
                    f"config.{field} is None, but `labels` are shifted right into `decoder_input_ids` with it; "
                    f"set config.{field} (Pegasus uses the pad token id, 0) or pass decoder_input_ids."
                )
    for name in ("labels", "decoder_input_ids"):
        value = inputs.get(name)
        if value is not None and value.shape[-1] > config.max_position_embeddings:
            raise ValueError(
                f"`{name}` has {value.shape[-1]} positions but the decoder has {config.max_position_embeddings} "
                f"(config.max_position_embeddings); truncate the targets (e.g. max_target_length) to at most that."
            )


def _checked(forward):
    """transformers' forward, plus: `check_decoder_inputs`, and the ETC encoder's structure inputs
    (`global_input_ids`, `sentence_ids`, ...), which run the encoder first. The signature lists
    them (Trainer keeps only dataset columns named there; `generate()` reads it too)."""
    signature = inspect.signature(forward)
    params = list(signature.parameters.values())
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in ETC_ENCODER_INPUTS]
    published = signature.replace(parameters=params[:-1] + extra + params[-1:])

    @functools.wraps(forward)
    def checked_forward(self, *args, **kwargs):
        if self.config.encoder_type != "etc":
            # tokenizers often return token_type_ids; Pegasus has no token types, so they mean nothing
            kwargs.pop("token_type_ids", None)
        structure = {name: kwargs.pop(name) for name in ETC_ENCODER_INPUTS if kwargs.get(name) is not None}
        kwargs = {k: v for k, v in kwargs.items() if k not in ETC_ENCODER_INPUTS}
        arguments = signature.bind(self, *args, **kwargs).arguments
        check_decoder_inputs(self.config, arguments)
        if structure:
            if self.config.encoder_type != "etc":
                raise ValueError(
                    f"{sorted(structure)} are inputs of an ETC encoder, but this model's encoder_type is "
                    f"{self.config.encoder_type!r}; build it with encoder_type='etc' or leave them out."
                )
            if arguments.get("encoder_outputs") is None:
                arguments["encoder_outputs"] = self.get_encoder()(
                    input_ids=arguments.get("input_ids"),
                    attention_mask=arguments.get("attention_mask"),
                    inputs_embeds=arguments.get("inputs_embeds"),
                    **structure,
                )
        arguments.pop("self")
        return forward(self, **{k: v for k, v in arguments.items() if k != "kwargs"}, **arguments.get("kwargs", {}))

    checked_forward.__signature__ = published
    return checked_forward


class BigBirdPegasusModel(BigBirdPegasusPreTrainedModel, reference.BigBirdPegasusModel):
    """Encoder (longbird) + decoder (transformers'); `forward` is transformers'."""

    def __init__(self, config: BigBirdPegasusConfig):
        BigBirdPegasusPreTrainedModel.__init__(self, config)
        scale = config.d_model**0.5 if config.scale_embedding else 1.0
        self.shared = reference.BigBirdPegasusScaledWordEmbedding(
            config.vocab_size, config.d_model, config.pad_token_id, embed_scale=scale
        )
        self.encoder = build_encoder(config)
        self.decoder = reference.BigBirdPegasusDecoder(config)
        if config.encoder_type == "etc":  # the ETC encoder's token table has ETC's name
            self._tied_weights_keys = {
                "encoder.etc.embeddings.token_embeddings.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        self.post_init()

    forward = _checked(reference.BigBirdPegasusModel.forward)

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value
        self.decoder.embed_tokens = value


class BigBirdPegasusForConditionalGeneration(
    BigBirdPegasusPreTrainedModel, reference.BigBirdPegasusForConditionalGeneration
):
    """Summarization: transformers' LM head, loss and `generate()` on our model."""

    def __init__(self, config: BigBirdPegasusConfig):
        BigBirdPegasusPreTrainedModel.__init__(self, config)
        self.model = BigBirdPegasusModel(config)
        self.final_logits_bias = nn.Buffer(torch.zeros((1, self.model.shared.num_embeddings)))
        self.lm_head = nn.Linear(config.d_model, self.model.shared.num_embeddings, bias=False)
        self.post_init()

    forward = _checked(reference.BigBirdPegasusForConditionalGeneration.forward)


class BigBirdPegasusForSequenceClassification(
    BigBirdPegasusPreTrainedModel, reference.BigBirdPegasusForSequenceClassification
):
    def __init__(self, config: BigBirdPegasusConfig, **kwargs):
        BigBirdPegasusPreTrainedModel.__init__(self, config, **kwargs)
        self.model = BigBirdPegasusModel(config)
        self.classification_head = reference.BigBirdPegasusClassificationHead(
            config.d_model, config.d_model, config.num_labels, config.classifier_dropout
        )
        self.post_init()

    forward = _checked(reference.BigBirdPegasusForSequenceClassification.forward)


class BigBirdPegasusForQuestionAnswering(BigBirdPegasusPreTrainedModel, reference.BigBirdPegasusForQuestionAnswering):
    def __init__(self, config: BigBirdPegasusConfig):
        BigBirdPegasusPreTrainedModel.__init__(self, config)
        config.num_labels = 2
        self.num_labels = 2
        self.model = BigBirdPegasusModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    forward = _checked(reference.BigBirdPegasusForQuestionAnswering.forward)


class BigBirdPegasusForCausalLM(BigBirdPegasusPreTrainedModel, reference.BigBirdPegasusForCausalLM):
    """The decoder alone as a causal LM (transformers' class: `model.decoder` + `lm_head`, its
    forward, loss and `generate()`); no encoder, so no sparse attention. Like transformers, it sets
    `config.is_decoder=True` and `config.is_encoder_decoder=False`."""

    def __init__(self, config: BigBirdPegasusConfig):
        config.is_decoder = True
        config.is_encoder_decoder = False
        BigBirdPegasusPreTrainedModel.__init__(self, config)
        self.model = reference.BigBirdPegasusDecoderWrapper(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


__all__ = [
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusEncoder",
    "EtcPegasusEncoder",
]
