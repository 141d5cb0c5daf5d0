"""Extractive question answering over long contexts, as a transformers pipeline.

transformers 5 removed its `question-answering` pipeline; this one brings it back for long
inputs: the context is split into windows of `max_seq_len` tokens (by default the model's whole
length, so a long-sequence model usually needs one window) overlapping by `doc_stride`, and the
best span over all windows is returned with character offsets into the context. ETC models read
`[CLS] question [SEP] context` with one global token per sentence (and one for the question),
made by `EtcFeaturizer`; a context too long for one row continues in further rows at sentence
boundaries.

With `batch_size > 1` the windows of a batch (of one question or of several) are padded on the
right to the longest window of that batch, never to `max_seq_len`: the pipeline pads them
itself (the tokenizer's `padding_side` does not apply: every window's logits are read from its
first token), and the models skip padding inside, so a batch of short and long windows costs
what its tokens cost.

`select_answers` is the span selection itself (the best start/end pairs of every window, ranked
on one scale for all windows: a softmax over all windows' context tokens, so a short last window
gets no advantage); the question-answering Trainer recipe uses it too.

Only transformers, torch, numpy and the sibling modules `etc_featurizer`, `etc_inputs` and
`input_limit` are imported, so the file also works as Hub remote code (the flat folder holds them
beside it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline

from ..tokenization.etc_featurizer import EtcFeaturizer
from ..tokenization.etc_inputs import ETC_INPUTS
from .input_limit import input_limit, position_limit

#: ETC rows have no positional limit; without one from the tokenizer, rows hold this many tokens
ETC_DEFAULT_MAX_SEQ_LEN = 4096


class LongQuestionAnsweringPipeline(ChunkPipeline):
    """`pipeline("long-question-answering", model=..., tokenizer=...)` after `import longbird`.

    Call with `question=` and `context=` (strings, or lists of equal length for a batch), or with
    dicts `{"question": ..., "context": ...}`. Options: `top_k` (answers per question, default 1),
    `max_answer_len` (tokens, default 30), `doc_stride` (overlap of windows, default 128),
    `max_seq_len` (tokens per window; default the model's maximum, and at most that),
    `handle_impossible_answer` (allow the empty answer, scored from the first token, `[CLS]`).
    Answers from different windows are compared on one scale (see `select_answers`): `score` is
    a probability over the context tokens of all windows. ETC models split a long
    context at sentence boundaries instead (`doc_stride` does not apply) and take
    `max_global_len` (global tokens per row, default 256).

    Returns per question `{"score", "start", "end", "answer"}` (a list of `top_k` of them when
    `top_k > 1`); `start`/`end` are character offsets into the context.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        name = type(self.model).__name__
        if "ForQuestionAnswering" not in name:
            raise ValueError(
                f"long-question-answering needs a question-answering model (start/end logits), got {name}; "
                f"load the checkpoint with AutoModelForQuestionAnswering or pass a *ForQuestionAnswering model."
            )
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(
                "long-question-answering needs a fast tokenizer (character offsets); load it with use_fast=True."
            )

    def _sanitize_parameters(
        self,
        top_k=None,
        max_answer_len=None,
        doc_stride=None,
        max_seq_len=None,
        handle_impossible_answer=None,
        max_global_len=None,
        **kwargs,
    ):
        preprocess = {"doc_stride": doc_stride, "max_seq_len": max_seq_len, "max_global_len": max_global_len}
        preprocess = {k: v for k, v in preprocess.items() if v is not None}
        postprocess = {
            "top_k": top_k,
            "max_answer_len": max_answer_len,
            "handle_impossible_answer": handle_impossible_answer,
        }
        postprocess = {k: v for k, v in postprocess.items() if v is not None}
        for name, value, least in (
            ("top_k", top_k, 1),
            ("max_answer_len", max_answer_len, 1),
            ("max_seq_len", max_seq_len, 1),
            ("doc_stride", doc_stride, 0),
            ("max_global_len", max_global_len, 1),
        ):
            if value is not None:
                _check_integer(name, value, least)
        limit = position_limit(self.model.config)
        if max_seq_len is not None and limit is not None and max_seq_len > limit:
            # checked here, not left to the model, so the error names the pipeline argument
            raise ValueError(
                f"max_seq_len={max_seq_len} exceeds the model's limit of {limit} tokens "
                f"(config.max_position_embeddings); pass max_seq_len <= {limit}, or leave it out to use the "
                f"model's maximum (a longer context is split into windows anyway)."
            )
        return preprocess, {}, postprocess

    def __call__(self, *args, question=None, context=None, **kwargs):
        if args:
            inputs = args[0]
        elif question is not None and context is not None:
            if isinstance(question, str) and isinstance(context, str):
                inputs = {"question": question, "context": context}
            else:
                if isinstance(context, str):
                    context = [context] * len(question)
                if isinstance(question, str) or len(question) != len(context):
                    raise ValueError("Pass as many contexts as questions (or one context for all of them).")
                inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        else:
            raise ValueError("Pass question= and context= (or dicts with those keys).")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, example, doc_stride: int = 128, max_seq_len: int | None = None, max_global_len: int = 256):
        question, context = _question_and_context(example)
        is_etc = getattr(self.model.config, "model_type", None) == "longbird_etc"
        if max_seq_len is None:
            max_seq_len = input_limit(self.model, self.tokenizer) or ETC_DEFAULT_MAX_SEQ_LEN
        if is_etc:
            yield from self._etc_windows(question, context, max_seq_len, max_global_len)
            return
        question_tokens = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        if question_tokens + 4 + doc_stride >= max_seq_len:
            raise ValueError(
                f"The question ({question_tokens} tokens) plus doc_stride ({doc_stride}) leaves no room for the "
                f"context in windows of max_seq_len={max_seq_len} tokens; lower doc_stride or raise max_seq_len."
            )
        encoded = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        windows = len(encoded["input_ids"])
        for i in range(windows):
            yield {
                "window": {name: encoded[name][i] for name in self.tokenizer.model_input_names if name in encoded},
                "offsets": encoded["offset_mapping"][i],
                "sequence_ids": encoded.sequence_ids(i),
                "context": context,
                "is_last": i == windows - 1,
            }

    def _etc_windows(self, question: str, context: str, max_seq_len: int, max_global_len: int):
        """ETC rows: `[CLS] question [SEP] context`, one global token per sentence (token type 1
        marks the context, whose tokens are the answer candidates)."""
        config = self.model.config
        featurizer = EtcFeaturizer(
            self.tokenizer,
            max_length=max_seq_len,
            max_global_length=max_global_len,
            global_token_id=getattr(config, "global_token_id", 1),
            question_global_token_id=getattr(config, "question_global_token_id", 3),
            return_offsets_mapping=True,
        )
        rows = featurizer([context], [question])
        windows = len(rows["input_ids"])
        for i in range(windows):
            yield {
                "window": {name: rows[name][i] for name in ETC_INPUTS},
                "offsets": [tuple(o) for o in rows["offset_mapping"][i]],
                "sequence_ids": [1 if t == 1 else 0 for t in rows["token_type_ids"][i]],
                "context": context,
                "is_last": i == windows - 1,
            }

    def _forward(self, inputs):
        extras = {k: inputs.pop(k) for k in ("offsets", "sequence_ids", "context", "is_last")}
        windows = inputs.pop("window")  # one window's dict, or (batch_size > 1) a list of them
        pad_token_id = self.tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = getattr(self.model.config, "pad_token_id", None) or 0
        batch = pad_windows([windows] if isinstance(windows, dict) else windows, pad_token_id)
        out = self.model(**{name: value.to(self.device) for name, value in batch.items()})
        return {"start_logits": out.start_logits, "end_logits": out.end_logits, **extras}

    def postprocess(self, outputs, top_k: int = 1, max_answer_len: int = 30, handle_impossible_answer: bool = False):
        windows = (
            (
                window["start_logits"][0].float().numpy(),
                window["end_logits"][0].float().numpy(),
                [s == 1 for s in window["sequence_ids"]],
                window["offsets"],
            )
            for window in outputs
        )
        ranked = select_answers(windows, outputs[0]["context"], top_k, max_answer_len, handle_impossible_answer)
        return ranked[0] if top_k == 1 and ranked else ranked


