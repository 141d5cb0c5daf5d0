"""The summarization recipe (`longbird train summarization`, `longbird.tasks.summarization`).

Fast tests train tiny BigBird-Pegasus models from scratch for a few steps on a handful of
hand-written document/summary pairs: evaluation with generate() + ROUGE, the output folder
(model, tokenizer, model card with the ROUGE results), resuming from the latest checkpoint, the
long-summarization pipeline on the output folder, list-valued columns (SciTLDR format) with the
ETC encoder and multi-reference ROUGE, the ROUGE metric against `rouge_score`, and the errors
for bad input.

Slow tests (`pytest -m slow -s`) train small models from scratch on real data in ../shared/data
(byte-level BPE tokenizers: the Unigram trainer is not deterministic, BPE's is):
SciTLDR (abstract -> TLDR) and L-Eval's GovReport / BigPatent long documents (4k-token inputs).
They print ROUGE and check that the run completes, the metrics are finite and the loss went down.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest
import transformers
from helpers import tiny_bigbird_config, write_jsonl
from huggingface_hub import ModelCard
from rouge_score import rouge_scorer

import longbird
from longbird import cli
from longbird.tasks import recipe, summarization

transformers.logging.set_verbosity_error()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

TINY = (
    "d_model=32,encoder_layers=1,decoder_layers=1,encoder_attention_heads=2,decoder_attention_heads=2,"
    "encoder_ffn_dim=64,decoder_ffn_dim=64,block_size=8,num_random_blocks=2,max_position_embeddings=256,"
    "dropout=0.0,attention_dropout=0.0"
)
ETC = (
    "d_model=32,encoder_layers=1,decoder_layers=1,encoder_attention_heads=2,decoder_attention_heads=2,"
    "encoder_ffn_dim=64,decoder_ffn_dim=64,max_position_embeddings=256,dropout=0.0,attention_dropout=0.0,"
    "encoder_type=etc,etc_config={'local_radius':8,'relative_pos_max_distance':4,'relative_vocab_size':12,"
    "'num_tokens_per_block':10}"
)
FAST = [
    "--report_to",
    "none",
    "--use_cpu",
    "--disable_tqdm",
    "true",
    "--seed",
    "0",
    "--logging_steps",
    "1",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--learning_rate",
    "5e-3",
]

PAIRS = [
    (
        (
            "The river Nile flows north through eleven countries. It empties into the Mediterranean Sea near "
            "Alexandria. Farmers along its banks have relied on its yearly floods for thousands of years."
        ),
        "The Nile flows north into the Mediterranean Sea.",
    ),
    (
        (
            "Paris is the capital of France and its largest city. It is known for the Eiffel Tower and the Louvre "
            "museum. Millions of tourists visit the city every year."
        ),
        "Paris, the French capital, attracts millions of tourists.",
    ),
    (
        (
            "Mount Kilimanjaro is the highest mountain in Africa. It is a dormant volcano in northern Tanzania. "
            "Climbers usually need about a week to reach the summit and come back down."
        ),
        "Kilimanjaro, a dormant volcano, is the highest mountain in Africa.",
    ),
    (
        (
            "The honey bee lives in colonies of many thousands of insects. A single queen lays all of the eggs. "
            "Worker bees collect nectar and pollen from flowers and turn the nectar into honey."
        ),
        "Honey bees live in large colonies with one queen.",
    ),
    (
        (
            "The city council approved a new budget on Tuesday evening. The plan adds money for road repairs and "
            "public libraries. Property taxes will stay at the same level as last year."
        ),
        "The council passed a budget for roads and libraries without raising taxes.",
    ),
    (
        (
            "Heavy rain caused flooding in several coastal towns over the weekend. Emergency crews moved hundreds "
            "of residents to shelters. Forecasters expect drier weather by the middle of the week."
        ),
        "Weekend floods forced hundreds of coastal residents into shelters.",
    ),
    (
        (
            "Researchers have found that regular walking lowers blood pressure in older adults. The study followed "
            "two thousand people for five years. Those who walked every day had fewer heart problems."
        ),
        "Daily walking lowered blood pressure and heart problems in older adults.",
    ),
    (
        (
            "The local football team won the regional championship on Saturday. Their goalkeeper saved two penalty "
            "kicks in the final minutes. Fans celebrated in the town square until late at night."
        ),
        "The local team won the regional football championship.",
    ),
    (
        (
            "A new library opened downtown with more than fifty thousand books. The building also has study rooms "
            "and a children's reading corner. Entry and membership are free for all residents."
        ),
        "A free new library with fifty thousand books opened downtown.",
    ),
    (
        (
            "The company reported higher profits for the third quarter. Sales of its electric cars doubled compared "
            "with last year. The chief executive said the firm will open two new factories."
        ),
        "Electric car sales doubled and profits rose at the company.",
    ),
    (
        (
            "Scientists launched a satellite to study changes in the polar ice. The instrument measures the "
            "thickness of sea ice every month. The first data will be published next spring."
        ),
        "A new satellite will measure polar sea ice every month.",
    ),
    (
        (
            "The museum is showing a collection of paintings from the nineteenth century. Many of the works have "
            "never been displayed in public before. The exhibition runs until the end of August."
        ),
        "The museum exhibits rarely seen nineteenth century paintings.",
    ),
]


def common_args(train_file: str, validation_file: str, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--train_file",
        train_file,
        "--validation_file",
        validation_file,
        "--output_dir",
        str(output_dir),
        "--max_seq_length",
        "128",
        "--max_target_length",
        "24",
        *FAST,
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("summarization-data")
    rows = [{"document": d, "summary": s, "id": i} for i, (d, s) in enumerate(PAIRS)]
    return {"train": write_jsonl(folder / "train.jsonl", rows), "dev": write_jsonl(folder / "dev.jsonl", rows[:4])}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny BigBird-Pegasus trained from scratch for 6 steps (checkpoints at 3 and 6), evaluated."""
    out = tmp_path_factory.mktemp("summarization-run") / "out"
    argv = common_args(
        data["train"],
        data["dev"],
        out,
        "--train_tokenizer",
        "unigram",
        "--tokenizer_vocab_size",
        "400",
        "--model_type",
        "longbird_bigbird_pegasus",
        "--config_overrides",
        TINY,
        "--do_train",
        "--do_eval",
        "--max_steps",
        "6",
        "--save_steps",
        "3",
    )
    return summarization.main(argv), out


