"""Summarization recipe: fine-tune (or train from scratch) a BigBird-Pegasus encoder-decoder with
`Seq2SeqTrainer`, evaluate it with generation + ROUGE, and write a model card.

    longbird train summarization \\
        --train_file train.jsonl --validation_file dev.jsonl \\
        --text_column document --summary_column summary \\
        --model_name_or_path ./my-bigbird-pegasus \\
        --max_seq_length 4096 --max_target_length 128 --num_beams 4 \\
        --do_train --do_eval --output_dir out/

(also `python -m longbird.tasks.summarization ...`, `torchrun ... -m longbird.tasks.summarization`).

Data: .json/.jsonl/.csv/.parquet/... files with a document column and a summary column. Left out,
`--text_column` is the first of `TEXT_COLUMNS` and `--summary_column` the first of
`SUMMARY_COLUMNS` that the file has ("document"/"summary" as in XSum, "article"/"highlights" as
in CNN/DailyMail, "source"/"target" as in SciTLDR, "input"/"outputs" as in L-Eval, ...).
A column may hold a string or a list of strings: a list-valued document (e.g. SciTLDR's list of
abstract sentences) is joined with spaces; a list-valued summary trains on its first entry and
is scored against all of them (ROUGE takes the best reference per example and ROUGE type).
Examples with an empty document or no summary are dropped (and counted in the log).

Model: `--model_name_or_path` of a seq2seq checkpoint (a `longbird_bigbird_pegasus` folder or
transformers' BigBird-Pegasus), or a new model with `--model_type longbird_bigbird_pegasus
--config_overrides 'd_model=256,encoder_layers=2,...'` and a tokenizer (`--tokenizer_name`, or
`--train_tokenizer unigram|bpe|wordpiece` trained on the training documents and summaries). A
model without a seq2seq head (BigBird, ETC) is rejected. A tokenizer without an end-of-sequence
token (the BigBird-style `--train_tokenizer` ones) ends summaries with its `[SEP]`; a new model
starts decoding from the pad token (as Pegasus does). Summaries are tokenized without the
tokenizer's own special tokens, cut to `--max_target_length - 1` tokens and closed with that
end token; documents are tokenized as the tokenizer does by default (the long-summarization
pipeline does the same) and cut to `--max_seq_length` tokens.

ETC encoder (`encoder_type="etc"`): with `--etc_global_input sentences` (the default) the
document goes through `longbird.tokenization.EtcFeaturizer`: one global token per sentence
(each entry of a list-valued document is a paragraph of its own, never merged with the next;
a string document's paragraphs are its blank-line-separated blocks), id `etc_config.global_token_id`,
at most `--max_global_length` of them, the document truncated to `--max_seq_length`. With
`--etc_global_input fixed_blocks` only `input_ids` are fed and the encoder builds its
fixed-block global tokens (one per `num_tokens_per_block` tokens). The long-summarization
pipeline feeds only `input_ids`, i.e. fixed blocks: train with `fixed_blocks` for a model that
the pipeline should serve as trained.

Evaluation (`--predict_with_generate`, on by default here; `--no_predict_with_generate` gives
the loss only): `generate()` with `--generation_max_length` (default `--max_target_length`) and
`--num_beams` (or `--generation_num_beams`; default 1, greedy), decoded without special tokens
and scored with the package's offline ROUGE (`longbird/tasks/metrics/rouge`, `rouge_score`):
`eval_rouge1`, `eval_rouge2`, `eval_rougeL`, `eval_rougeLsum` as F-measure fractions in [0, 1]
(mean over examples; Porter stemming unless `--no_rouge_use_stemmer`; sentences split with
`longbird.tokenization.split_sentences` for rougeLsum), and `eval_gen_len` (mean generated
tokens). The saved model's generation config gets the same max_length / num_beams, so the
pipeline generates as the evaluation did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from longbird.tasks import recipe
from longbird.tasks.micro_batches import MicroBatchedTraining
from longbird.tasks.recipe import DataArguments, ModelArguments
from longbird.tokenization import EtcDataCollator, EtcFeaturizer, split_sentences

logger = logging.getLogger(__name__)

#: document columns looked for, in this order, when --text_column is left out
TEXT_COLUMNS = ("document", "text", "article", "input", "source", "abstract")
#: summary columns looked for, in this order, when --summary_column is left out
SUMMARY_COLUMNS = ("summary", "highlights", "target", "tldr", "outputs", "output", "abstract")
ETC_GLOBAL_INPUTS = ("sentences", "fixed_blocks")
CARD_METRICS = {"rouge1": "rouge", "rouge2": "rouge", "rougeL": "rouge", "rougeLsum": "rouge"}


@dataclass
class SummarizationDataArguments(DataArguments):
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "Column with the documents (a string or a list of strings, joined with spaces). Default: "
            f"the first of {', '.join(TEXT_COLUMNS)} in the file."
        },
    )
    summary_column: str | None = field(
        default=None,
        metadata={
            "help": "Column with the reference summaries (a string, or a list: train on the first, score "
            f"against all). Default: the first of {', '.join(SUMMARY_COLUMNS)} in the file."
        },
    )
    max_seq_length: int = field(
        default=4096, metadata={"help": "Document tokens fed to the encoder (longer documents are truncated)."}
    )
    max_target_length: int = field(
        default=128, metadata={"help": "Summary tokens to train on, end token included (longer ones are cut)."}
    )
    num_beams: int | None = field(
        default=None,
        metadata={"help": "Beams for the evaluation's generate() (sets --generation_num_beams; default 1, greedy)."},
    )
    rouge_use_stemmer: bool = field(default=True, metadata={"help": "Porter-stem words before ROUGE matching."})
    etc_global_input: str = field(
        default="sentences",
        metadata={
            "help": "ETC encoders only: 'sentences' (one global token per sentence, EtcFeaturizer) or "
            "'fixed_blocks' (the encoder's own fixed-block globals).",
            "choices": ETC_GLOBAL_INPUTS,
        },
    )
    max_global_length: int = field(
        default=256, metadata={"help": "ETC encoders with sentence globals: global tokens (sentences) per document."}
    )


@dataclass
class SummarizationTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments`, evaluating with `generate()` (and so ROUGE) by default."""

    predict_with_generate: bool = field(
        default=True,
        metadata={"help": "Evaluate with generate() and ROUGE (default); --no_predict_with_generate: loss only."},
    )


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A document or summary cell as one string: lists (of sentences, paragraphs) joined with spaces."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (as_text(v) for v in value) if t)
    return str(value).strip()


