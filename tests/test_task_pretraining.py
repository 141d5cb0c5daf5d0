"""The pretraining recipe (longbird.tasks.pretraining): BigBird MLM and ETC MLM + CPC end to end.

Fast tests train tiny models on a few paragraphs written to tmp_path; the slow one trains on
WikiText-2 (../shared/data/wikitext2_subset) and checks that the held-out loss goes down.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from longbird.tasks import pretraining

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2_subset"

PARAGRAPHS = [
    (
        "The river rises in the eastern hills and flows west for about two hundred kilometres. Its valley was "
        "settled early, and several market towns grew up at the old fords. In the nineteenth century a canal was "
        "cut beside the lower course, and barges carried coal and grain to the coast."
    ),
    (
        "The town hall was built in 1864 to a design by a local architect. It has a clock tower of red brick and a "
        "large assembly room on the first floor. The building was restored after a fire in 1931 and is still used "
        "for concerts and public meetings."
    ),
    (
        "The species lives on rocky coasts in shallow water, where it hides in crevices during the day. At night it "
        "leaves its shelter to feed on worms, molluscs and small fish. Females carry their eggs for almost a year "
        "before the larvae hatch and drift in the plankton."
    ),
    (
        "The album was recorded in a small studio over three weeks in the spring. Critics praised its quiet songs "
        "and the clear production, although some found the second half too long. It reached the top ten in several "
        "countries and was later certified gold."
    ),
    (
        "The railway opened in 1872 and linked the harbour with the mining villages of the upper valley. Passenger "
        "services ended in the 1950s, but freight trains ran until the last mine closed. Part of the line is now a "
        "footpath and cycle route."
    ),
    (
        "The battle began at dawn when the first columns crossed the river under heavy fire. By noon the village "
        "had changed hands twice, and both armies had lost many officers. The attack was called off in the evening, "
        "and the army withdrew to its old positions during the night."
    ),
    (
        "The cathedral stands on a low hill above the old town. Its nave dates from the twelfth century, while the "
        "west front and the two towers were added two hundred years later. The stained glass of the east window is "
        "among the finest of its period."
    ),
    (
        "The storm formed over warm water in the late summer and strengthened quickly. It reached the coast two "
        "days later with strong winds and heavy rain, flooding low ground and cutting power to many homes. Damage "
        "was estimated at several million dollars."
    ),
]
HELD_OUT = [
    (
        "The bridge was completed in 1890 and carried the main road over the river for almost a century. A new "
        "crossing was opened downstream in 1985, and the old bridge is now open only to walkers."
    ),
    (
        "The film follows a young teacher who moves to a small village in the hills. It was shot on location over "
        "two summers and received good reviews for its photography and music."
    ),
    (
        "The island lies off the north coast and is home to large colonies of seabirds. A lighthouse was built on its "
        "western cliffs in 1846. The last keepers left in 1982, when the light was automated."
    ),
    (
        "The school was founded by a group of local merchants in 1702. It moved to its present site after the war, "
        "and new science buildings were opened in 1965. Several of its former pupils became well known writers."
    ),
]

TINY_BIGBIRD = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,block_size=8,"
    "num_random_blocks=1,max_position_embeddings=128,hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0"
)
TINY_ETC = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,local_radius=8,"
    "relative_pos_max_distance=2,relative_vocab_size=8,hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0"
)


@pytest.fixture(autouse=True)
def one_thread(request):
    """Tiny models run fastest on one thread (and far faster than two on a busy machine)."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def text_files(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(PARAGRAPHS * 3) + "\n")
    valid = tmp_path / "valid.txt"
    valid.write_text("\n \n".join(HELD_OUT) + "\n")  # WikiText-style blank lines hold a space
    return train, valid


def args(model_type, train, valid, out, *extra):
    overrides = TINY_ETC if model_type == "longbird_etc" else TINY_BIGBIRD
    return [
        "--model_type",
        model_type,
        "--config_overrides",
        overrides,
        "--train_tokenizer",
        "wordpiece",
        "--tokenizer_vocab_size",
        "400",
        "--train_file",
        str(train),
        "--validation_file",
        str(valid),
        "--max_seq_length",
        "128" if model_type == "longbird_etc" else "64",
        "--do_train",
        "--do_eval",
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--use_cpu",
        "--seed",
        "0",
        "--logging_steps",
        "2",
        *extra,
    ]


