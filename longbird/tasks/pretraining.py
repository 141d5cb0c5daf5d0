"""Pretraining recipe: masked language modelling (BigBird) or MLM + CPC (ETC) on raw text.

    longbird train pretraining --model_type longbird_bigbird --train_tokenizer wordpiece \\
        --train_file corpus.txt --validation_file held_out.txt --sample_by article \\
        --max_seq_length 1024 --do_train --do_eval --output_dir out

Data: .txt/.tokens/.text files (optionally compressed), cut into samples by --sample_by, or
.json/.jsonl/.csv/.parquet with one sample per row in --text_column.

- BigBird (`--model_type longbird_bigbird`, or any checkpoint with a masked-LM head): samples are
  tokenized, joined with [SEP] between them and packed into blocks of `max_seq_length` (each
  `[CLS] ... [SEP]`; only the last block of each 1,000 samples is shorter), so batches carry
  almost no padding; `DataCollatorForLanguageModeling` pads a batch to its longest block (no
  rounding to the block size: the model does that inside) and masks `mlm_probability` of the
  tokens (BERT's 80/10/10). Model: `AutoModelForMaskedLM`.
- ETC (`--model_type longbird_etc` or an ETC checkpoint): `EtcFeaturizer` turns each sample into
  rows of `max_seq_length` long tokens with one global token per sentence (at most
  `max_global_length`); `EtcPretrainingCollator` masks whole sentences for CPC (`cpc_probability`
  of each row's sentences, `--no_cpc` turns CPC off) and `mlm_probability` of the other tokens.
  A row holds one sample (a long one continues in further rows); `--pack` packs short samples
  into shared rows, each kept apart by its breakpoints. Batches are padded to their longest row.
  Model: `AutoModelForPreTraining` (`EtcForPreTraining`).
- BigBird-Pegasus has no pretraining objective here (ValueError).

Evaluation: `eval_loss` (the model's training loss: for ETC the mixed MLM + CPC loss),
`eval_mlm_loss` (cross-entropy per masked token), `eval_perplexity` (exp of it), `eval_accuracy`
(masked tokens predicted exactly) and, for ETC with CPC, `eval_cpc_loss`. Evaluation masks are
drawn from a generator seeded with `--seed` afresh at every evaluation, so numbers from different
evaluations (before/after training, checkpoints) compare the same masked positions.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from longbird.tasks import recipe
from longbird.tasks.recipe import CardInfo, DataArguments, ModelArguments
from longbird.tokenization import EtcFeaturizer, EtcPretrainingCollator

SAMPLE_BY = ("paragraph", "line", "document", "article")
ETC_MODEL_TYPES = ("longbird_etc",)
PEGASUS_MODEL_TYPES = ("longbird_bigbird_pegasus", "bigbird_pegasus")

# blank line: newline, optional spaces/tabs, newline (WikiText's blank lines hold one space)
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# a top-level WikiText heading line, " = Title = " (not " = = Section = = ")
_ARTICLE_HEADING = re.compile(r"^ ?= [^=\n][^\n]* = *$", re.MULTILINE)


@dataclass
class PretrainingDataArguments(DataArguments):
    text_column: str = field(
        default="text",
        metadata={"help": "Column with the text in .json/.jsonl/.csv/.parquet files (text files: each sample)."},
    )
    sample_by: str = field(
        default="paragraph",
        metadata={
            "help": "How .txt/.tokens files are cut into samples: 'paragraph' (at blank lines, whitespace-"
            "only ones included; in BERT's sentence-per-line format, documents), 'line', 'document' "
            "(the whole file), 'article' (WikiText: at top-level ' = Title = ' headings, which stay "
            "in the article). Rows of other formats are samples as they are.",
            "choices": SAMPLE_BY,
        },
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of the tokens to mask and predict."})
    max_global_length: int = field(default=256, metadata={"help": "ETC: global tokens (sentences) per row, at most."})
    cpc: bool = field(
        default=True,
        metadata={"help": "ETC: contrastive predictive coding on masked sentences besides MLM (--no_cpc: MLM only)."},
    )
    cpc_probability: float = field(
        default=0.1,
        metadata={"help": "ETC: share of each row's sentences masked for CPC (at least one per row of 2+ sentences)."},
    )
    pack: bool = field(
        default=False,
        metadata={"help": "ETC: pack several short samples into one row (each keeps its own breakpoints)."},
    )
    global_token: str = field(
        default="[SENT]",
        metadata={
            "help": "ETC, new model: token of the sentence globals (added to the tokenizer if missing). "
            "A checkpoint keeps its config's global_token_id."
        },
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def split_samples(text: str, sample_by: str) -> list[str]:
    """Cut one document into samples ('paragraph', 'article'; 'line'/'document' come from the
    `datasets` text builder). Blank samples are dropped, the others are stripped."""
    if sample_by == "paragraph":
        pieces = _BLANK_LINE.split(text)
    elif sample_by == "article":
        starts = [m.start() for m in _ARTICLE_HEADING.finditer(text)]
        bounds = [0, *[s for s in starts if s > 0], len(text)]
        pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    else:
        pieces = [text]
    return [p.strip() for p in pieces if p.strip()]


def _split_batch(batch: dict[str, list], sample_by: str) -> dict[str, list]:
    return {"text": [s for text in batch["text"] if text for s in split_samples(text, sample_by)]}


def _nonblank(batch: dict[str, list]) -> list[bool]:
    return [isinstance(t, str) and bool(t.strip()) for t in batch["text"]]


def load_texts(data_args: PretrainingDataArguments, training_args: TrainingArguments) -> datasets.DatasetDict:
    """--train_file/--validation_file as datasets with one column, "text": one sample per row."""
    splits = datasets.DatasetDict()
    for split, path in (("train", data_args.train_file), ("validation", data_args.validation_file)):
        if not path:
            continue
        # one file at a time: text files get builder options (sample_by) that other builders reject
        one = dataclasses.replace(
            data_args,
            train_file=path if split == "train" else None,
            validation_file=path if split == "validation" else None,
            max_train_samples=None,
            max_eval_samples=None,
        )
        is_text = recipe.data_builder(path) == "text"
        column = "text" if is_text else data_args.text_column
        kwargs = {"sample_by": "line" if data_args.sample_by == "line" else "document"} if is_text else {}
        dataset = recipe.load_splits(one, required=[column], **kwargs)[split].select_columns([column])
        if column != "text":
            dataset = dataset.rename_column(column, "text")
        with training_args.main_process_first(desc=f"split {split} samples"):
            if is_text and data_args.sample_by in ("paragraph", "article"):
                dataset = dataset.map(
                    functools.partial(_split_batch, sample_by=data_args.sample_by),
                    batched=True,
                    num_proc=data_args.preprocessing_num_workers,
                    desc=f"{split}: {data_args.sample_by}s",
                )
            dataset = dataset.filter(_nonblank, batched=True, num_proc=data_args.preprocessing_num_workers)
        recipe.require_nonempty(dataset, f"text in {path}", "the file holds only blank lines or empty texts.")
        limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        splits[split] = dataset
    return splits


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence ([CLS] / [SEP])."""
    for probe in ("a", "the", "0"):
        bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(probe, add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(bare) + 1):
            if bare and full[i : i + len(bare)] == bare:
                return full[:i], full[i + len(bare) :]
    return [], []


