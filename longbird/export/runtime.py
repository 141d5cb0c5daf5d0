"""Exported ONNX graphs in ONNX Runtime, called like the PyTorch models.

`load_exported(folder)` reads the folder `export_model` wrote and returns an `ORTModel*` (named
as optimum names them): `model(**tokenizer(...), return_tensors="pt")` runs the ONNX session and
returns the same output fields as the PyTorch head, as torch tensors, so transformers'
pipelines run their pre- and post-processing around it:

    pipeline("text-classification", model=load_exported(folder), tokenizer=folder)

Inputs are checked first, in Python (length within `max_position_embeddings`, ids within the
vocabulary, shapes): the graph itself does not check them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, GenerationConfig
from transformers.modeling_outputs import ModelOutput

from .ort_session import session_options


@dataclass
class ExportedModelOutput(ModelOutput):
    """The outputs an exported graph returns (fields a head does not have stay None)."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    global_last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    supporting_fact_logits: torch.Tensor | None = None


class ORTModel(nn.Module):
    """One exported graph (`model.onnx`) in an `onnxruntime.InferenceSession`."""

    main_input_name = "input_ids"

    def __init__(self, session, config, path: Path):
        super().__init__()
        self.session, self.config, self.path = session, config, path
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    # what transformers' pipelines read from a model
    device = torch.device("cpu")
    dtype = torch.float32
    input_modalities = ("text",)

    def can_generate(self) -> bool:
        return False

    def to(self, *args, **kwargs):  # the session stays where it was created
        return self

    def forward(self, **inputs) -> ExportedModelOutput:
        feeds = self.feeds(inputs)
        outputs = self.session.run(self.output_names, feeds)
        return ExportedModelOutput(**{name: torch.from_numpy(out) for name, out in zip(self.output_names, outputs)})

    def feeds(self, inputs: dict) -> dict[str, np.ndarray]:
        """The session's inputs from `inputs` (tensors or arrays), checked; a missing
        `attention_mask` means no padding, a missing `token_type_ids` all zeros."""
        tensors = {k: torch.as_tensor(v) for k, v in inputs.items() if v is not None}
        unknown = sorted(set(tensors) - set(self.input_names))
        if unknown:
            raise TypeError(f"the exported graph takes {self.input_names}; got unexpected inputs {unknown}.")
        if "input_ids" in self.input_names:
            ids = tensors.get("input_ids")
            if ids is None:
                raise TypeError("the exported graph needs `input_ids` (it takes token ids, not embeddings).")
            tensors.setdefault("attention_mask", torch.ones_like(ids))
            if "token_type_ids" in self.input_names:
                tensors.setdefault("token_type_ids", torch.zeros_like(ids))
        missing = [name for name in self.input_names if name not in tensors]
        if missing:
            raise TypeError(f"the exported graph needs inputs {missing} too (all of {self.input_names}).")
        self.check(tensors)
        return {name: tensors[name].cpu().numpy().astype(np.int64) for name in self.input_names}

    def check(self, tensors: dict[str, torch.Tensor]) -> None:
        """The eager model's input checks (a clear ValueError, e.g. an input longer than
        `max_position_embeddings`), run before the session (which has none)."""
        from longbird.modeling.longbird_global_local_graph import check_etc_inputs
        from longbird.modeling.longbird_input_checks import check_inputs

        if self.config.model_type == "longbird_etc":
            check_etc_inputs(self.config, tensors)
            return
        check_inputs(
            self.config,
            tensors["input_ids"],
            None,
            tensors.get("attention_mask"),
            tensors.get("token_type_ids"),
            None,
            None,
        )


class ORTModelForSequenceClassification(ORTModel):
    pass


class ORTModelForTokenClassification(ORTModel):
    pass


class ORTModelForQuestionAnswering(ORTModel):
    pass


class ORTModelForMaskedLM(ORTModel):
    pass


class ORTModelForSeq2SeqLM(ORTModel):
    """BigBird-Pegasus as two sessions, `encoder_model.onnx` and `decoder_model.onnx` (one decoder step
    with its cache); `generate()` decodes greedily, as PyTorch's `generate(do_sample=False, num_beams=1)`."""

    def __init__(self, session, decoder_session, config, path: Path):
        super().__init__(session, config, path)
        self.decoder_session = decoder_session
        self.generation_config = (
            GenerationConfig.from_pretrained(path)
            if (path / "generation_config.json").is_file()
            else GenerationConfig.from_model_config(config)
        )

    def can_generate(self) -> bool:
        return True

    def forward(self, **inputs):
        raise TypeError("an exported seq2seq model runs through generate(input_ids, attention_mask, max_new_tokens=N).")

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int | None = None, **options) -> torch.Tensor:
        """Greedy ids `[batch, 1 + new]` (decoder start token first). `options`: generation settings that
        keep decoding greedy (`do_sample=False`, `num_beams=1`, `eos_token_id`, ...), else a ValueError."""
        from .seq2seq import greedy_generate

        config = copy.deepcopy(self.generation_config)
        for name, value in options.items():
            if (name, value) in (("do_sample", False), ("num_beams", 1)):
                continue
            if name in ("do_sample", "num_beams") or not hasattr(config, name):
                raise ValueError(
                    f"generate({name}=...): the exported model takes input_ids and attention_mask and decodes "
                    f"greedily (do_sample=False, num_beams=1) with the generation config's ids and lengths."
                )
            setattr(config, name, value)
        feeds = self.feeds({"input_ids": input_ids, "attention_mask": attention_mask})
        if max_new_tokens is None:
            max_new_tokens = config.max_new_tokens or (config.max_length or 20) - 1
        ids = greedy_generate(
            self.session, self.decoder_session, feeds["input_ids"], feeds["attention_mask"], max_new_tokens, config
        )
        return torch.from_numpy(ids)


_HEADS = {
    "ForSequenceClassification": ORTModelForSequenceClassification,
    "ForTokenClassification": ORTModelForTokenClassification,
    "ForQuestionAnswering": ORTModelForQuestionAnswering,
    "ForMaskedLM": ORTModelForMaskedLM,
}


def load_exported(path: str | Path, providers: list[str] | None = None, **options) -> ORTModel:
    """The exported folder `path` (from `longbird export --format onnx`) in ONNX Runtime.

    `options`: `onnxruntime.SessionOptions` attributes (e.g. `intra_op_num_threads=4`), over
    `ort_session.SESSION_OPTIONS`: ONNX Runtime's defaults with its memory pattern and buffer reuse
    off, which lowers the peak memory of long inputs (bench/bench_export.py)."""
    import onnxruntime

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no config.json; pass the folder `longbird export` wrote.")
    config = AutoConfig.from_pretrained(path)
    architecture = (json.loads((path / "config.json").read_text()).get("architectures") or [""])[0]
    options = session_options(**options)
    providers = providers or ["CPUExecutionProvider"]
    if (path / "encoder_model.onnx").is_file():
        encoder, decoder = (
            onnxruntime.InferenceSession(str(path / f"{name}.onnx"), options, providers=providers)
            for name in ("encoder_model", "decoder_model")
        )
        return ORTModelForSeq2SeqLM(encoder, decoder, config, path)
    if not (path / "model.onnx").is_file():
        raise ValueError(f"{path} holds no model.onnx; export with `longbird export MODEL_DIR --format onnx`.")
    session = onnxruntime.InferenceSession(str(path / "model.onnx"), options, providers=providers)
    cls = next((cls for suffix, cls in _HEADS.items() if architecture.endswith(suffix)), ORTModel)
    return cls(session, config, path)