# --------------------------------------------------------------------------------------------
# training, evaluation, outputs
# --------------------------------------------------------------------------------------------


def test_train_and_evaluate_with_generate_reports_rouge(trained):
    metrics, _ = trained
    for key in ROUGE_KEYS:
        value = metrics[f"eval_{key}"]
        assert math.isfinite(value) and 0.0 <= value <= 1.0, (key, value)  # fractions, like evaluate's rouge
    assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["train_loss"])
    assert 0 < metrics["eval_gen_len"] <= 24


def test_output_folder_has_model_tokenizer_and_card_with_rouge(trained):
    metrics, out = trained
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "README.md",
        "eval_results.json",
        "checkpoint-3",
        "checkpoint-6",
    ):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BigBirdPegasusForConditionalGeneration"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    # a BigBird-style tokenizer: summaries end with [SEP]; decoding starts from [PAD] (Pegasus-style)
    assert config["eos_token_id"] == tokenizer.sep_token_id == tokenizer.eos_token_id
    assert config["decoder_start_token_id"] == config["pad_token_id"] == tokenizer.pad_token_id
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_length"] == 24 and generation["num_beams"] == 1  # as evaluated
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "summarization"
    results = {r.metric_name: r for r in card.data.eval_results}
    assert set(results) == set(ROUGE_KEYS)
    for key, result in results.items():
        assert result.task_type == "summarization" and result.metric_type == "rouge"
        assert result.metric_value == round(metrics[f"eval_{key}"], 4)


def test_pipeline_runs_on_the_output_folder(trained):
    _, out = trained
    document = PAIRS[1][0]
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    from transformers import pipeline

    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    out_objects = summarize(document)
    assert isinstance(out_objects[0]["summary_text"], str)
    out_class = pipeline("long-summarization", model=str(out), pipeline_class=longbird.LongSummarizationPipeline)
    assert out_class(document) == out_objects  # generation config of the folder: same greedy 24 tokens
    by_name = pipeline("long-summarization", model=str(out))  # registered by `import longbird`: no remote code
    assert by_name(document) == out_objects


