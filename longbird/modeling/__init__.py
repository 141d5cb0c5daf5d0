"""Models on two attention cores, each a graph module (who attends to whom, as data) and an
executors module (kernels that compute it):

* block-sparse (BigBird, BigBird-Pegasus): `longbird_block_graph` + `longbird_block_executors`;
* global-local (ETC): `longbird_global_local_graph` + `longbird_global_local_executors`.

`longbird_input_checks` holds the input checks all model files share. The model files hold
embeddings, layers and the model; `*_heads` files (or the model file's end) its task heads."""

from .modeling_longbird_bigbird import BigBirdModel, BigBirdPreTrainedModel
from .modeling_longbird_bigbird_heads import (
    BigBirdForCausalLM,
    BigBirdForMaskedLM,
    BigBirdForMultipleChoice,
    BigBirdForPreTraining,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
)
from .modeling_longbird_bigbird_pegasus import (
    BigBirdPegasusEncoder,
    BigBirdPegasusForCausalLM,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForQuestionAnswering,
    BigBirdPegasusForSequenceClassification,
    BigBirdPegasusModel,
    BigBirdPegasusPreTrainedModel,
    EtcPegasusEncoder,
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
    "BigBirdForMultipleChoice",
    "BigBirdForPreTraining",
    "BigBirdForCausalLM",
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusEncoder",
    "EtcPegasusEncoder",
    "EtcModel",
    "EtcPreTrainedModel",
    "EtcForMaskedLM",
    "EtcForPreTraining",
    "EtcForSequenceClassification",
    "EtcForTokenClassification",
    "EtcForQuestionAnswering",
]
