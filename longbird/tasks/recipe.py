"""What every Trainer recipe shares: arguments, data files, tokenizer, model, metrics, the model card.

A recipe module (question_answering, summarization, sequence_classification, pretraining) is
`train(model_args, data_args, training_args) -> metrics` plus `main(argv)`; everything that is
the same for all of them lives here, once:

    model_args, data_args, training_args = parse_args(argv, TaskDataArguments)
    splits = load_splits(data_args, required=["question", "context", "answers"])
    tokenizer = load_tokenizer(model_args, texts=...)
    model = load_model(AutoModelForQuestionAnswering, model_args, tokenizer, do_train=...)
    trainer = Trainer(...)
    metrics = train_and_evaluate(trainer, training_args, card=CardInfo(...))

Launchers: `python -m longbird.tasks.<task> ...`, `longbird train <task> ...`,
`torchrun --nproc_per_node N -m longbird.tasks.<task> ...` or `accelerate launch -m ...`.
Trainer builds its own Accelerator from the launcher's environment; nothing here touches devices.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import evaluate
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import StrictDataclassError
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedTokenizerBase,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint, has_length

import longbird  # noqa: F401  (registers the Auto classes)
from longbird.tasks.micro_batches import check_token_budget
from longbird.tokenization import train_dna_tokenizer, train_tokenizer

MODEL_TYPES = ("longbird_bigbird", "longbird_etc", "longbird_bigbird_pegasus")
TOKENIZER_KINDS = ("wordpiece", "unigram", "bpe", "dna")
METRICS_DIR = Path(__file__).parent / "metrics"
CARDS_DIR = Path(__file__).parent.parent / "model_cards"

# file suffix -> `datasets` builder
_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".tokens": "text",
    ".text": "text",
    ".parquet": "parquet",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst")
# config fields the card templates show (longbird/model_cards/*.md)
_CARD_CONFIG_FIELDS = (
    "attention_type",
    "block_size",
    "window_blocks",
    "num_random_blocks",
    "local_radius",
    "relative_pos_max_distance",
    "num_tokens_per_block",
)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint folder or Hub id to start from; leave out to train a new model."}
    )
    model_type: str = field(
        default="longbird_bigbird",
        metadata={"help": "Architecture of a new model (without --model_name_or_path).", "choices": MODEL_TYPES},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config fields for a new model (or changes to a loaded one), e.g. "
            "'hidden_size=128,num_hidden_layers=2,block_size=16'."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id (default: the checkpoint's own)."}
    )
    train_tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Train a new tokenizer on the training data instead of loading one.",
            "choices": TOKENIZER_KINDS,
        },
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of --train_tokenizer."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow checkpoints that carry their own code."})


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "Training data (.json/.jsonl/.csv/.txt[.gz])."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, same formats."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation examples."})
    max_seq_length: int = field(
        default=1024, metadata={"help": "Tokens per model input (longer inputs are cut or split)."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Name of the data for the model card (default: the data file's name)."}
    )
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "Put training examples of similar length into the same batch (transformers' "
            "LengthGroupedSampler over the input_ids lengths; the same as --train_sampling_strategy "
            "group_by_length). Batches are always padded only to their longest example and the model skips "
            "the padding, so this mostly evens out the tokens per step. Evaluation keeps the data's order."
        },
    )
    micro_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Run each training batch in micro-batches of at most this many real tokens (whole examples, "
            "longest first), accumulating the gradients: the step's peak memory is that of one micro-batch, its "
            "gradients and loss those of the whole batch (e.g. the longest example's length: about the memory of "
            "that example alone). Off by default."
        },
    )


def parse_args(
    argv: list[str] | None, data_class: type = DataArguments, training_class: type = TrainingArguments
) -> tuple[ModelArguments, Any, TrainingArguments]:
    """`HfArgumentParser` over (ModelArguments, data_class, training_class); one .json/.yaml file
    argument is read as a config file. Flags are those of `TrainingArguments` plus the task's."""
    parser = HfArgumentParser((ModelArguments, data_class, training_class))
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text(encoding="utf-8")
        if argv[0].endswith(".json"):
            values = json.loads(text)
        else:
            import yaml  # transformers' dependency, as in HfArgumentParser.parse_yaml_file

            values = yaml.safe_load(text)
        if not isinstance(values, dict):
            raise ValueError(f'{argv[0]} must hold a mapping of argument names to values, e.g. {{"do_train": true}}.')
        if _bf16_without_accelerator(values.get("bf16") or values.get("bf16_full_eval"), values.get("use_cpu")):
            values = {**values, "use_cpu": True}
        parsed = parser.parse_dict(values)
        given = set(values)
    else:
        given = {arg.lstrip("-").split("=", 1)[0].replace("-", "_") for arg in argv if arg.startswith("--")}
        if {"bf16", "bf16_full_eval"} & given:
            flags, _ = parser.parse_known_args(argv)
            if _bf16_without_accelerator(flags.bf16 or flags.bf16_full_eval, flags.use_cpu):
                argv = [*argv, "--use_cpu"]
        parsed = parser.parse_args_into_dataclasses(argv)
    model_args, data_args, training_args = parsed
    if "dataloader_pin_memory" not in given and (training_args.use_cpu or not _has_accelerator()):
        # pinned host memory only speeds up copies to an accelerator; without one, torch warns
        # about it in every DataLoader (an explicit --dataloader_pin_memory is kept)
        training_args.dataloader_pin_memory = False
    if getattr(data_args, "group_by_length", False):
        strategy = training_args.train_sampling_strategy
        if "train_sampling_strategy" in given and strategy != "group_by_length":
            raise ValueError(
                f"--group_by_length and --train_sampling_strategy {strategy} ask for two different training "
                "samplers; pass one of them."
            )
        training_args.train_sampling_strategy = "group_by_length"
    check_arguments(model_args, data_args, training_args)
    return model_args, data_args, training_args


