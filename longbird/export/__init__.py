"""Export a saved longbird checkpoint (BigBird, ETC, BigBird-Pegasus, or a transformers BigBird folder) to
ONNX or a `torch.export` program, and run the ONNX files in ONNX Runtime (`runtime.py`).

    longbird export MODEL_DIR --format onnx --output OUT_DIR

is `export_model(MODEL_DIR, OUT_DIR, "onnx")`. OUT_DIR gets the graph files (`model.onnx`, or
`encoder_model.onnx` + `decoder_model.onnx` for BigBird-Pegasus), the config, the tokenizer and a
README.md that says how to feed the graphs. The exported graphs stay sparse (every axis dynamic,
memory linear in the length): the graph of attention is built inside them from the inputs
(`longbird.modeling.longbird_exportable_block`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .graphs import FORMATS, ExportGraph, check_exportable, write_graph
from .ort_session import SESSION_OPTIONS

__all__ = ["FORMATS", "ExportGraph", "export_model", "exportable_graphs", "check_exportable", "load_exported"]

#: model_type in config.json -> the module of this package, and its function, that describe its graphs
FAMILIES = {
    "longbird_bigbird": ("bigbird", "bigbird_graphs"),
    "big_bird": ("bigbird", "bigbird_graphs"),
    "longbird_etc": ("etc", "etc_graphs"),
    "longbird_bigbird_pegasus": ("seq2seq", "pegasus_graphs"),
    "bigbird_pegasus": ("seq2seq", "pegasus_graphs"),
}


def exportable_graphs(model: nn.Module) -> list[ExportGraph]:
    """The graphs that make up `model` exported (one, or an encoder and a decoder step)."""
    import importlib

    model_type = getattr(model.config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} does not export; longbird exports {sorted(FAMILIES)}.")
    module, function = FAMILIES[model_type]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)(model)


def load_model(model_dir: str | Path) -> nn.Module:
    """The checkpoint in `model_dir` with its head (config.json's `architectures`), in fp32, eval mode."""
    import longbird

    config_file = Path(model_dir) / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_dir} holds no config.json; pass a folder written by save_pretrained().")
    config = json.loads(config_file.read_text())
    architecture = (config.get("architectures") or [None])[0]
    cls = getattr(longbird, architecture or "", None)
    if cls is None:
        raise ValueError(
            f"{model_dir}: config.json names architecture {architecture!r}, which longbird has no class for; "
            f"export a BigBird, ETC or BigBird-Pegasus checkpoint."
        )
    return cls.from_pretrained(model_dir, dtype=torch.float32).eval()


