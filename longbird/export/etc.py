"""The exported graph of an ETC model (`EtcModel` or an inference head).

One graph, `model`, takes the inputs `EtcFeaturizer` makes (`ETC_INPUT_NAMES`, all of them: the
structure inputs are what says who attends to whom) with the batch, the long length and the
global length dynamic. Under `torch.export` the model runs the padded batch without packing and
its attention in one blocked call (see `EtcModel.forward` and `longbird_global_local_executors`):
the same graph, with memory linear in the long length. The caller checks input values (ids in the
vocabulary, 0/1 masks) before running the graph (`check_etc_inputs`), as a traced graph cannot.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..modeling.modeling_longbird_etc import (
    EtcForMaskedLM,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
    EtcPreTrainedModel,
)
from ..tokenization.etc_inputs import ETC_GLOBAL_INPUTS, ETC_INPUTS
from .graphs import ExportGraph, check_exportable

#: the graph's inputs, in order: every input EtcFeaturizer makes (the collators pad them), each
#: `[batch, long_sequence]` or `[batch, global_sequence]`, integer (int64)
ETC_INPUT_NAMES: tuple[str, ...] = ETC_INPUTS

#: the outputs of each exportable class (names of its model output's fields)
ETC_OUTPUT_NAMES: dict[type, tuple[str, ...]] = {
    EtcModel: ("last_hidden_state", "global_last_hidden_state"),
    EtcForSequenceClassification: ("logits",),
    EtcForTokenClassification: ("logits",),
    EtcForQuestionAnswering: ("start_logits", "end_logits", "supporting_fact_logits"),
    EtcForMaskedLM: ("logits",),
}


class EtcExportModule(nn.Module):
    """The model with positional tensor inputs (`ETC_INPUT_NAMES` order) and a tuple of output
    tensors, as `torch.export` and ONNX want them."""

    def __init__(self, model: EtcPreTrainedModel, output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    # the inputs by name (torch.export matches `dynamic_shapes` to the argument names)
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        global_input_ids: torch.Tensor,
        global_attention_mask: torch.Tensor,
        global_token_type_ids: torch.Tensor,
        long_breakpoints: torch.Tensor,
        global_breakpoints: torch.Tensor,
        sentence_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        inputs = {name: value for name, value in locals().items() if name in ETC_INPUT_NAMES}
        output = self.model(**inputs, return_dict=True)
        return tuple(output[name] for name in self.output_names)


# the wrapper's arguments are the featurizer's inputs, in its order
assert tuple(inspect.signature(EtcExportModule.forward).parameters)[1:] == ETC_INPUT_NAMES


def etc_output_names(model: EtcPreTrainedModel) -> tuple[str, ...]:
    """The exported graph's output names for `model`; a ValueError for a class that has no graph."""
    for cls, names in ETC_OUTPUT_NAMES.items():
        if type(model) is cls:
            return names
    supported = ", ".join(cls.__name__ for cls in ETC_OUTPUT_NAMES)
    raise ValueError(f"{type(model).__name__} cannot be exported; exportable ETC classes: {supported}.")


def example_inputs(model: EtcPreTrainedModel, batch: int = 2, n_long: int = 13, n_global: int = 3) -> dict:
    """Example inputs of the graph: two sentences per row, the second row padded on both sides.
    Sizes of at least 2 on every dynamic axis, and different per axis (torch.export would tie
    equal sizes)."""
    config = model.config
    sentence_ids = torch.arange(n_long) * n_global // n_long  # n_global sentences in order
    long_mask = torch.ones(batch, n_long, dtype=torch.long)
    global_mask = torch.ones(batch, n_global, dtype=torch.long)
    long_mask[1:, n_long - 3 :] = 0
    global_mask[1:, n_global - 1 :] = 0
    long_real, global_real = long_mask.sum(1), global_mask.sum(1)
    inputs = {
        "input_ids": torch.randint(5, config.vocab_size, (batch, n_long)) * long_mask,
        "attention_mask": long_mask,
        "token_type_ids": torch.ones(batch, n_long, dtype=torch.long),
        "global_input_ids": torch.full((batch, n_global), config.global_token_id) * global_mask,
        "global_attention_mask": global_mask,
        "global_token_type_ids": torch.zeros(batch, n_global, dtype=torch.long),
        # a 1 at each row's last real token (one example per row)
        "long_breakpoints": (torch.arange(n_long) == long_real[:, None] - 1).long(),
        "global_breakpoints": (torch.arange(n_global) == global_real[:, None] - 1).long(),
        "sentence_ids": sentence_ids.clamp_max(global_real[:, None] - 1) * long_mask,
    }
    return {name: inputs[name] for name in ETC_INPUT_NAMES}


def etc_graphs(model: EtcPreTrainedModel) -> list[ExportGraph]:
    """The graph of an ETC model (`EtcModel` or a head in `ETC_OUTPUT_NAMES`): inputs
    `ETC_INPUT_NAMES`, dynamic batch / long / global lengths, outputs `etc_output_names(model)`.

    Raises a ValueError naming the option when the config asks for outputs a graph cannot give
    (`output_attentions`, `output_hidden_states`)."""
    output_names = etc_output_names(model)
    check_exportable(model.config)
    dynamic_axes = {
        name: {0: "batch", 1: "global_sequence" if name in ETC_GLOBAL_INPUTS else "long_sequence"}
        for name in ETC_INPUT_NAMES
    }
    return [
        ExportGraph(
            name="model",
            module=EtcExportModule(model, output_names),
            inputs=example_inputs(model),
            dynamic_axes=dynamic_axes,
            output_names=list(output_names),
        )
    ]


__all__ = ["ETC_INPUT_NAMES", "ETC_OUTPUT_NAMES", "EtcExportModule", "etc_graphs", "etc_output_names"]
