"""Real data, end to end (slow): promoter classification against a k-mer baseline, DeepSEA's 919 labels.

    python -m pytest -m slow -s tests/test_real_data_classification.py

Both read ../shared/data (skipped where it is absent) and train from scratch (no pretrained
weights exist offline); the numbers they print are the ones quoted in README.
"""

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from longbird.tasks import sequence_classification

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
PROMOTERS = DATA / "epdnew_promoters_300"
DEEPSEA = DATA / "deepsea_chromatin_8k_sample" / "test.dataset.csv.gz"

pytestmark = pytest.mark.slow


def kmer_logistic_regression_accuracy(train: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """The baseline: counts of every k-mer, logistic regression."""
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False)
    classifier = LogisticRegression(max_iter=3000).fit(
        vectorizer.fit_transform(train.sequence), train.promoter_presence
    )
    return float((classifier.predict(vectorizer.transform(test.sequence)) == test.promoter_presence).mean())


@pytest.mark.skipif(not PROMOTERS.is_dir(), reason="../shared/data/epdnew_promoters_300 is absent (a user's clone)")
def test_promoters_fold1_to_fold2_beat_kmer_logistic_regression(tmp_path):
    train, test = pd.read_csv(PROMOTERS / "fold_1.csv"), pd.read_csv(PROMOTERS / "fold_2.csv")
    baselines = {k: kmer_logistic_regression_accuracy(train, test, k) for k in (3, 4, 5, 6)}
    metrics = sequence_classification.main(
        [
            "--train_file",
            str(PROMOTERS / "fold_1.csv"),
            "--validation_file",
            str(PROMOTERS / "fold_2.csv"),
            "--dataset_name",
            "epdnew_promoters_300",
            "--text_column",
            "sequence",
            "--label_column",
            "promoter_presence",
            "--train_tokenizer",
            "dna",
            "--tokenizer_vocab_size",
            "10",
            "--model_type",
            "longbird_bigbird",
            "--config_overrides",
            "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256,"
            "block_size=16,num_random_blocks=2,max_position_embeddings=512",
            "--max_seq_length",
            "512",
            "--do_train",
            "--do_eval",
            "--output_dir",
            str(tmp_path / "promoters"),
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "32",
            "--per_device_eval_batch_size",
            "128",
            "--learning_rate",
            "1e-3",
            "--warmup_steps",
            "100",
            "--weight_decay",
            "0.01",
            "--save_strategy",
            "no",
            "--logging_steps",
            "100",
            "--report_to",
            "none",
            "--seed",
            "0",
            "--use_cpu",
        ]
    )
    best_k = max(baselines, key=baselines.get)
    print(
        f"\npromoters fold_1 -> fold_2 ({len(test)} sequences): BigBird accuracy {metrics['eval_accuracy']:.4f}, "
        f"F1 {metrics['eval_f1']:.4f}, AUROC {metrics['eval_auroc']:.4f}; k-mer logistic regression "
        + ", ".join(f"k={k} {acc:.4f}" for k, acc in baselines.items())
    )
    assert metrics["eval_accuracy"] > baselines[best_k] + 0.05


@pytest.mark.skipif(not DEEPSEA.is_file(), reason="../shared/data/deepsea_chromatin_8k_sample is absent")
def test_deepsea_8kb_through_the_919_label_head(tmp_path):
    with gzip.open(DEEPSEA, "rt") as handle:
        rows = [{"sequence": r[0], "labels": [int(v) for v in r[1:]]} for r in csv.reader(handle)]
    assert len(rows) == 100 and {len(r["labels"]) for r in rows} == {919}
    for name, part in (("train", rows[:80]), ("test", rows[80:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    metrics = sequence_classification.main(
        [
            "--train_file",
            str(tmp_path / "train.jsonl"),
            "--validation_file",
            str(tmp_path / "test.jsonl"),
            "--dataset_name",
            "deepsea_chromatin_8k_sample",
            "--text_column",
            "sequence",
            "--label_column",
            "labels",
            "--train_tokenizer",
            "dna",
            "--tokenizer_vocab_size",
            "1000",
            "--model_type",
            "longbird_bigbird",
            "--config_overrides",
            "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128,"
            "block_size=32,num_random_blocks=2,max_position_embeddings=2048",
            "--max_seq_length",
            "2048",
            "--do_train",
            "--do_eval",
            "--output_dir",
            str(tmp_path / "deepsea"),
            "--num_train_epochs",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "1e-3",
            "--save_strategy",
            "no",
            "--logging_steps",
            "10",
            "--report_to",
            "none",
            "--seed",
            "0",
            "--use_cpu",
        ]
    )
    config = json.loads((tmp_path / "deepsea" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 919
    print(
        f"\nDeepSEA 8 kb sample (80 train / 20 test, 919 labels): eval loss {metrics['eval_loss']:.4f}, "
        f"per-label accuracy {metrics['eval_accuracy']:.4f}, macro AUROC {metrics['eval_auroc']:.4f} over "
        f"{metrics['eval_auroc_labels']} labels with both classes in the test rows, "
        f"train loss {metrics['train_loss']:.4f}"
    )
    assert np.isfinite(metrics["eval_loss"]) and metrics["eval_auroc_labels"] > 0