def test_resume_from_latest_checkpoint(trained, data, tmp_path):
    _metrics, out = trained
    resumed = tmp_path / "out"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoint-6")  # the latest checkpoint is now step 3
    args = common_args(
        data["train"],
        data["dev"],
        resumed,
        "--train_tokenizer",
        "unigram",
        "--tokenizer_vocab_size",
        "400",
        "--model_type",
        "longbird_bigbird_pegasus",
        "--config_overrides",
        TINY,
        "--do_train",
        "--max_steps",
        "6",
        "--save_steps",
        "3",
        "--resume_from_checkpoint",
        "latest",
    )
    again = summarization.main(args)
    state = json.loads((resumed / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    losses = {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]  # steps 1-3 come from the checkpoint's state
    assert math.isfinite(again["train_loss"])
    # the tokenizer trained by the first run (the checkpoint's ids are its ids) is reused, not retrained
    # (the `tokenizers` Unigram trainer is not deterministic: retraining gives another vocabulary)
    assert (resumed / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()


def test_evaluate_a_saved_model_without_training(trained, data, tmp_path):
    """--model_name_or_path of the recipe's output, --do_eval only, beam search."""
    _, out = trained
    metrics = summarization.main(
        [
            "--model_name_or_path",
            str(out),
            "--validation_file",
            data["dev"],
            "--output_dir",
            str(tmp_path / "eval"),
            "--do_eval",
            "--max_seq_length",
            "128",
            "--num_beams",
            "2",
            "--generation_max_length",
            "12",
            *FAST,
        ]
    )
    assert {f"eval_{k}" for k in ROUGE_KEYS} <= set(metrics) and not any(k.startswith("train") for k in metrics)
    assert 0 < metrics["eval_gen_len"] <= 12
    card = ModelCard.load(tmp_path / "eval" / "README.md")
    assert {r.metric_name for r in card.data.eval_results} == set(ROUGE_KEYS)


# --------------------------------------------------------------------------------------------
# list-valued columns, ETC encoder, metric
# --------------------------------------------------------------------------------------------


def test_list_columns_and_etc_encoder_with_sentence_globals(tmp_path, monkeypatch):
    """SciTLDR's format: `source` is a list of sentences, `target` a list of TLDRs. The ETC encoder
    gets one global token per sentence (EtcFeaturizer), and generate() runs with beams."""
    featurized = []

    class SpyFeaturizer(summarization.EtcFeaturizer):
        def __call__(self, documents, questions=None):
            out = super().__call__(documents, questions)
            featurized.append((documents, out))
            return out

    monkeypatch.setattr(summarization, "EtcFeaturizer", SpyFeaturizer)
    rows = [
        {
            "source": [s.strip() + "." for s in d.split(". ") if s.strip(".")],
            "target": [s, "A second, different reference summary."],
            "paper_id": f"p{i}",
        }
        for i, (d, s) in enumerate(PAIRS)
    ]
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    metrics = summarization.main(
        common_args(
            train_file,
            train_file,
            out,
            "--max_eval_samples",
            "2",
            "--train_tokenizer",
            "bpe",
            "--tokenizer_vocab_size",
            "400",
            "--model_type",
            "longbird_bigbird_pegasus",
            "--config_overrides",
            ETC,
            "--do_train",
            "--do_eval",
            "--max_steps",
            "2",
            "--save_strategy",
            "no",
            "--num_beams",
            "2",
            "--generation_max_length",
            "8",
        )
    )
    assert all(math.isfinite(metrics[f"eval_{k}"]) for k in ROUGE_KEYS)
    assert 0 < metrics["eval_gen_len"] <= 8
    config = json.loads((out / "config.json").read_text())
    assert config["encoder_type"] == "etc"
    documents, features = featurized[0]
    assert documents[0] == rows[0]["source"]  # the list's own sentences
    assert [len(g) for g in features["global_input_ids"]] == [len(d) for d in documents]  # one global per sentence
    assert set(features["global_input_ids"][0]) == {1}  # etc_config.global_token_id (EtcConfig's default)
    assert json.loads((out / "generation_config.json").read_text())["num_beams"] == 2


def test_list_cells_are_joined_and_references_kept():
    assert summarization.as_text(["First sentence.", " Second one. ", ""]) == "First sentence. Second one."
    assert summarization.as_text(None) == "" and summarization.as_text("  x ") == "x"
    assert summarization.as_references(["tl;dr one", "", "tl;dr two"]) == ["tl;dr one", "tl;dr two"]
    assert summarization.as_references("only one") == ["only one"] and summarization.as_references("  ") == []
    assert summarization.sentences_per_line("One here. Two there.") == "One here.\nTwo there."


def test_rouge_metric_equals_rouge_score():
    rouge = recipe.load_metric("rouge")  # offline, from longbird/tasks/metrics/rouge
    predictions = ["the cats were sitting on the mat", "police killed the gunman", "nothing in common here"]
    references = ["the cat sat on the mat", "the gunman was shot dead by police", "completely different words"]
    for stemmer in (False, True):
        scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=stemmer)
        expected = [scorer.score(r, p) for r, p in zip(references, predictions)]
        per_example = rouge.compute(
            predictions=predictions, references=references, use_stemmer=stemmer, use_aggregator=False
        )
        mean = rouge.compute(predictions=predictions, references=references, use_stemmer=stemmer)
        for key in ROUGE_KEYS:
            assert per_example[key] == pytest.approx([s[key].fmeasure for s in expected])
            assert mean[key] == pytest.approx(sum(s[key].fmeasure for s in expected) / len(expected))
    # stemming matters here ("cats"/"cat", "sitting"/"sat" does not stem together)
    assert (
        rouge.compute(predictions=predictions[:1], references=references[:1], use_stemmer=True)["rouge1"]
        > rouge.compute(predictions=predictions[:1], references=references[:1])["rouge1"]
    )
    # several references: the best one per example and ROUGE type (rouge_score's score_multi)
    multi = [["the dog ran away", "the cat sat on the mat"], ["gunman shot by police", "a gunman was killed"]]
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS))
    got = rouge.compute(predictions=predictions[:2], references=multi, use_aggregator=False)
    for key in ROUGE_KEYS:
        best = [max(scorer.score(r, p)[key].fmeasure for r in refs) for refs, p in zip(multi, predictions[:2])]
        assert got[key] == pytest.approx(best)
    both = rouge.compute(predictions=["a b c"], references=["a b d"], rouge_types=["rouge1"], measure="all")
    assert both == pytest.approx({"rouge1_precision": 2 / 3, "rouge1_recall": 2 / 3, "rouge1_fmeasure": 2 / 3})
    assert rouge.compute(predictions=["a b"], references=["a b"]) == {k: 1.0 for k in ROUGE_KEYS}


