"""Task heads of the BigBird encoder: masked LM, pre-training (MLM + next sentence), sequence
and token classification, multiple choice, question answering. The backbone (embeddings, layers,
model) is `modeling_longbird_bigbird.py`; weight names are transformers' BigBird names, so its
checkpoints of every head load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.loss.loss_utils import ForMaskedLMLoss, fixed_cross_entropy
from transformers.modeling_outputs import (
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.big_bird.modeling_big_bird import BigBirdForPreTrainingOutput
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from ..configuration.configuration_longbird_bigbird import BigBirdConfig
from .longbird_input_checks import (
    check_loss_kwargs,
    question_lengths_of,
    sequence_classification_loss,
)
from .longbird_packing import flattened_batches
from .modeling_longbird_bigbird import (
    BigBirdIntermediate,
    BigBirdLMPredictionHead,
    BigBirdModel,
    BigBirdOnlyMLMHead,
    BigBirdOutput,
    BigBirdPreTrainedModel,
    activation,
)


class TiedLanguageModelHead:
    """`cls.predictions` (the language-model head) tied to the input embeddings: the masked LM,
    pre-training and causal LM heads."""

    _tied_weights_keys = {
        "cls.predictions.decoder.bias": "cls.predictions.bias",
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    }

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias


class BigBirdForMaskedLM(TiedLanguageModelHead, BigBirdPreTrainedModel):
    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.cls = BigBirdOnlyMLMHead(config)
        self.post_init()

    @can_return_tuple
    @flattened_batches(token_outputs=("logits",), token_labels=True)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            global_input_ids=global_input_ids,
            global_attention_mask=global_attention_mask,
        )
        logits = self.cls(outputs.last_hidden_state)
        check_loss_kwargs(self, kwargs)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        out = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return out


class BigBirdClassificationHead(nn.Module):
    """Dense + activation + projection over the first token (or the first extra global token)."""

    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.act = activation(config.hidden_act)

    def forward(self, features):
        x = self.dropout(features)
        x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)


class BigBirdForSequenceClassification(BigBirdPreTrainedModel):
    """Single-label, multi-label (e.g. 919 chromatin profiles) or regression, by `problem_type`."""

    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BigBirdModel(config)
        self.classifier = BigBirdClassificationHead(config)
        self.post_init()

    @can_return_tuple
    @flattened_batches()
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            global_input_ids=global_input_ids,
            global_attention_mask=global_attention_mask,
        )
        if outputs.global_last_hidden_state is not None:
            features = outputs.global_last_hidden_state[:, 0]
        else:
            features = outputs.last_hidden_state[:, 0]
        logits = self.classifier(features)
        check_loss_kwargs(self, kwargs)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self, logits, labels, **kwargs)
        out = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return out


class BigBirdForTokenClassification(BigBirdPreTrainedModel):
    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BigBirdModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @flattened_batches(token_outputs=("logits",), token_labels=True)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            global_input_ids=global_input_ids,
            global_attention_mask=global_attention_mask,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        check_loss_kwargs(self, kwargs)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, **kwargs)
        out = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return out


#: per-choice inputs of `BigBirdForMultipleChoice`: name -> rank ([batch, num_choices, ...])
_CHOICE_INPUTS = {
    "input_ids": (3, "[batch, num_choices, seq_len]"),
    "attention_mask": (3, "[batch, num_choices, seq_len]"),
    "token_type_ids": (3, "[batch, num_choices, seq_len]"),
    "position_ids": (3, "[batch, num_choices, seq_len]"),
    "inputs_embeds": (4, "[batch, num_choices, seq_len, hidden_size]"),
    "global_prefix_length": (2, "[batch, num_choices]"),
    "global_input_ids": (3, "[batch, num_choices, num_global]"),
    "global_attention_mask": (3, "[batch, num_choices, num_global]"),
}


def flatten_choices(inputs: dict) -> tuple[dict, int]:
    """`[batch, num_choices, ...]` inputs -> `[batch * num_choices, ...]` (each choice one example)
    and num_choices; a ValueError names an input of the wrong rank or number of choices."""
    first = next((inputs[n] for n in ("input_ids", "inputs_embeds") if inputs.get(n) is not None), None)
    if first is None:
        raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
    shape = None
    for name, (rank, layout) in _CHOICE_INPUTS.items():
        value = inputs.get(name)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or value.dim() != rank:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"BigBirdForMultipleChoice: `{name}` must have shape {layout} (one row per answer choice), "
                f"got {got}; stack the choices of each example, e.g. tokenizer(...)['input_ids'].view(batch, "
                f"num_choices, -1)."
            )
        if shape is None:
            shape = tuple(value.shape[:2])
        elif tuple(value.shape[:2]) != shape:
            raise ValueError(
                f"BigBirdForMultipleChoice: `{name}` has [batch, num_choices] = {tuple(value.shape[:2])}, but "
                f"the input has {shape}."
            )
        inputs[name] = value.reshape(-1, *value.shape[2:])
    return inputs, shape[1]


class BigBirdForMultipleChoice(BigBirdPreTrainedModel):
    """transformers' multiple-choice head: every choice is encoded as its own example, the pooled
    first token -> dropout -> one score; `logits` are `[batch, num_choices]`. Inputs are
    `[batch, num_choices, seq_len]` (no flattened batches: they would lose the choice grouping)."""

    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> MultipleChoiceModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, num_choices, sequence_length)`):
            One row per answer choice; so are the other per-token inputs (`inputs_embeds`:
            `(batch_size, num_choices, sequence_length, hidden_size)`; `global_prefix_length`:
            `(batch_size, num_choices)`).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Index of the right choice, in `[0, num_choices)`.
        """
        check_loss_kwargs(self, kwargs)
        choices = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "inputs_embeds": inputs_embeds,
            "global_prefix_length": global_prefix_length,
            "global_input_ids": global_input_ids,
            "global_attention_mask": global_attention_mask,
        }
        choices, num_choices = flatten_choices(choices)
        outputs = self.bert(
            **choices,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = None
        if labels is not None:
            loss = fixed_cross_entropy(logits.float(), labels.reshape(-1), **kwargs)
        out = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return out


class BigBirdPreTrainingHeads(nn.Module):
    """The MLM head (`predictions`, tied to the token table) and the next-sentence head."""

    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.predictions = BigBirdLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output):
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


