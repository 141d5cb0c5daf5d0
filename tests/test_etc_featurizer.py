"""Tests of the ETC featurizer (longbird.tokenization.etc_featurizer, sentences) and its collator (etc_collators).

Most tests run on synthetic documents with a tokenizer trained here (no Hub access); the tests on
real text read ../shared/data and skip when it is absent.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longbird.tokenization import train_tokenizer
from longbird.tokenization.etc_collators import EtcDataCollator
from longbird.tokenization.etc_featurizer import (
    PARAGRAPH_GLOBAL_TYPE,
    QUESTION_GLOBAL_TYPE,
    SENTENCE_GLOBAL_TYPE,
    EtcFeaturizer,
)
from longbird.tokenization.sentences import paragraph_spans, sentence_spans, split_sentences

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIKITEXT = SHARED_DATA / "wikitext2_subset" / "wiki.valid.tokens"
LEVAL_NQ = SHARED_DATA / "leval_longdoc" / "natural_question.jsonl"

# ---------------------------------------------------------------------------------------------
# Synthetic corpus and tokenizers
# ---------------------------------------------------------------------------------------------

_WORDS = [
    "the",
    "lobster",
    "grows",
    "in",
    "cold",
    "water",
    "and",
    "sheds",
    "its",
    "shell",
    "each",
    "year",
    "while",
    "the",
    "larvae",
    "drift",
    "near",
    "coast",
    "fishermen",
    "catch",
    "them",
    "with",
    "pots",
    "Dr.",
    "Smith",
    "measured",
    "U.S.",
    "samples",
    "e.g.",
    "claws",
    "of",
    "3.5",
    "cm",
]


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", "!", "?"])


def _document(rng: random.Random, n_paragraphs: int, max_words: int = 25) -> str:
    paragraphs = [
        " ".join(_sentence(rng, rng.randint(2, max_words)) for _ in range(rng.randint(1, 5)))
        for _ in range(n_paragraphs)
    ]
    return "\n\n".join(paragraphs)


def _corpus() -> list:
    rng = random.Random(0)
    docs: list = [_document(rng, rng.randint(1, 4)) for _ in range(10)]
    docs.append("Tiny one.")
    docs.append(" ".join(rng.choice(_WORDS) for _ in range(150)) + ".")  # one sentence > max_length
    docs.append(["First paragraph here. It has two sentences.", "  ", 'Second paragraph, "quoted." Done!'])
    docs.append('He said "Stop." Then Mr. Brown left at 3.5 p.m. sharp.\nA new line starts.\n- a bullet')
    return docs


DOCS = _corpus()
QUESTIONS = [f"where does lobster {i} grow?" for i in range(len(DOCS))]


def _text(doc) -> str:
    return doc if isinstance(doc, str) else "\n\n".join(doc)


TEXTS = [_text(d) for d in DOCS]


@pytest.fixture(scope="module", params=["wordpiece", "unigram"])
def tok(request):
    return train_tokenizer(TEXTS * 3 + QUESTIONS, vocab_size=300, kind=request.param)


@pytest.fixture(scope="module")
def wp_tok():
    return train_tokenizer(TEXTS * 3 + QUESTIONS, vocab_size=300, kind="wordpiece")


# ---------------------------------------------------------------------------------------------
# Invariant checker shared by the tests
# ---------------------------------------------------------------------------------------------


def _segments(out: dict, r: int) -> list[dict]:
    """Split row r into its packed examples using the breakpoints (what the model will do)."""
    lbp, gbp = out["long_breakpoints"][r], out["global_breakpoints"][r]
    lend = [i + 1 for i, b in enumerate(lbp) if b]
    gend = [i + 1 for i, b in enumerate(gbp) if b]
    docs = out["example_indices"][r] if "example_indices" in out else [out["example_index"][r]]
    assert len(lend) == len(gend) == len(docs), "one breakpoint per packed example on each side"
    segs = []
    for k, doc in enumerate(docs):
        l0, l1 = (lend[k - 1] if k else 0), lend[k]
        g0, g1 = (gend[k - 1] if k else 0), gend[k]
        seg = {"doc": doc, "l0": l0, "g0": g0}
        for key in ("input_ids", "token_type_ids", "sentence_ids", "offset_mapping"):
            if key in out:
                seg[key] = out[key][r][l0:l1]
        for key in ("global_input_ids", "global_token_type_ids", "global_offset_mapping"):
            if key in out:
                seg[key] = out[key][r][g0:g1]
        seg["sentence_ids"] = [s - g0 for s in seg["sentence_ids"]]
        segs.append(seg)
    return segs


def check_rows(out: dict, feat: EtcFeaturizer, texts: list[str], questions: bool = False) -> list[dict]:
    """Check every documented invariant of a featurizer output; return all examples' segments."""
    n_rows = len(out["input_ids"])
    assert all(len(v) == n_rows for v in out.values())
    all_segs = []
    for r in range(n_rows):
        n, ng = len(out["input_ids"][r]), len(out["global_input_ids"][r])
        assert 0 < n <= feat.max_length and 0 < ng <= feat.max_global_length
        for key in ("attention_mask", "token_type_ids", "long_breakpoints", "sentence_ids"):
            assert len(out[key][r]) == n, key
        for key in ("global_attention_mask", "global_token_type_ids", "global_breakpoints"):
            assert len(out[key][r]) == ng, key
        assert out["attention_mask"][r] == [1] * n and out["global_attention_mask"][r] == [1] * ng
        # breakpoints at the last real token, equal counts on both sides
        assert out["long_breakpoints"][r][-1] == 1 and out["global_breakpoints"][r][-1] == 1
        assert set(out["long_breakpoints"][r]) <= {0, 1} and set(out["global_breakpoints"][r]) <= {0, 1}
        assert sum(out["long_breakpoints"][r]) == sum(out["global_breakpoints"][r])
        if not feat.pack:
            assert sum(out["long_breakpoints"][r]) == 1
        for seg in _segments(out, r):
            all_segs.append(seg)
            sids, gtypes, tts = seg["sentence_ids"], seg["global_token_type_ids"], seg["token_type_ids"]
            # every sentence id points at an existing global of the same packed example
            assert all(0 <= s < len(gtypes) for s in sids)
            assert sids == sorted(sids), "sentence ids follow the text order"
            if questions:
                q = seg["input_ids"].index(feat.tokenizer.sep_token_id) + 1
                assert seg["input_ids"][0] == feat.tokenizer.cls_token_id
                assert tts == [0] * q + [1] * (len(tts) - q)
                assert sids[:q] == [0] * q and gtypes[0] == QUESTION_GLOBAL_TYPE
                assert seg["global_input_ids"][0] == feat.question_global_token_id
                assert QUESTION_GLOBAL_TYPE not in gtypes[1:]
            else:
                q = 0
                assert tts == [1] * len(tts) and QUESTION_GLOBAL_TYPE not in gtypes
            ctx = sids[q:]
            assert ctx, "every example has context tokens"
            assert all(gtypes[s] == SENTENCE_GLOBAL_TYPE for s in ctx)
            # every sentence global has at least one long token; paragraph globals have none
            sentence_globals = [i for i, t in enumerate(gtypes) if t == SENTENCE_GLOBAL_TYPE]
            assert sorted(set(ctx)) == sentence_globals
            for i, t in enumerate(gtypes):
                expected = {
                    SENTENCE_GLOBAL_TYPE: feat.global_token_id,
                    PARAGRAPH_GLOBAL_TYPE: feat.paragraph_global_token_id,
                    QUESTION_GLOBAL_TYPE: feat.question_global_token_id,
                }[t]
                assert seg["global_input_ids"][i] == expected
            if feat.paragraph_global_token_id is not None:
                assert gtypes[q and 1] == PARAGRAPH_GLOBAL_TYPE, "a paragraph global opens the context"
            if "offset_mapping" in seg:
                text = texts[seg["doc"]]
                offs, goffs = seg["offset_mapping"], seg["global_offset_mapping"]
                assert all(o == [0, 0] for o in offs[:q])
                for (s, e), g in zip(offs[q:], ctx):
                    gs, ge = goffs[g]
                    assert 0 <= s <= e <= len(text)
                    piece = text[s:e]
                    if piece.strip():  # a token lies inside the character span of its sentence
                        first = s + len(piece) - len(piece.lstrip())
                        assert gs <= first < ge, (text[s:e], text[gs:ge])
                    else:  # a whitespace token ("▁", "Ġ") belongs to the sentence that follows it
                        assert e <= ge or not text[s:].strip(), "(or to the last one at the very end)"
    return all_segs