def test_predict_with_generate_is_the_default(data, tmp_path):
    base = ["--validation_file", data["dev"], "--do_eval", "--model_name_or_path", "x", "--output_dir", str(tmp_path)]
    _, data_args, training_args = recipe.parse_args(
        base, summarization.SummarizationDataArguments, summarization.SummarizationTrainingArguments
    )
    assert training_args.predict_with_generate is True and isinstance(
        training_args, transformers.Seq2SeqTrainingArguments
    )
    assert (data_args.max_seq_length, data_args.max_target_length, data_args.text_column) == (4096, 128, None)
    _, _, training_args = recipe.parse_args(
        [*base, "--no_predict_with_generate"],
        summarization.SummarizationDataArguments,
        summarization.SummarizationTrainingArguments,
    )
    assert training_args.predict_with_generate is False


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def new_model_args(train_file: str, validation_file: str, out: Path, *extra: str) -> list[str]:
    return common_args(
        train_file,
        validation_file,
        out,
        "--train_tokenizer",
        "unigram",
        "--tokenizer_vocab_size",
        "300",
        "--model_type",
        "longbird_bigbird_pegasus",
        "--config_overrides",
        TINY,
        "--do_train",
        "--max_steps",
        "1",
        *extra,
    )


def test_missing_column_names_file_column_and_flag(data, tmp_path):
    with pytest.raises(ValueError, match=r"train\.jsonl has no column 'body' \(--text_column\).*'document'"):
        summarization.main(new_model_args(data["train"], data["dev"], tmp_path / "a", "--text_column", "body"))
    with pytest.raises(ValueError, match=r"has no column 'tldr' \(--summary_column\)"):
        summarization.main(new_model_args(data["train"], data["dev"], tmp_path / "b", "--summary_column", "tldr"))
    no_summary = write_jsonl(tmp_path / "titles.jsonl", [{"document": d, "title": "x"} for d, _ in PAIRS])
    with pytest.raises(ValueError, match=r"titles\.jsonl has no summary column.*--summary_column"):
        summarization.main(new_model_args(no_summary, data["dev"], tmp_path / "c"))