def group_texts(
    batch: dict[str, list], tokenizer, max_seq_length: int, affixes: tuple[list[int], list[int]] = ([], [])
) -> dict[str, list]:
    """run_mlm's "group_texts": samples tokenized, joined with [SEP] (the tokenizer's separator)
    and cut into blocks of `max_seq_length` tokens, each `[CLS] ... [SEP]` (`affixes`). The shorter
    last block of each map batch is kept (the collator pads a batch only to its longest block)."""
    ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)[
        "input_ids"
    ]
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    stream: list[int] = []
    for sample in ids:
        if sample:
            stream.extend(sample)
            if sep is not None:
                stream.append(sep)
    prefix, suffix = affixes
    inner = max_seq_length - len(prefix) - len(suffix)
    blocks = []
    for start in range(0, len(stream), inner):
        chunk = stream[start : start + inner]
        while chunk and chunk[0] == sep:  # a separator at a block edge adds nothing
            chunk = chunk[1:]
        while chunk and chunk[-1] == sep:
            chunk = chunk[:-1]
        if chunk:
            blocks.append([*prefix, *chunk, *suffix])
    return {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks]}


# --------------------------------------------------------------------------------------------
# Model family, tokenizer
# --------------------------------------------------------------------------------------------


def model_family(model_args: ModelArguments) -> str:
    """'etc' or 'mlm' (BigBird and other masked LMs); BigBird-Pegasus raises ValueError."""
    if model_args.model_name_or_path:
        model_type = AutoConfig.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        ).model_type
        source = model_args.model_name_or_path
    else:
        model_type, source = model_args.model_type, f"--model_type {model_args.model_type}"
    if model_type in PEGASUS_MODEL_TYPES:
        raise ValueError(
            f"{source} is a BigBird-Pegasus (encoder-decoder) model: longbird has no pretraining objective for it "
            "(Pegasus' gap-sentence generation is not implemented). Start from a pretrained Pegasus checkpoint "
            "(--model_name_or_path, e.g. a converted google/bigbird-pegasus-large-*) and fine-tune it with "
            "`longbird train summarization`, or pretrain an encoder here with --model_type longbird_bigbird (MLM) "
            "or longbird_etc (MLM + CPC)."
        )
    return "etc" if model_type in ETC_MODEL_TYPES else "mlm"