def _context_by_doc(segs: list[dict], questions: bool) -> dict[int, list[dict]]:
    by_doc: dict[int, list[dict]] = {}
    for seg in segs:
        by_doc.setdefault(seg["doc"], []).append(seg)
    return by_doc


def _context(seg: dict) -> tuple[list[int], list]:
    q = seg["token_type_ids"].count(0) if 1 in seg["token_type_ids"] else 0
    return seg["input_ids"][q:], seg.get("offset_mapping", [])[q:]


# ---------------------------------------------------------------------------------------------
# Sentence splitter
# ---------------------------------------------------------------------------------------------

SPLIT_CASES = [
    ("Dr. J. R. Smith met e.g. Mr. Brown. Then they left.", ["Dr. J. R. Smith met e.g. Mr. Brown.", "Then they left."]),
    (
        "The U.S. Army grew. It cost $3.5 billion, i.e. a lot.",
        ["The U.S. Army grew.", "It cost $3.5 billion, i.e. a lot."],
    ),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ('"Stop!" he said. (It was late.) Why? Because.', ['"Stop!" he said.', "(It was late.)", "Why?", "Because."]),
    (
        "Apples, pears, etc. are fruit. Version 2.0 is out! 42 is the answer.",
        ["Apples, pears, etc. are fruit.", "Version 2.0 is out!", "42 is the answer."],
    ),
    ("See Fig. 3 and No. 5. The end.", ["See Fig. 3 and No. 5.", "The end."]),
    ("The answer is no. Then we left.", ["The answer is no.", "Then we left."]),
    ("Pi is 3.14159. E is 2.718 approx. And so on.", ["Pi is 3.14159.", "E is 2.718 approx. And so on."]),
    ("Wait... What happened?! Nothing.", ["Wait...", "What happened?!", "Nothing."]),
    ("He said \u201cGo.\u201d She went.", ["He said \u201cGo.\u201d", "She went."]),
    (
        "First line ends here.\nsecond starts lowercase\nand wraps here. Third.\n\nNo stop here\nNext para?",
        ["First line ends here.", "second starts lowercase\nand wraps here.", "Third.", "No stop here\nNext para?"],
    ),
    ("Items:\n- one\n- two\n2) three", ["Items:", "- one", "- two", "2) three"]),
    (
        " = Title = \n \n Homarus gammarus , known as H. americanus . It is big . \n The first pair .",
        ["= Title =", "Homarus gammarus , known as H. americanus .", "It is big .", "The first pair ."],
    ),
    ("no punctuation at all", ["no punctuation at all"]),
    ("", []),
    ("  \n\n \t ", []),
]