def check_finite(metrics, *keys):
    for key in keys:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        assert math.isfinite(metrics[key]), f"{key} = {metrics[key]}"


def check_card(out):
    card = ModelCard.load(out / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert card.data.pipeline_tag == "fill-mask"
    assert 0.0 <= results["accuracy"] <= 1.0
    assert results["perplexity"] > 1.0


def test_bigbird_mlm_trains_evaluates_resumes_and_fine_tunes(text_files, tmp_path):
    train, valid = text_files
    out = tmp_path / "bigbird"
    metrics = pretraining.main(args("longbird_bigbird", train, valid, out, "--max_steps", "4", "--save_steps", "2"))
    check_finite(metrics, "eval_loss", "eval_perplexity", "eval_accuracy", "eval_mlm_loss", "train_loss")
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_mlm_loss"]))
    # the model's own eval loss (mean of batch means) and the per-token MLM loss agree closely
    assert metrics["eval_mlm_loss"] == pytest.approx(metrics["eval_loss"], rel=0.1)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    check_card(out)
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert type(model).__name__ == "BigBirdForMaskedLM" and model.config.block_size == 8

    # resume from the newest checkpoint (checkpoint-4) and go on to step 6
    resumed = pretraining.main(
        args(
            "longbird_bigbird",
            train,
            valid,
            out,
            "--max_steps",
            "6",
            "--save_steps",
            "2",
            "--resume_from_checkpoint",
            "latest",
        )
    )
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [2, 4, 6], "went on from step 4"
    check_finite(resumed, "eval_loss", "eval_accuracy")

    # the pretrained encoder is a starting point for fine-tuning
    model = AutoModelForMaskedLM.from_pretrained(out)
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(HELD_OUT, padding=True, return_tensors="pt")
    logits = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape == (len(HELD_OUT), 2)
    assert torch.equal(classifier.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)


def test_etc_mlm_and_cpc(text_files, tmp_path):
    train, valid = text_files
    out = tmp_path / "etc"
    metrics = pretraining.main(
        args(
            "longbird_etc",
            train,
            valid,
            out,
            "--max_steps",
            "4",
            "--save_steps",
            "2",
            "--max_global_length",
            "16",
            "--sample_by",
            "document",
        )
    )
    check_finite(metrics, "eval_loss", "eval_perplexity", "eval_accuracy", "eval_mlm_loss", "eval_cpc_loss")
    check_card(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForPreTraining.from_pretrained(out)
    assert type(model).__name__ == "EtcForPreTraining"
    assert model.config.global_token_id == tokenizer.convert_tokens_to_ids("[SENT]")

    resumed = pretraining.main(
        args(
            "longbird_etc",
            train,
            valid,
            out,
            "--max_steps",
            "6",
            "--save_steps",
            "2",
            "--max_global_length",
            "16",
            "--sample_by",
            "document",
            "--resume_from_checkpoint",
            "latest",
        )
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    check_finite(resumed, "eval_loss", "eval_accuracy")

    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    assert type(classifier).__name__ == "EtcForSequenceClassification"
    assert classifier(input_ids=tokenizer(HELD_OUT[:1], return_tensors="pt")["input_ids"]).logits.shape == (1, 3)


def test_etc_without_cpc_reports_only_mlm(text_files, tmp_path):
    train, valid = text_files
    metrics = pretraining.main(
        args(
            "longbird_etc", train, valid, tmp_path / "etc_mlm", "--max_steps", "2", "--no_cpc", "--save_strategy", "no"
        )
    )
    check_finite(metrics, "eval_loss", "eval_accuracy", "eval_perplexity")
    assert "eval_cpc_loss" not in metrics
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_mlm_loss"], rel=0.1)


def test_evaluation_masks_are_fixed(text_files, tmp_path):
    """Evaluating the same model twice masks the same tokens: the numbers are identical."""
    train, valid = text_files
    out = tmp_path / "model"
    pretraining.main(args("longbird_bigbird", train, valid, out, "--max_steps", "2", "--save_strategy", "no"))
    eval_args = [
        "--model_name_or_path",
        str(out),
        "--validation_file",
        str(valid),
        "--max_seq_length",
        "64",
        "--do_eval",
        "--output_dir",
        str(tmp_path / "eval"),
        "--report_to",
        "none",
        "--use_cpu",
    ]
    first = pretraining.main(eval_args)
    second = pretraining.main(eval_args)
    assert first["eval_loss"] == second["eval_loss"] and first["eval_accuracy"] == second["eval_accuracy"]


@pytest.mark.parametrize(
    "sample_by, expected",
    [
        ("paragraph", ["= A =", "a one.", "a two.", "= = S = =", "a three.\n = B =", "b one."]),
        ("article", ["= A = \n \n a one.\n \n a two.\n\n = = S = = \n \n a three.", "= B = \n \n b one."]),
        ("document", None),
    ],
)
def test_split_samples(sample_by, expected):
    text = " = A = \n \n a one.\n \n a two.\n\n = = S = = \n \n a three.\n = B = \n \n b one.\n"
    pieces = pretraining.split_samples(text, sample_by)
    assert pieces == (expected if expected is not None else [text.strip()])


def test_jsonl_text_column(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"body": p}) + "\n" for p in PARAGRAPHS))
    base = [
        "--model_type",
        "longbird_bigbird",
        "--config_overrides",
        TINY_BIGBIRD,
        "--train_tokenizer",
        "wordpiece",
        "--tokenizer_vocab_size",
        "300",
        "--train_file",
        str(data),
        "--max_seq_length",
        "64",
        "--do_train",
        "--max_steps",
        "1",
        "--output_dir",
        str(tmp_path / "out"),
        "--report_to",
        "none",
        "--use_cpu",
        "--save_strategy",
        "no",
    ]
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\].*body"):
        pretraining.main(base)
    metrics = pretraining.main([*base, "--text_column", "body"])
    assert math.isfinite(metrics["train_loss"])