def as_parts(value: Any) -> list[str]:
    """A cell as its non-empty parts (a list-valued cell keeps its own segmentation: for ETC, each
    entry of a list-valued document is a paragraph, split further into sentences)."""
    if isinstance(value, (list, tuple)):
        return [t for t in (as_text(v) for v in value) if t]
    text = as_text(value)
    return [text] if text else []


def as_references(value: Any) -> list[str]:
    """A summary cell as its list of non-empty reference summaries."""
    return as_parts(value)


def resolve_columns(dataset, path: str, data_args: SummarizationDataArguments) -> tuple[str, str]:
    """(text column, summary column) of one data file; a missing one raises, naming file, column and flag."""
    chosen = []
    for flag, given, candidates, what in (
        ("--text_column", data_args.text_column, TEXT_COLUMNS, "document"),
        ("--summary_column", data_args.summary_column, SUMMARY_COLUMNS, "summary"),
    ):
        if given is not None:
            if given not in dataset.column_names:
                raise ValueError(
                    f"{path} has no column {given!r} ({flag}); it has {dataset.column_names}. Pass {flag} with the "
                    f"file's {what} column."
                )
            chosen.append(given)
            continue
        found = [c for c in candidates if c in dataset.column_names and c not in chosen]
        if not found:
            raise ValueError(
                f"{path} has no {what} column: none of {list(candidates)} is among its columns "
                f"{dataset.column_names}. Name it with {flag}."
            )
        chosen.append(found[0])
    if chosen[0] == chosen[1]:
        raise ValueError(
            f"{path}: --text_column and --summary_column are both {chosen[0]!r}; pass two different columns."
        )
    return chosen[0], chosen[1]


def _has_document_and_summary(row: dict, text_column: str, summary_column: str) -> bool:
    return bool(as_text(row[text_column])) and bool(as_references(row[summary_column]))


def sentences_per_line(text: str) -> str:
    """rougeLsum reads sentences as lines."""
    return "\n".join(split_sentences(text)) or text


@dataclass
class EtcSeq2SeqCollator:
    """Pads ETC encoder rows with `EtcDataCollator` and the labels with -100 (the model shifts them
    into decoder inputs)."""

    encoder_collator: EtcDataCollator
    label_pad_token_id: int = -100

    def __call__(self, features):
        labels = [list(f["labels"]) for f in features]
        batch = self.encoder_collator([{k: v for k, v in f.items() if k != "labels"} for f in features])
        width = max(len(row) for row in labels)
        batch["labels"] = torch.tensor([row + [self.label_pad_token_id] * (width - len(row)) for row in labels])
        return batch


