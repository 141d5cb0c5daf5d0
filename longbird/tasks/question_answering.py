"""Extractive question answering over long contexts: `longbird train question-answering`.

    longbird train question-answering --train_file train-v1.1.json --validation_file dev-v1.1.json \\
        --join_paragraphs --train_tokenizer wordpiece --model_type longbird_bigbird \\
        --config_overrides "hidden_size=256,num_hidden_layers=4,block_size=32" \\
        --max_seq_length 1024 --do_train --do_eval --output_dir out/squad-articles

Data: SQuAD v1.1/v2.0 JSON (`{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}]}]}]}]}`, flattened to one row per question;
`--join_paragraphs` makes each article one long context), or flat .json/.jsonl/.csv/.parquet rows
with question, context and answers (`{"text": [...], "answer_start": [...]}`) columns. Every
answer must sit at its `answer_start` in its context; unanswerable questions (no answers) need
`--version_2_with_negative`.

Inputs: BigBird and BigBird-Pegasus read `[CLS] question [SEP] context [SEP]` windows of
`--max_seq_length` tokens overlapping by `--doc_stride`; ETC reads `[CLS] question [SEP] context`
rows with one global token per sentence (EtcFeaturizer), a long context continuing in further
rows at sentence boundaries. A window without the answer is labelled with `[CLS]` (0).

Evaluation: the best span of every question over all its windows (`select_answers`, the
long-question-answering pipeline's own span selection), scored with SQuAD exact match and F1
(longbird/tasks/metrics/squad); the answers are written to `<output_dir>/eval_predictions.json`.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import lzma
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from transformers import (
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_utils import speed_metrics
from transformers.utils import logging

from longbird.pipelines.pipeline_longbird_question_answering import select_answers
from longbird.tasks import recipe
from longbird.tasks.micro_batches import MicroBatchedTraining
from longbird.tokenization import EtcDataCollator, EtcFeaturizer

logger = logging.get_logger(__name__)


@dataclass
class QADataArguments(recipe.DataArguments):
    question_column: str = field(default="question", metadata={"help": "Column with the question (flat files)."})
    context_column: str = field(default="context", metadata={"help": "Column with the context (flat files)."})
    answers_column: str = field(
        default="answers",
        metadata={"help": "Column with the answers, {'text': [...], 'answer_start': [...]} (flat files)."},
    )
    id_column: str = field(default="id", metadata={"help": "Column with the question id (made up when absent)."})
    doc_stride: int = field(
        default=128, metadata={"help": "Tokens shared by consecutive windows of a long context (BigBird, Pegasus)."}
    )
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer predicted, in tokens."})
    join_paragraphs: bool = field(
        default=False,
        metadata={
            "help": "SQuAD JSON: join all paragraphs of an article into one context (blank lines between), "
            "shifting the answers: the long-document mode."
        },
    )
    version_2_with_negative: bool = field(
        default=False, metadata={"help": "Some questions have no answer (SQuAD v2): the empty answer may be predicted."}
    )
    max_global_length: int = field(default=256, metadata={"help": "ETC: global tokens (sentences) per row."})


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def is_squad_json(path: str) -> bool:
    """Whether `path` is SQuAD's nested JSON (`{"data": [{"paragraphs": [...]}, ...]}`)."""
    if recipe.data_builder(path) != "json":
        return False
    opener = _OPENERS.get(os.path.splitext(path)[1].lower(), open)
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False  # JSON lines (or unreadable here): rows, for `datasets`
    articles = content.get("data") if isinstance(content, dict) else None
    return (
        bool(articles) and isinstance(articles, list) and isinstance(articles[0], dict) and "paragraphs" in articles[0]
    )


def load_squad_json(path: str, data_args: QADataArguments) -> datasets.Dataset:
    """SQuAD's nested JSON as one row per question (id, title, question, context, answers; the
    columns named by the --*_column flags). With `join_paragraphs` every article is one context:
    its paragraphs joined with blank lines, answer starts shifted by their paragraph's offset."""
    articles = datasets.load_dataset("json", data_files={"articles": path}, field="data", split="articles")
    names = data_args.id_column, data_args.question_column, data_args.context_column, data_args.answers_column
    features = datasets.Features(
        {
            names[0]: datasets.Value("string"),
            "title": datasets.Value("string"),
            names[1]: datasets.Value("string"),
            names[2]: datasets.Value("string"),
            names[3]: datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
        }
    )
    return articles.map(
        _flatten_articles,
        batched=True,
        remove_columns=articles.column_names,
        features=features,
        fn_kwargs={"names": names, "join": data_args.join_paragraphs},
        desc=f"flatten {os.path.basename(path)}",
    )