def pretraining_tokenizer(model_args: ModelArguments, splits: datasets.DatasetDict, training_args: TrainingArguments):
    """recipe.load_tokenizer, trained on the training texts with --train_tokenizer; it must have a mask token."""
    texts = None
    if model_args.train_tokenizer and "train" in splits:
        texts = (text for batch in splits["train"].iter(batch_size=1000) for text in batch["text"])
    tokenizer = recipe.load_tokenizer(model_args, texts=texts, training_args=training_args)
    if tokenizer.mask_token_id is None:
        raise ValueError(
            "The tokenizer has no mask token (tokenizer.mask_token is None); masked language modelling needs one. "
            "Use a tokenizer with [MASK], or --train_tokenizer wordpiece/unigram/bpe."
        )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Collators, metrics, Trainer
# --------------------------------------------------------------------------------------------


class _EtcMlmOnlyCollator(EtcPretrainingCollator):
    """EtcPretrainingCollator without CPC: no sentence is masked whole, no CPC inputs."""

    def _choose_cpc_sentences(self, batch: dict, real: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch["global_input_ids"].shape, dtype=torch.bool)

    def __call__(self, features):
        batch = super().__call__(features)
        batch.pop("cpc_sentence_mask")
        batch.pop("cpc_target_input_ids")
        return batch


def make_collator(family: str, tokenizer, data_args: PretrainingDataArguments, seed: int | None = None):
    """The masking collator; `seed` set: a fixed-mask one (evaluation), else torch's global RNG.
    Either pads a batch to its longest row and no further (block-sparse models round up to whole
    blocks inside, and skip the padding)."""
    if family == "mlm":
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=data_args.mlm_probability, seed=seed)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    cls = EtcPretrainingCollator if data_args.cpc else _EtcMlmOnlyCollator
    return cls(
        tokenizer=tokenizer,
        mlm_probability=data_args.mlm_probability,
        cpc_probability=data_args.cpc_probability if data_args.cpc else 0.0,
        generator=generator,
    )