def test_empty_data_raises(data, tmp_path):
    empty_summaries = write_jsonl(tmp_path / "blank.jsonl", [{"document": d, "summary": " "} for d, _ in PAIRS])
    with pytest.raises(ValueError, match=r"No train examples in .*blank\.jsonl left.*'summary' \(--summary_column\)"):
        summarization.main(new_model_args(empty_summaries, data["dev"], tmp_path / "a"))
    empty_file = tmp_path / "empty.jsonl"
    empty_file.write_text("")
    with pytest.raises(ValueError, match=r"empty\.jsonl has no examples"):
        summarization.main(new_model_args(data["train"], str(empty_file), tmp_path / "b", "--do_eval"))


def test_models_without_a_seq2seq_head_are_rejected(data, tmp_path):
    tokenizer = longbird.tokenization.train_tokenizer([d for d, _ in PAIRS], vocab_size=200, kind="wordpiece")
    config = tiny_bigbird_config(tokenizer, num_random_blocks=2, max_position_embeddings=256)
    longbird.BigBirdForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    args = common_args(
        data["train"],
        data["dev"],
        tmp_path / "out",
        "--model_name_or_path",
        str(tmp_path / "mlm"),
        "--do_train",
        "--max_steps",
        "1",
    )
    with pytest.raises(
        ValueError, match=r"longbird_bigbird model, which has no Seq2SeqLM head.*longbird_bigbird_pegasus"
    ):
        summarization.main(args)
    with pytest.raises(ValueError, match=r"longbird_etc model, which has no Seq2SeqLM head"):
        summarization.main(
            common_args(
                data["train"],
                data["dev"],
                tmp_path / "out",
                "--train_tokenizer",
                "bpe",
                "--tokenizer_vocab_size",
                "300",
                "--model_type",
                "longbird_etc",
                "--do_train",
                "--max_steps",
                "1",
            )
        )


def test_too_long_inputs_for_the_model_raise(data, tmp_path):
    with pytest.raises(ValueError, match=r"--max_seq_length 1024 exceeds the model's 256 positions"):
        summarization.main(new_model_args(data["train"], data["dev"], tmp_path / "a", "--max_seq_length", "1024"))


def test_cli_dispatches_to_the_recipe(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["longbird"])
    with pytest.raises(SystemExit) as done:  # the recipe's input error, as the command reports it
        cli.main(
            [
                "train",
                "summarization",
                *new_model_args(data["train"], data["dev"], tmp_path / "a", "--text_column", "body"),
            ]
        )
    assert done.value.code == 2
    assert re.search(r"^longbird: error: .*--text_column", capsys.readouterr().err, flags=re.MULTILINE)


# --------------------------------------------------------------------------------------------
# real data (slow)
# --------------------------------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found: {path} (the shared data folder ../shared/data is absent)")
    return path