@pytest.mark.parametrize("text,expected", SPLIT_CASES)
def test_split_sentences_tricky_strings(text, expected):
    assert split_sentences(text) == expected
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == expected  # spans are exact offsets


def test_paragraph_spans():
    text = "  One. Two.\n\nThree\n \t\nFour\nstill four\n\n\n"
    assert [text[s:e] for s, e in paragraph_spans(text)] == ["One. Two.", "Three", "Four\nstill four"]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(list("ab AB3.!?\"')(\n-U\t") + ["e.g.", "Mr.", " \n\n ", "\u201c"]), max_size=60))
def test_sentence_spans_partition_the_text(pieces):
    text = "".join(pieces)
    spans = sentence_spans(text)
    pos = 0
    for s, e in spans:
        assert pos <= s < e <= len(text)
        piece = text[s:e]
        assert piece == piece.strip() and piece  # trimmed and never empty
        assert not text[pos:s].strip(), "no non-whitespace character is lost between sentences"
        pos = e
    assert not text[pos:].strip()
    assert split_sentences(text) == [text[s:e] for s, e in spans]


# ---------------------------------------------------------------------------------------------
# Featurizer: structure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("with_questions", [False, True])
@pytest.mark.parametrize("paragraphs", [False, True])
def test_rows_are_consistent_and_split_covers_every_token_once(tok, pack, with_questions, paragraphs):
    feat = EtcFeaturizer(
        tok,
        max_length=64,
        max_global_length=6,
        pack=pack,
        return_offsets_mapping=True,
        paragraph_global_token_id=5 if paragraphs else None,
    )
    out = feat(DOCS, QUESTIONS if with_questions else None)
    segs = check_rows(out, feat, TEXTS, questions=with_questions)
    full = tok(TEXTS, add_special_tokens=False, return_offsets_mapping=True)
    by_doc = _context_by_doc(segs, with_questions)
    assert sorted(by_doc) == list(range(len(DOCS)))
    assert len(out["input_ids"]) != len(DOCS), "splitting/packing changes the row count"
    for d, doc_segs in by_doc.items():
        ids = [i for seg in doc_segs for i in _context(seg)[0]]
        offs = [tuple(o) for seg in doc_segs for o in _context(seg)[1]]
        assert ids == full["input_ids"][d], f"document {d}: every token exactly once, in order"
        assert offs == [tuple(o) for o in full["offset_mapping"][d]]
        if with_questions:
            q = tok(QUESTIONS[d], add_special_tokens=False)["input_ids"]
            for seg in doc_segs:  # every row of a split document repeats the question
                assert seg["input_ids"][: len(q) + 2] == [tok.cls_token_id, *q, tok.sep_token_id]
    # the 150-word run-on sentence is longer than a row: cut into pieces, each its own global
    long_doc = len(DOCS) - 3
    assert len(by_doc[long_doc]) > 1


