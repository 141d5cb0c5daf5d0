"""A deterministic, rule-based sentence splitter with exact character spans.

`EtcFeaturizer` gives ETC one global token per sentence by default, and places tokens in sentences
through character offsets, so the splitter returns spans of the text, not rewritten strings.

Public API: :func:`paragraph_spans` (blank lines), :func:`sentence_spans` (the rules are listed
there), :func:`split_sentences` (the same as strings); :func:`spans_from_splitter` turns any
user splitter's output (strings or spans, e.g. ``nltk.sent_tokenize``) into validated spans.
Only the standard library and numpy are imported (the file also works as Hub remote code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Span", "paragraph_spans", "sentence_spans", "spans_from_splitter", "split_sentences", "trim_span"]

#: a ``(start, end)`` character span of a text
Span = tuple[int, int]

# A blank line: a newline, optional non-newline whitespace, another newline ("\r\n" included).
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# Terminal punctuation, optional closing quotes/brackets, then whitespace; the first
# non-whitespace character after it is captured by the lookahead (it is not consumed, so it can
# start the next candidate).
_CLOSERS = "\"'\u201d\u2019\u00bb)\\]}"
_BOUNDARY = re.compile(r"([.!?]+)([" + _CLOSERS + r"]*)(\s+)(?=(\S))")
# A newline followed by a list bullet ("- ", "* ", "• ", "1. ", "2) ").
_BULLET_LINE = re.compile(r"\n[^\S\n]*(?=(?:[-*\u2022\u2023\u25aa]|\d{1,3}[.)])\s)")
# Characters that may open a sentence besides upper-case letters and digits.
_OPENERS = frozenset("\"'\u201c\u2018\u00ab([{\u00bf\u00a1")
# Dotted abbreviations such as U.S, e.g, i.e, Ph.D, a.m (the final period is the candidate).
_DOTTED = re.compile(r"^(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}$")
# Abbreviations that never end a sentence when followed by a space and a capital.
_ABBREVIATIONS = frozenset(
    (
        "mr mrs ms dr prof sr jr st mt ft vs etc inc ltd co corp dept univ assn bros est approx gen gov sen "
        "rep rev hon capt col lt sgt cmdr adm maj pres supt cf al viz ca ave blvd rd jan feb mar apr jun jul "
        "aug sep sept oct nov dec"
    ).split()
)
# Abbreviations that are only abbreviations before a number ("No. 5", "Fig. 3", "pp. 12"), so
# that "The answer was no. Then ..." still splits.
_NUMERIC_ABBREVIATIONS = frozenset("no nos vol vols p pp ch chap sec sect eq eqs fig figs art op".split())


def _is_abbreviation(word: str, next_char: str) -> bool:
    word = word.lstrip("".join(_OPENERS))
    if not word:
        return False  # a space before the period (WikiText's " . "): a real sentence end
    if len(word) == 1 and word.isupper():
        return True  # an initial: "J. R. R. Tolkien", "H. americanus"
    if _DOTTED.match(word):
        return True  # "U.S.", "e.g.", "i.e."
    lower = word.lower()
    if lower in _ABBREVIATIONS:
        return True
    return lower in _NUMERIC_ABBREVIATIONS and next_char.isdigit()


def _starts_sentence(char: str) -> bool:
    # Upper-case letters, digits, opening quotes/brackets, and letters of uncased scripts
    # (CJK, Arabic, Hebrew...) where "not lower-case" is the only signal available.
    return char.isupper() or char.isdigit() or char in _OPENERS or (char.isalpha() and not char.islower())


def trim_span(text: str, start: int, end: int) -> Span | None:
    """(start, end) shrunk to exclude surrounding whitespace, or None if nothing is left."""
    piece = text[start:end]
    stripped = piece.lstrip()
    if not stripped:
        return None
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


def paragraph_spans(text: str) -> list[Span]:
    """Character spans of the paragraphs of `text`: blocks separated by blank lines.

    A blank line is a line holding only whitespace. Spans exclude surrounding whitespace and are
    never empty; ``text[s:e]`` is the paragraph exactly.
    """
    spans: list[Span] = []
    start = 0
    for match in _BLANK_LINE.finditer(text):
        span = trim_span(text, start, match.start())
        if span is not None:
            spans.append(span)
        start = match.end() - 1  # keep the second "\n" so consecutive blank lines also match
    span = trim_span(text, start, len(text))
    if span is not None:
        spans.append(span)
    return spans


def _paragraph_sentence_cuts(text: str, start: int, end: int) -> list[int]:
    """Positions in text[start:end] after which a new sentence starts (see `sentence_spans`)."""
    cuts = []
    for match in _BOUNDARY.finditer(text, start, end):
        punct, closers, space, next_char = match.groups()
        if "\n" not in space and not _starts_sentence(next_char):
            continue
        if punct == "." and not closers:
            word_start = match.start()  # back to the start of the word before the period
            while word_start > start and not text[word_start - 1].isspace():
                word_start -= 1
            if _is_abbreviation(text[word_start : match.start()], next_char):
                continue
        cuts.append(match.start(3))
    cuts.extend(m.start() for m in _BULLET_LINE.finditer(text, start, end))
    return sorted(set(cuts))


def sentence_spans(text: str) -> list[Span]:
    """Character spans ``(start, end)`` of the sentences of `text`, in order.

    Deterministic rules (no model, no dependency):

    1. Blank lines (lines holding only whitespace) always end a sentence (they end paragraphs).
    2. A sentence ends after ``.``, ``!`` or ``?`` (repeats such as ``?!`` or ``...`` included),
       optionally followed by closing quotes/brackets (``" ' ” ’ » ) ] }``), when whitespace
       follows and then either
       - an upper-case letter, a digit, an opening quote/bracket (``" ' “ ‘ « ( [ {``), or a
         letter of an uncased script, or
       - the whitespace contains a newline (a line that ends with terminal punctuation ends its
         sentence, whatever starts the next line).
    3. Not after a lone ``.`` that closes an abbreviation: a single capital initial (``J.``),
       a dotted abbreviation (``U.S.``, ``e.g.``, ``i.e.``, ``Ph.D.``, ``a.m.``), a common
       abbreviation (``Mr. Mrs. Ms. Dr. Prof. St. vs. etc. Inc. al. ...`` and month names), or
       ``No. Vol. p. pp. Fig. Eq. Sec. ...`` when a number follows. Decimals (``3.5``) never
       split because no whitespace follows their period.
    4. A newline followed by a list bullet (``- * •`` or ``1.``/``1)`` and a space) starts a new
       sentence. Other single newlines (hard-wrapped lines) do not split.

    Known limits, by design of a rule-based splitter: a sentence that really ends with an
    abbreviation or an initial ("... in the U.S. Then ...", "World War I. The ...") is not split,
    and scripts without spaces between sentences (Chinese "。") are not split. Pass another
    splitter (for example ``nltk.sent_tokenize``) to :class:`EtcFeaturizer` if that matters.

    Spans exclude surrounding whitespace, are never empty, do not overlap, and ``text[s:e]`` is
    the sentence exactly (offsets into the original text). Whitespace-only text gives ``[]``.
    """
    spans: list[Span] = []
    for p_start, p_end in paragraph_spans(text):
        start = p_start
        for cut in _paragraph_sentence_cuts(text, p_start, p_end):
            span = trim_span(text, start, cut)
            if span is not None:
                spans.append(span)
            start = cut
        span = trim_span(text, start, p_end)
        if span is not None:
            spans.append(span)
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` as strings (never empty); the rules are those of `sentence_spans`."""
    return [text[s:e] for s, e in sentence_spans(text)]


def spans_from_splitter(splitter: Callable[[str], Sequence[Any]], text: str) -> list[Span]:
    """Run a user splitter on `text` and turn its output into validated character spans.

    A splitter may return strings (found in `text` in order, to recover their spans: the
    strings must be substrings of `text`, as ``nltk.sent_tokenize``'s are) or ``(start, end)``
    spans. Empty or whitespace-only items are skipped.
    """
    if splitter is split_sentences or splitter is sentence_spans:
        return sentence_spans(text)  # exact spans without searching for the strings
    items = list(splitter(text))
    spans: list[Span] = []
    pos = 0
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            found = text.find(item, pos)
            if found < 0:  # splitters may strip or keep whitespace differently
                item = item.strip()
                found = text.find(item, pos)
            if found < 0:
                raise ValueError(
                    f"sentence_splitter returned {item[:60]!r}, which is not found in the text after "
                    f"position {pos}; a splitter returning strings must return substrings of the text in "
                    "order. Return (start, end) spans instead if it rewrites the text."
                )
            span = trim_span(text, found, found + len(item))
            pos = found + len(item)
        elif (
            isinstance(item, Sequence)
            and len(item) == 2
            and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in item)
        ):
            s, e = int(item[0]), int(item[1])
            if not 0 <= s <= e <= len(text) or s < pos:
                raise ValueError(
                    f"sentence_splitter returned the span {(s, e)}, which is out of range for a text of "
                    f"{len(text)} characters or overlaps the previous span (ending at {pos}); spans must be "
                    "sorted, non-overlapping (start, end) character offsets."
                )
            span = trim_span(text, s, e)
            pos = e
        else:
            raise TypeError(
                f"sentence_splitter must return a list of str or of (start, end) int pairs, got an item "
                f"{item!r} of type {type(item).__name__}."
            )
        if span is not None:
            spans.append(span)
    return spans