def _bf16_without_accelerator(bf16: Any, use_cpu: Any) -> bool:
    """--bf16 (or --bf16_full_eval) on a machine with no accelerator: CPU bfloat16 (autocast), which
    transformers refuses without --use_cpu ("doesn't support bf16/gpu"); parse_args adds it."""
    return bool(bf16) and not use_cpu and not _has_accelerator()


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch's own test for its pin_memory warning
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def check_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Reject argument combinations that would fail later, deep inside a run."""
    if not (training_args.do_train or training_args.do_eval or getattr(training_args, "do_predict", False)):
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")
    if training_args.fp16 and (training_args.use_cpu or not _has_accelerator()):
        raise ValueError(
            "--fp16 (float16 mixed precision) needs a GPU: on CPU accelerate would train in float32 without "
            "saying so. On CPU pass --bf16 (bfloat16 autocast); --fp16_full_eval evaluates in float16."
        )
    if getattr(data_args, "micro_batch_tokens", None) is not None:
        check_token_budget(data_args.micro_batch_tokens, "--micro_batch_tokens")
    if training_args.do_train and not data_args.train_file:
        raise ValueError("--do_train needs --train_file (a .json/.jsonl/.csv/.txt file).")
    if training_args.do_eval and not data_args.validation_file:
        raise ValueError("--do_eval needs --validation_file (a .json/.jsonl/.csv/.txt file).")
    for name in ("train_file", "validation_file"):
        path = getattr(data_args, name)
        if path and not os.path.isfile(path):
            raise ValueError(f"--{name} {path!r} does not exist.")
    for name in ("model_name_or_path", "tokenizer_name"):
        value = getattr(model_args, name)
        if value and _looks_like_path(value) and not os.path.isdir(value):
            raise ValueError(
                f"--{name} {value!r} is not a folder; pass a checkpoint folder (the --output_dir of a run, with "
                f"config.json) or a Hub id such as 'google/bigbird-roberta-base'."
            )
    if (
        model_args.model_name_or_path is None
        and model_args.tokenizer_name is None
        and model_args.train_tokenizer is None
    ):
        raise ValueError(
            "A new model needs a tokenizer: pass --tokenizer_name (an existing tokenizer) or --train_tokenizer "
            f"{{{','.join(TOKENIZER_KINDS)}}} (train one on --train_file), or start from --model_name_or_path."
        )
    if model_args.train_tokenizer and not data_args.train_file:
        raise ValueError("--train_tokenizer trains on --train_file; pass one.")
    if training_args.resume_from_checkpoint and training_args.resume_from_checkpoint.lower() not in ("latest", "true"):
        if not os.path.isdir(training_args.resume_from_checkpoint):
            raise ValueError(
                f"--resume_from_checkpoint {training_args.resume_from_checkpoint!r} is not a folder; pass a "
                "checkpoint-N folder, or 'latest' for the newest one in --output_dir."
            )


def _looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id ('name' or 'owner/name')."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.path.exists(name)


def load_splits(data_args: DataArguments, required: list[str], **builder_kwargs: Any) -> datasets.DatasetDict:
    """Load --train_file/--validation_file with `datasets` and check the columns a task reads.

    The builder follows the suffix (.json/.jsonl, .csv/.tsv, .txt/.tokens, .parquet; optionally
    compressed). `required` columns missing from a file raise a ValueError naming the file, the
    columns it has and the flag that picks another column.
    """
    files = {
        name: path
        for name, path in (("train", data_args.train_file), ("validation", data_args.validation_file))
        if path
    }
    splits = datasets.DatasetDict()
    for split, path in files.items():
        builder = data_builder(path)
        if os.path.getsize(path) == 0:
            raise ValueError(f"{path} has no examples (the file is empty); it needs one example per line or row.")
        kwargs = dict(builder_kwargs)
        if path.rstrip("".join(_COMPRESSION)).endswith(".tsv"):
            kwargs.setdefault("delimiter", "\t")
        try:
            splits[split] = datasets.load_dataset(builder, data_files={split: path}, split=split, **kwargs)
        except ValueError as error:
            if "corresponds to no data" in str(error):
                raise ValueError(f"{path} has no examples; check the file.") from None
            raise
        except datasets.exceptions.DatasetGenerationError as error:
            raise ValueError(
                f"{path} could not be read as {builder}: {error.__cause__ or error}. Check the file's "
                "format (JSON lines need one object per line)."
            ) from None
        limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
        if limit is not None:
            splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
        require_columns(splits[split], required, path, data_args)
        if len(splits[split]) == 0:
            raise ValueError(f"{path} has no examples; check the file (and --max_{split}_samples).")
    return splits


def data_builder(path: str) -> str:
    """The `datasets` builder for a data file, by suffix."""
    name = path.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    suffix = os.path.splitext(name)[1]
    if suffix not in _BUILDERS:
        raise ValueError(f"{path}: unknown data format {suffix!r}; use one of {sorted(_BUILDERS)} (optionally .gz).")
    return _BUILDERS[suffix]


def require_columns(dataset: datasets.Dataset, required: list[str], path: str, data_args: Any = None) -> None:
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        flags = [
            f"--{name}"
            for name, value in vars(data_args or {}).items()
            if name.endswith("_column") and value in missing
        ]
        fix = (
            f"pass {' / '.join(flags)} with your column's name"
            if flags
            else "name yours with the matching --*_column flag"
        )
        raise ValueError(
            f"{path} has no column(s) {missing}; it has {dataset.column_names}. Rename the columns in the file, "
            f"or {fix}."
        )


def require_nonempty(dataset: datasets.Dataset, what: str, fix: str) -> None:
    """After preprocessing: an empty dataset means every example was dropped; say why."""
    if len(dataset) == 0:
        raise ValueError(f"No {what} left after preprocessing; {fix}")


def load_tokenizer(
    model_args: ModelArguments, texts=None, training_args: TrainingArguments | None = None
) -> PreTrainedTokenizerBase:
    """The checkpoint's (or --tokenizer_name's) tokenizer, or one trained on `texts` (an iterable of
    strings from the training data) with --train_tokenizer.

    With `training_args`, a trained tokenizer is made once: a resumed run loads the one saved with
    its checkpoint, and under torchrun/accelerate rank 0 trains and saves it to --output_dir while the
    other ranks wait and load it (tokenizer training is not deterministic: ranks must share ids).
    """
    if not model_args.train_tokenizer:
        name = model_args.tokenizer_name or model_args.model_name_or_path
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
        if not tokenizer.is_fast:
            raise ValueError(f"The tokenizer of {name!r} is not a fast tokenizer; the recipes need character offsets.")
        return tokenizer
    if texts is None:
        raise ValueError("--train_tokenizer needs training texts.")
    if training_args is None:
        return _train_new_tokenizer(model_args, texts)
    checkpoint = resume_checkpoint(training_args) if training_args.do_train else None
    if checkpoint and os.path.isfile(os.path.join(checkpoint, "tokenizer_config.json")):
        return AutoTokenizer.from_pretrained(checkpoint)
    with training_args.main_process_first(local=False, desc="train the tokenizer"):
        if training_args.process_index == 0:
            tokenizer = _train_new_tokenizer(model_args, texts)
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def _train_new_tokenizer(model_args: ModelArguments, texts) -> PreTrainedTokenizerBase:
    if model_args.train_tokenizer == "dna":
        return train_dna_tokenizer(texts, vocab_size=model_args.tokenizer_vocab_size)
    return train_tokenizer(texts, vocab_size=model_args.tokenizer_vocab_size, kind=model_args.train_tokenizer)


def parse_overrides(text: str | None) -> dict[str, Any]:
    """'a=1,b=x,c=[1,2]' -> {'a': 1, 'b': 'x', 'c': [1, 2]} (values as Python literals where they parse)."""
    overrides: dict[str, Any] = {}
    if not text:
        return overrides
    depth, start, parts = 0, 0, []
    for i, char in enumerate(text + ","):  # split at commas outside brackets: "sizes=[1,2],x=3"
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    for part in filter(str.strip, parts):
        if "=" not in part:
            raise ValueError(
                f"--config_overrides: {part!r} is not key=value (e.g. 'hidden_size=128,num_hidden_layers=2')."
            )
        key, value = (s.strip() for s in part.split("=", 1))
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def load_model(
    auto_class,
    model_args: ModelArguments,
    tokenizer,
    *,
    do_train: bool,
    seed: int | None = None,
    max_length: int | None = None,
    **config_kwargs: Any,
):
    """A model of `auto_class` (e.g. AutoModelForQuestionAnswering): the checkpoint's, or a new one.

    A checkpoint whose architecture has no head of this kind raises (e.g. an ETC checkpoint given
    to summarization). Evaluating without training a checkpoint saved with another head (e.g. a
    MaskedLM checkpoint given to QA with --do_eval only) raises too: its task head would be random.
    Training from it is the usual fine-tuning and only logs that the head starts fresh.
    `seed` (--seed) makes a new model's (or a new head's) initial weights reproducible.
    `max_length` (--max_seq_length): a new model gets at least that many positions; a model with
    fewer (max_position_embeddings) raises, naming the flag.
    """
    if seed is not None:
        set_seed(seed)
    overrides = parse_overrides(model_args.config_overrides)
    task = auto_class.__name__.removeprefix("AutoModelFor").removeprefix("AutoModel") or "base model"
    if model_args.model_name_or_path:
        with _naming_overrides(model_args.config_overrides):
            config = AutoConfig.from_pretrained(
                model_args.model_name_or_path,
                trust_remote_code=model_args.trust_remote_code,
                **config_kwargs,
                **overrides,
            )
        _check_override_names(overrides, type(config))
        target = _head_class(auto_class, config, model_args.model_name_or_path, task)
        saved = config.architectures or []
        if not do_train and target.__name__ not in saved:
            raise ValueError(
                f"{model_args.model_name_or_path} was saved as {saved or 'a base model'}, not {target.__name__}: its "
                f"{task} head would be randomly initialised and the evaluation meaningless. Fine-tune it with "
                f"--do_train, or pass a checkpoint trained for {task}."
            )
        if target.__name__ not in saved:
            transformers.logging.get_logger(__name__).warning(
                f"{model_args.model_name_or_path} was saved as {saved}; the {task} head of {target.__name__} starts "
                "from random weights (fine-tuning)."
            )
        _check_length(config, max_length)
        return auto_class.from_pretrained(
            model_args.model_name_or_path, config=config, trust_remote_code=model_args.trust_remote_code
        )
    default_positions = getattr(AutoConfig.for_model(model_args.model_type), "max_position_embeddings", None)
    if (
        max_length
        and default_positions
        and max_length > default_positions
        and "max_position_embeddings" not in overrides
    ):
        config_kwargs = {**config_kwargs, "max_position_embeddings": max_length}
    special = {
        f"{name}_token_id": getattr(tokenizer, f"{name}_token_id")
        for name in ("pad", "bos", "eos", "sep", "cls", "mask")
        if getattr(tokenizer, f"{name}_token_id", None) is not None
    }
    _check_override_names(overrides, type(AutoConfig.for_model(model_args.model_type)))
    with _naming_overrides(model_args.config_overrides):
        config = AutoConfig.for_model(
            model_args.model_type, vocab_size=len(tokenizer), **{**special, **config_kwargs, **overrides}
        )
    _head_class(auto_class, config, f"--model_type {model_args.model_type}", task)
    _check_length(config, max_length)
    return auto_class.from_config(config)


def _check_override_names(overrides: dict[str, Any], config_class: type) -> None:
    """--config_overrides may only set fields the config has: a misspelt one would be kept as an
    unused attribute, and the model built without the change."""
    known = {f.name for f in dataclasses.fields(config_class)} | {n for n in dir(config_class) if not n.startswith("_")}
    unknown = [name for name in overrides if name not in known]
    if unknown:
        hints = [
            f"{name!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(name, known, n=1))
            else repr(name)
            for name in unknown
        ]
        raise ValueError(
            f"--config_overrides: {config_class.model_type} configs have no field {', '.join(hints)}; see the "
            f"fields of {config_class.__name__}."
        )


@contextlib.contextmanager
def _naming_overrides(text: str | None):
    """A config field's type error (huggingface_hub's strict dataclasses) as a ValueError naming --config_overrides."""
    try:
        yield
    except StrictDataclassError as error:
        message = " ".join(str(error).split())  # huggingface_hub's message spans indented lines
        raise ValueError(f"--config_overrides {text!r}: {message}") from None


def _check_length(config, max_length: int | None) -> None:
    positions = getattr(config, "max_position_embeddings", None)  # None for ETC: relative positions only
    if max_length and isinstance(positions, int) and max_length > positions:
        raise ValueError(
            f"--max_seq_length {max_length} exceeds the model's {positions} positions (max_position_embeddings); "
            f"pass --max_seq_length {positions} or less (longer inputs are cut, or split where the task allows)."
        )


def _head_class(auto_class, config, source: str, task: str):
    try:
        return auto_class._model_mapping[type(config)]
    except KeyError:
        heads = [name for name in MODEL_TYPES if type(AutoConfig.for_model(name)) in auto_class._model_mapping]
        raise ValueError(
            f"{source} is a {config.model_type} model, which has no {task} head. Model types with one: {heads}."
        ) from None


def load_metric(name: str, config_name: str | None = None) -> evaluate.EvaluationModule:
    """One of the package's `evaluate` metrics (longbird/tasks/metrics/<name>/<name>.py): they run
    offline, unlike `evaluate.load("squad")`/`("rouge")`, which fetch their code from the Hub."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(
            f"No metric {name!r}; the package has {sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir())}."
        )
    return evaluate.load(str(path), config_name, keep_in_memory=True)  # no cache-file locks between ranks


def resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """--resume_from_checkpoint as a folder: the given one, or with 'latest' the newest
    checkpoint-N in --output_dir (None when there is none yet: the run starts fresh)."""
    value = training_args.resume_from_checkpoint
    if value and value.lower() in ("latest", "true"):
        return get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
    return value or None


class InOrderEvaluation:
    """Trainer mixin: evaluation batches in the evaluation set's order, also under --group_by_length.

    transformers then groups evaluation batches by length as well; the question-answering and
    summarization recipes match predictions to their examples by position, so they keep the order
    (`class QuestionAnsweringTrainer(recipe.InOrderEvaluation, Trainer)`)."""

    def _get_eval_sampler(self, eval_dataset):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        # Trainer's own choice without length grouping: accelerate shards a sampler-less loader in order
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def card_dataset(data_args: DataArguments) -> dict[str, str | None]:
    """The model card's `dataset_name`/`dataset_type`: --dataset_name, else the evaluation (or training) file's name."""
    source = data_args.validation_file or data_args.train_file or ""
    return {"dataset_name": data_args.dataset_name or os.path.basename(source), "dataset_type": data_args.dataset_name}


@dataclass
class CardInfo:
    """What the recipe knows for the model card: the task, the data and which metrics to list."""

    task_type: str  # Hub task id, e.g. "question-answering", "summarization", "text-classification", "fill-mask"
    dataset_name: str
    metrics: dict[str, str]  # eval metric key (without "eval_") -> Hub metric type, e.g. {"f1": "f1"}
    dataset_type: str | None = None
    intended_use: str | None = None
    tags: list[str] = field(default_factory=list)


