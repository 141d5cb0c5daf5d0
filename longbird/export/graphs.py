"""What an exported graph is, and how one is written: ONNX (through `torch.export`) or a `.pt2` program.

A model family describes its graphs as `ExportGraph`s (`bigbird.py`, `etc.py`, `seq2seq.py`); this
file exports any of them the same way, with every named axis dynamic.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

FORMATS = ("onnx", "torch-export")
# 20: GELU is one op, which ONNX Runtime fuses with its bias (FastGelu), where opset 18 spells it
# in seven elementwise passes over the FFN activations
ONNX_OPSET = 20

#: attention kernels that exist only on a GPU
_GPU_ONLY_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def check_exportable(config) -> None:
    """A clear error, naming the option, for a config whose graph cannot be exported."""
    for option in ("output_attentions", "output_hidden_states"):
        if getattr(config, option, False):
            raise ValueError(
                f"config.{option}=True cannot be exported: an exported graph returns the model's outputs only. "
                f"Set {option}=False in config.json (or model.config.{option} = False) and export again."
            )
    if getattr(config, "attention_backend", "auto") == "flex":
        raise ValueError(
            "config.attention_backend='flex' cannot be exported: FlexAttention is compiled for a GPU at run "
            "time. Set attention_backend='auto' (the exported graph runs its own sparse kernel, same outputs)."
        )
    implementation = getattr(config, "_attn_implementation", None)
    if implementation in _GPU_ONLY_ATTENTION:
        raise ValueError(
            f"attn_implementation={implementation!r} runs only on a GPU and cannot be exported; load the model "
            f"with attn_implementation='sdpa' (or 'eager') and export again."
        )


@dataclass
class ExportGraph:
    """One graph to export.

    Attributes:
        name: file stem (`model`, `encoder_model`, `decoder_model`).
        module: takes the inputs positionally, in `inputs`' order; returns a tuple of tensors.
        inputs: example inputs by name (sizes of at least 2 on every dynamic axis: `torch.export`
            specialises sizes 0 and 1).
        dynamic_axes: per input, `{axis: dim name}`; inputs sharing a dim name share that size.
        output_names: names of the returned tensors, in order.
        dim_ranges: `(min, max)` of a dim name, where it is not `(1, None)`.
    """

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]
    output_names: list[str]
    dim_ranges: dict[str, tuple[int, int | None]] | None = None

    def dynamic_shapes(self) -> tuple[dict, ...]:
        """Per input, in order, its dynamic axes (a tuple: modules may take `*inputs`). Hints, not
        named `Dim`s: `torch.export` then turns facts it cannot prove (the block padding of a length
        is never negative) into run-time checks instead of refusing the export; inputs that share a
        dim name come out equal all the same (the model checks their shapes agree)."""
        ranges = self.dim_ranges or {}

        def hint(dim_name):
            low, high = ranges.get(dim_name, (1, None))
            return torch.export.Dim.DYNAMIC(min=low, max=high)

        return tuple({axis: hint(d) for axis, d in self.dynamic_axes.get(name, {}).items()} for name in self.inputs)

    def program(self) -> torch.export.ExportedProgram:
        """The `torch.export` program of this graph (dynamic axes as declared)."""
        shapes = self.dynamic_shapes()
        params = list(inspect.signature(self.module.forward).parameters.values())
        if len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
            shapes = (shapes,)  # `forward(*inputs)`: one argument, a tuple
        with torch.no_grad():
            self.module.eval()(*self.inputs.values())  # eager once: fills the caches tracing reads (plan tables)
        # size-oblivious: a size 1 is traced like any other (else contiguity checks guard sizes >= 2)
        with torch.no_grad(), torch.fx.experimental._config.patch(backed_size_oblivious=True):
            inputs = tuple(self.inputs.values())
            return torch.export.export(self.module.eval(), inputs, dynamic_shapes=shapes, strict=False)


def write_graph(
    graph: ExportGraph, output_dir: str | Path, fmt: str, program: torch.export.ExportedProgram | None = None
) -> Path:
    """Export `graph` into `output_dir` as `<name>.onnx` or `<name>.pt2`; returns the file.
    `program`: `graph.program()` when the caller has it already (tracing is the slow part)."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not one of {FORMATS}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    program = program if program is not None else graph.program()
    if fmt == "torch-export":
        path = output_dir / f"{graph.name}.pt2"
        torch.export.save(program, path)
        return path
    path = output_dir / f"{graph.name}.onnx"
    torch.onnx.export(
        program,
        f=str(path),
        input_names=list(graph.inputs),
        output_names=graph.output_names,
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return path
