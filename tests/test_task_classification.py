"""The classification recipe (text and DNA, single- and multi-label), the demo and the launchers."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_jsonl
from huggingface_hub import ModelCard
from sklearn.metrics import f1_score, roc_auc_score

from longbird.tasks import demo, recipe, sequence_classification

ROOT = Path(__file__).resolve().parent.parent
TINY = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,block_size=8,"
    "num_random_blocks=1,max_position_embeddings=256"
)
TINY_ETC = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,local_radius=8,"
    "relative_pos_max_distance=4,relative_vocab_size=12"
)
SENTENCES = [
    ("The committee approved the budget after a long debate. Members praised the plan.", "politics"),
    ("The striker scored twice in the second half. The crowd cheered loudly.", "sport"),
    ("Parliament passed the new tax law on Tuesday. The opposition voted against it.", "politics"),
    ("The team won the championship final. Fans celebrated in the streets.", "sport"),
    ("The minister resigned after the scandal. Elections are expected in spring.", "politics"),
    ("The goalkeeper saved a penalty in extra time. His club advanced to the semifinal.", "sport"),
]


def text_rows(n=24):
    return [{"text": SENTENCES[i % len(SENTENCES)][0], "label": SENTENCES[i % len(SENTENCES)][1]} for i in range(n)]


def args_for(tmp_path, train, valid, *extra, model_type="longbird_bigbird", overrides=TINY):
    return [
        "--train_file",
        train,
        "--validation_file",
        valid,
        "--train_tokenizer",
        "wordpiece",
        "--tokenizer_vocab_size",
        "200",
        "--model_type",
        model_type,
        "--config_overrides",
        overrides,
        "--max_seq_length",
        "128",
        "--do_train",
        "--do_eval",
        "--output_dir",
        str(tmp_path / "out"),
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--use_cpu",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
        *extra,
    ]


def run(argv):
    return sequence_classification.main(argv)


def test_text_single_label_trains_evaluates_and_writes_card(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    metrics = run(args_for(tmp_path, data, data))
    for key in ("eval_accuracy", "eval_f1", "eval_auroc", "eval_loss", "train_loss"):
        assert np.isfinite(metrics[key]), key
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "politics", "1": "sport"}
    assert config["problem_type"] == "single_label_classification"
    card = ModelCard.load(out / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(metrics["eval_accuracy"], abs=1e-4)
    assert "roc_auc" in results and card.data.pipeline_tag == "text-classification"
    assert "| eval_accuracy |" in card.text and "learning_rate 0.001" in card.text

    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(out))
    assert classifier(SENTENCES[0][0])[0]["label"] in {"politics", "sport"}


def test_eval_only_keeps_the_checkpoints_label_order(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    run(args_for(tmp_path, data, data))
    # the same classes, listed in the other order by a new file: ids must follow the checkpoint
    flipped = write_jsonl(
        tmp_path / "flipped.jsonl",
        [r for r in text_rows() if r["label"] == "sport"] + [r for r in text_rows() if r["label"] == "politics"],
    )
    scheme = sequence_classification.label_scheme(
        {"validation": __import__("datasets").load_dataset("json", data_files=flipped, split="train")},
        sequence_classification.ClassificationDataArguments(),
        saved_label2id={"sport": 0, "politics": 1},
    )
    assert scheme.names == ["sport", "politics"]
    metrics = run(
        [
            "--model_name_or_path",
            str(tmp_path / "out"),
            "--validation_file",
            flipped,
            "--do_eval",
            "--output_dir",
            str(tmp_path / "eval"),
            "--report_to",
            "none",
            "--use_cpu",
            "--max_seq_length",
            "128",
            "--disable_tqdm",
            "true",
        ]
    )
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("layout", ["list_column", "flag_columns"])
def test_multi_label(tmp_path, layout):
    rows = []
    for i, (text, label) in enumerate(SENTENCES * 4):
        flags = [int(label == "politics"), int(label == "sport"), i % 2]
        rows.append(
            {"text": text, "labels": flags}
            if layout == "list_column"
            else {"text": text, "a": flags[0], "b": flags[1], "c": flags[2]}
        )
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    label_flag = "labels" if layout == "list_column" else "a,b,c"
    metrics = run(args_for(tmp_path, data, data, "--label_column", label_flag))
    assert metrics["eval_auroc_labels"] == 3
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_auroc"])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 3


def test_etc_reads_sentences_for_text_and_fixed_blocks_for_dna(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows(12))
    metrics = run(args_for(tmp_path, data, data, model_type="longbird_etc", overrides=TINY_ETC))
    assert np.isfinite(metrics["eval_loss"])
    rng = np.random.default_rng(0)
    dna = [{"sequence": "".join(rng.choice(list("ACGT"), 120)), "label": i % 2} for i in range(12)]
    dna_file = write_jsonl(tmp_path / "dna.jsonl", dna)
    argv = args_for(
        tmp_path,
        dna_file,
        dna_file,
        "--text_column",
        "sequence",
        model_type="longbird_etc",
        overrides=TINY_ETC + ",num_tokens_per_block=16",
    )
    argv[argv.index("wordpiece")] = "dna"
    assert np.isfinite(run(argv)["eval_loss"])


def test_resume_from_latest_checkpoint(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    argv = args_for(tmp_path, data, data, "--save_strategy", "steps", "--save_steps", "2")
    argv = [a for a in argv if a != "no"]  # drop the earlier --save_strategy no value
    argv.remove("--save_strategy")
    run(argv)
    argv[argv.index("--max_steps") + 1] = "6"
    run(argv + ["--resume_from_checkpoint", "latest"])
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e or "train_loss" in e][-1] == 6


def test_classification_metric_matches_sklearn():
    metric = recipe.load_metric("classification")
    scores = np.array([[2.0, 1.0], [0.1, 0.3], [0.0, 2.0], [1.0, -1.0], [0.2, 0.1]])
    labels = np.array([0, 0, 1, 1, 1])
    result = metric.compute(predictions=scores, references=labels)
    assert result["accuracy"] == pytest.approx(0.4)
    assert result["f1"] == pytest.approx(f1_score(labels, scores.argmax(-1)))
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, scores[:, 1]))
    multi = recipe.load_metric("classification", "multilabel")
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[2.0, -1.0, -1.0], [-1.0, 0.5, -2.0], [0.3, -0.2, -1.0]])
    result = multi.compute(predictions=scores, references=labels)
    assert result["accuracy"] == pytest.approx(8 / 9)
    assert result["auroc_labels"] == 2  # the third label has no positive: no AUROC for it
    assert result["auroc"] == pytest.approx(np.mean([roc_auc_score(labels[:, j], scores[:, j]) for j in (0, 1)]))


# -- bad input ---------------------------------------------------------------------------------


def test_missing_column_names_the_file_and_the_flag(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a b c", "label": 0}, {"sentence": "c d", "label": 1}])
    with pytest.raises(ValueError, match=r"train\.jsonl has no column\(s\) \['text'\].*pass --text_column"):
        run(args_for(tmp_path, data, data))


def test_empty_file_and_single_class_and_bad_multilabel_values(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(ValueError, match="empty.csv has no examples"):
        run(args_for(tmp_path, str(empty), str(empty)))
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a b", "label": "x"}] * 4)
    with pytest.raises(ValueError, match="single class"):
        run(args_for(tmp_path, one, one))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a b", "labels": [0, 2]}] * 4)
    with pytest.raises(ValueError, match="must be 0/1"):
        run(args_for(tmp_path, bad, bad, "--label_column", "labels"))


def test_argument_errors(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    with pytest.raises(ValueError, match="Nothing to do"):
        run(["--validation_file", data, "--output_dir", str(tmp_path), "--train_tokenizer", "wordpiece"])
    with pytest.raises(ValueError, match="does not exist"):
        run(
            [
                "--train_file",
                str(tmp_path / "nope.jsonl"),
                "--do_train",
                "--output_dir",
                str(tmp_path),
                "--train_tokenizer",
                "wordpiece",
            ]
        )
    with pytest.raises(ValueError, match="needs a tokenizer"):
        run(["--train_file", data, "--do_train", "--output_dir", str(tmp_path)])
    odd = tmp_path / "train.xlsx"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unknown data format '.xlsx'"):
        run(args_for(tmp_path, str(odd), str(odd)))
    with pytest.raises(ValueError, match=r"--max_seq_length 128 exceeds the model's 64 positions"):
        run(
            args_for(
                tmp_path,
                data,
                data,
                overrides=TINY.replace("max_position_embeddings=256", "max_position_embeddings=64"),
            )
        )
    with pytest.raises(ValueError, match="config_overrides.*not key=value"):
        run(args_for(tmp_path, data, data, model_type="longbird_bigbird", overrides="hidden_size"))


def test_eval_only_with_a_masked_lm_checkpoint_is_refused(tmp_path):
    from longbird import BigBirdConfig, BigBirdForMaskedLM
    from longbird.tokenization import train_tokenizer

    tokenizer = train_tokenizer([t for t, _ in SENTENCES], vocab_size=100)
    config = BigBirdConfig(vocab_size=len(tokenizer), **recipe.parse_overrides(TINY))
    BigBirdForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    data = write_jsonl(tmp_path / "train.jsonl", text_rows())
    with pytest.raises(ValueError, match=r"saved as \['BigBirdForMaskedLM'\].*randomly initialised.*--do_train"):
        run(
            [
                "--model_name_or_path",
                str(tmp_path / "mlm"),
                "--validation_file",
                data,
                "--do_eval",
                "--output_dir",
                str(tmp_path / "eval"),
                "--use_cpu",
                "--report_to",
                "none",
            ]
        )
    # fine-tuning from it is the normal path
    metrics = run(
        [
            "--model_name_or_path",
            str(tmp_path / "mlm"),
            "--train_file",
            data,
            "--validation_file",
            data,
            "--do_train",
            "--do_eval",
            "--max_steps",
            "2",
            "--output_dir",
            str(tmp_path / "ft"),
            "--use_cpu",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--max_seq_length",
            "128",
        ]
    )
    assert np.isfinite(metrics["eval_loss"])


# -- the main job and the launchers ------------------------------------------------------------


def test_demo_trains_evaluates_saves_and_runs_the_pipeline(tmp_path, capsys):
    result = demo.run(
        [
            "--max_steps",
            "3",
            "--max_eval_samples",
            "40",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--output_dir",
            str(tmp_path / "demo"),
            "--use_cpu",
            "--disable_tqdm",
            "true",
        ]
    )
    assert {"eval_accuracy", "eval_f1", "eval_auroc"} <= set(result["metrics"])
    assert len(result["predictions"]) == 3 and all(p["label"] in ("0", "1") for p in result["predictions"])
    saved = set(os.listdir(tmp_path / "demo"))
    assert {"model.safetensors", "README.md", "tokenizer.json", "config.json"} <= saved
    card = ModelCard.load(tmp_path / "demo" / "README.md")
    assert card.data.eval_results[0].dataset_type == "epdnew_promoters"
    assert 'pipeline("text-classification"' in capsys.readouterr().out


def test_shipped_demo_data_is_credited():
    data = ROOT / "longbird" / "tasks" / "data"
    readme = (data / "README.md").read_text()
    assert "MIT" in readme and "GENA_LM" in readme and (data / "LICENSE-GENA_LM-MIT.txt").is_file()
    import gzip

    with gzip.open(data / "promoters_train.csv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4000 and {r["promoter_presence"] for r in rows} == {"0", "1"}
    assert all(len(r["sequence"]) == 300 for r in rows)


def test_torchrun_two_cpu_processes(tmp_path):
    """The same recipe under `torchrun --nproc_per_node 2` (gloo): two ranks share each step's batch."""
    data = write_jsonl(tmp_path / "train.jsonl", text_rows(16))
    argv = args_for(tmp_path, data, data)
    argv[argv.index("--max_steps") : argv.index("--max_steps") + 2] = ["--num_train_epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "longbird.tasks.sequence_classification",
            *argv,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    # 16 examples, 4 per device: 4 steps in one process, 2 when two ranks split every batch
    assert state["global_step"] == 2
    assert (tmp_path / "out" / "README.md").is_file() and (tmp_path / "out" / "model.safetensors").is_file()
