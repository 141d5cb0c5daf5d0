"""Padding-free recipes and pipelines: batches are padded to their longest example only.

- Every `longbird train` recipe (classification, question answering, summarization, pretraining;
  BigBird and ETC) pads each batch to its longest example, never to --max_seq_length or a block
  multiple; `--group_by_length` gives transformers' LengthGroupedSampler over the input_ids
  lengths, and question answering / summarization still evaluate in the data's order.
- Pretraining packs documents: BigBird blocks of exactly --max_seq_length (but the last), ETC
  rows holding several samples with --pack.
- The QA pipeline pads the windows of a batch on the right to the longest of them and answers
  as with batch_size=1; the summarization pipeline pads a batch of documents to the longest one
  and generates chunk pieces unpadded.

The recipes are run through `longbird train` up to their Trainer (`recipe.train_and_evaluate` is
replaced by a stub that keeps the Trainer): no training step, tiny models, a few seconds in all.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from helpers import tiny_bigbird_config, tiny_etc_config, tiny_pegasus_config, write_jsonl
from torch.utils.data import SequentialSampler
from transformers import pipeline
from transformers.trainer_pt_utils import LengthGroupedSampler

import longbird
from longbird import cli
from longbird.tasks import recipe
from longbird.tokenization import train_tokenizer

SENTENCES = [
    "The river Nile flows north through Egypt into the Mediterranean Sea.",
    "Paris is the capital of France and its largest city.",
    "Mount Kilimanjaro is the highest mountain in Africa.",
    "The museum opened in the old palace after the war.",
    "Heavy rain flooded the valley and closed the roads for a week.",
    "The orchestra played three new works by young composers.",
]
TINY_BIGBIRD = (
    "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,block_size=8,"
    "num_random_blocks=1,max_position_embeddings=256"
)
TINY_ETC = (
    "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,local_radius=8,"
    "relative_pos_max_distance=4,relative_vocab_size=12"
)
TINY_PEGASUS = (
    "d_model=32,encoder_layers=1,decoder_layers=1,encoder_attention_heads=2,decoder_attention_heads=2,"
    "encoder_ffn_dim=64,decoder_ffn_dim=64,block_size=8,num_random_blocks=1,max_position_embeddings=256"
)


pytestmark = pytest.mark.usefixtures("one_thread")


def passage(i: int, n: int) -> str:
    """`n` sentences starting at sentence `i`: texts of different lengths."""
    return " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(n))


# --------------------------------------------------------------------------------------------
# The recipes, run up to their Trainer
# --------------------------------------------------------------------------------------------


def classification_case(tmp_path, model_type):
    rows = [{"text": passage(i, 1 + i % 5), "label": ["a", "b"][i % 2]} for i in range(16)]
    data = write_jsonl(tmp_path / "cls.jsonl", rows)
    overrides = TINY_ETC if model_type == "longbird_etc" else TINY_BIGBIRD
    flags = ["--model_type", model_type, "--config_overrides", overrides, "--train_tokenizer", "wordpiece"]
    return "classification", [*flags, "--train_file", data, "--validation_file", data, "--max_seq_length", "128"]


def qa_case(tmp_path, model_type):
    rows = []
    for i in range(12):
        context = passage(i, 2 + i % 6)
        answer = SENTENCES[(i + 1) % len(SENTENCES)].split()[0]
        start = context.index(answer, len(SENTENCES[i % len(SENTENCES)]))
        rows.append(
            {"question": "What comes next?", "context": context, "answers": {"text": [answer], "answer_start": [start]}}
        )
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    flags = ["--model_type", model_type, "--config_overrides", TINY_BIGBIRD, "--train_tokenizer", "wordpiece"]
    # windows of 64 tokens overlapping by 16: long contexts give full windows and a shorter last one
    window = ["--max_seq_length", "64", "--doc_stride", "16"]
    return "question-answering", [*flags, "--train_file", data, "--validation_file", data, *window]


def summarization_case(tmp_path, model_type):
    rows = [
        {"document": passage(i, 1 + i % 6), "summary": SENTENCES[i % len(SENTENCES)][: 10 + 4 * (i % 5)]}
        for i in range(12)
    ]
    data = write_jsonl(tmp_path / "sum.jsonl", rows)
    flags = ["--model_type", model_type, "--config_overrides", TINY_PEGASUS, "--train_tokenizer", "unigram"]
    return "summarization", [*flags, "--train_file", data, "--validation_file", data, "--max_seq_length", "128"]


def pretraining_case(tmp_path, model_type):
    train = tmp_path / "corpus.txt"
    train.write_text("\n\n".join(passage(i, 1 + i % 3) for i in range(30)) + "\n")
    overrides = TINY_ETC if model_type == "longbird_etc" else TINY_BIGBIRD
    flags = ["--model_type", model_type, "--config_overrides", overrides, "--train_tokenizer", "wordpiece"]
    extra = ["--pack", "--max_seq_length", "128"] if model_type == "longbird_etc" else ["--max_seq_length", "60"]
    return "pretraining", [*flags, "--train_file", str(train), "--validation_file", str(train), *extra]


CASES = {
    "classification-bigbird": (classification_case, "longbird_bigbird"),
    "classification-etc": (classification_case, "longbird_etc"),
    "question-answering-bigbird": (qa_case, "longbird_bigbird"),
    "summarization-pegasus": (summarization_case, "longbird_bigbird_pegasus"),
    "pretraining-bigbird": (pretraining_case, "longbird_bigbird"),
    "pretraining-etc-packed": (pretraining_case, "longbird_etc"),
}


@pytest.fixture
def recipe_trainer(tmp_path, monkeypatch):
    """`run(case, *flags)`: `longbird train <task> ... <flags>` up to its Trainer, which it returns."""
    trainers = []
    monkeypatch.setattr(recipe, "train_and_evaluate", lambda trainer, *args, **kwargs: trainers.append(trainer) or {})
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites sys.argv

    def run(case: str, *extra: str):
        make, model_type = CASES[case]
        task, argv = make(tmp_path, model_type)
        common = ["--output_dir", str(tmp_path / "out"), "--do_train", "--do_eval", "--report_to", "none"]
        common += ["--use_cpu", "--disable_tqdm", "true", "--seed", "0", "--tokenizer_vocab_size", "300"]
        common += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4"]
        cli.main(["train", task, *argv, *common, *extra])
        assert len(trainers) == 1
        return trainers.pop()

    return run


def padded_to_longest(batch: dict, mask: str = "attention_mask") -> bool:
    """The batch is as wide as its longest row (right padding: real tokens first)."""
    real = batch[mask].sum(1)
    width = batch[mask].shape[1]
    starts_real = bool((batch[mask][torch.arange(len(real)), (real - 1).clamp_min(0)] == 1).all())
    return int(real.max()) == width and starts_real


@pytest.mark.parametrize("case", list(CASES))
def test_recipes_pad_to_the_longest_example_and_group_by_length(recipe_trainer, case):
    trainer = recipe_trainer(case, "--group_by_length")
    assert trainer.args.train_sampling_strategy == "group_by_length"
    sampler = trainer._get_train_sampler(trainer.train_dataset)
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == [len(ids) for ids in trainer.train_dataset["input_ids"]]  # ETC: the long input

    padded_somewhere = False
    for loader in (trainer.get_train_dataloader(), trainer.get_eval_dataloader()):
        for batch in loader:
            assert padded_to_longest(batch), {k: tuple(v.shape) for k, v in batch.items()}
            if "global_attention_mask" in batch:
                assert padded_to_longest(batch, "global_attention_mask")
            if "labels" in batch and batch["labels"].dim() == 2 and not case.startswith("pretraining"):
                labelled = (batch["labels"] != -100).sum(1)
                assert int(labelled.max()) == batch["labels"].shape[1]  # labels too: to the longest summary
            padded_somewhere |= int(batch["attention_mask"].sum(1).min()) < batch["attention_mask"].shape[1]
    if not case.startswith("pretraining"):
        assert padded_somewhere  # the data has examples of different lengths

    # the two shortest rows alone: the recipe's collator pads to the longer of them, nothing more
    # (not to a multiple of the block size, not to --max_seq_length)
    dataset = trainer._remove_unused_columns(trainer.train_dataset)
    lengths = [len(ids) for ids in dataset["input_ids"]]
    shortest = sorted(range(len(lengths)), key=lengths.__getitem__)[:2]
    batch = trainer.data_collator([dataset[i] for i in shortest])
    assert batch["input_ids"].shape[1] == max(lengths[i] for i in shortest)

    if case.startswith(("question-answering", "summarization")):
        # predictions are matched to the examples by position: evaluation keeps the data's order
        assert isinstance(trainer._get_eval_sampler(trainer.eval_dataset), SequentialSampler)


def test_bigbird_pretraining_packs_documents_into_full_blocks(recipe_trainer):
    trainer = recipe_trainer("pretraining-bigbird")
    assert trainer.args.train_sampling_strategy == "random"  # --group_by_length not given
    tokenizer = trainer.processing_class
    blocks = trainer.train_dataset["input_ids"]
    assert [len(b) for b in blocks[:-1]] == [60] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= 60
    assert all(b[0] == tokenizer.cls_token_id and b[-1] == tokenizer.sep_token_id for b in blocks)
    inner_separators = sum(b[1:-1].count(tokenizer.sep_token_id) for b in blocks)
    assert len(blocks) < 30 and inner_separators >= 30 - len(blocks)  # 30 documents, [SEP] between them
    short = [
        {"input_ids": blocks[-1][:13], "attention_mask": [1] * 13},
        {"input_ids": blocks[0][:11], "attention_mask": [1] * 11},
    ]
    assert trainer.data_collator(short)["input_ids"].shape == (2, 13)  # 13: not rounded up to block_size 8


def test_etc_pretraining_packs_samples_with_breakpoints(recipe_trainer):
    trainer = recipe_trainer("pretraining-etc-packed")
    rows = trainer.train_dataset
    examples_per_row = [sum(b) for b in rows["long_breakpoints"]]
    assert sum(examples_per_row) == 30 and max(examples_per_row) > 1 and len(rows) < 30
    assert [sum(b) for b in rows["global_breakpoints"]] == examples_per_row
    batch = trainer.data_collator([rows[i] for i in range(min(4, len(rows)))])
    assert {"labels", "cpc_sentence_mask"} <= set(batch) and padded_to_longest(batch)


def test_group_by_length_flag_help_and_conflicts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "question-answering", "--help"])
    assert done.value.code == 0
    assert "--group_by_length" in " ".join(capsys.readouterr().out.split())
    data = tmp_path / "train.txt"
    data.write_text("some text\n")
    base = ["--output_dir", str(tmp_path), "--do_train", "--train_file", str(data), "--train_tokenizer", "wordpiece"]
    assert recipe.parse_args(base)[2].train_sampling_strategy == "random"
    for extra in (["--group_by_length"], ["--group_by_length", "--train_sampling_strategy", "group_by_length"]):
        _, data_args, training_args = recipe.parse_args([*base, *extra])
        assert data_args.group_by_length and training_args.train_sampling_strategy == "group_by_length"
    with pytest.raises(ValueError, match="--group_by_length and --train_sampling_strategy sequential"):
        recipe.parse_args([*base, "--group_by_length", "--train_sampling_strategy", "sequential"])


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 20, vocab_size=200)


def pointing(model, tokenizer, target: str, shapes: list):
    """`model` whose start/end logits get +10 at `target` in every row of a batch (its own logits,
    computed on the padded batch, still count); records the shape of every batch."""
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    forward = model.forward

    def pointed(**inputs):
        input_ids = inputs["input_ids"]
        shapes.append(tuple(input_ids.shape))
        out = forward(**inputs)
        for row in range(input_ids.shape[0]):
            tokens = input_ids[row].tolist()
            for pos in range(1, len(tokens) - len(ids) + 1):
                if tokens[pos : pos + len(ids)] == ids:
                    out.start_logits[row, pos] += 10.0
                    out.end_logits[row, pos + len(ids) - 1] += 10.0
        return out

    model.forward = pointed
    return model


def qa_model(tokenizer, model_type: str):
    torch.manual_seed(0)
    if model_type == "etc":
        return longbird.EtcForQuestionAnswering(tiny_etc_config(tokenizer)).eval()
    config = tiny_bigbird_config(tokenizer, max_position_embeddings=512, sep_token_id=tokenizer.sep_token_id)
    return longbird.BigBirdForQuestionAnswering(config).eval()


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("model_type", ["bigbird", "etc"])
def test_qa_pipeline_batches_windows_padded_to_the_longest(tokenizer, model_type, padding_side, monkeypatch):
    monkeypatch.setattr(tokenizer, "padding_side", padding_side)  # the pipeline pads on the right anyway
    shapes: list[tuple[int, int]] = []
    model = pointing(qa_model(tokenizer, model_type), tokenizer, "kilimanjaro", shapes)
    qa = pipeline("long-question-answering", model=model, tokenizer=tokenizer)
    contexts = [passage(0, 3), passage(1, 7), passage(4, 5)]  # Kilimanjaro in each; 1 to 4 windows
    questions = ["Which mountain?", "Which is the highest mountain in Africa?", "Where?"]
    options = {"max_seq_len": 48, "doc_stride": 12, "top_k": 2}
    singles = qa(question=questions, context=contexts, batch_size=1, **options)
    windows = [shape[1] for shape in shapes]
    assert all(shape[0] == 1 for shape in shapes) and len(set(windows)) > 1 and len(windows) > 4
    shapes.clear()
    batched = qa(question=questions, context=contexts, batch_size=4, **options)
    # consecutive windows form the batches; each is padded to its longest window, never to max_seq_len
    expected = [(len(windows[i : i + 4]), max(windows[i : i + 4])) for i in range(0, len(windows), 4)]
    assert shapes == expected
    for one, many, context in zip(singles, batched, contexts):
        assert one[0]["answer"] == "Kilimanjaro" and one[0]["start"] == context.index("Kilimanjaro")
        assert [(a["answer"], a["start"], a["end"]) for a in many] == [(a["answer"], a["start"], a["end"]) for a in one]
        for a, b in zip(one, many):
            assert math.isclose(a["score"], b["score"], rel_tol=1e-4, abs_tol=1e-6)


def test_summarization_pipeline_pads_documents_to_the_longest_and_chunks_unpadded(tokenizer, monkeypatch):
    config = tiny_pegasus_config(tokenizer, max_position_embeddings=128, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(config).eval()
    masks: list[torch.Tensor] = []
    generate = model.generate

    def recorded(*args, **kwargs):
        masks.append(kwargs["attention_mask"].clone())
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recorded)
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    documents = [passage(0, 1), passage(1, 3), passage(2, 2)]
    lengths = [len(tokenizer(d)["input_ids"]) for d in documents]
    summarize(documents, batch_size=3, max_new_tokens=3, min_new_tokens=3)
    assert len(masks) == 1 and masks[0].shape == (3, max(lengths)) and masks[0].sum(1).tolist() == lengths
    masks.clear()
    summarize([passage(0, 12)], batch_size=2, strategy="chunk", max_input_length=64, max_new_tokens=3, min_new_tokens=3)
    assert len(masks) > 2  # pieces, then their joined summaries
    assert all(mask.shape[0] == 1 and bool(mask.all()) and mask.shape[1] <= 64 for mask in masks)