def _flatten_articles(batch: dict[str, list], names: tuple[str, str, str, str], join: bool) -> dict[str, list]:
    id_name, question_name, context_name, answers_name = names
    rows: dict[str, list] = {id_name: [], "title": [], question_name: [], context_name: [], answers_name: []}
    titles = batch.get("title") or [None] * len(batch["paragraphs"])
    for title, paragraphs in zip(titles, batch["paragraphs"]):
        contexts = [p["context"] for p in paragraphs]
        shifts = np.cumsum([0, *(len(c) + 2 for c in contexts[:-1])]).tolist()  # "\n\n" between paragraphs
        joined = "\n\n".join(contexts)
        for paragraph, shift in zip(paragraphs, shifts):
            for qa in paragraph.get("qas") or []:
                answers = qa.get("answers") or []
                rows[id_name].append(str(qa.get("id")))
                rows["title"].append(title or "")
                rows[question_name].append(qa.get("question") or "")
                rows[context_name].append(joined if join else paragraph["context"])
                rows[answers_name].append(
                    {
                        "text": [a["text"] for a in answers],
                        "answer_start": [a["answer_start"] + (shift if join else 0) for a in answers],
                    }
                )
    return rows


def load_qa_splits(data_args: QADataArguments) -> datasets.DatasetDict:
    """--train_file/--validation_file as question rows, every answer checked against its context."""
    files = {
        name: path
        for name, path in (("train", data_args.train_file), ("validation", data_args.validation_file))
        if path
    }
    required = [data_args.question_column, data_args.context_column, data_args.answers_column]
    splits = datasets.DatasetDict()
    for split, path in files.items():
        if is_squad_json(path):
            dataset = load_squad_json(path, data_args)
            limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
            if limit is not None:
                dataset = dataset.select(range(min(limit, len(dataset))))
            if len(dataset) == 0:
                raise ValueError(f"{path} holds no questions; check the file (and --max_{split}_samples).")
        else:
            if data_args.join_paragraphs:
                raise ValueError(
                    f"--join_paragraphs joins the paragraphs of SQuAD-format JSON articles, but {path} holds flat rows "
                    '(one context per row); drop --join_paragraphs, or pass SQuAD JSON ({"data": [{"paragraphs": '
                    "...}]})."
                )
            only = dataclasses.replace(
                data_args,
                train_file=path if split == "train" else None,
                validation_file=path if split == "validation" else None,
            )
            dataset = recipe.load_splits(only, required=required)[split]
        if data_args.id_column not in dataset.column_names:
            dataset = dataset.add_column(data_args.id_column, [f"{split}-{i}" for i in range(len(dataset))])
        check_answers(dataset, path, data_args)
        splits[split] = dataset
    return splits


def answer_lists(answers: Any) -> tuple[list[str], list[int]]:
    """An answers value as (texts, starts): {"text": [...], "answer_start": [...]} or a list of
    {"text", "answer_start"} dicts."""
    if isinstance(answers, dict) and "text" in answers and "answer_start" in answers:
        texts, starts = answers["text"], answers["answer_start"]
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
    elif isinstance(answers, list) and all(
        isinstance(a, dict) and "text" in a and "answer_start" in a for a in answers
    ):
        texts, starts = [a["text"] for a in answers], [a["answer_start"] for a in answers]
    else:
        raise ValueError(
            f"an answers value must be {{'text': [...], 'answer_start': [...]}} (or a list of "
            f"{{'text', 'answer_start'}} dicts), got {answers!r:.120}"
        )
    if len(texts) != len(starts):
        raise ValueError(f"answers {answers!r:.120} has {len(texts)} texts but {len(starts)} answer_start values.")
    return list(texts), [int(s) for s in starts]


