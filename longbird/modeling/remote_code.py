"""Saved checkpoints carry their own code, so they load without longbird installed.

`save_pretrained` (and so `push_to_hub`) of every longbird model writes, beside the weights, a
flat folder of the modules a model needs (configs, the shared graph and executors, the models,
the pipelines and the ETC featurizer they use; imports rewritten to siblings, the layout
transformers' remote code requires), an `auto_map` entry for the config and every head of its
model type, and `custom_pipelines`, so that
`AutoModelFor*.from_pretrained(folder, trust_remote_code=True)` and
`pipeline("question-answering" | "summarization", model=folder, trust_remote_code=True)` work
anywhere transformers does.

This file is itself part of the exported folder: it finds the sources beside itself (in the
package, the configs and the featurizer in the sibling folders configuration/ and tokenization/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: per model type: the Auto class -> "module.Class" of the config and of every head
AUTO_MAP = {
    "longbird_bigbird": {
        "AutoConfig": "configuration_longbird_bigbird.BigBirdConfig",
        "AutoModel": "modeling_longbird_bigbird.BigBirdModel",
        "AutoModelForMaskedLM": "modeling_longbird_bigbird.BigBirdForMaskedLM",
        "AutoModelForSequenceClassification": "modeling_longbird_bigbird.BigBirdForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_longbird_bigbird.BigBirdForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_longbird_bigbird.BigBirdForQuestionAnswering",
    },
    "longbird_etc": {
        "AutoConfig": "configuration_longbird_etc.EtcConfig",
        "AutoModel": "modeling_longbird_etc.EtcModel",
        "AutoModelForMaskedLM": "modeling_longbird_etc.EtcForMaskedLM",
        "AutoModelForPreTraining": "modeling_longbird_etc.EtcForPreTraining",
        "AutoModelForSequenceClassification": "modeling_longbird_etc.EtcForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_longbird_etc.EtcForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_longbird_etc.EtcForQuestionAnswering",
    },
    "longbird_bigbird_pegasus": {
        "AutoConfig": "configuration_longbird_bigbird_pegasus.BigBirdPegasusConfig",
        "AutoModel": "modeling_longbird_bigbird_pegasus.BigBirdPegasusModel",
        "AutoModelForSeq2SeqLM": "modeling_longbird_bigbird_pegasus.BigBirdPegasusForConditionalGeneration",
        "AutoModelForSequenceClassification": "modeling_longbird_bigbird_pegasus.BigBirdPegasusForSequenceClassification",
        "AutoModelForQuestionAnswering": "modeling_longbird_bigbird_pegasus.BigBirdPegasusForQuestionAnswering",
    },
}

#: pipelines: task -> (implementation, the Auto class of the models it takes); saved checkpoints
#: also list them under transformers' removed names, which `pipeline()` then resolves again
PIPELINES = {
    "long-question-answering": (
        "pipeline_longbird_question_answering.LongQuestionAnsweringPipeline",
        "AutoModelForQuestionAnswering",
    ),
    "long-summarization": ("pipeline_longbird_summarization.LongSummarizationPipeline", "AutoModelForSeq2SeqLM"),
}
REMOVED_TASK_NAMES = {"long-question-answering": "question-answering", "long-summarization": "summarization"}

#: the flat folder: every module a saved model may import (configs and the featurizer live in
#: sibling packages)
MODULES = (
    "configuration_longbird_bigbird",
    "configuration_longbird_etc",
    "configuration_longbird_bigbird_pegasus",
    "longbird_attention_graph",
    "longbird_global_local_graph",
    "longbird_attention_executors",
    "modeling_longbird_bigbird",
    "modeling_longbird_etc",
    "modeling_longbird_bigbird_pegasus",
    "etc_featurizer",
    "pipeline_longbird_question_answering",
    "pipeline_longbird_summarization",
    "remote_code",
)
#: the package folders beside modeling/ that MODULES come from; their imports become sibling imports
_SIBLING_PACKAGES = ("configuration", "tokenization")
_PACKAGE_IMPORT = re.compile(rf"^from \.\.(?:{'|'.join(_SIBLING_PACKAGES)})\.", flags=re.MULTILINE)


def _source(module: str) -> str:
    here = Path(__file__).resolve().parent
    folders = (here, *(here.parent / package for package in _SIBLING_PACKAGES))
    for folder in folders:
        path = folder / f"{module}.py"
        if path.exists():
            return _PACKAGE_IMPORT.sub("from .", path.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"{module}.py is in none of {[str(f) for f in folders]}")


def write_remote_code(folder: str | Path, model_type: str, model_class: str | None = None) -> None:
    """Write the flat modules into `folder` and point its config.json at them; the pipelines of
    the saved class's task (`model_class`, e.g. a QA head gets the QA pipelines) are listed."""
    folder = Path(folder)
    if model_type not in AUTO_MAP:
        raise ValueError(f"no remote code for model_type {model_type!r}; known: {sorted(AUTO_MAP)}")
    for module in MODULES:
        (folder / f"{module}.py").write_text(_source(module), encoding="utf-8")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = dict(AUTO_MAP[model_type])
    heads = {auto for auto, path in AUTO_MAP[model_type].items() if path.endswith(f".{model_class}")}
    pipelines = {}
    for task, (implementation, auto) in PIPELINES.items():
        if auto in heads:
            entry = {"impl": implementation, "pt": [auto], "type": "text"}
            # only under transformers' removed names: a custom_pipelines entry makes pipeline() ask for
            # trust_remote_code, and our own names already resolve once longbird is imported
            pipelines[REMOVED_TASK_NAMES[task]] = entry
    if pipelines:
        config["custom_pipelines"] = pipelines
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class RemoteCodeMixin:
    """`save_pretrained` also writes the flat remote code (see the module docstring)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_remote_code(save_directory, self.config.model_type, type(self).__name__)
        return result
