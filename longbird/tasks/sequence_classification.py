"""Sequence classification of text or DNA, single- or multi-label: `longbird train classification`.

    longbird train classification --train_file train.csv --validation_file dev.csv \\
        --text_column sequence --label_column promoter_presence --train_tokenizer dna \\
        --model_type longbird_bigbird --config_overrides "hidden_size=128,num_hidden_layers=2" \\
        --max_seq_length 512 --do_train --do_eval --output_dir out/promoters

Labels: one column of class names or ids (single-label), a column holding a list of 0/1 flags
(multi-label), or several 0/1 columns given as `--label_column a,b,c` (multi-label). Metrics:
accuracy, F1 and AUROC (longbird/tasks/metrics/classification). ETC models read text with one
global token per sentence (EtcFeaturizer); DNA has no sentences, so ETC uses fixed blocks there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from longbird.tasks import recipe
from longbird.tasks.micro_batches import MicroBatchedTraining
from longbird.tokenization import EtcDataCollator, EtcFeaturizer


@dataclass
class ClassificationDataArguments(recipe.DataArguments):
    text_column: str = field(default="text", metadata={"help": "Column with the text (or DNA sequence)."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Optional second text of each pair."})
    label_column: str = field(
        default="label",
        metadata={
            "help": "Label column; a list-valued column, or several comma-separated 0/1 columns, is multi-label."
        },
    )


@dataclass
class LabelScheme:
    """How a data set's labels become model targets."""

    columns: list[str]
    multi_label: bool
    names: list[str]  # class names (single-label) or label names (multi-label)

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def targets(self, batch: dict[str, list]) -> list:
        if self.multi_label and len(self.columns) > 1:
            return [[float(v) for v in row] for row in zip(*(batch[c] for c in self.columns))]
        if self.multi_label:
            return [[float(v) for v in row] for row in batch[self.columns[0]]]
        index = {name: i for i, name in enumerate(self.names)}
        return [index[str(v)] for v in batch[self.columns[0]]]


def label_scheme(splits, data_args: ClassificationDataArguments, saved_label2id: dict | None = None) -> LabelScheme:
    """Read the label layout from the data; a checkpoint's own class order (`saved_label2id`) is
    kept when it names the same classes."""
    columns = [c.strip() for c in data_args.label_column.split(",") if c.strip()]
    first = splits[next(iter(splits))]
    if len(columns) > 1:
        scheme = LabelScheme(columns, True, columns)
    elif isinstance(first[0][columns[0]], (list, tuple)):
        width = len(first[0][columns[0]])
        scheme = LabelScheme(columns, True, [f"label_{i}" for i in range(width)])
    else:
        values = sorted({str(v) for split in splits.values() for v in split[columns[0]]}, key=_natural)
        scheme = LabelScheme(columns, False, values)
        saved = {str(name): i for name, i in (saved_label2id or {}).items()}
        if set(saved) == set(values):
            scheme.names = sorted(saved, key=saved.get)
    if scheme.num_labels < 2 and not scheme.multi_label:
        raise ValueError(
            f"--label_column {columns[0]!r} has a single class ({scheme.names}); classification needs at least two."
        )
    for name, split in splits.items():
        _check_label_values(split, scheme, name)
    return scheme


def _natural(value: str):
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def _check_label_values(split, scheme: LabelScheme, name: str) -> None:
    if not scheme.multi_label:
        return
    if len(scheme.columns) == 1:
        widths = {len(v) for v in split[scheme.columns[0]]}
        if widths != {scheme.num_labels}:
            raise ValueError(
                f"{name} data: the multi-label lists in {scheme.columns[0]!r} have lengths {sorted(widths)[:5]}; every "
                f"row needs {scheme.num_labels} 0/1 flags."
            )
        values = {v for row in split[scheme.columns[0]] for v in row}
    else:
        values = {v for c in scheme.columns for v in split[c]}
    if not values <= {0, 1}:
        raise ValueError(f"{name} data: multi-label targets must be 0/1, found {sorted(map(str, values))[:5]}.")