class SummarizationTrainer(recipe.InOrderEvaluation, MicroBatchedTraining, Seq2SeqTrainer):
    """`Seq2SeqTrainer` that evaluates in the data's order, also with --group_by_length:
    `compute_metrics` pairs the generated summaries with the references by position."""

    def prediction_step(self, *args: Any, **kwargs: Any) -> tuple:
        # generate() calls the encoder itself, outside the autocast accelerate wraps around the
        # model's forward(): under --bf16 the whole step, generation included, runs in autocast
        with self.accelerator.autocast():
            return super().prediction_step(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# tokenizer and model
# --------------------------------------------------------------------------------------------


def prepare_tokenizer(model_args: ModelArguments, training_args, splits, columns):
    """The tokenizer, with an end-of-sequence and a pad token.

    --train_tokenizer trains on the training documents and summaries; when resuming a run that
    trained its tokenizer, the checkpoint's tokenizer is loaded instead (the model's ids are its).
    """
    texts = None
    if model_args.train_tokenizer:
        train, (text_column, summary_column) = splits["train"], columns["train"]

        def training_texts():
            for row in train.select_columns([text_column, summary_column]):
                yield as_text(row[text_column])
                yield from as_references(row[summary_column])

        texts = training_texts()
    tokenizer = recipe.load_tokenizer(model_args, texts=texts, training_args=training_args)
    if tokenizer.eos_token is None:
        if tokenizer.sep_token is None:
            raise ValueError(
                "The tokenizer has neither an eos_token nor a sep_token to end summaries with; use a tokenizer "
                "that has one (e.g. a Pegasus tokenizer, or --train_tokenizer)."
            )
        tokenizer.eos_token = tokenizer.sep_token  # BigBird-style vocabularies: [SEP] ends a summary
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_model(model_args: ModelArguments, data_args: SummarizationDataArguments, training_args, tokenizer):
    config_kwargs: dict[str, Any] = {}
    if model_args.model_name_or_path is None:  # a new model: Pegasus-style decoding with this tokenizer's ids
        config_kwargs = {
            "decoder_start_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "forced_eos_token_id": tokenizer.eos_token_id,
            "max_position_embeddings": max(4096, data_args.max_seq_length, data_args.max_target_length),
        }
    model = recipe.load_model(
        AutoModelForSeq2SeqLM,
        model_args,
        tokenizer,
        do_train=training_args.do_train,
        seed=training_args.seed,
        **config_kwargs,
    )
    config = model.config
    if not getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder; summarization needs one.")
    for name in ("decoder_start_token_id", "eos_token_id", "pad_token_id"):
        if getattr(config, name, None) is None:
            raise ValueError(f"The model's config.{name} is None; set it with --config_overrides '{name}=...'.")
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary {config.vocab_size}; pass the "
            "checkpoint's own tokenizer (or the one it was trained with)."
        )
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None:
        for flag in ("max_seq_length", "max_target_length"):
            if getattr(data_args, flag) > limit:
                raise ValueError(
                    f"--{flag} {getattr(data_args, flag)} exceeds the model's {limit} positions "
                    f"(config.max_position_embeddings); pass --{flag} {limit} or less."
                )
    return model


# --------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------


