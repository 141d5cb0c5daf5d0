"""BigBird exported to ONNX and torch.export: outputs equal eager at every length and batch shape,
the graph stays sparse, the CLI and `load_exported` work, pipelines run over an ONNX session.

Tiny one-layer models; each exports once per module (an ONNX export of a tiny model takes ~15 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import TINY_BIGBIRD, run_readme_code, tiny_bigbird_config
from transformers import AutoTokenizer, pipeline

import longbird
from longbird.cli import main as longbird_main
from longbird.export import check_exportable, export_model, exportable_graphs, load_exported
from longbird.export.graphs import write_graph
from longbird.export.runtime import ORTModel

TOKENIZER = Path(__file__).resolve().parent / "fixtures" / "wikitext2_wordpiece_1500"
MAX_POSITIONS = 256
# (length, real lengths): a long padded batch of 3 (sparse, mixed lengths), lengths that are not a
# multiple of the block size (8), a one-block input, a batch of one
CASES = [(203, [203, 150, 61]), (130, [130, 130, 97]), (37, [37, 30, 5]), (7, [7]), (256, [256])]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER)


def _config(tokenizer, **overrides):
    # 2 random blocks: sparse from 12 blocks (96 tokens) on; one layer keeps the export quick
    sizes = dict(num_random_blocks=2, max_position_embeddings=MAX_POSITIONS, sep_token_id=tokenizer.sep_token_id)
    return tiny_bigbird_config(tokenizer, **{**sizes, **overrides})


def _batch(length: int, real: list[int], vocab: int, seed: int = 0, question: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + length)
    ids = torch.randint(5, vocab, (len(real), length), generator=generator)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(real):
        mask[i, :n] = 1
    types = torch.zeros_like(ids)
    if question:  # [question] [SEP] context: the QA head makes the question global
        types[:, question:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _exported(model, tmp_path_factory, name):
    """(graph, ONNX session, torch.export program) of `model`."""
    import onnxruntime

    torch.manual_seed(0)
    graph = exportable_graphs(model.eval())[0]
    program = graph.program()
    path = write_graph(graph, tmp_path_factory.mktemp(name), "onnx", program)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return graph, session, program.module(), path


def _assert_parity(model, graph, session, program, batch):
    with torch.no_grad():
        eager = model(**batch)
        traced = program(*(batch[name] for name in graph.inputs))
    onnx_out = session.run(None, {name: batch[name].numpy() for name in graph.inputs})
    for i, name in enumerate(graph.output_names):
        expected = eager[name].numpy()
        assert np.abs(onnx_out[i] - expected).max() <= 1e-4, (name, np.abs(onnx_out[i] - expected).max())
        assert np.abs(traced[i].numpy() - expected).max() <= 1e-4, name


VARIANTS = {
    "itc": dict(),  # first and last block global, transformers' random plan
    # extra global tokens in front, uniform random plan: under `-m slow` (one export ~20 s); the default
    # run covers this variant with its QA head (`qa_etc_variant` below)
    "etc_variant": dict(num_global_tokens=3),
}


@pytest.fixture(scope="module", params=["itc", pytest.param("etc_variant", marks=pytest.mark.slow)])
def base_model(request, tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    model = longbird.BigBirdModel(_config(tokenizer, **VARIANTS[request.param])).eval()
    return (model, *_exported(model, tmp_path_factory, request.param))


@pytest.mark.parametrize("length,real", CASES)
def test_base_model_onnx_and_program_equal_eager(base_model, length, real):
    model, graph, session, program, _ = base_model
    _assert_parity(model, graph, session, program, _batch(length, real, model.config.vocab_size))


# token classification: test_export_cli_writes_a_folder_that_runs exports that head
HEADS = {
    "seq_cls": ("BigBirdForSequenceClassification", dict(num_labels=3)),
    "qa": ("BigBirdForQuestionAnswering", dict()),
    # the question's blocks made global on top of extra global tokens and a uniform random plan
    "qa_etc_variant": ("BigBirdForQuestionAnswering", dict(num_global_tokens=3)),
    "mlm": ("BigBirdForMaskedLM", dict()),
}


@pytest.fixture(scope="module", params=list(HEADS))
def head_model(request, tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    name, overrides = HEADS[request.param]
    model = getattr(longbird, name)(_config(tokenizer, **overrides)).eval()
    return (model, *_exported(model, tmp_path_factory, request.param))


@pytest.mark.parametrize("length,real", [CASES[0], CASES[2]])
def test_heads_onnx_and_program_equal_eager(head_model, length, real):
    model, graph, session, program, _ = head_model
    # a 20-token question: the QA head makes it global (3 blocks), other heads read it as text
    _assert_parity(model, graph, session, program, _batch(length, real, model.config.vocab_size, question=20))


def _largest_intermediate(path: Path, batch: dict[str, torch.Tensor]) -> int:
    """Elements of the largest tensor the ONNX graph computes on `batch` (every intermediate made an output)."""
    import onnxruntime

    proto = onnx.load(str(path))
    names = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in names:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
                names.add(name)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(None, {k: v.numpy() for k, v in batch.items()})
    return max(v.size for v in values if isinstance(v, np.ndarray))


def test_graph_stays_sparse_at_8192_tokens(tokenizer, tmp_path_factory):
    """No [n, n] tensor at 8,192 tokens, and the largest intermediate grows linearly with the length."""
    torch.manual_seed(0)
    config = _config(tokenizer, hidden_size=16, intermediate_size=32, block_size=64, max_position_embeddings=8192)
    model = longbird.BigBirdModel(config).eval()
    graph = exportable_graphs(model)[0]
    path = write_graph(graph, tmp_path_factory.mktemp("long"), "onnx")
    sizes = {n: _largest_intermediate(path, _batch(n, [n], config.vocab_size)) for n in (4096, 8192)}
    n = 8192
    assert sizes[n] * 16 < n * n, sizes  # full attention would hold n^2 * heads scores
    assert sizes[n] / sizes[4096] < 2.2, sizes  # linear in the length


def _runtime_model(exported, model, tokenizer, tmp_path) -> ORTModel:
    """The fixture's ONNX session as `load_exported` makes it (the folder: graph, config, tokenizer)."""
    _, _, _, path = exported
    model.config.architectures = [type(model).__name__]  # as save_pretrained writes it
    model.config.save_pretrained(path.parent)
    tokenizer.save_pretrained(path.parent)
    return load_exported(path.parent)


