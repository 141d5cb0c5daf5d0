"""bfloat16 and float16 on CPU: every model family and attention path, and --bf16 in the recipes.

Models (tiny, one layer) in four precisions: cast (`model.to(dtype)`) and autocast
(`torch.autocast("cpu", dtype)`, float32 weights), for bfloat16 and float16. A batch always holds a
full example, a padded one and one with no real token at all (every row of it fully masked). Checked:
outputs, loss and every gradient finite; attention computed in the low dtype (a forward hook); no
scores-sized float32 tensor anywhere in the sparse paths (a dispatch mode that sees every aten op);
16k-token inputs; agreement with float32; float16's narrow range (LayerNorm statistics, masked
scores). Recipes: `--bf16` trains and evaluates under bfloat16 autocast on a machine without an
accelerator (no --use_cpu needed), `--fp16` on CPU is a one-line error, and an eval-only
`--bf16_full_eval` run saves the checkpoint as it was.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import importlib
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_bigbird_config, tiny_etc_config, tiny_pegasus_config, write_jsonl
from safetensors import safe_open
from test_task_classification import args_for, text_rows
from test_task_pretraining import HELD_OUT, PARAGRAPHS
from test_task_pretraining import args as pretraining_args
from test_task_question_answering import args as qa_args
from test_task_question_answering import squad_json, write_json
from test_task_summarization import PAIRS, common_args
from test_task_summarization import TINY as PEGASUS_TINY
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import longbird
from longbird import cli
from longbird.modeling.longbird_layer_norm import LayerNorm
from longbird.tasks import RECIPES, recipe

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 100
N = 256  # 32 blocks of 8: long enough for the block-sparse plan (window, global and random blocks)
LONG = 16384
PRECISIONS = ("bf16", "bf16-autocast", "fp16", "fp16-autocast")
ATTENTION_MODULES = ("BigBirdSelfAttention", "EtcAttention")


class Vocab:
    """What the tiny configs of helpers.py read from a tokenizer: its size and pad id."""

    pad_token_id = 0

    def __len__(self) -> int:
        return VOCAB


def dtype_of(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision.startswith("bf16") else torch.float16


def in_precision(model: nn.Module, precision: str) -> tuple[nn.Module, contextlib.AbstractContextManager]:
    """`(model, context)`: cast to the dtype, or float32 weights under CPU autocast."""
    if precision.endswith("autocast"):
        return model, torch.autocast("cpu", dtype=dtype_of(precision))
    return model.to(dtype_of(precision)), contextlib.nullcontext()


@functools.cache
def fp16_unsupported() -> str | None:
    """Why this torch cannot run the models' ops in float16 on CPU, forward and backward (None if it can)."""
    table = nn.Embedding(10, 16).half()
    try:
        with torch.enable_grad():  # the first call may come from inside a test's no_grad block
            x = torch.randn(2, 2, 8, 16, dtype=torch.float16, requires_grad=True)
            mask = torch.zeros(2, 1, 1, 8, dtype=torch.float16)
            out = F.scaled_dot_product_attention(x, x, x, attn_mask=mask) + table(torch.arange(8))
            out = F.layer_norm(F.gelu(out, approximate="tanh"), (16,)).flatten(0, 1)
            scores = torch.baddbmm(out @ out.transpose(1, 2), out, out.transpose(1, 2)).softmax(-1)
            F.cross_entropy(scores.flatten(0, 1), torch.zeros(32, dtype=torch.long)).backward()
    except (RuntimeError, NotImplementedError) as error:
        if "Half" in str(error):
            return f"torch {torch.__version__} has no float16 CPU kernel for an op the models use: {error}"
        raise
    return None


def skip_unsupported(precision: str) -> None:
    if dtype_of(precision) == torch.float16 and (reason := fp16_unsupported()):
        pytest.skip(reason)