def test_empty_data_is_rejected(tmp_path, text_files):
    train, _ = text_files
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n   \n \n")
    common = [
        "--model_type",
        "longbird_bigbird",
        "--train_tokenizer",
        "wordpiece",
        "--do_train",
        "--do_eval",
        "--output_dir",
        str(tmp_path / "out"),
        "--report_to",
        "none",
        "--use_cpu",
    ]
    with pytest.raises(ValueError, match="no examples|No text"):
        pretraining.main([*common, "--train_file", str(train), "--validation_file", str(empty)])
    with pytest.raises(ValueError, match="No text in .*blank.txt left after preprocessing"):
        pretraining.main([*common, "--train_file", str(train), "--validation_file", str(blank)])
    with pytest.raises(ValueError, match="No text"):
        pretraining.main([*common, "--train_file", str(blank), "--validation_file", str(train)])


def test_pegasus_is_rejected(text_files, tmp_path):
    train, _ = text_files
    with pytest.raises(ValueError, match="BigBird-Pegasus.*summarization"):
        pretraining.main(
            [
                "--model_type",
                "longbird_bigbird_pegasus",
                "--train_tokenizer",
                "wordpiece",
                "--train_file",
                str(train),
                "--do_train",
                "--output_dir",
                str(tmp_path / "out"),
                "--report_to",
                "none",
                "--use_cpu",
            ]
        )


def test_cli_entry(text_files, tmp_path, monkeypatch):
    from longbird import cli

    train, valid = text_files
    out = tmp_path / "cli"
    cli.main(
        [
            "train",
            "pretraining",
            *args("longbird_bigbird", train, valid, out, "--max_steps", "1", "--save_strategy", "no"),
        ]
    )
    assert "longbird train pretraining" in (out / "README.md").read_text()


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def _wikitext_slice(path: Path, out: Path, lines: int) -> Path:
    out.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]), encoding="utf-8")
    return out


