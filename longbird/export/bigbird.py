"""BigBird's exported graph: one `model` graph of the checkpoint's head, every axis dynamic."""

from __future__ import annotations

import torch
from torch import nn

from longbird.modeling import (
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
)

from .graphs import ExportGraph, check_exportable

#: the heads that export, and the outputs their graph returns
BIGBIRD_OUTPUTS = {
    BigBirdModel: ["last_hidden_state", "pooler_output"],
    BigBirdForSequenceClassification: ["logits"],
    BigBirdForTokenClassification: ["logits"],
    BigBirdForQuestionAnswering: ["start_logits", "end_logits"],
    BigBirdForMaskedLM: ["logits"],
}
TEXT_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


class OutputsAsTuple(nn.Module):
    """Calls `model` with the inputs by name and returns the named outputs as a tuple (what
    `torch.export` and ONNX take)."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str]):
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs)), return_dict=True)
        return tuple(out[name] for name in self.output_names)


def example_text_inputs(config, batch: int = 2, length: int | None = None) -> dict[str, torch.Tensor]:
    """A padded batch to trace with: long enough for the sparse path, sizes >= 2 on every axis."""
    length = length or min(config.max_position_embeddings, 16 * config.block_size)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, config.vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1:, length - length // 3 :] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def bigbird_graphs(model: nn.Module) -> list[ExportGraph]:
    """The `model` graph of a BigBird checkpoint: inputs `input_ids`, `attention_mask`,
    `token_type_ids` (int64, `[batch, sequence]`); outputs as `BIGBIRD_OUTPUTS` says."""
    check_exportable(model.config)
    outputs = next((names for cls, names in BIGBIRD_OUTPUTS.items() if type(model) is cls), None)
    if outputs is None:
        supported = ", ".join(cls.__name__ for cls in BIGBIRD_OUTPUTS)
        raise ValueError(f"{type(model).__name__} does not export; the BigBird classes that do: {supported}.")
    config = model.config
    if isinstance(model, BigBirdModel) and model.pooler is None:
        outputs = outputs[:1]
    axes = {name: {0: "batch", 1: "sequence"} for name in TEXT_INPUTS}
    return [
        ExportGraph(
            "model",
            OutputsAsTuple(model, TEXT_INPUTS, outputs),
            example_text_inputs(config),
            axes,
            outputs,
            dim_ranges={"sequence": (1, config.max_position_embeddings)},
        )
    ]