def test_unpacked_single_row_layout(wp_tok):
    feat = EtcFeaturizer(wp_tok, max_length=512, max_global_length=64)
    out = feat(["Lobsters grow.   They shed shells! Why? Cold water."])
    assert len(out["input_ids"]) == 1 and out["example_index"] == [0] and "example_indices" not in out
    assert out["global_input_ids"] == [[1, 1, 1, 1]]
    assert out["global_token_type_ids"] == [[0, 0, 0, 0]]
    n = len(out["input_ids"][0])
    assert out["long_breakpoints"][0] == [0] * (n - 1) + [1]
    assert out["global_breakpoints"][0] == [0, 0, 0, 1]
    ids, sids = out["input_ids"][0], out["sentence_ids"][0]
    by_sentence = [wp_tok.decode([i for i, s in zip(ids, sids) if s == g]).replace(" ", "") for g in range(4)]
    assert by_sentence == ["lobstersgrow.", "theyshedshells!", "why?", "coldwater."]


def test_paragraph_globals_come_before_their_sentences(wp_tok):
    feat = EtcFeaturizer(wp_tok, paragraph_global_token_id=5, question_global_token_id=7)
    out = feat([["One. Two.", "Three."]], questions=["why?"])
    assert out["global_input_ids"] == [[7, 5, 1, 1, 5, 1]]
    assert out["global_token_type_ids"] == [[2, 1, 0, 0, 1, 0]]
    sids = out["sentence_ids"][0]
    assert sorted(set(sids)) == [0, 2, 3, 5]  # long tokens point at sentence globals only


