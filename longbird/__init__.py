"""longbird: long-sequence transformers (BigBird, ETC, BigBird-Pegasus) on one sparse-attention core.

`import longbird` registers every config and model with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration import BigBirdConfig
from .modeling import (
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
)

__version__ = "0.1.0"


def _register() -> None:
    AutoConfig.register(BigBirdConfig.model_type, BigBirdConfig, exist_ok=True)
    for auto, model in (
        (AutoModel, BigBirdModel),
        (AutoModelForMaskedLM, BigBirdForMaskedLM),
        (AutoModelForSequenceClassification, BigBirdForSequenceClassification),
        (AutoModelForTokenClassification, BigBirdForTokenClassification),
        (AutoModelForQuestionAnswering, BigBirdForQuestionAnswering),
    ):
        auto.register(BigBirdConfig, model, exist_ok=True)


_register()

__all__ = [
    "BigBirdConfig",
    "BigBirdModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
]