def tokens(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three examples of n positions: one full, one padded after a third, one with no real token."""
    ids = torch.randint(5, VOCAB, (3, n), generator=torch.Generator().manual_seed(n))
    mask = torch.ones(3, n, dtype=torch.long)
    mask[1, n // 3 :] = 0
    mask[2] = 0
    return ids, mask


CASES = (
    "bigbird-itc",  # block_sparse, first/last block global, the QA question global too
    "bigbird-etc",  # block_sparse with extra learned global tokens (BigBird-ETC)
    "bigbird-global-input",  # a per-example global input, padded (and empty for the masked row)
    "bigbird-attentions",  # block_sparse returning weights: the padded layout, dense executor
    "bigbird-full",  # original_full through SDPA
    "bigbird-full-eager",  # original_full, eager attention, float mask, weights returned
    "etc",
    "etc-attentions",
    "pegasus",
    "pegasus-etc-encoder",
)


def make_case(name: str, n: int = N, **config) -> tuple[nn.Module, dict]:
    """A model with a loss and its inputs for one of CASES."""
    torch.manual_seed(0)
    ids, mask = tokens(n)
    inputs = {"input_ids": ids, "attention_mask": mask}
    labels = torch.where(mask.bool(), ids % 3, -100)
    bigbird = functools.partial(tiny_bigbird_config, Vocab(), max_position_embeddings=n, **config)
    etc = functools.partial(tiny_etc_config, Vocab(), num_tokens_per_block=max(8, n // 64), **config)
    if name == "bigbird-itc":
        model = longbird.BigBirdForQuestionAnswering(bigbird())
        answers = {"start_positions": torch.tensor([30, 40, 0]), "end_positions": torch.tensor([33, 41, 0])}
        inputs |= {"question_lengths": torch.tensor([12, 12, 12]), **answers}
    elif name == "bigbird-etc":
        model = longbird.BigBirdForMaskedLM(bigbird(num_global_tokens=2))
        inputs["labels"] = torch.where(mask.bool(), ids, -100)
    elif name == "bigbird-global-input":
        model = longbird.BigBirdForSequenceClassification(bigbird(num_labels=3))
        global_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
        inputs |= {"global_input_ids": ids[:, :4], "global_attention_mask": global_mask}
        inputs["labels"] = torch.tensor([0, 1, 2])
    elif name == "bigbird-attentions":
        model = longbird.BigBirdForTokenClassification(bigbird(num_labels=3))
        inputs |= {"labels": labels, "output_attentions": True}
    elif name == "bigbird-full":
        model = longbird.BigBirdForTokenClassification(bigbird(attention_type="original_full", num_labels=3))
        inputs["labels"] = labels
    elif name == "bigbird-full-eager":
        full = bigbird(attention_type="original_full", num_labels=3, attn_implementation="eager")
        model = longbird.BigBirdForSequenceClassification(full)
        inputs |= {"labels": torch.tensor([0, 1, 2]), "output_attentions": True}
    elif name == "etc":
        model = longbird.EtcForQuestionAnswering(etc())
        inputs |= {"start_positions": torch.tensor([30, 40, 0]), "end_positions": torch.tensor([33, 41, 0])}
    elif name == "etc-attentions":
        model = longbird.EtcForMaskedLM(etc())
        inputs |= {"labels": torch.where(mask.bool(), ids, -100), "output_attentions": True}
    elif name.startswith("pegasus"):
        encoder = {"encoder_type": "etc", "etc_config": {"local_radius": 4}} if name.endswith("etc-encoder") else {}
        pegasus = tiny_pegasus_config(Vocab(), max_position_embeddings=n, **encoder, **config)
        model = longbird.BigBirdPegasusForConditionalGeneration(pegasus)
        targets = torch.randint(5, VOCAB, (3, 8), generator=torch.Generator().manual_seed(1))
        inputs["labels"] = targets.masked_fill(torch.arange(8) >= torch.tensor([[8], [4], [1]]), -100)
    else:
        raise KeyError(name)
    return model, inputs


@contextlib.contextmanager
def attention_dtypes(model: nn.Module):
    """The dtypes of every attention module's outputs (states, not weights) while the block runs."""
    seen = set()

    def hook(module, args, output):
        seen.update(t.dtype for t in output[: 2 if type(module).__name__ == "EtcAttention" else 1])

    modules = [m for m in model.modules() if type(m).__name__ in ATTENTION_MODULES]
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def check_finite(output) -> None:
    for key, value in output.items():
        values = value if isinstance(value, tuple) else (value,)
        for i, tensor in enumerate(values):
            if torch.is_tensor(tensor) and tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), f"{key}[{i}] has NaN or inf"


