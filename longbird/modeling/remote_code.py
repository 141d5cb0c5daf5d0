"""Saved checkpoints carry their own code, so they load without longbird installed, and save again.

`save_pretrained` (and so `push_to_hub` and every Trainer checkpoint) of every longbird model writes,
beside the weights, a flat folder of modules (imports rewritten to siblings, the layout transformers'
remote code requires), an `auto_map` entry for the config and every head of its model type, and
`custom_pipelines` for the saved head's task, so that
`AutoModelFor*.from_pretrained(folder, trust_remote_code=True)` and
`pipeline("question-answering" | "summarization", model=folder, trust_remote_code=True)` work
anywhere transformers does.

Which modules, and why a model loaded from them can save itself again:

- The exported set is the relative-import closure of this file, found the way transformers'
  remote-code loader finds it: a text regex for sibling imports (`dynamic_module_utils.
  get_relative_imports`), followed recursively. The `if TYPE_CHECKING:` block below names every
  module a saved config can point at (the configs, the models, the pipelines); it never runs, it
  is there so that the regex sees it. That block is the one list of exported modules
  (`exported_modules()` reads it back).
- Every model module imports this file (`RemoteCodeMixin`). So when transformers loads any model
  class of a checkpoint with `trust_remote_code=True`, it copies the whole closure, that is every
  exported module, into its module cache (`HF_MODULES_CACHE/transformers_modules/...`), from a
  local folder and from the Hub alike.
- The writer takes its sources from the folder this file runs from: in the package, modeling/ and
  its siblings configuration/, tokenization/ and pipelines/; under remote code, the module cache,
  which by the point above holds every module. It writes the closure of what the saved config's `auto_map` and
  `custom_pipelines` name, and refuses (ValueError) to name a module outside the exported set,
  which the next load would not bring along. The rewritten sources are a fixed point, so
  load -> save -> load -> save gives identical folders.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # never runs: transformers' loader copies what these lines import (module docstring)
    from ..configuration.configuration_longbird_bigbird import BigBirdConfig  # noqa: F401
    from ..configuration.configuration_longbird_bigbird_pegasus import BigBirdPegasusConfig  # noqa: F401
    from ..configuration.configuration_longbird_etc import EtcConfig  # noqa: F401
    from ..pipelines.pipeline_longbird_question_answering import LongQuestionAnsweringPipeline  # noqa: F401
    from ..pipelines.pipeline_longbird_summarization import LongSummarizationPipeline  # noqa: F401
    from .modeling_longbird_bigbird import BigBirdModel  # noqa: F401
    from .modeling_longbird_bigbird_heads import BigBirdForMaskedLM  # noqa: F401
    from .modeling_longbird_bigbird_pegasus import BigBirdPegasusModel  # noqa: F401
    from .modeling_longbird_etc import EtcModel  # noqa: F401

#: per model type: the Auto class -> "module.Class" of the config and of every head
AUTO_MAP = {
    "longbird_bigbird": {
        "AutoConfig": "configuration_longbird_bigbird.BigBirdConfig",
        "AutoModel": "modeling_longbird_bigbird.BigBirdModel",
        "AutoModelForMaskedLM": "modeling_longbird_bigbird_heads.BigBirdForMaskedLM",
        "AutoModelForSequenceClassification": "modeling_longbird_bigbird_heads.BigBirdForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_longbird_bigbird_heads.BigBirdForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_longbird_bigbird_heads.BigBirdForQuestionAnswering",
        "AutoModelForMultipleChoice": "modeling_longbird_bigbird_heads.BigBirdForMultipleChoice",
        "AutoModelForPreTraining": "modeling_longbird_bigbird_heads.BigBirdForPreTraining",
        "AutoModelForCausalLM": "modeling_longbird_bigbird_heads.BigBirdForCausalLM",
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
        "AutoModelForSequenceClassification": (
            "modeling_longbird_bigbird_pegasus.BigBirdPegasusForSequenceClassification"
        ),
        "AutoModelForQuestionAnswering": "modeling_longbird_bigbird_pegasus.BigBirdPegasusForQuestionAnswering",
        "AutoModelForCausalLM": "modeling_longbird_bigbird_pegasus.BigBirdPegasusForCausalLM",
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

#: the package folders beside modeling/ that exported modules come from; their imports become sibling imports
_SIBLING_PACKAGES = ("configuration", "tokenization", "pipelines")
_PACKAGE_IMPORT = re.compile(rf"^(\s*)from \.\.(?:{'|'.join(_SIBLING_PACKAGES)})\.", flags=re.MULTILINE)
#: transformers' patterns for relative imports (dynamic_module_utils.get_relative_imports), verbatim
_RELATIVE_IMPORTS = (
    re.compile(r"^\s*import\s+\.(\S+)\s*$", flags=re.MULTILINE),
    re.compile(r"^\s*from\s+\.(\S+)\s+import", flags=re.MULTILINE),
)


def _source_folders() -> tuple[Path, ...]:
    """Where the exported modules are: this file's folder (flat, under remote code), then, in the
    package, the sibling packages."""
    here = Path(__file__).resolve().parent
    return (here, *(here.parent / package for package in _SIBLING_PACKAGES if (here.parent / package).is_dir()))


def _source(module: str) -> str:
    """The exported text of `module`: its source with package imports rewritten to sibling imports."""
    folders = _source_folders()
    for folder in folders:
        path = folder / f"{module}.py"
        if path.is_file():
            return _PACKAGE_IMPORT.sub(r"\1from .", path.read_text(encoding="utf-8"))
    raise FileNotFoundError(
        f"cannot write the remote code: {module}.py is in none of {[str(f) for f in folders]}. The modules are "
        "taken from beside remote_code.py; a checkpoint whose code was loaded from an incomplete folder cannot "
        "save it again: load it from a complete checkpoint, or `import longbird` before loading to use the "
        "package's code."
    )


def relative_imports(source: str) -> set[str]:
    """The sibling modules `source` imports, as transformers' remote-code loader sees them."""
    return {name for pattern in _RELATIVE_IMPORTS for name in pattern.findall(source)}


