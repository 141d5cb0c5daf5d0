"""`longbird demo`: the main job, end to end, on real data shipped inside the package.

Trains a small BigBird (block-sparse attention: sliding window, global and random blocks) from
scratch to tell human promoters from non-promoters (300 bp DNA, one token per base; the data and
its credits are in longbird/tasks/data/), evaluates it (accuracy, F1, AUROC), saves the checkpoint
with its model card, and classifies held-out sequences through `pipeline("text-classification")`.
It is the classification recipe (`longbird train classification`) with fixed arguments, so every
Trainer flag works here too: `longbird demo --num_train_epochs 1 --output_dir /tmp/demo`, or
`longbird demo --bf16` (bfloat16 autocast for training and evaluation, CPU included).
"""

from __future__ import annotations

import csv
import gzip
import sys
from importlib.resources import files

DATA = files("longbird.tasks") / "data"
LABELS = {"0": "non-promoter", "1": "promoter"}

#: the recipe arguments of the demo; later command-line flags override them
DEMO_ARGS = [
    "--train_file",
    str(DATA / "promoters_train.csv.gz"),
    "--validation_file",
    str(DATA / "promoters_test.csv.gz"),
    "--dataset_name",
    "epdnew_promoters",
    "--text_column",
    "sequence",
    "--label_column",
    "promoter_presence",
    "--train_tokenizer",
    "dna",
    "--tokenizer_vocab_size",
    "10",  # 5 specials + A, C, G, T, N: one token per base
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
    "longbird-demo",
    "--num_train_epochs",
    "4",
    "--per_device_train_batch_size",
    "32",
    "--per_device_eval_batch_size",
    "64",
    "--learning_rate",
    "1e-3",
    "--warmup_steps",
    "50",
    "--weight_decay",
    "0.01",
    "--eval_strategy",
    "epoch",
    "--save_strategy",
    "epoch",
    "--save_total_limit",
    "1",
    "--logging_steps",
    "25",
    "--report_to",
    "none",
    "--seed",
    "0",
]


def run(argv: list[str] | None = None) -> dict:
    """Train, evaluate, save, then classify three held-out sequences with `pipeline()`.
    Returns the recipe's metrics and the pipeline's predictions."""
    from transformers import pipeline

    from longbird.tasks import recipe, sequence_classification

    # (recipe.parse_args turns pinned memory off without an accelerator: no DataLoader warning)
    model_args, data_args, training_args = recipe.parse_args(
        DEMO_ARGS + list(argv or []), sequence_classification.ClassificationDataArguments
    )
    metrics = sequence_classification.train(model_args, data_args, training_args)
    output_dir = training_args.output_dir

    classifier = pipeline("text-classification", model=output_dir)
    with gzip.open(data_args.validation_file, "rt") as handle:
        held_out = list(csv.DictReader(handle))
    evaluated = min(len(held_out), data_args.max_eval_samples or len(held_out))
    examples = held_out[:3]
    predictions = classifier([row["sequence"] for row in examples])
    print(f"\nSaved to {output_dir}/ (weights, tokenizer, code, README.md model card).")
    print(
        f"Held-out accuracy {metrics['eval_accuracy']:.3f}, F1 {metrics['eval_f1']:.3f}, "
        f"AUROC {metrics['eval_auroc']:.3f} on {evaluated} held-out sequences."
    )
    print('pipeline("text-classification", model=...) on three held-out sequences:')
    for row, prediction in zip(examples, predictions):
        print(
            f"  {row['sequence'][:24]}...  predicted {LABELS.get(prediction['label'], prediction['label'])} "
            f"({prediction['score']:.2f}), true {LABELS[row['promoter_presence']]}"
        )
    return {"metrics": metrics, "predictions": predictions}


def main(argv: list[str] | None = None) -> None:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    sys.argv = ["longbird demo", *(argv or [])]
    run(argv)