def train_and_evaluate(
    trainer: transformers.Trainer, training_args: TrainingArguments, card: CardInfo, **evaluate_kwargs: Any
) -> dict[str, float]:
    """Train (resuming if asked), evaluate, save model + tokenizer + metrics + model card, push if asked."""
    metrics: dict[str, float] = {}
    if not training_args.do_train and trainer.is_world_process_zero():
        trainer.save_model()  # before evaluate(): --bf16_full_eval/--fp16_full_eval cast the model in place
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        metrics.update({f"train_{k}" if not k.startswith("train") else k: v for k, v in result.metrics.items()})
    if training_args.do_eval:
        eval_metrics = trainer.evaluate(**evaluate_kwargs)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if training_args.do_train:
        trainer.save_state()  # after evaluate(): trainer_state.json holds the final evaluation too
    model_card = None
    if trainer.is_world_process_zero():
        model_card = write_model_card(trainer.model, training_args.output_dir, card, metrics, training_args)
    if training_args.push_to_hub:
        trainer.push_to_hub()  # writes Trainer's generic card over ours: put ours back, here and on the Hub
        if model_card is not None:
            model_card.save(os.path.join(training_args.output_dir, "README.md"))
            model_card.push_to_hub(
                trainer.hub_model_id,
                token=training_args.hub_token,
                commit_message="Model card with the evaluation results",
            )
    return metrics


