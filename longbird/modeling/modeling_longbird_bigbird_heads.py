"""Task heads of the BigBird encoder: masked LM, sequence and token classification, question
answering. The backbone (embeddings, layers, model) is `modeling_longbird_bigbird.py`; weight names
are transformers' BigBird names, so its checkpoints of every head load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import (
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import can_return_tuple

from ..configuration.configuration_longbird_bigbird import BigBirdConfig
from .longbird_input_checks import (
    check_loss_kwargs,
    question_lengths_of,
    sequence_classification_loss,
)
from .longbird_packing import flattened_batches
from .modeling_longbird_bigbird import (
    BigBirdIntermediate,
    BigBirdModel,
    BigBirdOnlyMLMHead,
    BigBirdOutput,
    BigBirdPreTrainedModel,
    activation,
)


class BigBirdForMaskedLM(BigBirdPreTrainedModel):
    _tied_weights_keys = {
        "cls.predictions.decoder.bias": "cls.predictions.bias",
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    }

    def __init__(self, config: BigBirdConfig):
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.cls = BigBirdOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

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


__all__ = [
    "BigBirdModel",
    "BigBirdPreTrainedModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
]