def test_pipelines_over_onnx_runtime(head_model, tokenizer, tmp_path):
    """transformers' text-classification and longbird's long-question-answering pipelines with the
    ONNX Runtime model give the PyTorch model's answers, on long (sparse) inputs."""
    model = head_model[0]
    exported = _runtime_model(head_model[1:], model, tokenizer, tmp_path)
    if isinstance(model, longbird.BigBirdForSequenceClassification):
        assert type(exported).__name__ == "ORTModelForSequenceClassification"
        text = " ".join(["the history of the city is long and well documented"] * 15)  # ~150 tokens: sparse
        folder = str(exported.path)
        a = pipeline("text-classification", model=exported, tokenizer=folder)(text, top_k=None)
        b = pipeline("text-classification", model=model, tokenizer=tokenizer)(text, top_k=None)
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-4
    elif isinstance(model, longbird.BigBirdForQuestionAnswering):
        question, context = "where is the city?", " ".join(["the city lies on the river near the sea ."] * 40)
        a = pipeline("long-question-answering", model=exported, tokenizer=tokenizer)(question=question, context=context)
        b = pipeline("long-question-answering", model=model, tokenizer=tokenizer)(question=question, context=context)
        assert (a["start"], a["end"], a["answer"]) == (b["start"], b["end"], b["answer"])
        assert abs(a["score"] - b["score"]) < 1e-4
    else:
        pytest.skip("pipelines are checked with the classification and question-answering heads")


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_export_cli_writes_a_folder_that_runs(fmt, tokenizer, tmp_path):
    """`longbird export` on a saved checkpoint: graph, config, tokenizer and a README whose code runs;
    the graph equals eager in every case (the token-classification head's parity test)."""
    torch.manual_seed(0)
    model = longbird.BigBirdForTokenClassification(_config(tokenizer, num_labels=2)).eval()
    model.save_pretrained(tmp_path / "tok")
    tokenizer.save_pretrained(tmp_path / "tok")
    out = tmp_path / "out"
    longbird_main(["export", str(tmp_path / "tok"), "--format", fmt, "--output", str(out)])
    graph_file = out / ("model.onnx" if fmt == "onnx" else "model.pt2")
    assert {graph_file.name, "config.json", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert "`input_ids` | int64 | [batch, sequence]" in (out / "README.md").read_text()
    run_readme_code(out)
    if fmt == "onnx":
        session = load_exported(out).session
        # memory planned per tensor, not per shape: see longbird/export/ort_session.py
        options = session.get_session_options()
        assert not options.enable_mem_pattern and not options.enable_mem_reuse
        assert "options.enable_mem_reuse = False" in (out / "README.md").read_text()
        assert load_exported(out, enable_mem_reuse=True).session.get_session_options().enable_mem_reuse

        def run(batch):
            return torch.from_numpy(session.run(None, {k: v.numpy() for k, v in batch.items()})[0])
    else:
        program = torch.export.load(graph_file).module()

        def run(batch):
            return program(*batch.values())[0]

    for length, real in CASES:
        batch = _batch(length, real, model.config.vocab_size)
        with torch.no_grad():
            torch.testing.assert_close(run(batch), model(**batch).logits, atol=1e-4, rtol=0)


def test_too_long_input_is_refused_before_onnx_runtime(base_model, tokenizer, tmp_path):
    exported = _runtime_model(base_model[1:], base_model[0], tokenizer, tmp_path)
    model = base_model[0]
    too_long = _batch(MAX_POSITIONS + 1, [MAX_POSITIONS + 1], model.config.vocab_size)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        exported(**too_long)
    # the session alone: an error (positions, or the plan table for the ETC variant), no output
    with pytest.raises(Exception, match="broadcast|invalid index"):
        exported.session.run(None, {k: v.numpy() for k, v in too_long.items()})
    with pytest.raises(ValueError, match="vocabulary"):
        exported(input_ids=torch.full((1, 10), model.config.vocab_size))


@pytest.mark.parametrize(
    "option,value,match",
    [
        ("output_attentions", True, "output_attentions"),
        ("output_hidden_states", True, "output_hidden_states"),
        ("attention_backend", "flex", "attention_backend"),
    ],
)
def test_unexportable_configs_are_refused(tokenizer, option, value, match):
    config = _config(tokenizer)
    setattr(config, option, value)
    with pytest.raises(ValueError, match=match):
        check_exportable(config)
    with pytest.raises(ValueError, match=match):
        exportable_graphs(longbird.BigBirdModel(config))


def test_unexportable_head_is_named(tokenizer):
    with pytest.raises(ValueError, match="BigBirdForMultipleChoice does not export"):
        exportable_graphs(longbird.BigBirdForMultipleChoice(_config(tokenizer)))


def test_transformers_bigbird_folder_exports_and_equals_the_reference(tmp_path):
    """A folder saved by transformers' own BigBird exports as is; ONNX Runtime gives what
    transformers' model computes (its training-mode plan, dropout 0: the plan longbird reproduces)."""
    import transformers

    torch.manual_seed(0)
    reference = transformers.BigBirdForSequenceClassification(
        transformers.BigBirdConfig(**TINY_BIGBIRD, num_labels=3, attention_type="block_sparse")
    )
    reference.save_pretrained(tmp_path / "hf")
    export_model(tmp_path / "hf", tmp_path / "onnx", "onnx")
    batch = _batch(200, [200, 200], TINY_BIGBIRD["vocab_size"])  # unpadded: transformers' padding differs
    with torch.no_grad():
        expected = reference.train()(**batch).logits  # dropout is 0: only the plan differs from eval
    got = load_exported(tmp_path / "onnx")(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
