"""The question-answering recipe (`longbird train question-answering`), its SQuAD metric, and the
long-question-answering pipeline on ETC models (in process and as remote code)."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_bigbird_config, tiny_etc_config
from huggingface_hub import ModelCard
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    pipeline,
)

import longbird
from longbird.tasks import question_answering as qa
from longbird.tasks import recipe
from longbird.tokenization import EtcFeaturizer, train_tokenizer

ARTICLES = {
    "Nile": [
        (
            "The Nile is a major river in northeastern Africa. It flows north through Egypt and drains into the "
            "Mediterranean Sea. The river is about 6,650 kilometres long."
        ),
        (
            "Ancient Egyptians farmed along the banks of the Nile. The annual flood brought rich black silt to the "
            "fields. The Aswan High Dam was completed in 1970."
        ),
    ],
    "Paris": [
        (
            "Paris is the capital and largest city of France. The city stands on the river Seine in the north of the "
            "country. About two million people live in the city proper."
        ),
        (
            "The Eiffel Tower was built for the World's Fair of 1889. It was designed by the engineer Gustave Eiffel. "
            "The Louvre is the most visited museum in the world."
        ),
    ],
    "Kilimanjaro": [
        (
            "Mount Kilimanjaro is the highest mountain in Africa. It is a dormant volcano in Tanzania. Its summit, "
            "Uhuru Peak, rises 5,895 metres above sea level."
        ),
        (
            "The first recorded ascent was made in 1889 by Hans Meyer and Ludwig Purtscheller. Glaciers on the summit "
            "have been shrinking for a century."
        ),
    ],
}
#: (article, paragraph, question, answer)
QUESTIONS = [
    ("Nile", 0, "Where does the Nile drain?", "the Mediterranean Sea"),
    ("Nile", 0, "How long is the river?", "6,650 kilometres"),
    ("Nile", 1, "What did the annual flood bring to the fields?", "rich black silt"),
    ("Nile", 1, "When was the Aswan High Dam completed?", "1970"),
    ("Paris", 0, "What is the capital of France?", "Paris"),
    ("Paris", 0, "On which river does Paris stand?", "the river Seine"),
    ("Paris", 1, "Who designed the Eiffel Tower?", "the engineer Gustave Eiffel"),
    ("Paris", 1, "Which museum is the most visited in the world?", "The Louvre"),
    ("Kilimanjaro", 0, "What is the highest mountain in Africa?", "Mount Kilimanjaro"),
    ("Kilimanjaro", 0, "In which country is the dormant volcano?", "Tanzania"),
    ("Kilimanjaro", 1, "Who made the first recorded ascent?", "Hans Meyer and Ludwig Purtscheller"),
    ("Kilimanjaro", 1, "What has been shrinking on the summit?", "Glaciers"),
]
TINY = {
    "longbird_bigbird": "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,block_size=8,"
    "num_random_blocks=1,max_position_embeddings=256",
    "longbird_etc": "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,local_radius=8,"
    "relative_pos_max_distance=4,relative_vocab_size=16",
    "longbird_bigbird_pegasus": "d_model=32,encoder_layers=2,decoder_layers=1,encoder_attention_heads=2,"
    "decoder_attention_heads=2,encoder_ffn_dim=64,decoder_ffn_dim=64,block_size=8,"
    "num_random_blocks=1,max_position_embeddings=256",
}
XQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad_en" / "xquad.en.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def squad_json(articles=ARTICLES, questions=QUESTIONS, shift: int = 0) -> dict:
    """SQuAD v1.1 JSON of the articles; `shift` moves every answer_start (to break them)."""
    data = []
    for title, paragraphs in articles.items():
        entries = []
        for p, context in enumerate(paragraphs):
            qas = [
                {
                    "id": f"{title}-{j}",
                    "question": q,
                    "answers": [{"text": a, "answer_start": context.index(a) + shift}],
                }
                for j, (t, k, q, a) in enumerate(questions)
                if t == title and k == p
            ]
            entries.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": entries})
    return {"version": "1.1", "data": data}


def write_json(path: Path, content) -> str:
    path.write_text(json.dumps(content), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory) -> str:
    return write_json(tmp_path_factory.mktemp("data") / "squad.json", squad_json())


def args(
    train: str | None, validation: str | None, output_dir, *extra: str, model_type="longbird_bigbird", steps: int = 4
) -> list[str]:
    argv = [
        "--output_dir",
        str(output_dir),
        "--report_to",
        "none",
        "--use_cpu",
        "--disable_tqdm",
        "true",
        "--max_seq_length",
        "128",
        "--doc_stride",
        "32",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "3e-3",
        "--max_steps",
        str(steps),
        "--save_strategy",
        "no",
        "--seed",
        "0",
    ]
    if train:
        argv += [
            "--train_file",
            train,
            "--do_train",
            "--train_tokenizer",
            "wordpiece",
            "--tokenizer_vocab_size",
            "300",
            "--model_type",
            model_type,
            "--config_overrides",
            TINY[model_type],
        ]
    if validation:
        argv += ["--validation_file", validation, "--do_eval"]
    return argv + list(extra)


# --------------------------------------------------------------------------------------------
# The metric and the data
# --------------------------------------------------------------------------------------------


def test_squad_metric_on_known_predictions():
    metric = recipe.load_metric("squad")
    references = [
        {"id": "a", "answers": {"text": ["Denver Broncos", "the Broncos"], "answer_start": [0, 5]}},
        {"id": "b", "answers": {"text": ["Paris"], "answer_start": [3]}},
        {"id": "c", "answers": {"text": ["rich black silt"], "answer_start": [9]}},
        {"id": "d", "answers": {"text": ["1970"], "answer_start": [1]}},
        {"id": "e", "answers": {"text": [], "answer_start": []}},  # unanswerable (v2): the empty answer is right
    ]
    predictions = [
        {"id": "a", "prediction_text": "The Denver  Broncos!"},  # articles, case, punctuation, spaces: exact
        {"id": "b", "prediction_text": "in Paris, France"},  # F1: precision 1/3, recall 1 -> 0.5
        {"id": "c", "prediction_text": "black silt"},  # F1: precision 1, recall 2/3 -> 0.8
        {"id": "d", "prediction_text": "1969"},  # wrong
        {"id": "e", "prediction_text": ""},
    ]
    result = metric.compute(predictions=predictions, references=references)
    assert result["exact_match"] == pytest.approx(100 * 2 / 5)
    assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 0.8 + 0 + 1) / 5)
    swapped = metric.compute(predictions=predictions[:2], references=references[1::-1])  # matched by id
    assert swapped == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(75.0)}


def test_squad_json_is_flattened_and_join_paragraphs_shifts_the_answers(squad_file):
    paragraphs = qa.load_qa_splits(qa.QADataArguments(train_file=squad_file))["train"]
    joined = qa.load_qa_splits(qa.QADataArguments(train_file=squad_file, join_paragraphs=True))["train"]
    assert len(paragraphs) == len(joined) == len(QUESTIONS)
    assert {"id", "title", "question", "context", "answers"} <= set(joined.column_names)
    for row, (title, p, question, answer) in zip(joined, QUESTIONS):
        article = "\n\n".join(ARTICLES[title])
        assert row["context"] == article and row["question"] == question and row["title"] == title
        start = row["answers"]["answer_start"][0]
        assert article[start : start + len(answer)] == answer == row["answers"]["text"][0]
        shift = sum(len(text) + 2 for text in ARTICLES[title][:p])
        assert start == ARTICLES[title][p].index(answer) + shift
    second = next(i for i, q in enumerate(QUESTIONS) if q[1] == 1)  # a second-paragraph answer moved
    assert joined[second]["answers"]["answer_start"][0] > paragraphs[second]["answers"]["answer_start"][0]


@pytest.mark.parametrize("model_type", ["longbird_bigbird", "longbird_etc"])
def test_labels_point_at_the_answer_in_every_window(squad_file, model_type):
    """Windows that hold the answer are labelled with its tokens (character-exact through the
    offsets); the others with [CLS] (0). Small windows make several per question."""
    data_args = qa.QADataArguments(validation_file=squad_file, join_paragraphs=True, max_seq_length=40, doc_stride=8)
    splits = qa.load_qa_splits(data_args)
    tokenizer = train_tokenizer([t for p in ARTICLES.values() for t in p] * 5, vocab_size=400)
    config = longbird.EtcConfig() if model_type == "longbird_etc" else longbird.BigBirdConfig()
    model = type("Stub", (), {"config": config})()
    features, _ = qa.prepare_features(splits, tokenizer, model, data_args, TrainingArguments("unused", report_to=[]))
    features = features["validation"]
    assert len(features) > 2 * len(QUESTIONS)  # several windows per question
    examples = {row["id"]: row for row in splits["validation"]}
    found = set()
    for feature in features:
        s, e, offsets = feature["start_positions"], feature["end_positions"], feature["offset_mapping"]
        assert len(offsets) == len(feature["input_ids"]) <= 40
        example = examples[feature["example_id"]]
        if s == 0:
            assert e == 0
            continue
        answer = example["answers"]["text"][0]
        assert example["context"][offsets[s][0] : offsets[e][1]].lower() == answer.lower()
        found.add(feature["example_id"])
    assert found == set(examples)  # every answer is labelled in some window


# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def etc_run(squad_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("etc") / "out"
    start = time.time()
    metrics = qa.main(args(squad_file, squad_file, output, "--join_paragraphs", model_type="longbird_etc"))
    return output, metrics, time.time() - start


def check_run(output: Path, metrics: dict):
    for key in ("eval_exact_match", "eval_f1", "eval_loss", "train_loss"):
        assert np.isfinite(metrics[key]), key
    assert 0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100
    assert (output / "model.safetensors").is_file() and (output / "tokenizer.json").is_file()
    results = ModelCard.load(output / "README.md").data.eval_results
    f1 = [r for r in results if r.metric_type == "f1"]
    assert f1 and f1[0].metric_value == pytest.approx(metrics["eval_f1"], abs=1e-4)
    assert f1[0].task_type == "question-answering"
    predictions = json.loads((output / "eval_predictions.json").read_text())
    assert set(predictions) == {f"{t}-{j}" for j, (t, *_rest) in enumerate(QUESTIONS)}


def test_etc_trains_from_scratch_and_evaluates(etc_run):
    output, metrics, seconds = etc_run
    check_run(output, metrics)
    print(f"ETC: {seconds:.1f} s, EM {metrics['eval_exact_match']:.1f}, F1 {metrics['eval_f1']:.1f}")


@pytest.mark.parametrize("model_type", ["longbird_bigbird", "longbird_bigbird_pegasus"])
def test_bigbird_and_pegasus_train_from_scratch_and_evaluate(squad_file, tmp_path, model_type):
    metrics = qa.main(args(squad_file, squad_file, tmp_path / "out", model_type=model_type))
    check_run(tmp_path / "out", metrics)


def test_cli_flat_jsonl_with_unanswerable_questions(tmp_path):
    """Flat rows (answers as {text: [...], answer_start: [...]}), through `longbird train`."""
    rows = []
    for j, (title, p, question, answer) in enumerate(QUESTIONS):
        context = ARTICLES[title][p]
        rows.append(
            {
                "qid": j,
                "question": question,
                "passage": context,
                "answers": {"text": [answer], "answer_start": [context.index(answer)]},
            }
        )
    rows.append(
        {
            "qid": 99,
            "question": "Who painted the Mona Lisa?",
            "passage": ARTICLES["Paris"][0],
            "answers": {"text": [], "answer_start": []},
        }
    )
    path = tmp_path / "flat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    no_v2 = args(str(path), str(path), tmp_path / "out", "--context_column", "passage", "--id_column", "qid")
    with pytest.raises(ValueError, match=r"example '99' has no answer.*--version_2_with_negative"):
        qa.main(no_v2)
    from longbird import cli

    cli.main(["train", "question-answering", *no_v2, "--version_2_with_negative"])
    predictions = json.loads((tmp_path / "out" / "eval_predictions.json").read_text())
    assert set(predictions) == {str(r["qid"]) for r in rows}
    assert json.loads((tmp_path / "out" / "eval_results.json").read_text())["eval_f1"] >= 0


def test_resume_from_latest_checkpoint(squad_file, tmp_path, monkeypatch):
    first = args(squad_file, None, tmp_path / "out", steps=2) + ["--save_strategy", "steps", "--save_steps", "2"]
    qa.main(first)
    assert (tmp_path / "out" / "checkpoint-2").is_dir()
    loaded = []
    original = Trainer._load_from_checkpoint
    monkeypatch.setattr(
        Trainer,
        "_load_from_checkpoint",
        lambda self, path, *a, **k: (loaded.append(path), original(self, path, *a, **k))[1],
    )
    metrics = qa.main(
        args(squad_file, None, tmp_path / "out", steps=4)
        + ["--save_strategy", "steps", "--save_steps", "2", "--resume_from_checkpoint", "latest"]
    )
    assert loaded and Path(loaded[0]).name == "checkpoint-2"
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 4
    assert np.isfinite(metrics["train_loss"])


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_missing_column_and_wrong_offsets_are_named(tmp_path, squad_file):
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"question": "Where?", "context": "Here."}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"flat.jsonl has no column\(s\) \['answers'\]"):
        qa.main(args(str(flat), None, tmp_path / "out"))
    wrong = write_json(tmp_path / "wrong.json", squad_json(shift=3))
    with pytest.raises(ValueError, match=r"wrong.json: example 'Nile-0'.*not at its answer_start.*occurs at character"):
        qa.main(args(wrong, None, tmp_path / "out"))
    with pytest.raises(ValueError, match="--join_paragraphs joins the paragraphs of SQuAD-format JSON"):
        qa.main(args(str(flat), None, tmp_path / "out", "--join_paragraphs"))
    with pytest.raises(
        ValueError, match=r"--max_seq_length 512 exceeds the model's 256 positions \(max_position_embeddings\)"
    ):
        qa.main(args(squad_file, None, tmp_path / "out", "--max_seq_length", "512"))


@pytest.mark.parametrize("model_type", ["longbird_bigbird", "longbird_etc"])
def test_questions_too_long_for_the_windows_leave_nothing(squad_file, tmp_path, model_type):
    with pytest.raises(
        ValueError,
        match=r"No train examples left after preprocessing; every question is too long.*"
        r"raise --max_seq_length",
    ):
        qa.main(
            args(
                squad_file, None, tmp_path / "out", "--max_seq_length", "6", "--doc_stride", "0", model_type=model_type
            )
        )


def test_masked_lm_checkpoint_cannot_be_evaluated_for_qa(squad_file, tmp_path):
    tokenizer = train_tokenizer([t for p in ARTICLES.values() for t in p] * 5, vocab_size=300)
    config = tiny_bigbird_config(tokenizer, max_position_embeddings=256)
    longbird.BigBirdForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    with pytest.raises(ValueError, match=r"saved as \['BigBirdForMaskedLM'\].*--do_train"):
        qa.main(args(None, squad_file, tmp_path / "out", "--model_name_or_path", str(tmp_path / "mlm")))


# --------------------------------------------------------------------------------------------
# ETC in the long-question-answering pipeline
# --------------------------------------------------------------------------------------------


def pointed_etc(tokenizer, target: str):
    """A tiny ETC QA model whose logits point at the tokens of `target`."""
    model = longbird.EtcForQuestionAnswering(tiny_etc_config(tokenizer)).eval()
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    forward = model.forward

    def pointed(**inputs):
        assert inputs["global_input_ids"].shape[1] >= 2  # the question global and sentence globals
        out = forward(**inputs)
        input_ids = inputs["input_ids"]
        start, end = torch.zeros_like(out.start_logits), torch.zeros_like(out.end_logits)
        context = inputs["token_type_ids"][0] == 1
        for pos in range(input_ids.shape[1] - len(ids) + 1):
            if input_ids[0, pos : pos + len(ids)].tolist() == ids and bool(context[pos]):
                start[0, pos] = end[0, pos + len(ids) - 1] = 20.0
        out.start_logits, out.end_logits = start, end
        return out

    model.forward = pointed
    return model


def test_etc_pipeline_answers_with_character_offsets_across_rows():
    sentences = [t for p in ARTICLES.values() for t in p]
    tokenizer = train_tokenizer(sentences * 10, vocab_size=300)
    context = "\n\n".join(ARTICLES["Nile"] + ARTICLES["Paris"] + ARTICLES["Kilimanjaro"])
    question = "Which museum is the most visited?"
    rows = EtcFeaturizer(tokenizer, max_length=64)([context], [question])
    assert len(rows["input_ids"]) > 3  # the context spans several rows
    qa_pipe = pipeline("long-question-answering", model=pointed_etc(tokenizer, "louvre"), tokenizer=tokenizer)
    for options in ({}, {"max_seq_len": 64}):
        answer = qa_pipe(question=question, context=context, **options)
        assert answer["answer"] == "Louvre" and answer["start"] == context.index("Louvre")
        assert context[answer["start"] : answer["end"]] == answer["answer"]
    top = qa_pipe(question=question, context=context, max_seq_len=64, top_k=3)
    assert top[0]["answer"] == "Louvre" and len(top) == 3


def test_trained_etc_checkpoint_answers_through_remote_code(etc_run, tmp_path):
    """The recipe's ETC output folder, loaded by `pipeline("question-answering", trust_remote_code=True)`
    in a process where longbird cannot be imported, answers as the in-process pipeline does."""
    output, _, _ = etc_run
    context = "\n\n".join(ARTICLES["Kilimanjaro"] + ARTICLES["Paris"])
    question = "Who made the first recorded ascent?"
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["longbird"] = None  # as if longbird were not installed
        from transformers import pipeline
        qa = pipeline("question-answering", model={str(output)!r}, trust_remote_code=True)
        answers = [qa(question={question!r}, context={context!r}, max_seq_len=n) for n in (48, 128)]
        print(json.dumps({{"module": type(qa).__module__, "answers": answers}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(proc.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules")
    local = pipeline(
        "long-question-answering",
        model=AutoModelForQuestionAnswering.from_pretrained(output),
        tokenizer=AutoTokenizer.from_pretrained(output),
    )
    for n, got in zip((48, 128), remote["answers"]):
        expected = local(question=question, context=context, max_seq_len=n)
        assert (got["start"], got["end"], got["answer"]) == (expected["start"], expected["end"], expected["answer"])
        assert got["score"] == pytest.approx(expected["score"], rel=1e-4)
        assert context[got["start"] : got["end"]] == got["answer"]


# --------------------------------------------------------------------------------------------
# Real data (slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_xquad_articles_from_scratch(tmp_path):
    """XQuAD English (SQuAD v1.1 dev articles) with --join_paragraphs: ~1k-token article contexts;
    a small BigBird trained from scratch on 40 articles, evaluated on the other 8."""
    if not XQUAD.is_file():
        pytest.skip(f"{XQUAD} is absent (the shared data folder holds XQuAD English, xquad.en.json)")
    data = json.loads(XQUAD.read_text(encoding="utf-8"))
    train = write_json(tmp_path / "train.json", {"version": "1.1", "data": data["data"][:40]})
    dev = write_json(tmp_path / "dev.json", {"version": "1.1", "data": data["data"][-8:]})
    output = tmp_path / "out"
    argv = [
        "--train_file",
        train,
        "--validation_file",
        dev,
        "--join_paragraphs",
        "--do_train",
        "--do_eval",
        "--train_tokenizer",
        "wordpiece",
        "--tokenizer_vocab_size",
        "8000",
        "--model_type",
        "longbird_bigbird",
        "--config_overrides",
        (
            "hidden_size=128,num_hidden_layers=2,num_attention_heads=2,intermediate_size=256,"
            "block_size=32,num_random_blocks=2,max_position_embeddings=1024"
        ),
        "--max_seq_length",
        "1024",
        "--doc_stride",
        "128",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--warmup_steps",
        "20",
        "--weight_decay",
        "0.01",
        "--logging_steps",
        "20",
        "--save_strategy",
        "no",
        "--output_dir",
        str(output),
        "--report_to",
        "none",
        "--use_cpu",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
        "--dataloader_num_workers",
        "0",
    ]
    start = time.time()  # on one thread (the autouse fixture): on a busy 2-core machine two threads spin
    metrics = qa.main(argv)
    seconds = time.time() - start
    losses = [e["loss"] for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    print(
        f"\nXQuAD en, 40 articles -> 8 articles (joined paragraphs, 1 thread, {seconds:.0f} s): "
        f"EM {metrics['eval_exact_match']:.2f}, F1 {metrics['eval_f1']:.2f}, eval loss {metrics['eval_loss']:.3f}, "
        f"train loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    assert np.isfinite(metrics["eval_exact_match"]) and np.isfinite(metrics["eval_f1"])
    assert len(losses) >= 2 and losses[-1] < losses[0]