def check_step(model: nn.Module, inputs: dict, precision: str) -> None:
    """Forward in the precision, then backward: everything finite, attention in the low dtype."""
    model.train()
    model, context = in_precision(model, precision)
    with attention_dtypes(model) as dtypes, context:
        output = model(**inputs)
    check_finite(output)
    assert dtypes == {dtype_of(precision)}, f"attention ran in {dtypes}"
    output.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert any("query" in name for name in grads), "no gradient reached the attention"
    bad = [name for name, grad in grads.items() if not torch.isfinite(grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_forward_and_backward_are_finite_with_padding_and_fully_masked_rows(name, precision):
    skip_unsupported(precision)
    check_step(*make_case(name), precision)


@pytest.mark.parametrize("precision", ("bf16", "bf16-autocast", "fp16"))
@pytest.mark.parametrize("name", ("bigbird-itc", "bigbird-etc", "etc", "pegasus"))
def test_16k_token_inputs_are_finite(name, precision):
    skip_unsupported(precision)
    check_step(*make_case(name, LONG), precision)


class Float32Sizes(TorchDispatchMode):
    """The largest float32 tensor each aten op produced while the mode was on."""

    def __init__(self):
        super().__init__()
        self.largest = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(tensor) and tensor.dtype == torch.float32:
                self.largest[str(func)] = max(self.largest[str(func)], tensor.numel())
        return out


@pytest.mark.parametrize("precision", ("bf16", "bf16-autocast"))
@pytest.mark.parametrize("name", ("bigbird-itc", "bigbird-etc", "etc", "pegasus"))
def test_sparse_attention_makes_no_scores_sized_float32_tensor(name, precision):
    """Scores are ~3x the hidden states here (2 heads x 48 keys per token vs 32 features). Cast
    to bf16: nothing float32 of even a quarter of the hidden states' size (the flash kernels'
    per-row softmax statistics are smaller). Autocast: nothing larger than the float32 residual
    stream (hidden states, their LayerNorms and dropout masks, as autocast keeps them)."""
    n, hidden = 1024, 32
    configs = {
        "bigbird-itc": lambda: longbird.BigBirdModel(tiny_bigbird_config(Vocab(), max_position_embeddings=n)),
        "bigbird-etc": lambda: longbird.BigBirdModel(
            tiny_bigbird_config(Vocab(), max_position_embeddings=n, num_global_tokens=2)
        ),
        "etc": lambda: longbird.EtcModel(tiny_etc_config(Vocab(), num_tokens_per_block=16)),
        "pegasus": lambda: longbird.BigBirdPegasusModel(tiny_pegasus_config(Vocab(), max_position_embeddings=n)),
    }
    torch.manual_seed(0)
    model, context = in_precision(configs[name]().train(), precision)
    ids, mask = tokens(n)
    extra = {"decoder_input_ids": ids[:, :8]} if name == "pegasus" else {}
    sizes = Float32Sizes()
    with context, sizes:
        model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state.sum().backward()
    residual = ids.shape[0] * (n + 64) * hidden  # + global tokens and block padding
    limit = residual // 4 if precision == "bf16" else residual
    offenders = {op: size for op, size in sizes.largest.items() if size > limit}
    assert not offenders, f"float32 tensors above {limit} elements: {offenders}"


@pytest.mark.parametrize("name", ("bigbird-itc", "bigbird-full", "etc", "pegasus"))
def test_low_precision_agrees_with_float32_on_real_tokens(name):
    """Attention weights at 10x the usual init, so attention (and so its masks) shapes the outputs."""
    init = {"init_std": 0.2} if name == "pegasus" else {"initializer_range": 0.2}
    model, inputs = make_case(name, **init)
    encoder = model.get_encoder() if name == "pegasus" else model.base_model
    inputs = {key: inputs[key] for key in ("input_ids", "attention_mask")}
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        reference = encoder.eval()(**inputs).last_hidden_state[real]
        for precision in PRECISIONS:
            if dtype_of(precision) == torch.float16 and fp16_unsupported():
                continue
            low, context = in_precision(copy.deepcopy(encoder), precision)
            with context:
                states = low(**inputs).last_hidden_state[real].float()
            tolerance = 0.1 if dtype_of(precision) == torch.bfloat16 else 0.05
            assert (states - reference).abs().max() < tolerance, precision


# --------------------------------------------------------------------------------------------
# float16's range: LayerNorm statistics, masked scores
# --------------------------------------------------------------------------------------------


def test_layer_norm_trains_in_float16_on_rows_without_variance():
    """eps 1e-12 (BigBird's, ETC's): 1 / sqrt(eps) = 1e6 does not fit float16, in which torch's CPU
    kernel keeps the statistics for backward; `LayerNorm` normalises such inputs in float32."""
    torch.manual_seed(0)
    norm = LayerNorm(32, eps=1e-12)
    nn.init.normal_(norm.weight)
    assert set(norm.state_dict()) == {"weight", "bias"}  # the names of nn.LayerNorm: checkpoints load as before
    x = torch.randn(4, 32)
    x[0] = 0.0  # a zeroed padding position
    x[1] = 3.0  # a constant row
    reference = F.layer_norm(x, (32,), norm.weight, norm.bias, 1e-12)
    half = x.half().requires_grad_()
    out = norm.half()(half)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), reference, atol=1e-2, rtol=1e-2)
    loss_weights = torch.randn(4, 32)
    loss_weights[:2] = 0.0  # as at padding positions, which no loss reads (inf * 0 was NaN)
    (out.float() * loss_weights).sum().backward()
    assert torch.isfinite(half.grad).all() and torch.isfinite(norm.weight.grad).all()