def _losses(out: Path) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _report(name: str, metrics: dict, out: Path) -> None:
    losses = _losses(out)
    print(
        f"\n[{name}] "
        + ", ".join(f"{k}={metrics[f'eval_{k}']:.4f}" for k in ROUGE_KEYS)
        + f", gen_len={metrics['eval_gen_len']:.1f}, eval_loss={metrics['eval_loss']:.3f}, "
        f"train loss {losses[0]:.3f} -> {losses[-1]:.3f} ({len(losses)} logs), "
        f"train {metrics['train_runtime']:.0f}s, eval {metrics['eval_runtime']:.0f}s"
    )
    for key in ROUGE_KEYS:
        assert math.isfinite(metrics[f"eval_{key}"]) and 0.0 <= metrics[f"eval_{key}"] <= 1.0
    assert math.isfinite(metrics["eval_loss"])
    k = max(1, len(losses) // 4)
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k, losses  # training loss went down


@pytest.mark.slow
def test_scitldr_from_scratch(tmp_path):
    folder = _need(SHARED_DATA / "scitldr")
    out = tmp_path / "scitldr"
    metrics = summarization.main(
        [
            "--train_file",
            str(folder / "SciTLDR-A.train.jsonl"),
            "--validation_file",
            str(folder / "SciTLDR-A.dev.jsonl"),
            "--text_column",
            "source",
            "--summary_column",
            "target",
            "--max_train_samples",
            "800",
            "--max_eval_samples",
            "60",
            "--train_tokenizer",
            "bpe",
            "--tokenizer_vocab_size",
            "3000",
            "--model_type",
            "longbird_bigbird_pegasus",
            "--config_overrides",
            (
                "d_model=64,encoder_layers=2,decoder_layers=2,encoder_attention_heads=4,decoder_attention_heads=4,"
                "encoder_ffn_dim=128,decoder_ffn_dim=128,block_size=32,num_random_blocks=2,max_position_embeddings=512,"
                "dropout=0.1,attention_dropout=0.0"
            ),
            "--max_seq_length",
            "512",
            "--max_target_length",
            "48",
            "--generation_max_length",
            "40",
            "--do_train",
            "--do_eval",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--per_device_eval_batch_size",
            "20",
            "--learning_rate",
            "3e-3",
            "--warmup_steps",
            "20",
            "--logging_steps",
            "20",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--use_cpu",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
        ]
    )
    _report("SciTLDR-A 800 train / 60 dev", metrics, out)


@pytest.mark.slow
def test_long_documents_gov_report_to_patents(tmp_path):
    """4k-token documents: train on GovReport (14 reports), evaluate on BigPatent (14 patents)."""
    folder = _need(SHARED_DATA / "leval_longdoc")
    out = tmp_path / "leval"
    metrics = summarization.main(
        [
            "--train_file",
            str(folder / "gov_report_summ.jsonl"),
            "--validation_file",
            str(folder / "patent_summ.jsonl"),
            "--text_column",
            "input",
            "--summary_column",
            "outputs",
            "--train_tokenizer",
            "bpe",
            "--tokenizer_vocab_size",
            "4000",
            "--model_type",
            "longbird_bigbird_pegasus",
            "--config_overrides",
            (
                "d_model=64,encoder_layers=1,decoder_layers=1,encoder_attention_heads=2,decoder_attention_heads=2,"
                "encoder_ffn_dim=128,decoder_ffn_dim=128,block_size=64,num_random_blocks=3,dropout=0.0,attention_dropout=0.0"
            ),
            "--max_seq_length",
            "4096",
            "--max_target_length",
            "256",
            "--generation_max_length",
            "96",
            "--do_train",
            "--do_eval",
            "--num_train_epochs",
            "6",
            "--per_device_train_batch_size",
            "2",
            "--per_device_eval_batch_size",
            "7",
            "--learning_rate",
            "2e-3",
            "--logging_steps",
            "7",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--use_cpu",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
        ]
    )
    _report("GovReport 14 -> BigPatent 14, 4096-token inputs", metrics, out)


@pytest.mark.slow
def test_long_documents_etc_encoder_with_sentence_globals(tmp_path):
    """The ETC encoder on the same 4k-token documents: one global token per sentence (EtcFeaturizer,
    at most 256 per document), relative positions, local radius 84."""
    folder = _need(SHARED_DATA / "leval_longdoc")
    out = tmp_path / "leval-etc"
    metrics = summarization.main(
        [
            "--train_file",
            str(folder / "gov_report_summ.jsonl"),
            "--validation_file",
            str(folder / "patent_summ.jsonl"),
            "--text_column",
            "input",
            "--summary_column",
            "outputs",
            "--max_eval_samples",
            "7",
            "--train_tokenizer",
            "bpe",
            "--tokenizer_vocab_size",
            "4000",
            "--model_type",
            "longbird_bigbird_pegasus",
            "--config_overrides",
            (
                "d_model=64,encoder_layers=1,decoder_layers=1,encoder_attention_heads=2,decoder_attention_heads=2,"
                "encoder_ffn_dim=128,decoder_ffn_dim=128,dropout=0.0,attention_dropout=0.0,"
                "encoder_type=etc,etc_config={'local_radius':84,'relative_pos_max_distance':12}"
            ),
            "--max_seq_length",
            "4096",
            "--max_global_length",
            "256",
            "--max_target_length",
            "256",
            "--generation_max_length",
            "64",
            "--do_train",
            "--do_eval",
            "--num_train_epochs",
            "3",
            "--per_device_train_batch_size",
            "2",
            "--per_device_eval_batch_size",
            "7",
            "--learning_rate",
            "2e-3",
            "--logging_steps",
            "7",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--use_cpu",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
        ]
    )
    _report("ETC encoder, GovReport 14 -> BigPatent 7, 4096-token inputs", metrics, out)