def test_offsets_map_back_to_the_exact_text(wp_tok):
    docs = ["Lobsters grow.\n\nThey shed shells!", ["Cold water.", "", "Pots catch them."]]
    feat = EtcFeaturizer(wp_tok, return_offsets_mapping=True)
    out = feat(docs, questions=["who?", "what?"])
    texts = [_text(d) for d in docs]
    for r in range(2):
        text = texts[out["example_index"][r]]
        tokens = wp_tok.convert_ids_to_tokens(out["input_ids"][r])
        for t, tt, (s, e) in zip(tokens, out["token_type_ids"][r], out["offset_mapping"][r]):
            if tt == 0:
                assert (s, e) == (0, 0)
            elif t != wp_tok.unk_token:
                assert text[s:e].lower() == t.removeprefix("##")
        spans = [tuple(g) for g in out["global_offset_mapping"][r][1:]]
        assert [text[s:e] for s, e in spans] == split_sentences(text)
    assert texts[1][slice(*out["global_offset_mapping"][1][-1])] == "Pots catch them."


def test_overflow_truncate_keeps_the_longest_prefix(tok):
    feat = EtcFeaturizer(tok, max_length=40, max_global_length=50, overflow="truncate", return_offsets_mapping=True)
    out = feat(DOCS)
    segs = check_rows(out, feat, TEXTS)
    assert out["example_index"] == list(range(len(DOCS))), "one row per document"
    full = tok(TEXTS, add_special_tokens=False)["input_ids"]
    for seg in segs:
        ids = full[seg["doc"]]
        assert seg["input_ids"] == ids[: len(seg["input_ids"])]
        assert len(seg["input_ids"]) == min(len(ids), 40), "the global budget is ample: the row is filled"
    # with a tight global budget truncation stops at the last whole sentence that fits it
    feat = EtcFeaturizer(tok, max_length=400, max_global_length=2, overflow="truncate")
    out = feat([TEXTS[0]])
    assert len(out["global_input_ids"][0]) <= 2
    split = EtcFeaturizer(tok, max_length=400, max_global_length=2)([TEXTS[0]])
    assert out["input_ids"][0] == split["input_ids"][0]


def test_packing_keeps_documents_whole_and_within_budgets(tok):
    feat = EtcFeaturizer(tok, max_length=256, max_global_length=24, pack=True)
    out = feat(DOCS)
    segs = check_rows(out, feat, TEXTS)
    unpacked = EtcFeaturizer(tok, max_length=256, max_global_length=24)(DOCS)
    assert len(out["input_ids"]) < len(unpacked["input_ids"])
    # the packed examples are exactly the unpacked rows, in the same order
    assert [s["input_ids"] for s in segs] == unpacked["input_ids"]
    assert [s["doc"] for s in segs] == unpacked["example_index"]
    assert [s["sentence_ids"] for s in segs] == unpacked["sentence_ids"]
    assert out["example_index"] == [ix[0] for ix in out["example_indices"]]
    assert any(len(ix) > 1 for ix in out["example_indices"])
    single = [d for d in range(len(DOCS)) if unpacked["example_index"].count(d) == 1]
    for d in single:  # a document that fits one row is never split across packed rows
        assert sum(d in ix for ix in out["example_indices"]) == 1