def select_answers(
    windows: Iterable[tuple[Sequence[float], Sequence[float], Sequence[bool], Sequence[tuple[int, int]]]],
    context: str,
    top_k: int = 1,
    max_answer_len: int = 30,
    handle_impossible_answer: bool = False,
) -> list[dict]:
    """The `top_k` best answers to one question over all its windows, best first.

    Each window is `(start_logits, end_logits, is_context, offsets)` over its tokens: `is_context`
    marks the tokens an answer may use, `offsets` are their `(start, end)` character spans in
    `context`; logits longer than `offsets` (batch padding) are cut. Token 0 is `[CLS]`, the
    empty answer. A span is `start <= end < start + max_answer_len` inside one window.

    Scoring across windows: one softmax over the context tokens of *all* windows (and one null
    entry), for the start and for the end; a span scores `p(start) * p(end)`. So spans are ranked
    by their raw `start + end` logits, as transformers' `run_qa` post-processing does, and the
    `score` is still a probability that can be compared across windows and questions. (A softmax
    per window would hand the most probability to the shortest window, the last one: its few
    tokens share the whole mass, so it wins whatever the logits say.) A token inside two
    overlapping windows is one candidate per window; duplicate spans keep their best score.

    The empty answer is scored on the same scale: its start/end logits are the `[CLS]` logits of
    the window with the lowest `[CLS]` start + end (the window most sure that it holds an
    answer, `run_qa`'s `min_null_score`), and they always take part in the normalisation, so
    scores do not change with `handle_impossible_answer`; that flag only lets it be returned.
    Returns dicts `{"score", "start", "end", "answer"}` (character offsets).
    """
    _check_integer("top_k", top_k, 1)
    _check_integer("max_answer_len", max_answer_len, 1)
    spans: list[tuple[float, float, int, int]] = []  # (start logit, end logit, char start, char end)
    start_pool, end_pool = [], []  # every window's context logits: the shared normalisers
    null: tuple[float, float] | None = None
    for index, (start_logits, end_logits, is_context, offsets) in enumerate(windows):
        n = len(offsets)
        start = np.asarray(start_logits, dtype=np.float64).reshape(-1)
        end = np.asarray(end_logits, dtype=np.float64).reshape(-1)
        is_context = np.asarray(is_context, dtype=bool).reshape(-1)
        if n == 0 or min(len(start), len(end), len(is_context)) < n:
            raise ValueError(
                f"window {index}: start_logits ({len(start)}), end_logits ({len(end)}) and is_context "
                f"({len(is_context)}) must cover all {n} offsets (at least [CLS]); pass one entry per token."
            )
        start, end, is_context = start[:n], end[:n], is_context[:n]
        if null is None or start[0] + end[0] < sum(null):
            null = (float(start[0]), float(end[0]))
        start_pool.append(start[is_context])
        end_pool.append(end[is_context])
        spans += _best_spans(start, end, is_context, offsets, top_k, max_answer_len)
    if null is None:
        return []
    start_norm = _logsumexp(np.concatenate([*start_pool, [null[0]]]))
    end_norm = _logsumexp(np.concatenate([*end_pool, [null[1]]]))

    def probability(start_logit: float, end_logit: float) -> float:
        return float(np.exp(start_logit - start_norm + end_logit - end_norm))

    unique: dict[tuple[int, int], dict] = {}
    for start_logit, end_logit, char_start, char_end in sorted(spans, key=lambda s: -(s[0] + s[1])):
        if (char_start, char_end) not in unique:
            unique[(char_start, char_end)] = {
                "score": probability(start_logit, end_logit),
                "start": char_start,
                "end": char_end,
                "answer": context[char_start:char_end],
            }
    ranked = list(unique.values())
    if handle_impossible_answer:
        ranked.append({"score": probability(*null), "start": 0, "end": 0, "answer": ""})
        ranked.sort(key=lambda a: -a["score"])  # stable: a tie keeps the span first
    return ranked[:top_k]