def module_closure(roots) -> list[str]:
    """`roots` and, recursively, every module they import relatively (sorted)."""
    found: set[str] = set()
    pending = list(roots)
    while pending:
        module = pending.pop()
        if module not in found:
            found.add(module)
            pending.extend(relative_imports(_source(module)) - found)
    return sorted(found)


@cache
def exported_modules() -> tuple[str, ...]:
    """Every module a saved checkpoint carries: the closure of this file (see the module docstring)."""
    return tuple(module_closure(["remote_code"]))


def code_modules(config: dict) -> set[str]:
    """The modules a config.json's `auto_map` and `custom_pipelines` name."""
    paths = list(config.get("auto_map", {}).values())
    paths += [entry["impl"] for entry in config.get("custom_pipelines", {}).values() if "impl" in entry]
    return {path.split(".")[0] for path in paths if isinstance(path, str)}


def write_remote_code(folder: str | Path, model_type: str, model_class: str | None = None) -> list[str]:
    """Write the flat modules into `folder` and point its config.json at them; the pipelines of
    the saved class's task (`model_class`, e.g. a QA head gets the QA pipelines) are listed.
    Returns the names of the modules written."""
    folder = Path(folder)
    if model_type not in AUTO_MAP:
        raise ValueError(f"no remote code for model_type {model_type!r}; known: {sorted(AUTO_MAP)}")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = dict(AUTO_MAP[model_type])
    heads = {auto for auto, path in AUTO_MAP[model_type].items() if path.endswith(f".{model_class}")}
    pipelines = dict(config.get("custom_pipelines") or {})
    for task, (implementation, auto) in PIPELINES.items():
        if auto in heads:
            # only under transformers' removed names: a custom_pipelines entry makes pipeline() ask for
            # trust_remote_code, and our own names already resolve once longbird is imported
            pipelines[REMOVED_TASK_NAMES[task]] = {"impl": implementation, "pt": [auto], "type": "text"}
    if pipelines:
        config["custom_pipelines"] = pipelines
    named = code_modules(config)
    outside = sorted(named - set(exported_modules()))
    if outside:
        raise ValueError(
            f"config.json of {folder} names modules {outside} (auto_map / custom_pipelines) that the remote code "
            f"does not carry (it carries {list(exported_modules())}); remove those entries from config.auto_map / "
            "config.custom_pipelines, or add a sibling import of them to the TYPE_CHECKING block of remote_code.py."
        )
    modules = module_closure(named)
    sources = {module: _source(module) for module in modules}  # all found before anything is written
    for module, text in sources.items():
        (folder / f"{module}.py").write_text(text, encoding="utf-8")
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return modules


class RemoteCodeMixin:
    """`save_pretrained` also writes the flat remote code (see the module docstring)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_remote_code(save_directory, self.config.model_type, type(self).__name__)
        return result