def export_model(model_dir: str | Path, output_dir: str | Path, format: str = "onnx") -> list[Path]:
    """Export the checkpoint in `model_dir` to `output_dir` (`format`: "onnx" or "torch-export").

    Returns the graph files written. Also writes the config, the tokenizer (when `model_dir` has
    one) and a README.md describing the graphs' inputs and outputs.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}.")
    model = load_model(model_dir)
    graphs = exportable_graphs(model)
    output_dir = Path(output_dir)
    files = [write_graph(graph, output_dir, format) for graph in graphs]
    model.config.save_pretrained(output_dir)
    if model.can_generate():  # the exported decoder's greedy loop reads its start, end and pad ids
        model.generation_config.save_pretrained(output_dir)
    has_tokenizer = _copy_tokenizer(model_dir, output_dir)
    (output_dir / "README.md").write_text(_readme(model, graphs, files, has_tokenizer))
    return files


def load_exported(path: str | Path, **options):
    """An exported ONNX folder as a model in ONNX Runtime (see `longbird.export.runtime`)."""
    from .runtime import load_exported as load

    return load(path, **options)


def _copy_tokenizer(model_dir, output_dir) -> bool:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError):  # a checkpoint saved without its tokenizer
        return False
    tokenizer.save_pretrained(output_dir)
    return True


def _readme(model, graphs: list[ExportGraph], files: list[Path], has_tokenizer: bool) -> str:
    """OUT_DIR's README.md: the files, every graph's inputs and outputs, and code that runs them
    (tests run that code in an exported folder)."""
    lines = [
        f"# {type(model).__name__}, exported by longbird",
        "",
        f"Files: {', '.join(f'`{f.name}`' for f in files)}; `config.json`"
        + ("; the tokenizer." if has_tokenizer else " (the checkpoint had no tokenizer: use the model's)."),
        "Every axis named below is dynamic: any batch size, any length up to `max_position_embeddings` "
        f"where the config has one ({getattr(model.config, 'max_position_embeddings', 'none')}). "
        "A longer input makes ONNX Runtime fail the run (the position table cannot broadcast to it, or the "
        "table of random plans has no row for its length: no output, never a wrong one); "
        "`longbird.export.load_exported` checks first and raises a ValueError.",
        "",
    ]
    for graph in graphs:
        lines += [f"### `{graph.name}`", "", "| input | dtype | shape |", "|---|---|---|"]
        for name, tensor in graph.inputs.items():
            axes = graph.dynamic_axes.get(name, {})
            shape = [axes.get(i, str(size)) for i, size in enumerate(tensor.shape)]
            lines.append(f"| `{name}` | {str(tensor.dtype).replace('torch.', '')} | [{', '.join(shape)}] |")
        lines += ["", "Outputs (float32, in this order): " + ", ".join(f"`{n}`" for n in graph.output_names), ""]
    lines += ["## Run it", "", "```python", *_run_code(model, graphs, files), "```", ""]
    return "\n".join(lines)


def _run_code(model, graphs: list[ExportGraph], files: list[Path]) -> list[str]:
    """Python that runs the exported files from their folder."""
    if len(graphs) > 1:  # encoder + decoder step: greedy generation in ONNX Runtime
        return [
            "from transformers import AutoTokenizer",
            "",
            "from longbird.export import load_exported",
            "",
            'model = load_exported(".")  # both sessions; inputs are checked before they run',
            'tokenizer = AutoTokenizer.from_pretrained(".")',
            'batch = tokenizer(["a long document ...", "another"], return_tensors="pt", padding=True)',
            "ids = model.generate(batch['input_ids'], attention_mask=batch['attention_mask'], max_new_tokens=8)",
            "print(ids)  # = PyTorch's generate(do_sample=False, num_beams=1)",
        ]
    graph = graphs[0]
    if getattr(model.config, "model_type", None) == "longbird_etc":
        make_batch = [
            "from longbird.tokenization import EtcDataCollator, EtcFeaturizer",
            "",
            'tokenizer = AutoTokenizer.from_pretrained(".")',
            "rows = EtcFeaturizer(tokenizer, max_length=512, max_global_length=64)(",
            '    ["A first document. Its second sentence.", "Another document."]',
            ")",
            "batch = EtcDataCollator(tokenizer=tokenizer)([{k: v[i] for k, v in rows.items()} for i in range(2)])",
            f"inputs = [batch[name] for name in {list(graph.inputs)}]",
        ]
    else:
        make_batch = [
            'tokenizer = AutoTokenizer.from_pretrained(".")',
            'batch = tokenizer(["a long document ...", "another"], return_tensors="pt", padding=True)',
            f"inputs = [batch.get(name, torch.zeros_like(batch['input_ids'])) for name in {list(graph.inputs)}]",
        ]
    head = ["import torch", "from transformers import AutoTokenizer", "", *make_batch, ""]
    outputs = ", ".join(graph.output_names) + ("," if len(graph.output_names) == 1 else "")
    if files[0].suffix == ".pt2":
        return [*head, f'program = torch.export.load("{files[0].name}").module()', f"{outputs} = program(*inputs)"]
    return [
        "import onnxruntime",
        *head,
        "options = onnxruntime.SessionOptions()  # as longbird.export.load_exported: lower peak memory",
        *(f"options.{name} = {value!r}" for name, value in SESSION_OPTIONS.items()),
        f'session = onnxruntime.InferenceSession("{files[0].name}", options, providers=["CPUExecutionProvider"])',
        "feeds = {name: x.numpy() for name, x in zip([i.name for i in session.get_inputs()], inputs)}",
        f"{outputs} = session.run(None, feeds)",
        f"print({graph.output_names[0]}.shape)",
        "# or, with transformers' pre- and post-processing: model = longbird.export.load_exported('.'),",
        "# then model(**batch) or pipeline(task, model=model, tokenizer='.')",
    ]