def preprocess_logits_for_metrics(outputs, labels: torch.Tensor):
    """Per batch, keep what the metrics need instead of the `[B, L, V]` logits: the argmax
    predictions `[B, L]` and `[B, 4]` sums (MLM negative log-likelihood of each row; in row 0:
    the batch's CPC cross-entropy sum and number of CPC sentences)."""
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
    outputs = tuple(t for t in outputs if isinstance(t, torch.Tensor))  # not hidden_states/attentions tuples
    logits = next(t for t in outputs if t.dim() == 3)  # MLM logits; EtcForPreTraining: cpc_logits is 2-D
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none").sum(1)
    stats = torch.zeros(logits.shape[0], 4, device=logits.device)
    stats[:, 0] = nll
    cpc_logits = [t for t in outputs if t.dim() == 2 and t.shape[0] == t.shape[1] and t.shape[0] > 1]
    if cpc_logits:
        cpc = cpc_logits[0].float()
        stats[0, 2] = F.cross_entropy(cpc, torch.arange(len(cpc), device=cpc.device), reduction="sum")
        stats[0, 3] = len(cpc)
    return logits.argmax(-1), stats


def compute_metrics(eval_prediction, with_cpc: bool = False) -> dict[str, float]:
    predictions, stats = eval_prediction.predictions
    labels = eval_prediction.label_ids
    masked = labels != -100
    count = int(masked.sum())
    metrics = {"accuracy": float((predictions[masked] == labels[masked]).mean()) if count else 0.0}
    if count:
        mlm_loss = float(stats[:, 0].sum() / count)
        metrics["mlm_loss"] = mlm_loss
        metrics["perplexity"] = math.exp(mlm_loss) if mlm_loss < 700 else float("inf")
    if with_cpc and stats[:, 3].sum() > 0:
        metrics["cpc_loss"] = float(stats[:, 2].sum() / stats[:, 3].sum())
    return metrics


class PretrainingTrainer(Trainer):
    """Trainer whose evaluation batches are masked by a fresh, seeded collator each time."""

    def __init__(self, *args, eval_data_collator: Callable[[], Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator = self.data_collator
        self.data_collator = self.eval_data_collator()
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------


def _check(data_args: PretrainingDataArguments) -> None:
    if data_args.sample_by not in SAMPLE_BY:
        raise ValueError(f"--sample_by must be one of {SAMPLE_BY}, got {data_args.sample_by!r}.")
    if not 0 < data_args.mlm_probability < 1:
        raise ValueError(f"--mlm_probability must lie in (0, 1), got {data_args.mlm_probability}.")
    if not 0 <= data_args.cpc_probability < 1:
        raise ValueError(f"--cpc_probability must lie in [0, 1), got {data_args.cpc_probability}.")
    if data_args.max_seq_length < 8:
        raise ValueError(f"--max_seq_length must be at least 8, got {data_args.max_seq_length}.")
    if data_args.max_global_length < 1:
        raise ValueError(f"--max_global_length must be at least 1, got {data_args.max_global_length}.")
    if data_args.micro_batch_tokens is not None:
        raise ValueError(
            "--micro_batch_tokens is for the fine-tuning recipes: pretraining rows are packed full already, and "
            "its losses (MLM + NSP, MLM + CPC with negatives from the whole batch) do not split into micro-batches "
            "exactly. Lower --per_device_train_batch_size and raise --gradient_accumulation_steps instead."
        )


def _load_mlm_model(model_args, data_args, training_args, tokenizer):
    return recipe.load_model(
        AutoModelForMaskedLM,
        model_args,
        tokenizer,
        do_train=training_args.do_train,
        seed=training_args.seed,
        max_length=data_args.max_seq_length,
    )


def _load_etc_model(model_args, data_args, training_args, tokenizer):
    config_kwargs = {}
    if not model_args.model_name_or_path:
        token = data_args.global_token
        if token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [token]}, replace_extra_special_tokens=False)
        config_kwargs["global_token_id"] = tokenizer.convert_tokens_to_ids(token)
    model = recipe.load_model(
        AutoModelForPreTraining,
        model_args,
        tokenizer,
        do_train=training_args.do_train,
        seed=training_args.seed,
        **config_kwargs,
    )
    limit = getattr(model.config, "max_absolute_position_embeddings", 0)
    if limit and data_args.max_seq_length > limit:
        raise ValueError(
            f"--max_seq_length {data_args.max_seq_length} exceeds the model's max_absolute_position_embeddings "
            f"({limit}); lower --max_seq_length."
        )
    return model


