"""Saved checkpoints load with `trust_remote_code=True` in a process where longbird cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import longbird
from longbird.tokenization import train_tokenizer

#: runs in a fresh process: longbird is made unimportable, the model comes from the folder's code
LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["longbird"] = None  # as if longbird were not installed
    import torch, transformers
    folder, auto, inputs_path, output_path = sys.argv[1:]
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
    module = type(model).__module__
    assert module.startswith("transformers_modules"), module
    inputs = torch.load(inputs_path)
    generate = inputs.pop("generate", None)
    with torch.no_grad():
        out = model.generate(**inputs, **generate) if generate else model(**inputs)
    tensors = {"sequences": out} if generate else {k: v for k, v in out.items() if torch.is_tensor(v)}
    torch.save({"module": module, **tensors}, output_path)
    """
)


def run_without_longbird(tmp_path, folder, auto: str, inputs: dict) -> dict:
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(folder), auto, str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "out.pt")


def tiny_bigbird(**kw):
    return longbird.BigBirdConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        block_size=8,
        num_random_blocks=1,
        max_position_embeddings=256,
        **kw,
    )


def tiny_etc(**kw):
    return longbird.EtcConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        local_radius=4,
        relative_pos_max_distance=3,
        relative_vocab_size=12,
        **kw,
    )


def tiny_pegasus(**kw):
    return longbird.BigBirdPegasusConfig(
        vocab_size=120,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=256,
        block_size=8,
        num_random_blocks=1,
        **kw,
    )


CASES = [
    (
        "AutoModelForSequenceClassification",
        lambda: longbird.BigBirdForSequenceClassification(tiny_bigbird(num_labels=3)),
    ),
    ("AutoModelForQuestionAnswering", lambda: longbird.EtcForQuestionAnswering(tiny_etc())),
    ("AutoModelForMaskedLM", lambda: longbird.EtcForMaskedLM(tiny_etc())),
    ("AutoModelForSeq2SeqLM", lambda: longbird.BigBirdPegasusForConditionalGeneration(tiny_pegasus())),
]


def inputs_for(model) -> dict:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (2, 100), generator=gen)
    inputs = {"input_ids": ids}
    if isinstance(model, longbird.EtcForQuestionAnswering):  # structure inputs travel too
        inputs |= {
            "global_input_ids": torch.ones(2, 4, dtype=torch.long),
            "sentence_ids": torch.arange(100).expand(2, -1) // 25,
        }
    if isinstance(model, longbird.BigBirdPegasusForConditionalGeneration):
        inputs["decoder_input_ids"] = torch.randint(5, 120, (2, 6), generator=gen)
    return inputs


@pytest.mark.parametrize("auto,build", CASES, ids=[c[0] for c in CASES])
def test_saved_model_runs_from_its_own_code(tmp_path, auto, build):
    torch.manual_seed(0)
    model = build().eval()
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert auto in config["auto_map"] and "AutoConfig" in config["auto_map"]
    inputs = inputs_for(model)
    with torch.no_grad():
        expected = model(**inputs)
    got = run_without_longbird(tmp_path, tmp_path / "saved", auto, dict(inputs))
    name = "logits" if "logits" in got else "start_logits"
    torch.testing.assert_close(got[name], expected[name])


def test_generate_and_pipelines_from_remote_code(tmp_path):
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(tiny_pegasus()).eval()
    model.save_pretrained(tmp_path / "saved")
    inputs = {"input_ids": torch.randint(5, 120, (1, 80)), "generate": {"max_new_tokens": 5, "do_sample": False}}
    expected = model.generate(inputs["input_ids"], max_new_tokens=5, do_sample=False)
    got = run_without_longbird(tmp_path, tmp_path / "saved", "AutoModelForSeq2SeqLM", inputs)
    assert torch.equal(got["sequences"], expected)
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert set(config["custom_pipelines"]) == {"summarization"}


def test_removed_task_names_work_again_with_remote_code(tmp_path):
    """`pipeline("question-answering"/"summarization", model=folder, trust_remote_code=True)` without
    longbird: the saved folder's custom_pipelines bring the tasks back."""
    texts = ["The river Nile flows north through Egypt.", "Paris is the capital of France."] * 20
    tokenizer = train_tokenizer(texts, vocab_size=120)
    qa = longbird.BigBirdForQuestionAnswering(tiny_bigbird(sep_token_id=tokenizer.sep_token_id)).eval()
    qa.save_pretrained(tmp_path / "qa")
    tokenizer.save_pretrained(tmp_path / "qa")
    seq2seq = longbird.BigBirdPegasusForConditionalGeneration(
        tiny_pegasus(pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    ).eval()
    seq2seq.save_pretrained(tmp_path / "sum")
    tokenizer.save_pretrained(tmp_path / "sum")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["longbird"] = None
        from transformers import pipeline
        qa = pipeline("question-answering", model={str(tmp_path / "qa")!r}, trust_remote_code=True)
        answer = qa(question="Where does the Nile flow?", context="The river Nile flows north through Egypt.")
        assert set(answer) == {{"score", "start", "end", "answer"}}, answer
        summarize = pipeline("summarization", model={str(tmp_path / "sum")!r}, trust_remote_code=True)
        out = summarize("The river Nile flows north through Egypt. Paris is the capital of France.", max_new_tokens=4)
        assert "summary_text" in out[0], out
        print(type(qa).__module__, type(summarize).__module__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("transformers_modules") == 2