def pad_windows(windows: Sequence[dict[str, Sequence[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Windows (dicts of per-token id lists) as `[len(windows), longest]` tensors, padded on the
    right to the longest window of this batch: `pad_token_id` in `input_ids` and `global_input_ids`,
    0 in the masks, token types, breakpoints and `sentence_ids` (ETC's global inputs get their own
    longest length). Right padding keeps every window's tokens, and so its logits, at 0..n-1."""
    batch = {}
    for name in windows[0]:
        width = max(len(window[name]) for window in windows)
        fill = pad_token_id if name in ("input_ids", "global_input_ids") else 0
        rows = [list(window[name]) + [fill] * (width - len(window[name])) for window in windows]
        batch[name] = torch.tensor(rows, dtype=torch.long)
    return batch


def _question_and_context(example) -> tuple[str, str]:
    if not isinstance(example, dict) or "question" not in example or "context" not in example:
        raise ValueError(f"Each input needs 'question' and 'context', got {type(example).__name__}.")
    question, context = example["question"], example["context"]
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"`{name}` must be a non-empty string, got {value!r:.60}.")
    return question, context


def _check_integer(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")


def _logsumexp(values: np.ndarray) -> float:
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


def _best_spans(start, end, is_context, offsets, top_k, max_answer_len, candidates=20) -> list[tuple]:
    """The best `start <= end < start + max_answer_len` context spans of one window by raw
    `start + end` logit, as `(start logit, end logit, char start, char end)`; only the top
    `candidates` starts and ends are paired, so a 4,096-token window costs 20 x 20, not n x n."""
    positions = np.flatnonzero(is_context)
    if len(positions) == 0:
        return []
    starts = positions[np.argsort(-start[positions], kind="stable")[:candidates]]
    ends = positions[np.argsort(-end[positions], kind="stable")[:candidates]]
    s, e = np.meshgrid(starts, ends, indexing="ij")
    valid = (s <= e) & (e < s + max_answer_len)
    s, e = s[valid], e[valid]
    order = np.argsort(-(start[s] + end[e]), kind="stable")[: top_k * 4]  # room for duplicates across windows
    return [
        (float(start[i]), float(end[j]), int(offsets[i][0]), int(offsets[j][1])) for i, j in zip(s[order], e[order])
    ]