def test_fixed_blocks(tok):
    size = 7
    feat = EtcFeaturizer(tok, max_length=60, max_global_length=5, fixed_block_size=size)
    out = feat(DOCS[:4])
    check_rows(out, feat, TEXTS)
    for r in range(len(out["input_ids"])):
        n = len(out["input_ids"][r])
        assert n <= min(60, 5 * size)
        assert len(out["global_input_ids"][r]) == math.ceil(n / size)
        assert out["sentence_ids"][r] == [j // size for j in range(n)]
    # with a question: the question part points at global 0, blocks start after it
    out = feat(DOCS[:2], QUESTIONS[:2])
    for r in range(len(out["input_ids"])):
        q = out["token_type_ids"][r].count(0)
        n = len(out["input_ids"][r]) - q
        assert len(out["global_input_ids"][r]) == 1 + math.ceil(n / size)
        assert out["sentence_ids"][r] == [0] * q + [1 + j // size for j in range(n)]
    full = tok(TEXTS[:4], add_special_tokens=False)["input_ids"]
    joined = {}
    for d, ids in zip(feat(DOCS[:4])["example_index"], feat(DOCS[:4])["input_ids"]):
        joined.setdefault(d, []).extend(ids)
    assert [joined[d] for d in range(4)] == full


def test_custom_splitters_strings_and_spans(wp_tok):
    text = "alpha beta | gamma delta | epsilon"
    by_strings = EtcFeaturizer(wp_tok, sentence_splitter=lambda t: t.split("|"), return_offsets_mapping=True)
    out = by_strings([text])
    assert out["global_offset_mapping"][0] == [[0, 10], [13, 24], [27, 34]]
    assert len(set(out["sentence_ids"][0])) == 3

    def spans(t):
        return [(m.start(), m.end()) for m in re.finditer(r"[^|]+", t)]

    by_spans = EtcFeaturizer(wp_tok, sentence_splitter=spans, return_offsets_mapping=True)
    assert by_spans([text])["global_offset_mapping"] == out["global_offset_mapping"]
    bad = EtcFeaturizer(wp_tok, sentence_splitter=lambda t: ["not in the text"])
    with pytest.raises(ValueError, match="sentence_splitter"):
        bad([text])


def test_empty_documents_are_skipped_or_rejected(wp_tok):
    out = EtcFeaturizer(wp_tok)(["", "Lobsters grow.", "  \n\n ", ["", " "]])
    assert out["example_index"] == [1]
    with pytest.raises(ValueError, match="skip_empty"):
        EtcFeaturizer(wp_tok, skip_empty=False)(["Lobsters grow.", ""])
    assert EtcFeaturizer(wp_tok)([])["input_ids"] == []


def test_question_truncation(wp_tok):
    q = " ".join(["where"] * 30)
    with pytest.raises(ValueError, match="max_question_length"):
        EtcFeaturizer(wp_tok, max_length=20)(["Lobsters grow."], [q])
    context = "Lobsters grow in cold water. They shed shells each year. Fishermen catch them with pots."
    out = EtcFeaturizer(wp_tok, max_length=20, max_question_length=5)([context], [q])
    assert all(
        row[:7] == [wp_tok.cls_token_id] + out["input_ids"][0][1:6] + [wp_tok.sep_token_id] for row in out["input_ids"]
    )
    assert len(out["input_ids"]) > 1 and all(len(r) <= 20 for r in out["input_ids"])


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class _SlowTokenizer:
    is_fast = False


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_global_length": 0}, ValueError, "max_global_length"),
        ({"fixed_block_size": 0}, ValueError, "fixed_block_size"),
        ({"max_length": 2.5}, TypeError, "max_length"),
        ({"overflow": "drop"}, ValueError, "overflow"),
        ({"fixed_block_size": 27, "paragraph_global_token_id": 5}, ValueError, "fixed_block_size"),
        ({"paragraph_global_token_id": 5, "max_global_length": 1}, ValueError, "max_global_length"),
        ({"sentence_splitter": "nltk"}, TypeError, "sentence_splitter"),
    ],
)
def test_bad_arguments(wp_tok, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EtcFeaturizer(wp_tok, **kwargs)


def test_bad_inputs(wp_tok):
    with pytest.raises(TypeError, match="tokenizer"):
        EtcFeaturizer(_SlowTokenizer())
    feat = EtcFeaturizer(wp_tok)
    with pytest.raises(TypeError, match=r"wrap a single text as \[text\]"):
        feat("just a string")
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        feat(["ok.", 3])
    with pytest.raises(TypeError, match=r"documents\[0\]\[1\]"):
        feat([["ok.", None]])
    with pytest.raises(ValueError, match="one str per document"):
        feat(["a.", "b."], ["q?"])
    with pytest.raises(TypeError, match=r"questions\[0\]"):
        feat(["a."], [None])
    with pytest.raises(ValueError, match="max_global_length"):
        EtcFeaturizer(wp_tok, max_global_length=1)(["a."], ["q?"])
    no_cls = copy.deepcopy(wp_tok)
    no_cls.cls_token = None
    with pytest.raises(ValueError, match="cls_token_id"):
        EtcFeaturizer(no_cls)(["a."], ["q?"])
    with pytest.raises(ValueError, match="column 'txt'"):
        feat.map_function("txt")({"text": ["a."]})


# ---------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------


def _rows(out: dict) -> list[dict]:
    return [{k: out[k][r] for k in out} for r in range(len(out["input_ids"]))]


def test_collator_pads_and_round_trips(wp_tok):
    feat = EtcFeaturizer(wp_tok, max_length=48, max_global_length=5, pack=True, return_offsets_mapping=True)
    rows = _rows(feat(DOCS, QUESTIONS))
    for row in rows:
        row["labels"] = [i % 3 for i in range(len(row["input_ids"]))]
        row["start_positions"] = 1
    collate = EtcDataCollator(tokenizer=wp_tok, pad_to_multiple_of=16, global_pad_to_multiple_of=4)
    batch = collate(rows)
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "global_input_ids",
        "global_attention_mask",
        "global_token_type_ids",
        "long_breakpoints",
        "global_breakpoints",
        "sentence_ids",
        "labels",
        "start_positions",
    }
    n, ng = batch["input_ids"].shape[1], batch["global_input_ids"].shape[1]
    assert n % 16 == 0 and ng % 4 == 0 and n >= max(len(r["input_ids"]) for r in rows)
    pads = {"input_ids": wp_tok.pad_token_id, "global_input_ids": wp_tok.pad_token_id, "labels": -100}
    for key, value in batch.items():
        assert value.dtype == torch.long
        if key == "start_positions":
            assert value.tolist() == [1] * len(rows)
            continue
        for r, row in enumerate(rows):
            k = len(row[key])
            assert value[r, :k].tolist() == row[key], key  # values round-trip
            assert (value[r, k:] == pads.get(key, 0)).all(), key
    # the reference derives the input mask as the reverse cumulative sum of the breakpoints
    for side, bp in (("attention_mask", "long_breakpoints"), ("global_attention_mask", "global_breakpoints")):
        example_ids = batch[bp].flip(1).cumsum(1).flip(1)
        assert ((example_ids > 0).long() == batch[side]).all()