class BigBirdForPreTraining(TiedLanguageModelHead, BigBirdPreTrainedModel):
    """transformers' pre-training head: masked LM plus next-sentence prediction on the pooled first
    token; `loss` = mean MLM cross-entropy + mean NSP cross-entropy (the NSP term only with `labels`),
    as transformers computes it."""

    #: the loss is a sum of two means: Trainer scales it for gradient accumulation itself rather
    #: than passing `num_items_in_batch`
    accepts_loss_kwargs = False

    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.bert = BigBirdModel(config, add_pooling_layer=True)
        self.cls = BigBirdPreTrainingHeads(config)
        self.post_init()

    @can_return_tuple
    @flattened_batches(token_outputs=("prediction_logits",), token_labels=True)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        global_prefix_length: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        next_sentence_label: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        global_input_ids: torch.LongTensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BigBirdForPreTrainingOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            MLM targets, -100 where nothing is predicted.
        next_sentence_label (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            0: sentence B continues sentence A, 1: B is random. Added to the loss when `labels` are given.
        """
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            global_input_ids=global_input_ids,
            global_attention_mask=global_attention_mask,
        )
        prediction_logits, seq_relationship_logits = self.cls(outputs.last_hidden_state, outputs.pooler_output)
        check_loss_kwargs(self, kwargs)
        loss = None
        if labels is not None:
            loss = ForMaskedLMLoss(prediction_logits, labels, vocab_size=self.config.vocab_size)
            if next_sentence_label is not None:
                loss = loss + fixed_cross_entropy(seq_relationship_logits.float(), next_sentence_label.reshape(-1))
        out = BigBirdForPreTrainingOutput(
            loss=loss,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return out


class BigBirdForQuestionAnsweringHead(nn.Module):
    def __init__(self, config: BigBirdConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.intermediate = BigBirdIntermediate(config)
        self.output = BigBirdOutput(config)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, encoder_output):
        hidden = self.intermediate(self.dropout(encoder_output))
        return self.qa_outputs(self.output(hidden, encoder_output))


@dataclass
class BigBirdQuestionAnsweringOutput(QuestionAnsweringModelOutput):
    pooler_output: torch.Tensor | None = None


class BigBirdForQuestionAnswering(BigBirdPreTrainedModel):
    """Span extraction. The question is found from `token_type_ids` (0 = question, 1 = context)
    when given, else from the first `[SEP]` (`[CLS] question [SEP] context [SEP]`, as
    transformers does); its tokens are made global and can never be predicted as the answer."""

    def __init__(self, config: BigBirdConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        config.num_labels = 2
        self.num_labels = 2
        self.bert = BigBirdModel(config, add_pooling_layer=add_pooling_layer)
        self.qa_classifier = BigBirdForQuestionAnsweringHead(config)
        self.post_init()

    @can_return_tuple
    @flattened_batches(token_outputs=("start_logits", "end_logits"))
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        question_lengths: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BigBirdQuestionAnsweringOutput:
        r"""
        question_lengths (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, 1)`, *optional*):
            Tokens `[0, question_length)` are the question (`[CLS]`, question, first `[SEP]`).
        """
        seq_len = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]
        if question_lengths is None:
            question_lengths = question_lengths_of(input_ids, token_type_ids, attention_mask, self.config.sep_token_id)
        question_mask = None
        if question_lengths is not None:
            question_lengths = torch.as_tensor(question_lengths).reshape(-1)
            positions = torch.arange(seq_len, device=question_lengths.device)
            question_mask = positions[None, :] < question_lengths[:, None]
            if token_type_ids is None:
                token_type_ids = (~question_mask).long()
            question_mask[:, 0] = False  # [CLS] stays a candidate: it stands for "no answer"
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            global_prefix_length=question_lengths,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_classifier(outputs.last_hidden_state)
        if attention_mask is not None:  # padding is never an answer (transformers' loss counted it)
            question_mask = ~attention_mask.bool() | (False if question_mask is None else question_mask)
        if question_mask is not None:
            # dtype-safe masking (transformers subtracts 1e6, which breaks fp16 and changes dtype)
            logits = logits.masked_fill(question_mask.unsqueeze(-1), torch.finfo(logits.dtype).min)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        check_loss_kwargs(self, kwargs)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(
                start_logits, end_logits, start_positions.reshape(-1), end_positions.reshape(-1), **kwargs
            )
        out = BigBirdQuestionAnsweringOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            pooler_output=outputs.pooler_output,
        )
        return out


# --------------------------------------------------------------------------------------------
# Causal LM (a decoder: `is_decoder=True`; the decoder of an EncoderDecoderModel with
# `add_cross_attention=True`). Its imports sit here so the classes above read as before.
# --------------------------------------------------------------------------------------------


class BigBirdForCausalLM(TiedLanguageModelHead, BigBirdPreTrainedModel, GenerationMixin):
    """Left-to-right language model (transformers' `BigBirdForCausalLM`): causal dense
    self-attention (`is_decoder=True`, `attention_type="original_full"`), cross-attention to
    `encoder_hidden_states` with `add_cross_attention=True`, a cache for `generate()`."""

    def __init__(self, config: BigBirdConfig):
        if not config.is_decoder:  # transformers only warns, then runs a bidirectional "causal" LM
            raise ValueError(
                "BigBirdForCausalLM needs a decoder config: BigBirdConfig(is_decoder=True, "
                "attention_type='original_full') (and add_cross_attention=True inside an EncoderDecoderModel)."
            )
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.cls = BigBirdOnlyMLMHead(config)
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithCrossAttentions:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Next-token labels, aligned with `input_ids` (the loss shifts them); -100 is ignored.
        logits_to_keep (`int` or `torch.Tensor`, *optional*):
            Logits of only the last `k` positions (or of these indices); 0 keeps all.
        """
        kwargs.pop("cache_position", None)  # older callers pass it; positions come from the cache
        outputs = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
        )
        logits = self.cls(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        check_loss_kwargs(self, kwargs)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        out = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return out


__all__ = [
    "BigBirdModel",
    "BigBirdPreTrainedModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
    "BigBirdForMultipleChoice",
    "BigBirdForPreTraining",
    "BigBirdForCausalLM",
]
