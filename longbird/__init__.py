"""longbird: long-sequence transformers (BigBird, ETC, BigBird-Pegasus) on one sparse-attention core.

`import longbird` registers every config and model with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from transformers.pipelines import PIPELINE_REGISTRY

from .configuration import BigBirdConfig, BigBirdPegasusConfig, EtcConfig
from .modeling import (
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForQuestionAnswering,
    BigBirdPegasusForSequenceClassification,
    BigBirdPegasusModel,
    EtcForMaskedLM,
    EtcForPreTraining,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
)
from .modeling.pipeline_longbird_question_answering import LongQuestionAnsweringPipeline
from .modeling.pipeline_longbird_summarization import LongSummarizationPipeline

__version__ = "0.1.0"


_AUTO_CLASSES = {
    BigBirdConfig: (
        (AutoModel, BigBirdModel),
        (AutoModelForMaskedLM, BigBirdForMaskedLM),
        (AutoModelForSequenceClassification, BigBirdForSequenceClassification),
        (AutoModelForTokenClassification, BigBirdForTokenClassification),
        (AutoModelForQuestionAnswering, BigBirdForQuestionAnswering),
    ),
    BigBirdPegasusConfig: (
        (AutoModel, BigBirdPegasusModel),
        (AutoModelForSeq2SeqLM, BigBirdPegasusForConditionalGeneration),
        (AutoModelForSequenceClassification, BigBirdPegasusForSequenceClassification),
        (AutoModelForQuestionAnswering, BigBirdPegasusForQuestionAnswering),
    ),
    EtcConfig: (
        (AutoModel, EtcModel),
        (AutoModelForMaskedLM, EtcForMaskedLM),
        (AutoModelForPreTraining, EtcForPreTraining),
        (AutoModelForSequenceClassification, EtcForSequenceClassification),
        (AutoModelForTokenClassification, EtcForTokenClassification),
        (AutoModelForQuestionAnswering, EtcForQuestionAnswering),
    ),
}


#: in-process pipelines (transformers 5 removed `question-answering` and `summarization`)
PIPELINES = {
    "long-question-answering": (LongQuestionAnsweringPipeline, AutoModelForQuestionAnswering),
    "long-summarization": (LongSummarizationPipeline, AutoModelForSeq2SeqLM),
}


def _register() -> None:
    for config, pairs in _AUTO_CLASSES.items():
        AutoConfig.register(config.model_type, config, exist_ok=True)
        for auto, model in pairs:
            auto.register(config, model, exist_ok=True)
    for task, (pipeline_class, auto) in PIPELINES.items():
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=auto, type="text")


_register()

__all__ = [
    "BigBirdConfig",
    "BigBirdModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
    "BigBirdPegasusConfig",
    "BigBirdPegasusModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "EtcConfig",
    "EtcModel",
    "EtcForMaskedLM",
    "EtcForPreTraining",
    "EtcForSequenceClassification",
    "EtcForTokenClassification",
    "EtcForQuestionAnswering",
    "LongQuestionAnsweringPipeline",
    "LongSummarizationPipeline",
]
