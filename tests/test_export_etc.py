"""Exporting ETC models (`longbird.export.etc`): the ONNX graph and the `torch.export` program of
`EtcModel` and each inference head equal the eager model on padded, packed batches of several
lengths; the graph's memory stays linear in the long length; unexportable configs are refused.

Each class is exported once per module (the exports dominate the time).
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_etc_config
from torch.fx.passes.shape_prop import ShapeProp

from longbird import (
    EtcForMaskedLM,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
)
from longbird.export.etc import ETC_INPUT_NAMES, etc_graphs, etc_output_names
from longbird.export.graphs import write_graph

ort = pytest.importorskip("onnxruntime")

VOCAB = 100
GLOBAL_ID = 1
CLASSES = (EtcModel, EtcForSequenceClassification, EtcForTokenClassification, EtcForQuestionAnswering, EtcForMaskedLM)
TOLERANCE = 1e-4
#: three long lengths; each batch: a full row, a row of two packed documents, a short row
LENGTHS = (37, 64, 130)


def make(cls, **overrides):
    torch.manual_seed(0)
    # tiny_etc_config only takes the tokenizer's length; 10x the usual init so that attention
    # (not the residual path) dominates the outputs and a graph mistake shows
    config = tiny_etc_config(
        range(VOCAB),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,
        num_labels=3,
        **overrides,
    )
    return cls(config).eval()


def document_row(documents: list[list[int]], n_long: int, n_global: int, gen: torch.Generator) -> dict:
    """One row: documents (as sentence lengths) packed one after another, each ended by a
    breakpoint on both sides, one global token per sentence, padding after the last."""
    sentence_ids, long_bp, global_bp = [], [], []
    n_sentences = 0
    for sentences in documents:
        for i, length in enumerate(sentences):
            sentence_ids += [n_sentences + i] * length
        long_bp += [0] * (sum(sentences) - 1) + [1]
        global_bp += [0] * (len(sentences) - 1) + [1]
        n_sentences += len(sentences)
    n_real, pad_long, pad_global = len(sentence_ids), n_long - len(sentence_ids), n_global - n_sentences
    assert pad_long >= 0 and pad_global >= 0

    def padded(values, pad):
        return torch.tensor(values + [0] * pad)

    return {
        "input_ids": padded(torch.randint(5, VOCAB, (n_real,), generator=gen).tolist(), pad_long),
        "attention_mask": padded([1] * n_real, pad_long),
        "token_type_ids": padded(torch.randint(0, 2, (n_real,), generator=gen).tolist(), pad_long),
        "global_input_ids": padded([GLOBAL_ID] * n_sentences, pad_global),
        "global_attention_mask": padded([1] * n_sentences, pad_global),
        "global_token_type_ids": torch.zeros(n_global, dtype=torch.long),
        "long_breakpoints": padded(long_bp, pad_long),
        "global_breakpoints": padded(global_bp, pad_global),
        "sentence_ids": padded(sentence_ids, pad_long),
    }


def batch(n_long: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Three rows of different real lengths: one document filling the row, two packed documents
    with padding, one short document."""
    gen = torch.Generator().manual_seed(seed)

    def split(total, parts):  # `parts` sentence lengths summing to `total`
        return [total // parts + (i < total % parts) for i in range(parts)]

    rows = [
        [split(n_long, 5)],
        [split(n_long // 3, 2), split(n_long // 3 + 1, 3)],
        [split(n_long // 2 - 1, 4)],
    ]
    n_global = max(sum(len(doc) for doc in row) for row in rows)
    made = [document_row(row, n_long, n_global, gen) for row in rows]
    return {name: torch.stack([row[name] for row in made]) for name in ETC_INPUT_NAMES}


def eager(model, inputs: dict) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        output = model(**inputs, return_dict=True)
    return tuple(output[name] for name in etc_output_names(model))


def max_error(got, expected) -> float:
    return max(float((torch.as_tensor(g) - e).abs().max()) for g, e in zip(got, expected))


# token classification and MLM (a linear layer on the same graph as the base model) only under
# `-m slow`: each class exports a model (~20-30 s on 2 cores)
_SLOW = (EtcForTokenClassification, EtcForMaskedLM)


@pytest.fixture(
    scope="module",
    params=[pytest.param(cls, marks=pytest.mark.slow) if cls in _SLOW else cls for cls in CLASSES],
    ids=[cls.__name__ for cls in CLASSES],
)
def exported(request, tmp_path_factory):
    """(model, ONNX Runtime session, torch.export program) of one class."""
    model = make(request.param)
    (graph,) = etc_graphs(model)
    program = graph.program()
    path = write_graph(graph, tmp_path_factory.mktemp(request.param.__name__), "onnx", program)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, session, program


@pytest.mark.parametrize("n_long", LENGTHS)
def test_onnx_runtime_equals_eager(exported, n_long):
    model, session, _ = exported
    inputs = batch(n_long)
    assert [i.name for i in session.get_inputs()] == list(ETC_INPUT_NAMES)
    assert [o.name for o in session.get_outputs()] == list(etc_output_names(model))
    got = session.run(None, {name: value.numpy() for name, value in inputs.items()})
    expected = eager(model, inputs)
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    assert max_error(got, expected) <= TOLERANCE


@pytest.mark.parametrize("n_long", LENGTHS)
def test_torch_export_program_equals_eager(exported, n_long):
    model, _, program = exported
    inputs = batch(n_long, seed=1)
    with torch.no_grad():
        got = program.module()(*inputs.values())
    assert max_error(got, eager(model, inputs)) <= TOLERANCE


def test_exported_graph_is_linear_in_the_long_length():
    """No intermediate of the exported program has two axes as long as the long input (an
    `[n, n]` score or mask): every node's shape, propagated at a long length of 512."""
    model = make(EtcModel)
    (graph,) = etc_graphs(model)
    inputs = batch(512)
    n_long, n_global = inputs["input_ids"].shape[1], inputs["global_input_ids"].shape[1]
    assert n_global < 64 and model.config.intermediate_size < n_long  # only long axes can reach n
    module = graph.program().module()
    with torch.no_grad():
        ShapeProp(module).propagate(*inputs.values())
    shapes = [
        (node.name, tuple(node.meta["tensor_meta"].shape))
        for node in module.graph.nodes
        if hasattr(node.meta.get("tensor_meta"), "shape")
    ]
    assert any(n_long in shape for _, shape in shapes)  # the propagation saw the long axis
    quadratic = [(name, shape) for name, shape in shapes if sum(size >= n_long for size in shape) >= 2]
    assert not quadratic


@pytest.mark.parametrize("option", ["output_attentions", "output_hidden_states"])
def test_unexportable_config_raises_naming_the_option(option):
    model = make(EtcModel, **{option: True})
    with pytest.raises(ValueError, match=option):
        etc_graphs(model)


def test_pretraining_model_is_refused():
    from longbird import EtcForPreTraining

    with pytest.raises(ValueError, match="EtcForPreTraining"):
        etc_graphs(make(EtcForPreTraining))