@pytest.mark.parametrize(
    "attention",
    [
        "original_full",
        "original_full-eager",
        "block_sparse",
    ],
)
def test_fp16_attention_weights_of_a_row_with_no_visible_key(attention):
    """float16: finfo.min + a score below -16 rounds to -inf, and a row whose keys are all masked
    becomes NaN unless the masked scores are clamped. Scores here are about -180 for every pair."""
    n = 64
    kind, _, implementation = attention.partition("-")
    config = tiny_bigbird_config(
        Vocab(), max_position_embeddings=n, attention_type=kind, attn_implementation=implementation or "sdpa"
    )
    torch.manual_seed(0)
    model = longbird.BigBirdModel(config).eval()
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        attention_module = model.encoder.layer[0].attention.self
        attention_module.query.weight.mul_(60)
        attention_module.key.weight.copy_(-attention_module.query.weight)
    ids = torch.full((2, n), 7)
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1] = 0
    out = model.half()(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert torch.isfinite(out.attentions[0]).all() and torch.isfinite(out.last_hidden_state).all()


# --------------------------------------------------------------------------------------------
# --bf16 in the recipes and the demo
# --------------------------------------------------------------------------------------------


@pytest.fixture
def attention_calls():
    """`(training, output dtype, CPU autocast on)` of every attention call while the test runs."""
    calls = collections.Counter()

    def hook(module, args, output):
        if type(module).__name__ in ATTENTION_MODULES:
            calls[(module.training, output[0].dtype, torch.is_autocast_enabled("cpu"))] += 1

    handle = nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine without an accelerator, wherever the test runs."""
    monkeypatch.setattr(recipe, "_has_accelerator", lambda: False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the recipes set it for the model card


def recipe_argv(task: str, tmp_path) -> list[str]:
    """A tiny run of the task's recipe (the arguments of its own tests)."""
    out = tmp_path / "out"
    if task == "classification":
        data = write_jsonl(tmp_path / "train.jsonl", text_rows())
        return args_for(tmp_path, data, data)
    if task.startswith("question-answering"):
        squad = write_json(tmp_path / "squad.json", squad_json())
        return qa_args(squad, squad, out, model_type="longbird_etc" if task.endswith("etc") else "longbird_bigbird")
    if task == "summarization":
        rows = [{"document": d, "summary": s} for d, s in PAIRS]
        train, dev = write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "dev.jsonl", rows[:4])
        model = ["--model_type", "longbird_bigbird_pegasus", "--config_overrides", PEGASUS_TINY]
        tokenizer = ["--train_tokenizer", "unigram", "--tokenizer_vocab_size", "400"]
        return common_args(train, dev, out, *tokenizer, *model, "--do_train", "--do_eval", "--max_steps", "3")
    (tmp_path / "train.txt").write_text("\n\n".join(PARAGRAPHS * 3) + "\n")
    (tmp_path / "valid.txt").write_text("\n \n".join(HELD_OUT) + "\n")
    return pretraining_args("longbird_etc", tmp_path / "train.txt", tmp_path / "valid.txt", out, "--max_steps", "3")


