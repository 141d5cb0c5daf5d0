"""Structured-input featurization for ETC (Extended Transformer Construction) models.

ETC (Ainslie et al., EMNLP 2020) reads two sequences side by side: the *long* input (the raw
word pieces of the text, attended through a local window) and a short *global* input holding one
token per unit of structure (by default one per sentence). Each long token names the global
token it belongs to through ``sentence_ids``; packed examples are delimited by breakpoints. The
model never infers this structure itself ("flexible masking"), so it must be featurized here.

Public API
----------
- :class:`EtcFeaturizer`: documents (and optional questions) -> one dict of per-row lists with
  the inputs named in :mod:`etc_inputs` (``input_ids``, ``attention_mask``, ``token_type_ids``,
  ``global_input_ids``, ``global_attention_mask``, ``global_token_type_ids``,
  ``long_breakpoints``, ``global_breakpoints``, ``sentence_ids``), ``example_index``
  (+ ``example_indices`` when packing, + ``offset_mapping`` / ``global_offset_mapping`` on request).
- Sentences come from :mod:`sentences` (rule-based, exact character spans) unless a
  ``sentence_splitter`` is given; :mod:`etc_collators` pads the rows into ``torch`` tensors.
  Only numpy and those sibling modules are imported (the file also works as Hub remote code).

Conventions (see the reference code, google-research/google-research:etcmodel, spec sections
2.6, 2.7, 2.10 and 3):

- Breakpoints are 0/1 with a 1 at the **last real token** of every packed example, in both
  inputs; an unpacked row has exactly one 1 in each. Padding is 0.
- ``sentence_ids[j]`` is the index *within the row's global input* of long token j's global.
- Global token ids: sentences ``global_token_id`` (default 1, the reference's id; ``[unused0]``
  in BERT's vocabulary, ``</s>`` in ETC's SentencePiece one), paragraphs
  ``paragraph_global_token_id`` (off by default; the reference's WordPiece fine-tuning used 5),
  question ``question_global_token_id`` (default 3, as in the reference's WordPiece
  fine-tuning; 2 is avoided because ETC pretraining used it for CPC-masked sentences).
  These ids should be reserved/unused ids of the vocabulary: the global input shares the
  word-embedding table with the long input.
- Global token types: :data:`SENTENCE_GLOBAL_TYPE` 0, :data:`PARAGRAPH_GLOBAL_TYPE` 1,
  :data:`QUESTION_GLOBAL_TYPE` 2. Long token types: 1 for context tokens (the reference's
  long-input default); with questions 0 for ``[CLS] question [SEP]`` and 1 for the context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .etc_inputs import ETC_INPUTS
from .sentences import Span, paragraph_spans, spans_from_splitter, split_sentences, trim_span

__all__ = ["PARAGRAPH_GLOBAL_TYPE", "QUESTION_GLOBAL_TYPE", "SENTENCE_GLOBAL_TYPE", "EtcFeaturizer"]

#: ``global_token_type_ids`` value of a sentence (or fixed-block) global token.
SENTENCE_GLOBAL_TYPE = 0
#: ``global_token_type_ids`` value of a paragraph global token.
PARAGRAPH_GLOBAL_TYPE = 1
#: ``global_token_type_ids`` value of the question global token.
QUESTION_GLOBAL_TYPE = 2


# One global token's worth of long tokens: token range [start, end) of a document, its
# paragraph, and the character span that its global token stands for.
@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    paragraph: int
    char_span: Span


@dataclass
class _Segment:
    """One example's part of a row (a row holds one segment unless packing)."""

    doc: int
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    sentence_ids: np.ndarray  # global indices local to this segment
    global_input_ids: np.ndarray
    global_token_type_ids: np.ndarray
    offsets: np.ndarray | None  # [n, 2]
    global_offsets: np.ndarray | None  # [n_g, 2]


