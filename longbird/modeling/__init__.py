"""Models. The attention graphs (longbird_attention_graph for block-sparse BigBird,
longbird_global_local_graph for ETC) and their executors (longbird_attention_executors) are
shared by every model; model files stay thin."""

from .modeling_longbird_bigbird import (
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
    BigBirdPreTrainedModel,
)
from .modeling_longbird_bigbird_pegasus import (
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForQuestionAnswering,
    BigBirdPegasusForSequenceClassification,
    BigBirdPegasusModel,
    BigBirdPegasusPreTrainedModel,
)
from .modeling_longbird_etc import (
    EtcForMaskedLM,
    EtcForPreTraining,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
    EtcPreTrainedModel,
)

__all__ = [
    "BigBirdModel",
    "BigBirdPreTrainedModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "EtcModel",
    "EtcPreTrainedModel",
    "EtcForMaskedLM",
    "EtcForPreTraining",
    "EtcForSequenceClassification",
    "EtcForTokenClassification",
    "EtcForQuestionAnswering",
]