def preprocess(splits, tokenizer, model, scheme: LabelScheme, data_args: ClassificationDataArguments, training_args):
    """Tokenize (ETC: featurize) every split and attach `labels`."""
    is_etc = model.config.model_type == "longbird_etc"
    is_dna = _looks_like_dna(splits[next(iter(splits))][0][data_args.text_column])
    featurizer = None
    if is_etc:
        featurizer = EtcFeaturizer(
            tokenizer,
            max_length=data_args.max_seq_length,
            overflow="truncate",
            max_global_length=max(1, data_args.max_seq_length // model.config.num_tokens_per_block),
            global_token_id=model.config.global_token_id,
            fixed_block_size=model.config.num_tokens_per_block if is_dna else None,
        )

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [str(t) for t in batch[data_args.text_column]]
        if featurizer is not None:
            rows = featurizer(
                texts
                if data_args.text_pair_column is None
                else [f"{a}\n\n{b}" for a, b in zip(texts, batch[data_args.text_pair_column])]
            )
            targets = scheme.targets(batch)
            rows["labels"] = [targets[i] for i in rows.pop("example_index")]
            return rows
        pairs = batch[data_args.text_pair_column] if data_args.text_pair_column else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=data_args.max_seq_length)
        encoded["labels"] = scheme.targets(batch)
        return dict(encoded)

    features = {}
    with training_args.main_process_first(desc="tokenize"):
        for name, split in splits.items():
            features[name] = split.map(
                encode,
                batched=True,
                remove_columns=split.column_names,
                num_proc=data_args.preprocessing_num_workers,
                desc=f"tokenize {name}",
            )
            recipe.require_nonempty(
                features[name],
                f"{name} examples",
                f"every {data_args.text_column!r} value was empty or tokenized to nothing; check the column.",
            )
    collator = EtcDataCollator(tokenizer=tokenizer) if is_etc else DataCollatorWithPadding(tokenizer)
    return features, collator


def _looks_like_dna(text: Any) -> bool:
    text = str(text)
    return len(text) >= 20 and set(text.upper()) <= set("ACGTN")


def compute_metrics_for(scheme: LabelScheme):
    metric = recipe.load_metric("classification", "multilabel" if scheme.multi_label else None)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        scores, labels = eval_prediction.predictions, eval_prediction.label_ids
        scores = scores[0] if isinstance(scores, tuple) else scores
        return metric.compute(predictions=scores, references=np.asarray(labels).astype(int))

    return compute_metrics


class ClassificationTrainer(MicroBatchedTraining, Trainer):
    """Trainer with --micro_batch_tokens (token-budget micro-batches of each training batch)."""


def train(
    model_args: recipe.ModelArguments, data_args: ClassificationDataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Fine-tune (or train from scratch) a classifier; returns the train/eval metrics."""
    splits = recipe.load_splits(
        data_args,
        required=[
            data_args.text_column,
            *_label_columns(data_args),
            *([data_args.text_pair_column] if data_args.text_pair_column else []),
        ],
    )
    texts = (str(t) for t in splits["train"][data_args.text_column]) if "train" in splits else None
    tokenizer = recipe.load_tokenizer(model_args, texts=texts, training_args=training_args)
    saved = (
        AutoConfig.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code)
        if model_args.model_name_or_path
        else None
    )
    scheme = label_scheme(splits, data_args, saved_label2id=getattr(saved, "label2id", None))
    model = recipe.load_model(
        AutoModelForSequenceClassification,
        model_args,
        tokenizer,
        do_train=training_args.do_train,
        seed=training_args.seed,
        max_length=data_args.max_seq_length,
        num_labels=scheme.num_labels,
        problem_type="multi_label_classification" if scheme.multi_label else "single_label_classification",
        id2label=dict(enumerate(scheme.names)),
        label2id={n: i for i, n in enumerate(scheme.names)},
    )
    features, collator = preprocess(splits, tokenizer, model, scheme, data_args, training_args)
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics_for(scheme),
        micro_batch_tokens=data_args.micro_batch_tokens,
    )
    card = recipe.CardInfo(
        task_type="text-classification",
        **recipe.card_dataset(data_args),
        metrics={"accuracy": "accuracy", "f1": "f1", "auroc": "roc_auc"},
        tags=["multi-label"] if scheme.multi_label else [],
        intended_use=(
            f"{'Multi-label' if scheme.multi_label else 'Single-label'} sequence classification of "
            f"{data_args.text_column!r} into {scheme.num_labels} labels ({', '.join(scheme.names[:10])}"
            f"{', ...' if scheme.num_labels > 10 else ''}), trained as described below; check it on your "
            "own data before relying on it."
        ),
    )
    return recipe.train_and_evaluate(trainer, training_args, card)


def _label_columns(data_args: ClassificationDataArguments) -> list[str]:
    return [c.strip() for c in data_args.label_column.split(",") if c.strip()]


def main(argv: list[str] | None = None) -> dict[str, float]:
    return train(*recipe.parse_args(argv, ClassificationDataArguments))


if __name__ == "__main__":
    main()