def _covered_span(offsets: np.ndarray, start: int, end: int, within: Span | None = None) -> Span:
    """Character span covered by tokens [start, end), clipped to `within` (a sentence's span)."""
    s, e = int(offsets[start, 0]), max(int(offsets[end - 1, 1]), int(offsets[start, 0]))
    if within is not None:
        s, e = max(s, within[0]), min(e, within[1])
        e = max(e, s)
    return s, e


def check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    """Raise TypeError/ValueError naming `name` unless `value` is an int >= `minimum` (or None when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


@dataclass
class EtcFeaturizer:
    """Turn documents (and optional questions) into ETC long/global rows.

    Args:
        tokenizer: a *fast* Hugging Face tokenizer (``tokenizer.is_fast``): character offsets are
            needed to place tokens in sentences.
        max_length: long-input length of a row (reference: 4096).
        max_global_length: global-input length of a row (reference: 256 for HotpotQA, 430 for
            WikiHop).
        global_token_id: id of sentence (and fixed-block) global tokens. The reference uses 1 and
            its checkpoints expect it; it should be a reserved/unused id of the vocabulary.
        paragraph_global_token_id: when set, one extra global token with this id per paragraph,
            placed before that paragraph's sentence globals (type 1). Long tokens still point at
            their sentence global. Not combinable with ``fixed_block_size``.
        question_global_token_id: id of the question's global token (type 2).
        sentence_splitter: ``text -> list[str]`` or ``text -> list[(start, end)]``, applied to each
            paragraph (default :func:`split_sentences`; ``nltk.sent_tokenize`` works too).
        fixed_block_size: when set, no sentence splitting: one global per this many long tokens
            of each row's context (the fixed-blocks ablation; the reference NQ used 27).
        pack: pack several short documents into one row (next-fit, in input order, never
            reordering), each delimited by its own breakpoints in both inputs.
        overflow: what to do with documents that do not fit one row. ``"split"``: continue in
            further rows with whole sentences; ``"truncate"``: keep only the first row, filled
            as far as the budgets allow (its last sentence may be cut).
        return_offsets_mapping: also return ``offset_mapping`` (per long token) and
            ``global_offset_mapping`` (per global token) character spans.
        max_question_length: truncate questions to this many tokens (``None``: never truncate,
            and raise if a question leaves no room for context).
        skip_empty: documents that are empty, whitespace-only or tokenize to nothing produce no
            row (``example_index`` tells which documents the rows come from). With ``False`` they
            raise ``ValueError`` instead.

    Rules:
        - Documents are a ``str`` (paragraphs separated by blank lines, see
          :func:`paragraph_spans`) or a ``list[str]`` of paragraphs; offsets of the latter index
          into ``"\\n\\n".join(paragraphs)``.
        - Each document is tokenized once (batched, no special tokens). A token belongs to the
          first sentence that ends after its start offset: the sentence whose span contains its
          start, or, for a token starting in the whitespace between two sentences (a SentencePiece
          "▁"), the next sentence.
        - One global token per sentence that has at least one token; a sentence longer than a
          row's context capacity is cut into pieces of that capacity, each with its own global.
        - Rows are filled greedily with whole sentences until the next one would exceed the long
          budget (``max_length`` minus the question part) or the global budget
          (``max_global_length`` minus the question global and the paragraph globals).
          A paragraph continuing into the next row gets its paragraph global again there.
        - With ``questions``: each row's long input is ``[CLS] question [SEP] context`` (the
          tokenizer's own CLS/SEP; no trailing SEP), token types 0 then 1; the global input starts
          with one question global that the question tokens, CLS and SEP point at. Every row of
          a split document repeats the question. Without questions no special token is added.
        - ``offset_mapping`` is (0, 0) for CLS/SEP/question tokens. ``global_offset_mapping`` is the
          sentence span (or, for a piece of a cut sentence / a fixed block, the span its tokens
          cover), the paragraph span for paragraph globals, and (0, 0) for the question global.

    Returns (from ``__call__``): a dict of lists with one entry per row: ``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``global_input_ids``, ``global_attention_mask``,
    ``global_token_type_ids``, ``long_breakpoints``, ``global_breakpoints``, ``sentence_ids``,
    ``example_index`` (the row's first document), ``example_indices`` (all its documents; only
    with ``pack=True``), and ``offset_mapping``/``global_offset_mapping`` on request. Rows are not
    padded: use :class:`EtcDataCollator`.

    Notes for reference checkpoints:
        - Long context tokens get token type 1 and question tokens 0: the reference feeds no
          segment ids in pretraining/NQ, so its long tokens are type 1 (global tokens 0).
        - Fixed blocks here cover the *context* of each row (the question has its own global),
          whereas the reference's ``make_fixed_block_side_inputs`` blocks the whole long input.
    """

    tokenizer: Any
    max_length: int = 4096
    max_global_length: int = 256
    global_token_id: int = 1
    paragraph_global_token_id: int | None = None
    question_global_token_id: int = 3
    sentence_splitter: Callable[[str], Sequence[Any]] = split_sentences
    fixed_block_size: int | None = None
    pack: bool = False
    overflow: Literal["truncate", "split"] = "split"
    return_offsets_mapping: bool = False
    max_question_length: int | None = None
    skip_empty: bool = True

    def __post_init__(self) -> None:
        if not getattr(self.tokenizer, "is_fast", False):
            raise TypeError(
                f"tokenizer must be a fast Hugging Face tokenizer (tokenizer.is_fast), got "
                f"{type(self.tokenizer).__name__}: character offsets are needed to map tokens to "
                "sentences. Load it with AutoTokenizer.from_pretrained(..., use_fast=True) or build one "
                "with longbird.tokenization.train_tokenizer."
            )
        check_int("max_length", self.max_length, 1)
        check_int("max_global_length", self.max_global_length, 1)
        check_int("global_token_id", self.global_token_id, 0)
        check_int("question_global_token_id", self.question_global_token_id, 0)
        check_int("paragraph_global_token_id", self.paragraph_global_token_id, 0, optional=True)
        check_int("fixed_block_size", self.fixed_block_size, 1, optional=True)
        check_int("max_question_length", self.max_question_length, 0, optional=True)
        if self.overflow not in ("truncate", "split"):
            raise ValueError(f"overflow must be 'truncate' or 'split', got {self.overflow!r}.")
        if not callable(self.sentence_splitter):
            raise TypeError(f"sentence_splitter must be callable, got {self.sentence_splitter!r}.")
        if self.fixed_block_size is not None and self.paragraph_global_token_id is not None:
            raise ValueError(
                "fixed_block_size and paragraph_global_token_id cannot both be set: fixed blocks ignore "
                "the text's structure. Set paragraph_global_token_id=None or fixed_block_size=None."
            )
        if self.paragraph_global_token_id is not None and self.max_global_length < 2:
            raise ValueError(
                "max_global_length must be >= 2 when paragraph_global_token_id is set (a paragraph global "
                f"and a sentence global), got {self.max_global_length}."
            )

    # -- public entry points -----------------------------------------------------------------

    def __call__(
        self, documents: Sequence[str | Sequence[str]], questions: Sequence[str] | None = None
    ) -> dict[str, list]:
        """Featurize `documents` (each a str or a list of paragraph strs), with optional
        `questions` (one str per document). See the class docstring for the output."""
        texts, paragraphs = self._normalize_documents(documents)
        question_ids = self._tokenize_questions(questions, len(texts))

        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        encodings = self._tokenize([texts[i] for i in nonempty])
        segments: list[_Segment] = []
        for i, (ids, offsets) in zip(nonempty, encodings):
            if len(ids) == 0:
                continue
            q = question_ids[i] if question_ids is not None else None
            segments.extend(self._document_segments(i, texts[i], paragraphs[i], ids, offsets, q))
        if not self.skip_empty:
            covered = {s.doc for s in segments}
            empty = [i for i in range(len(texts)) if i not in covered]
            if empty:
                raise ValueError(
                    f"documents {empty[:10]} are empty (or tokenize to nothing); set skip_empty=True to "
                    "skip them (they then produce no row), or remove them."
                )
        return self._assemble(segments)

    def map_function(
        self, text_column: str = "text", question_column: str | None = None
    ) -> Callable[..., dict[str, list]]:
        """A function for ``datasets.Dataset.map(..., batched=True)``.

        The number of rows changes (splitting adds rows, packing merges them, empty documents
        vanish), so the input columns must be removed::

            features = dataset.map(
                featurizer.map_function("text", question_column="question"),
                batched=True,
                with_indices=True,  # optional: example_index becomes the dataset row index
                remove_columns=dataset.column_names,
            )
            trainer = Trainer(..., train_dataset=features,
                              data_collator=EtcDataCollator(tokenizer=tokenizer))

        Without ``with_indices=True``, ``example_index`` counts from 0 within each batch.
        Packing only combines documents of the same batch (``batch_size``).
        """
        if not isinstance(text_column, str):
            raise TypeError(f"text_column must be a str, got {text_column!r}.")
        if question_column is not None and not isinstance(question_column, str):
            raise TypeError(f"question_column must be a str or None, got {question_column!r}.")
        return _EtcMapFunction(self, text_column, question_column)

    # -- input handling ----------------------------------------------------------------------

    def _normalize_documents(self, documents: Any) -> tuple[list[str], list[list[Span]]]:
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
            raise TypeError(
                "documents must be a list of documents (each a str or a list of paragraph strs), got "
                f"{type(documents).__name__}; wrap a single text as [text]."
            )
        documents = list(documents)  # also accepts tuples, numpy arrays, pandas Series
        texts: list[str] = []
        paragraphs: list[list[Span]] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, str):
                texts.append(doc)
                paragraphs.append(paragraph_spans(doc))
            elif isinstance(doc, Sequence) and not isinstance(doc, bytes):
                spans, pos = [], 0
                for j, par in enumerate(doc):
                    if not isinstance(par, str):
                        raise TypeError(f"documents[{i}][{j}] must be a str (a paragraph), got {type(par).__name__}.")
                    span = trim_span(par, 0, len(par))
                    if span is not None:
                        spans.append((pos + span[0], pos + span[1]))
                    pos += len(par) + 2
                texts.append("\n\n".join(doc))
                paragraphs.append(spans)
            else:
                raise TypeError(f"documents[{i}] must be a str or a list of paragraph strs, got {type(doc).__name__}.")
        return texts, paragraphs

    def _tokenize(self, texts: list[str]) -> list[tuple[list[int], np.ndarray]]:
        if not texts:
            return []
        enc = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # documents are meant to be longer than model_max_length
        )
        return [
            (ids, np.asarray(offs, dtype=np.int64).reshape(-1, 2))
            for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])
        ]

    def _tokenize_questions(self, questions: Any, n_docs: int) -> list[list[int]] | None:
        if questions is None:
            return None
        if isinstance(questions, str) or not isinstance(questions, Sequence):
            raise TypeError(
                f"questions must be a list of str (one per document) or None, got {type(questions).__name__}."
            )
        if len(questions) != n_docs:
            raise ValueError(
                f"questions must have one str per document: got {len(questions)} questions for {n_docs} documents."
            )
        for i, q in enumerate(questions):
            if not isinstance(q, str):
                raise TypeError(f"questions[{i}] must be a str, got {type(q).__name__}.")
        for name in ("cls_token_id", "sep_token_id"):
            if getattr(self.tokenizer, name, None) is None:
                raise ValueError(
                    f"questions need the tokenizer's [CLS] and [SEP] tokens, but tokenizer.{name} is None; "
                    "add them (tokenizer.add_special_tokens({'cls_token': ..., 'sep_token': ...})) or use a "
                    "tokenizer that has them."
                )
        min_global = 2 + (self.paragraph_global_token_id is not None)
        if self.max_global_length < min_global:
            raise ValueError(
                f"max_global_length must be >= {min_global} with questions (a question global, "
                f"{'a paragraph global, ' if min_global == 3 else ''}a sentence global), "
                f"got {self.max_global_length}."
            )
        ids = self.tokenizer(
            list(questions),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        if self.max_question_length is not None:
            ids = [q[: self.max_question_length] for q in ids]
        for i, q in enumerate(ids):
            if len(q) + 2 >= self.max_length:
                raise ValueError(
                    f"questions[{i}] has {len(q)} tokens; with [CLS] and [SEP] it leaves no room for context in "
                    f"max_length={self.max_length}. Raise max_length or set max_question_length (for example 64)."
                )
        return ids

    # -- per document ------------------------------------------------------------------------

    def _sentence_units(self, text: str, paragraphs: list[Span], offsets: np.ndarray, capacity: int) -> list[_Unit]:
        """Group the document's tokens by sentence; cut sentences longer than `capacity`."""
        sent_spans: list[Span] = []
        sent_par: list[int] = []
        for p, (ps, pe) in enumerate(paragraphs):
            spans = spans_from_splitter(self.sentence_splitter, text[ps:pe])
            if not spans:  # a splitter that finds nothing: the paragraph is one sentence
                spans = [(0, pe - ps)]
            sent_spans.extend((ps + s, ps + e) for s, e in spans)
            sent_par.extend([p] * len(spans))
        ends = np.fromiter((e for _, e in sent_spans), dtype=np.int64, count=len(sent_spans))
        # The first sentence ending after the token's start: the one containing it, or the next
        # one for a token starting in inter-sentence whitespace. Clamp trailing-space tokens.
        sent = np.searchsorted(ends, offsets[:, 0], side="right")
        np.minimum(sent, len(sent_spans) - 1, out=sent)
        np.maximum.accumulate(sent, out=sent)  # keep units contiguous even for odd offsets
        bounds = np.flatnonzero(np.diff(sent)) + 1
        starts = np.concatenate(([0], bounds)).tolist()
        stops = np.concatenate((bounds, [len(sent)])).tolist()
        units: list[_Unit] = []
        for a, b in zip(starts, stops):
            k = int(sent[a])
            span, par = sent_spans[k], sent_par[k]
            if b - a <= capacity:
                units.append(_Unit(a, b, par, span))
                continue
            for c in range(a, b, capacity):  # a sentence too long for a row: pieces of `capacity`
                d = min(c + capacity, b)
                units.append(_Unit(c, d, par, _covered_span(offsets, c, d, span)))
        return units

    def _plan_rows(
        self, units: list[_Unit], offsets: np.ndarray, capacity: int, global_capacity: int
    ) -> list[list[_Unit]]:
        """Greedy fill of rows with whole units; a paragraph global is paid for per row."""
        use_par = self.paragraph_global_token_id is not None
        rows: list[list[_Unit]] = []
        cur: list[_Unit] = []
        n_tok = n_global = 0
        for unit in units:
            size = unit.end - unit.start
            cost = 1 + (use_par and (not cur or cur[-1].paragraph != unit.paragraph))
            if cur and (n_tok + size > capacity or n_global + cost > global_capacity):
                if self.overflow == "truncate":
                    room = capacity - n_tok
                    if room > 0 and n_global + cost <= global_capacity:  # fill the row's tail
                        end = unit.start + room
                        span = _covered_span(offsets, unit.start, end, unit.char_span)
                        cur.append(_Unit(unit.start, end, unit.paragraph, span))
                    break
                rows.append(cur)
                cur, n_tok, n_global = [], 0, 0
                cost = 1 + use_par
            cur.append(unit)
            n_tok += size
            n_global += cost
        if cur and (self.overflow == "split" or not rows):
            rows.append(cur)
        return rows[:1] if self.overflow == "truncate" else rows

    def _document_segments(
        self,
        doc: int,
        text: str,
        paragraphs: list[Span],
        ids: list[int],
        offsets: np.ndarray,
        question: list[int] | None,
    ) -> list[_Segment]:
        prefix = 0 if question is None else len(question) + 2
        capacity = self.max_length - prefix
        global_capacity = self.max_global_length - (question is not None)
        n = len(ids)
        if self.fixed_block_size is not None:
            # Rows of `row_len` tokens (bounded by both budgets); blocks restart at each row's
            # first context token, so a row of m context tokens has ceil(m / size) globals.
            size = self.fixed_block_size
            row_len = min(capacity, global_capacity * size)
            row_starts = [0] if self.overflow == "truncate" else range(0, n, row_len)
            rows = []
            for row_start in row_starts:
                row_end = min(row_start + row_len, n)
                blocks = []
                for b in range(row_start, row_end, size):
                    e = min(b + size, row_end)
                    blocks.append(_Unit(b, e, 0, _covered_span(offsets, b, e)))
                rows.append(blocks)
        else:
            units = self._sentence_units(text, paragraphs, offsets, capacity)
            rows = self._plan_rows(units, offsets, capacity, global_capacity)

        ids_arr = np.asarray(ids, dtype=np.int64)
        return [self._build_segment(doc, row, ids_arr, offsets, paragraphs, question) for row in rows]

    def _build_segment(
        self,
        doc: int,
        row: list[_Unit],
        ids: np.ndarray,
        offsets: np.ndarray,
        paragraphs: list[Span],
        question: list[int] | None,
    ) -> _Segment:
        g_ids: list[int] = []
        g_types: list[int] = []
        g_spans: list[Span] = []
        unit_global: list[int] = []
        if question is not None:
            g_ids.append(self.question_global_token_id)
            g_types.append(QUESTION_GLOBAL_TYPE)
            g_spans.append((0, 0))
        last_par = None
        for unit in row:
            if self.paragraph_global_token_id is not None and unit.paragraph != last_par:
                g_ids.append(self.paragraph_global_token_id)
                g_types.append(PARAGRAPH_GLOBAL_TYPE)
                g_spans.append(paragraphs[unit.paragraph])
                last_par = unit.paragraph
            unit_global.append(len(g_ids))
            g_ids.append(self.global_token_id)
            g_types.append(SENTENCE_GLOBAL_TYPE)
            g_spans.append(unit.char_span)

        start, end = row[0].start, row[-1].end  # units of a row are contiguous
        lengths = [u.end - u.start for u in row]
        context_sent = np.repeat(np.asarray(unit_global, dtype=np.int64), lengths)
        context_ids = ids[start:end]
        if question is None:
            input_ids = context_ids
            token_types = np.ones(end - start, dtype=np.int64)  # the reference's long-input type
            sentence_ids = context_sent
            offs = offsets[start:end] if self.return_offsets_mapping else None
        else:
            q = len(question) + 2
            head = np.asarray([self.tokenizer.cls_token_id, *question, self.tokenizer.sep_token_id], dtype=np.int64)
            input_ids = np.concatenate((head, context_ids))
            token_types = np.concatenate((np.zeros(q, dtype=np.int64), np.ones(end - start, dtype=np.int64)))
            sentence_ids = np.concatenate((np.zeros(q, dtype=np.int64), context_sent))  # question global is 0
            offs = (
                np.concatenate((np.zeros((q, 2), dtype=np.int64), offsets[start:end]))
                if self.return_offsets_mapping
                else None
            )
        return _Segment(
            doc=doc,
            input_ids=input_ids,
            token_type_ids=token_types,
            sentence_ids=sentence_ids,
            global_input_ids=np.asarray(g_ids, dtype=np.int64),
            global_token_type_ids=np.asarray(g_types, dtype=np.int64),
            offsets=offs,
            global_offsets=(
                np.asarray(g_spans, dtype=np.int64).reshape(-1, 2) if self.return_offsets_mapping else None
            ),
        )

    # -- rows --------------------------------------------------------------------------------

    def _assemble(self, segments: list[_Segment]) -> dict[str, list]:
        if self.pack:
            groups: list[list[_Segment]] = []
            n_long = n_global = 0
            for seg in segments:  # next-fit: order is kept, a segment is never split
                a, b = len(seg.input_ids), len(seg.global_input_ids)
                if groups and n_long + a <= self.max_length and n_global + b <= self.max_global_length:
                    groups[-1].append(seg)
                    n_long += a
                    n_global += b
                else:
                    groups.append([seg])
                    n_long, n_global = a, b
        else:
            groups = [[seg] for seg in segments]

        keys = [*ETC_INPUTS, "example_index"]
        if self.pack:
            keys.append("example_indices")
        if self.return_offsets_mapping:
            keys += ["offset_mapping", "global_offset_mapping"]
        out: dict[str, list] = {k: [] for k in keys}
        for group in groups:
            long_lens = [len(s.input_ids) for s in group]
            global_lens = [len(s.global_input_ids) for s in group]
            n_long, n_global = sum(long_lens), sum(global_lens)
            global_base = np.cumsum([0, *global_lens[:-1]])
            long_bp = np.zeros(n_long, dtype=np.int64)
            long_bp[np.cumsum(long_lens) - 1] = 1
            global_bp = np.zeros(n_global, dtype=np.int64)
            global_bp[np.cumsum(global_lens) - 1] = 1
            out["input_ids"].append(np.concatenate([s.input_ids for s in group]).tolist())
            out["attention_mask"].append([1] * n_long)
            out["token_type_ids"].append(np.concatenate([s.token_type_ids for s in group]).tolist())
            out["global_input_ids"].append(np.concatenate([s.global_input_ids for s in group]).tolist())
            out["global_attention_mask"].append([1] * n_global)
            out["global_token_type_ids"].append(np.concatenate([s.global_token_type_ids for s in group]).tolist())
            out["long_breakpoints"].append(long_bp.tolist())
            out["global_breakpoints"].append(global_bp.tolist())
            out["sentence_ids"].append(
                np.concatenate([s.sentence_ids + base for s, base in zip(group, global_base)]).tolist()
            )
            out["example_index"].append(group[0].doc)
            if self.pack:
                out["example_indices"].append([s.doc for s in group])
            if self.return_offsets_mapping:
                out["offset_mapping"].append(np.concatenate([s.offsets for s in group]).tolist())
                out["global_offset_mapping"].append(np.concatenate([s.global_offsets for s in group]).tolist())
        return out


class _EtcMapFunction:
    """Picklable batch function returned by `EtcFeaturizer.map_function` (works with num_proc)."""

    def __init__(self, featurizer: EtcFeaturizer, text_column: str, question_column: str | None):
        self.featurizer = featurizer
        self.text_column = text_column
        self.question_column = question_column

    def __call__(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        for column in (self.text_column, self.question_column):
            if column is not None and column not in batch:
                raise ValueError(f"column {column!r} is not in the dataset; its columns are {sorted(batch)}.")
        questions = batch[self.question_column] if self.question_column is not None else None
        out = self.featurizer(batch[self.text_column], questions)
        if indices is not None:  # with_indices=True: report dataset row indices
            indices = list(indices)
            out["example_index"] = [indices[i] for i in out["example_index"]]
            if "example_indices" in out:
                out["example_indices"] = [[indices[i] for i in row] for row in out["example_indices"]]
        return out