def test_collator_keep_keys_and_errors(wp_tok):
    rows = _rows(EtcFeaturizer(wp_tok, return_offsets_mapping=True)(["Lobsters grow. Cold water.", "Pots."]))
    for row in rows:  # float-valued extra keys (soft labels, scores) keep their values
        row["scores"] = [0.5] * len(row["input_ids"])
    batch = EtcDataCollator(pad_token_id=0, keep_keys=("example_index", "offset_mapping"))(rows)
    assert batch["scores"].dtype == torch.float32
    assert batch["scores"][1].tolist() == [0.5] * len(rows[1]["input_ids"]) + [0.0] * (
        batch["input_ids"].shape[1] - len(rows[1]["input_ids"])
    )
    assert batch["example_index"].tolist() == [0, 1]
    assert batch["offset_mapping"].shape == (2, batch["input_ids"].shape[1], 2)
    assert batch["offset_mapping"][1, len(rows[1]["input_ids"]) :].eq(0).all()
    bad = copy.deepcopy(rows)
    bad[1]["sentence_ids"] = bad[1]["sentence_ids"] + [0]
    with pytest.raises(ValueError, match="'sentence_ids' has length"):
        EtcDataCollator(pad_token_id=0)(bad)
    bad = copy.deepcopy(rows)
    bad[0]["sentence_ids"][0] = 9
    with pytest.raises(ValueError, match="sentence_ids"):
        EtcDataCollator(pad_token_id=0)(bad)
    bad = copy.deepcopy(rows)
    del bad[1]["global_breakpoints"]
    with pytest.raises(ValueError, match="global_breakpoints"):
        EtcDataCollator(pad_token_id=0)(bad)
    with pytest.raises(ValueError, match="pad_token_id"):
        EtcDataCollator()
    with pytest.raises(ValueError, match="pad_token_id"):
        EtcDataCollator(tokenizer=object())