def _before(out: Path) -> dict:
    """The evaluation before training (--eval_on_start), from the saved trainer state."""
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    first = next(entry for entry in history if "eval_loss" in entry)
    assert first["step"] == 0
    return first


@pytest.mark.slow
@pytest.mark.skipif(not (WIKITEXT / "wiki.valid.tokens").exists(), reason=f"WikiText-2 sample not found at {WIKITEXT}")
def test_wikitext_pretraining_lowers_held_out_loss(tmp_path):
    """BigBird MLM (then ETC MLM + CPC, briefly): train on wiki.valid.tokens, evaluate on the first
    articles of wiki.test.tokens before (eval_on_start) and after training, with the same masks.
    About 3 minutes on 2 idle cores (far longer on a busy machine)."""
    test_slice = _wikitext_slice(WIKITEXT / "wiki.test.tokens", tmp_path / "test_slice.tokens", 400)
    common = [
        "--train_tokenizer",
        "wordpiece",
        "--tokenizer_vocab_size",
        "8000",
        "--train_file",
        str(WIKITEXT / "wiki.valid.tokens"),
        "--validation_file",
        str(test_slice),
        "--sample_by",
        "article",
        "--do_train",
        "--do_eval",
        "--eval_on_start",
        "--learning_rate",
        "1e-3",
        "--warmup_steps",
        "20",
        "--weight_decay",
        "0.01",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--save_strategy",
        "no",
        "--logging_steps",
        "25",
        "--report_to",
        "none",
        "--use_cpu",
        "--seed",
        "0",
        "--dataloader_drop_last",
    ]

    start = time.perf_counter()
    out = tmp_path / "bigbird"
    after = pretraining.main(
        [
            "--model_type",
            "longbird_bigbird",
            "--max_seq_length",
            "1024",
            "--output_dir",
            str(out),
            "--max_steps",
            "60",
            "--config_overrides",
            (
                "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256,"
                "block_size=64,num_random_blocks=2,max_position_embeddings=1024"
            ),
            *common,
        ]
    )
    before = _before(out)
    print(
        f"\nBigBird MLM on WikiText-2 ({time.perf_counter() - start:.0f} s): held-out MLM loss "
        f"{before['eval_mlm_loss']:.3f} -> {after['eval_mlm_loss']:.3f}, perplexity {before['eval_perplexity']:.0f} -> "
        f"{after['eval_perplexity']:.0f}, accuracy {before['eval_accuracy']:.3f} -> {after['eval_accuracy']:.3f}"
    )
    assert after["eval_loss"] < before["eval_loss"] - 1.0
    assert after["eval_accuracy"] > before["eval_accuracy"]

    start = time.perf_counter()
    out = tmp_path / "etc"
    after = pretraining.main(
        [
            *common,
            "--model_type",
            "longbird_etc",
            "--tokenizer_vocab_size",
            "1500",
            "--max_seq_length",
            "256",
            "--max_global_length",
            "32",
            "--max_eval_samples",
            "3",
            "--per_device_train_batch_size",
            "8",
            "--output_dir",
            str(out),
            "--max_steps",
            "80",
            "--config_overrides",
            (
                "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,"
                "local_radius=16,relative_pos_max_distance=4,relative_vocab_size=12,"
                "hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0"
            ),
        ]
    )
    before = _before(out)
    print(
        f"ETC MLM + CPC on WikiText-2 ({time.perf_counter() - start:.0f} s): held-out MLM loss "
        f"{before['eval_mlm_loss']:.3f} -> {after['eval_mlm_loss']:.3f}, CPC loss {before['eval_cpc_loss']:.3f} -> "
        f"{after['eval_cpc_loss']:.3f}, accuracy {before['eval_accuracy']:.3f} -> {after['eval_accuracy']:.3f}"
    )
    assert after["eval_mlm_loss"] < before["eval_mlm_loss"] - 0.7
    assert after["eval_cpc_loss"] < before["eval_cpc_loss"] - 0.2