def train(
    model_args: ModelArguments, data_args: PretrainingDataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Pretrain (and/or evaluate) a BigBird masked LM or an ETC MLM + CPC model; returns the metrics."""
    _check(data_args)
    family = model_family(model_args)
    splits = load_texts(data_args, training_args)
    tokenizer = pretraining_tokenizer(model_args, splits, training_args)
    load = _load_etc_model if family == "etc" else _load_mlm_model
    model = load(model_args, data_args, training_args, tokenizer)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))

    num_proc = data_args.preprocessing_num_workers
    if family == "etc":
        featurizer = EtcFeaturizer(
            tokenizer,
            max_length=data_args.max_seq_length,
            max_global_length=data_args.max_global_length,
            global_token_id=model.config.global_token_id,
            pack=data_args.pack,
        )
        preprocess = featurizer.map_function("text")
        what, fix = "ETC rows", "the texts tokenize to nothing; check --text_column and the files."
    else:
        preprocess = functools.partial(
            group_texts,
            tokenizer=tokenizer,
            max_seq_length=data_args.max_seq_length,
            affixes=special_affixes(tokenizer),
        )
        what, fix = "token blocks", "the texts tokenize to nothing; check --text_column and the files."

    features = {}
    with training_args.main_process_first(desc="tokenize"):
        for split, dataset in splits.items():
            if split == "train" and not training_args.do_train or split == "validation" and not training_args.do_eval:
                continue
            features[split] = dataset.map(
                preprocess,
                batched=True,
                num_proc=num_proc,
                remove_columns=dataset.column_names,
                desc=f"{split}: {what}",
            )
            extra = [c for c in ("example_index", "example_indices") if c in features[split].column_names]
            if extra:
                features[split] = features[split].remove_columns(extra)
            recipe.require_nonempty(features[split], f"{what} in {split} data", fix)

    limit = getattr(model.config, "max_position_embeddings", None)
    if model_args.train_tokenizer and limit and tokenizer.model_max_length > limit:
        tokenizer.model_max_length = limit  # saved with it: truncation=True then fits the model

    with_cpc = family == "etc" and data_args.cpc
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        data_collator=make_collator(family, tokenizer, data_args),
        eval_data_collator=functools.partial(make_collator, family, tokenizer, data_args, seed=training_args.seed),
        compute_metrics=functools.partial(compute_metrics, with_cpc=with_cpc) if training_args.do_eval else None,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics if training_args.do_eval else None,
    )
    objective = "masked language modelling + contrastive predictive coding" if with_cpc else "masked language modelling"
    card = CardInfo(
        task_type="fill-mask",
        **recipe.card_dataset(data_args),
        metrics={"accuracy": "accuracy", "perplexity": "perplexity"},
        intended_use=(
            f"A {model.config.model_type} encoder pretrained by {objective} (longbird's pretraining recipe). Fine-tune "
            "it for classification, token classification or extractive question answering (AutoModelFor... "
            "from_pretrained loads the encoder and starts the task head fresh). Not a text generator."
        ),
        tags=["pretraining", "masked-lm", *(["cpc"] if with_cpc else [])],
    )
    return recipe.train_and_evaluate(trainer, training_args, card)


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = recipe.parse_args(argv, PretrainingDataArguments)
    return train(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