@pytest.mark.parametrize(
    "task", ["classification", "question-answering", "question-answering-etc", "summarization", "pretraining"]
)
def test_recipe_bf16_trains_and_evaluates_under_bfloat16_autocast(task, tmp_path, cpu_only, attention_calls):
    """Without --use_cpu (parse_args adds it: transformers refuses --bf16 on CPU otherwise);
    summarization's generate() included (it calls the encoder outside the model's forward)."""
    argv = [arg for arg in recipe_argv(task, tmp_path) if arg != "--use_cpu"]
    module = importlib.import_module(RECIPES[task.removesuffix("-etc")])
    metrics = module.main([*argv, "--bf16"])
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["eval_loss"])
    assert set(attention_calls) == {(True, torch.bfloat16, True), (False, torch.bfloat16, True)}


def test_demo_bf16_on_cpu(tmp_path, cpu_only, attention_calls, capsys):
    steps = ["--max_steps", "1", "--max_train_samples", "16", "--per_device_train_batch_size", "4"]
    steps += ["--max_seq_length", "128"]
    evaluation = ["--max_eval_samples", "8", "--eval_strategy", "no", "--save_strategy", "no"]
    cli.main(["demo", "--bf16", *steps, *evaluation, "--output_dir", str(tmp_path / "demo"), "--disable_tqdm", "true"])
    assert "Held-out accuracy" in capsys.readouterr().out
    # training and evaluation in bf16 autocast; the pipeline afterwards loads the saved float32 model
    assert {key for key in attention_calls if key[2]} == {(True, torch.bfloat16, True), (False, torch.bfloat16, True)}
    assert {key for key in attention_calls if not key[2]} <= {(False, torch.float32, False)}


@pytest.mark.parametrize("given", [["--bf16"], ["--bf16", "true"], ["--bf16_full_eval"], "json"])
def test_bf16_without_an_accelerator_means_cpu(given, tmp_path, cpu_only):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows(4))
    argv = [arg for arg in args_for(tmp_path, data, data) if arg != "--use_cpu"]
    if given == "json":
        values = {"train_file": data, "validation_file": data, "do_eval": True, "tokenizer_name": "x", "bf16": True}
        argv = [write_json(tmp_path / "args.json", {**values, "output_dir": str(tmp_path / "out")})]
    else:
        argv += given
    _, _, training_args = recipe.parse_args(argv)
    assert training_args.use_cpu and (training_args.bf16 or training_args.bf16_full_eval)


def test_bf16_false_leaves_the_device_alone(tmp_path, cpu_only):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows(4))
    argv = [arg for arg in args_for(tmp_path, data, data) if arg != "--use_cpu"]
    _, _, training_args = recipe.parse_args([*argv, "--bf16", "false"])
    assert not training_args.use_cpu and not training_args.bf16


def test_fp16_on_cpu_is_a_one_line_error(tmp_path, cpu_only, capsys):
    """accelerate would quietly train in float32 (it has no float16 autocast on CPU)."""
    data = write_jsonl(tmp_path / "train.jsonl", text_rows(4))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "classification", *args_for(tmp_path, data, data, "--fp16")])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1
    assert error.startswith("longbird: error: --fp16") and "--bf16" in error


def test_eval_only_full_bf16_evaluation_saves_the_checkpoint_as_it_was(tmp_path, attention_calls):
    """--bf16_full_eval casts the model in place; the eval-only run saves it before evaluating."""
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    recipe_module = importlib.import_module(RECIPES["classification"])
    recipe_module.main(args_for(tmp_path, data, data, "--do_eval", "false"))
    argv = ["--model_name_or_path", str(tmp_path / "out"), "--validation_file", data, "--do_eval"]
    argv += ["--output_dir", str(tmp_path / "eval"), "--use_cpu", "--report_to", "none", "--max_seq_length", "128"]
    metrics = recipe_module.main([*argv, "--bf16_full_eval"])
    assert math.isfinite(metrics["eval_loss"]) and (False, torch.bfloat16, False) in attention_calls
    with safe_open(str(tmp_path / "eval" / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float32}
    assert json.loads((tmp_path / "eval" / "config.json").read_text()).get("dtype") in (None, "float32")