def write_model_card(
    model, output_dir: str, card: CardInfo, metrics: dict[str, float], training_args: TrainingArguments | None = None
) -> ModelCard:
    """README.md in `output_dir`: the package's template for the model type, a `model-index` with
    the evaluation results, the data, the hyperparameters and the command that made it."""
    results = [
        EvalResult(
            task_type=card.task_type,
            dataset_type=card.dataset_type or card.dataset_name,
            dataset_name=card.dataset_name,
            dataset_split="validation",
            metric_type=hub_type,
            metric_name=key,
            metric_value=round(float(metrics[f"eval_{key}"]), 4),
        )
        for key, hub_type in card.metrics.items()
        if f"eval_{key}" in metrics
    ]
    model_id = os.path.basename(os.path.abspath(output_dir))
    data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=card.task_type,
        tags=["longbird", "long-context", model.config.model_type, *card.tags],
        model_name=model_id,
        datasets=[card.dataset_type] if card.dataset_type else None,
        eval_results=results or None,
    )
    rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())
    )
    details = [f"Data: {card.dataset_name}.", "", "| metric | value |", "|---|---|", rows, ""]
    if training_args is not None:
        details += [
            "Hyperparameters: "
            + ", ".join(
                f"{name} {getattr(training_args, name)}"
                for name in (
                    "learning_rate",
                    "num_train_epochs",
                    "max_steps",
                    "per_device_train_batch_size",
                    "gradient_accumulation_steps",
                    "weight_decay",
                    "warmup_steps",
                    "seed",
                )
            ),
            "",
        ]
    details += [
        "Made with:",
        "",
        "```",
        shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "```",
        "",
        f"transformers {transformers.__version__}, datasets {datasets.__version__}.",
    ]
    template = CARDS_DIR / f"{model.config.model_type}.md"
    fields = {"model_id": model_id, "training_details": "\n".join(details)}
    config = model.config
    fields.update(
        {name: getattr(config, name) for name in _CARD_CONFIG_FIELDS if getattr(config, name, None) is not None}
    )
    fields["max_length"] = getattr(config, "max_position_embeddings", None) or 4096
    if card.intended_use:
        fields["intended_use"] = card.intended_use
    if template.is_file():
        model_card = ModelCard.from_template(data, template_path=str(template), **fields)
    else:
        model_card = ModelCard.from_template(data, **fields)
    model_card.save(os.path.join(output_dir, "README.md"))
    return model_card