def train(model_args: ModelArguments, data_args: SummarizationDataArguments, training_args) -> dict[str, float]:
    """Train and/or evaluate; returns the metrics (train_*, eval_loss, eval_rouge1, ...)."""
    if data_args.max_target_length < 2:
        raise ValueError(
            f"--max_target_length must be at least 2 (a token and the end token), got {data_args.max_target_length}."
        )
    if data_args.num_beams is not None:
        if data_args.num_beams < 1:
            raise ValueError(f"--num_beams must be at least 1, got {data_args.num_beams}.")
        training_args.generation_num_beams = data_args.num_beams
    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.max_target_length

    splits = recipe.load_splits(data_args, required=[])
    paths = {"train": data_args.train_file, "validation": data_args.validation_file}
    columns = {split: resolve_columns(splits[split], paths[split], data_args) for split in splits}
    tokenizer = prepare_tokenizer(model_args, training_args, splits, columns)
    if not training_args.do_train:
        splits.pop("train", None)
    if not training_args.do_eval:
        splits.pop("validation", None)
    model = prepare_model(model_args, data_args, training_args, tokenizer)
    generation = model.generation_config
    generation.max_length = training_args.generation_max_length
    generation.max_new_tokens = None  # would override max_length
    generation.num_beams = training_args.generation_num_beams or 1
    # the generation config now follows the model config's special ids (a new tokenizer's)
    for name in ("decoder_start_token_id", "eos_token_id", "pad_token_id"):
        setattr(generation, name, getattr(model.config, name))

    use_etc_structure = (
        getattr(model.config, "encoder_type", None) == "etc" and data_args.etc_global_input == "sentences"
    )
    featurizer = None
    if use_etc_structure:
        featurizer = EtcFeaturizer(
            tokenizer,
            max_length=data_args.max_seq_length,
            max_global_length=data_args.max_global_length,
            global_token_id=model.get_encoder().etc.config.global_token_id,
            overflow="truncate",
            skip_empty=False,
        )
    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos

    def preprocess(batch, text_column, summary_column):
        targets = [as_references(value)[0] for value in batch[summary_column]]
        if featurizer is not None:
            features = featurizer(
                [as_parts(v) if isinstance(v, (list, tuple)) else as_text(v) for v in batch[text_column]]
            )
            for key in ("example_index", "offset_mapping", "global_offset_mapping"):
                features.pop(key, None)
        else:
            features = dict(
                tokenizer(
                    [as_text(value) for value in batch[text_column]],
                    max_length=data_args.max_seq_length,
                    truncation=True,
                    return_token_type_ids=False,
                )
            )
        label_ids = tokenizer(
            targets, add_special_tokens=False, truncation=True, max_length=data_args.max_target_length - 1
        )["input_ids"]
        features["labels"] = [ids + [eos] for ids in label_ids]
        return features

    references: list[list[str]] = []
    processed = {}
    for split, dataset in splits.items():
        text_column, summary_column = columns[split]
        with training_args.main_process_first(desc=f"{split}: tokenize"):
            before = len(dataset)
            dataset = dataset.filter(
                _has_document_and_summary,
                fn_kwargs={"text_column": text_column, "summary_column": summary_column},
                num_proc=data_args.preprocessing_num_workers,
                desc=f"{split}: drop empty examples",
            )
            if len(dataset) < before:
                logger.warning(
                    f"{paths[split]}: dropped {before - len(dataset)} of {before} examples with an empty "
                    f"{text_column!r} or {summary_column!r}."
                )
            recipe.require_nonempty(
                dataset,
                f"{split} examples in {paths[split]}",
                f"every example has an empty {text_column!r} (--text_column) or {summary_column!r} (--summary_column).",
            )
            if split == "validation":
                references = [as_references(value) for value in dataset[summary_column]]
            processed[split] = dataset.map(
                preprocess,
                batched=True,
                remove_columns=dataset.column_names,
                fn_kwargs={"text_column": text_column, "summary_column": summary_column},
                num_proc=data_args.preprocessing_num_workers,
                desc=f"{split}: tokenize",
            )

    if featurizer is not None:
        collator = EtcSeq2SeqCollator(EtcDataCollator(pad_token_id=tokenizer.pad_token_id))
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    rouge = recipe.load_metric("rouge") if training_args.predict_with_generate else None
    pad_id = tokenizer.pad_token_id

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        predictions = np.where(predictions < 0, pad_id, predictions)
        texts = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        if len(texts) != len(references):
            raise RuntimeError(f"{len(texts)} predictions for {len(references)} evaluation examples.")
        scores = rouge.compute(
            predictions=[sentences_per_line(t.strip()) for t in texts],
            references=[[sentences_per_line(r) for r in refs] for refs in references],
            use_stemmer=data_args.rouge_use_stemmer,
        )
        special = {pad_id, model.config.decoder_start_token_id, eos}
        lengths = [sum(1 for t in row if t not in special) for row in predictions.tolist()]
        return {**{k: float(v) for k, v in scores.items()}, "gen_len": float(np.mean(lengths))}

    trainer = SummarizationTrainer(
        model=model,
        args=training_args,
        train_dataset=processed.get("train"),
        eval_dataset=processed.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics if training_args.predict_with_generate else None,
        micro_batch_tokens=data_args.micro_batch_tokens,
    )
    card = recipe.CardInfo(
        task_type="summarization",
        **recipe.card_dataset(data_args),
        metrics=CARD_METRICS,
        intended_use='Abstractive summarization of long documents (`pipeline("long-summarization")` after '
        "`import longbird`).",
        tags=["summarization"],
    )
    return recipe.train_and_evaluate(trainer, training_args, card=card)


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = recipe.parse_args(
        argv, SummarizationDataArguments, SummarizationTrainingArguments
    )
    return train(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
