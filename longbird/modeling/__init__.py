"""Models. The attention graph (longbird_attention_graph) and its executors
(longbird_attention_executors) are shared by every model; model files stay thin."""

from .modeling_longbird_bigbird import (
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
    BigBirdPreTrainedModel,
)

__all__ = [
    "BigBirdModel",
    "BigBirdPreTrainedModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
]