def check_answers(dataset: datasets.Dataset, path: str, data_args: QADataArguments) -> None:
    """Every answer must be found at its answer_start: context[start:start + len(text)] == text."""
    columns = [data_args.id_column, data_args.context_column, data_args.answers_column]
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        for qid, context, answers in zip(*(batch[c] for c in columns)):
            qid = str(qid)
            try:
                texts, starts = answer_lists(answers)
            except ValueError as error:
                raise ValueError(
                    f"{path}: example {qid!r}: {error}; fix the {data_args.answers_column!r} column."
                ) from None
            if not texts and not data_args.version_2_with_negative:
                raise ValueError(
                    f"{path}: example {qid!r} has no answer. Pass --version_2_with_negative for data with unanswerable "
                    "questions (SQuAD v2), or give the example its answer."
                )
            for text, start in zip(texts, starts):
                if not isinstance(context, str) or context[start : start + len(text)] != text:
                    found = context.find(text) if isinstance(context, str) else -1
                    where = (
                        f"the text occurs at character {found}"
                        if found >= 0
                        else "the text does not occur in the context"
                    )
                    raise ValueError(
                        f"{path}: example {qid!r}: the answer {text!r} is not at its answer_start {start}: the context "
                        f"has {str(context)[max(start, 0) : max(start, 0) + len(text)]!r} there ({where}). "
                        "answer_start must be the 0-based character offset of the answer text in the context; "
                        "fix the file."
                    )


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def label_positions(offsets, is_context, texts: list[str], starts: list[int], cls_index: int) -> tuple[int, int]:
    """Token positions of the first answer in one window, or (cls_index, cls_index) when the
    window does not hold all of it (or there is no answer)."""
    context_positions = [k for k, c in enumerate(is_context) if c]
    if not texts or not context_positions:
        return cls_index, cls_index
    start_char, end_char = starts[0], starts[0] + len(texts[0])
    first, last = context_positions[0], context_positions[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


class _Encoder:
    """The batched `datasets.map` function: questions + contexts -> feature rows with
    start/end_positions (and, for evaluation, example_id and offset_mapping, None outside the
    context)."""

    def __init__(self, tokenizer, data_args: QADataArguments, featurizer: EtcFeaturizer | None, keep_offsets: bool):
        self.tokenizer, self.data_args, self.featurizer, self.keep_offsets = (
            tokenizer,
            data_args,
            featurizer,
            keep_offsets,
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        args = self.data_args
        questions = [q.lstrip() for q in batch[args.question_column]]
        contexts = batch[args.context_column]
        if self.featurizer is not None:
            rows = self.featurizer(contexts, questions)
            origins = rows.pop("example_index")
            all_offsets, types = rows.pop("offset_mapping"), rows["token_type_ids"]
            rows.pop("global_offset_mapping")
            context_masks = [[t == 1 for t in row] for row in types]
            cls_indices = [0] * len(origins)
        else:
            encoded = self.tokenizer(
                questions,
                contexts,
                truncation="only_second",
                max_length=args.max_seq_length,
                stride=args.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            rows = dict(encoded)
            origins = rows.pop("overflow_to_sample_mapping")
            all_offsets = rows.pop("offset_mapping")
            context_masks = [[s == 1 for s in encoded.sequence_ids(i)] for i in range(len(origins))]
            cls = self.tokenizer.cls_token_id
            cls_indices = [row.index(cls) if cls in row else 0 for row in rows["input_ids"]]
        rows["start_positions"], rows["end_positions"] = [], []
        if self.keep_offsets:
            rows["example_id"], rows["offset_mapping"] = [], []
        for origin, offsets, is_context, cls_index in zip(origins, all_offsets, context_masks, cls_indices):
            texts, starts = answer_lists(batch[args.answers_column][origin])
            start, end = label_positions(offsets, is_context, texts, starts, cls_index)
            rows["start_positions"].append(start)
            rows["end_positions"].append(end)
            if self.keep_offsets:
                rows["example_id"].append(str(batch[args.id_column][origin]))
                rows["offset_mapping"].append([list(o) if c else None for o, c in zip(offsets, is_context)])
        return rows


def _question_fits(tokenizer, data_args: QADataArguments, is_etc: bool) -> Callable[[dict[str, list]], list[bool]]:
    """Which questions leave room for context: BigBird/Pegasus need question + special tokens +
    doc_stride < max_seq_length (the tokenizer's windowing rule), ETC question + [CLS] + [SEP] <
    max_seq_length."""
    special = 2 if is_etc else tokenizer.num_special_tokens_to_add(pair=True)
    stride = 0 if is_etc else data_args.doc_stride

    def fits(batch: dict[str, list]) -> list[bool]:
        questions = [q.lstrip() for q in batch[data_args.question_column]]
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        return [n + special + stride < data_args.max_seq_length for n in lengths]

    return fits


def prepare_features(
    splits: datasets.DatasetDict, tokenizer, model, data_args: QADataArguments, training_args: TrainingArguments
):
    """Windows (BigBird, Pegasus) or ETC rows of every split, labelled; evaluation features keep
    their example id and offsets. Returns (features per split, data collator)."""
    config = model.config
    is_etc = config.model_type == "longbird_etc"
    featurizer = None
    if is_etc:
        featurizer = EtcFeaturizer(
            tokenizer,
            max_length=data_args.max_seq_length,
            max_global_length=data_args.max_global_length,
            global_token_id=getattr(config, "global_token_id", 1),
            question_global_token_id=getattr(config, "question_global_token_id", 3),
            return_offsets_mapping=True,
        )
    special = 2 if is_etc else tokenizer.num_special_tokens_to_add(pair=True)
    rule = (
        f"question tokens + {special} special tokens"
        + ("" if is_etc else f" + --doc_stride {data_args.doc_stride}")
        + f" must stay below --max_seq_length {data_args.max_seq_length}"
    )
    fix = "raise --max_seq_length" + ("" if is_etc else " or lower --doc_stride")
    features = {}
    with training_args.main_process_first(desc="tokenize"):
        for name, split in splits.items():
            kept = split.filter(
                _question_fits(tokenizer, data_args, is_etc),
                batched=True,
                num_proc=data_args.preprocessing_num_workers,
                desc=f"check {name} questions",
            )
            recipe.require_nonempty(kept, f"{name} examples", f"every question is too long ({rule}); {fix}.")
            if len(kept) < len(split):
                logger.warning(
                    f"{len(split) - len(kept)} of {len(split)} {name} questions leave no room for the context "
                    f"({rule}) and are skipped{' (they count as unanswered)' if name == 'validation' else ''}; "
                    f"{fix} to keep them."
                )
            encoder = _Encoder(tokenizer, data_args, featurizer, keep_offsets=name == "validation")
            features[name] = kept.map(
                encoder,
                batched=True,
                remove_columns=kept.column_names,
                num_proc=data_args.preprocessing_num_workers,
                desc=f"tokenize {name}",
            )
            recipe.require_nonempty(
                features[name],
                f"{name} features",
                f"every {data_args.context_column!r} value was empty or tokenized to nothing; check the column.",
            )
    collator = EtcDataCollator(tokenizer=tokenizer) if is_etc else DataCollatorWithPadding(tokenizer)
    return features, collator


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


class AnswerScorer:
    """Predicted answers per example from the start/end logits of its windows, and their SQuAD
    exact match / F1 (`recipe.load_metric("squad")`)."""

    def __init__(self, data_args: QADataArguments, metric=None):
        self.data_args = data_args
        self.metric = recipe.load_metric("squad") if metric is None else metric

    def answers(self, examples: datasets.Dataset, features: datasets.Dataset, predictions) -> dict[str, str]:
        """{example id: answer text}; examples without a feature (skipped) get the empty answer."""
        start_logits, end_logits = predictions[0], predictions[1]
        windows = defaultdict(list)
        for i, example_id in enumerate(features["example_id"]):
            windows[example_id].append(i)
        offsets = features["offset_mapping"]
        args = self.data_args
        answers = {}
        for example_id, context in zip(examples[args.id_column], examples[args.context_column]):
            example_id = str(example_id)
            candidates = (
                (start_logits[i], end_logits[i], [o is not None for o in offsets[i]], [o or (0, 0) for o in offsets[i]])
                for i in windows.get(example_id, ())
            )
            ranked = select_answers(
                candidates,
                context,
                top_k=1,
                max_answer_len=args.max_answer_length,
                handle_impossible_answer=args.version_2_with_negative,
            )
            answers[example_id] = ranked[0]["answer"] if ranked else ""
        return answers

    def score(self, examples: datasets.Dataset, answers: dict[str, str]) -> dict[str, float]:
        args = self.data_args
        references = []
        for example_id, value in zip(examples[args.id_column], examples[args.answers_column]):
            texts, starts = answer_lists(value)
            references.append({"id": str(example_id), "answers": {"text": texts, "answer_start": starts}})
        predictions = [{"id": ref["id"], "prediction_text": answers.get(ref["id"], "")} for ref in references]
        return self.metric.compute(predictions=predictions, references=references)


class QuestionAnsweringTrainer(recipe.InOrderEvaluation, MicroBatchedTraining, Trainer):
    """A Trainer whose `evaluate` predicts start/end logits over the evaluation features, picks the
    best answer of every example over all its windows and adds SQuAD exact match and F1 (as
    `<prefix>_exact_match`, `<prefix>_f1`) to the loss and speed metrics. The answers go to
    `<output_dir>/<prefix>_predictions.json` (main process). Evaluation runs in the features'
    order (predictions are matched to them by position), also with --group_by_length."""

    def __init__(
        self, *args, eval_examples: datasets.Dataset | None = None, answer_scorer: AnswerScorer | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.answer_scorer = answer_scorer

    def evaluate(
        self,
        eval_dataset=None,
        ignore_keys=None,
        metric_key_prefix: str = "eval",
        eval_examples: datasets.Dataset | None = None,
    ) -> dict[str, float]:
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        eval_examples = self.eval_examples if eval_examples is None else eval_examples
        self._memory_tracker.start()
        dataloader = self.get_eval_dataloader(eval_dataset)
        start_time = time.time()
        scoring = self.answer_scorer is not None and eval_examples is not None
        output = self.evaluation_loop(
            dataloader,
            description="Evaluation",
            prediction_loss_only=None if scoring else True,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        metrics = dict(output.metrics)
        if f"{metric_key_prefix}_model_preparation_time" in metrics:
            start_time += metrics[f"{metric_key_prefix}_model_preparation_time"]
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=output.num_samples,
                num_steps=math.ceil(output.num_samples / total_batch_size),
            )
        )
        if scoring and output.predictions is not None:
            answers = self.answer_scorer.answers(eval_examples, eval_dataset, output.predictions)
            scores = self.answer_scorer.score(eval_examples, answers)
            metrics.update({f"{metric_key_prefix}_{key}": value for key, value in scores.items()})
            if self.is_world_process_zero() and self.args.output_dir:
                os.makedirs(self.args.output_dir, exist_ok=True)
                path = os.path.join(self.args.output_dir, f"{metric_key_prefix}_predictions.json")
                with open(path, "w", encoding="utf-8") as handle:
                    json.dump(answers, handle, ensure_ascii=False, indent=1)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics


# --------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------


def _training_texts(dataset: datasets.Dataset, data_args: QADataArguments) -> Iterator[str]:
    """Questions and (each once: joined articles repeat per question) contexts, for --train_tokenizer."""
    seen = set()
    columns = [data_args.question_column, data_args.context_column]
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        for question, context in zip(batch[columns[0]], batch[columns[1]]):
            yield question
            if hash(context) not in seen:
                seen.add(hash(context))
                yield context


def check_qa_arguments(data_args: QADataArguments) -> None:
    if data_args.doc_stride < 0:
        raise ValueError(f"--doc_stride must be >= 0, got {data_args.doc_stride}.")
    if data_args.max_answer_length < 1:
        raise ValueError(f"--max_answer_length must be >= 1, got {data_args.max_answer_length}.")
    if data_args.max_global_length < 2:
        raise ValueError(
            f"--max_global_length must be >= 2 (the question and a sentence), got {data_args.max_global_length}."
        )


def train(
    model_args: recipe.ModelArguments, data_args: QADataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Fine-tune (or train from scratch) an extractive QA model; returns the train/eval metrics."""
    check_qa_arguments(data_args)
    splits = load_qa_splits(data_args)
    texts = _training_texts(splits["train"], data_args) if "train" in splits else None
    tokenizer = recipe.load_tokenizer(model_args, texts=texts, training_args=training_args)
    model = recipe.load_model(
        AutoModelForQuestionAnswering,
        model_args,
        tokenizer,
        do_train=training_args.do_train,
        seed=training_args.seed,
        max_length=data_args.max_seq_length,
    )
    features, collator = prepare_features(splits, tokenizer, model, data_args, training_args)
    if training_args.label_names is None:
        # Trainer takes every "*label*" parameter of a QA head as a label (ETC's optional
        # supporting_fact_labels too) and, missing one, would report no eval loss.
        training_args.label_names = ["start_positions", "end_positions"]
    trainer = QuestionAnsweringTrainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        eval_examples=splits.get("validation"),
        answer_scorer=AnswerScorer(data_args),
        micro_batch_tokens=data_args.micro_batch_tokens,
    )
    card = recipe.CardInfo(
        task_type="question-answering",
        **recipe.card_dataset(data_args),
        metrics={"exact_match": "exact_match", "f1": "f1"},
        intended_use=(
            "Extractive question answering: the answer is a span of the context, found with "
            '`pipeline("long-question-answering")` (or `"question-answering"` with trust_remote_code).'
        ),
        tags=[
            *(["long-document"] if data_args.join_paragraphs else []),
            *(["squad-v2"] if data_args.version_2_with_negative else []),
        ],
    )
    return recipe.train_and_evaluate(trainer, training_args, card)


def main(argv: list[str] | None = None) -> dict[str, float]:
    return train(*recipe.parse_args(argv, QADataArguments))


if __name__ == "__main__":
    main()
