"""longbird: long-sequence transformers (BigBird, ETC, BigBird-Pegasus) on one sparse-attention core.

`import longbird` registers every config and model with transformers' Auto classes and the
long-input pipelines with `pipeline()`. What is registered is listed once, in
`longbird.modeling.remote_code` (saved checkpoints carry the same map as `auto_map`).
"""

import importlib

import transformers
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration import BigBirdConfig, BigBirdPegasusConfig, EtcConfig
from .modeling import (
    BigBirdForCausalLM,
    BigBirdForMaskedLM,
    BigBirdForMultipleChoice,
    BigBirdForPreTraining,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
    BigBirdPegasusEncoder,
    BigBirdPegasusForCausalLM,
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
    EtcPegasusEncoder,
)
from .modeling.remote_code import AUTO_MAP, PIPELINES
from .pipelines import LongQuestionAnsweringPipeline, LongSummarizationPipeline

__version__ = "0.1.0"


def _resolve(path: str):
    """The class in this package that a "module.Class" path of the flat map names."""
    module, name = path.split(".")
    packages = {"configuration_": "configuration", "pipeline_": "pipelines"}
    package = next((p for prefix, p in packages.items() if module.startswith(prefix)), "modeling")
    return getattr(importlib.import_module(f"{__name__}.{package}.{module}"), name)


def _register() -> None:
    for model_type, entries in AUTO_MAP.items():
        config = _resolve(entries["AutoConfig"])
        transformers.AutoConfig.register(model_type, config, exist_ok=True)
        for auto, path in entries.items():
            if auto != "AutoConfig":
                getattr(transformers, auto).register(config, _resolve(path), exist_ok=True)
    for task, (path, auto) in PIPELINES.items():
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=_resolve(path), pt_model=getattr(transformers, auto), type="text"
        )


_register()

__all__ = [
    "BigBirdConfig",
    "BigBirdModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
    "BigBirdForMultipleChoice",
    "BigBirdForPreTraining",
    "BigBirdForCausalLM",
    "BigBirdPegasusConfig",
    "BigBirdPegasusModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusEncoder",
    "EtcPegasusEncoder",
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