# ---------------------------------------------------------------------------------------------
# Real text
# ---------------------------------------------------------------------------------------------


def _wikitext_articles(n: int) -> list[str]:
    text = WIKITEXT.read_text(encoding="utf-8")
    articles = re.split(r"\n(?= = [^=].* = \n)", text)  # top-level headings " = Title = "
    return [a for a in articles if a.strip()][:n]


@pytest.mark.skipif(not WIKITEXT.exists(), reason=f"WikiText-2 subset not found at {WIKITEXT}")
@pytest.mark.parametrize("pack", [False, True])
def test_datasets_map_on_wikitext(pack):
    from datasets import Dataset

    articles = _wikitext_articles(24)
    assert len(articles) == 24 and all(a.lstrip().startswith("= ") for a in articles)
    tok = train_tokenizer(articles, vocab_size=2000)
    feat = EtcFeaturizer(tok, max_length=1024, max_global_length=64, pack=pack, return_offsets_mapping=True)
    ds = Dataset.from_dict({"text": articles, "title": [a.strip().split(" = ")[0] for a in articles]})
    features = ds.map(
        feat.map_function("text"), batched=True, batch_size=8, with_indices=True, remove_columns=ds.column_names
    )
    out = features.to_dict()
    assert len(features) != len(ds)
    segs = check_rows(out, feat, articles)
    full = tok(articles, add_special_tokens=False)["input_ids"]
    by_doc = _context_by_doc(segs, False)
    assert sorted(by_doc) == list(range(len(articles))), "example_index is the dataset row index"
    for d, doc_segs in by_doc.items():
        assert [i for s in doc_segs for i in s["input_ids"]] == full[d]
    # real sentences: the median number of long tokens per sentence global is sentence-like
    per_global = [len(s["input_ids"]) / len(s["global_input_ids"]) for s in segs]
    assert 10 < float(np.median(per_global)) < 60
    batch = EtcDataCollator(tokenizer=tok)([features[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and batch["sentence_ids"].max() < batch["global_input_ids"].shape[1]


@pytest.mark.skipif(not LEVAL_NQ.exists(), reason=f"L-Eval natural_question.jsonl not found at {LEVAL_NQ}")
def test_long_document_with_question_leval():
    with LEVAL_NQ.open(encoding="utf-8") as f:
        record = json.loads(f.readline())
    doc, question = record["input"], record["instructions"][0]
    tok = train_tokenizer([doc, question], vocab_size=2000)
    feat = EtcFeaturizer(tok, max_length=2048, max_global_length=128, return_offsets_mapping=True)
    out = feat([doc], [question])
    assert len(out["input_ids"]) > 1, "a long document is split into several rows"
    segs = check_rows(out, feat, [doc], questions=True)
    assert [i for s in segs for i in _context(s)[0]] == tok(doc, add_special_tokens=False)["input_ids"]
