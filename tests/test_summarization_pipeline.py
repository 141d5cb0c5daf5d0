"""long-summarization: no silent truncation (a warning with tokens kept / total), strategy="chunk"
(map-reduce over model-length pieces), transformers 4's return format, argument errors, and
`train_tokenizer(eos_token=...)` for BigBird-Pegasus's eos id. Tiny random models, offline."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_pegasus_config
from transformers import AutoTokenizer, pipeline

import longbird
from longbird.pipelines import pipeline_longbird_summarization as summarization_module
from longbird.tokenization import train_tokenizer

SENTENCES = [
    "The river Nile flows north through Egypt into the Mediterranean Sea.",
    "Paris is the capital of France and its largest city.",
    "Mount Kilimanjaro is the highest mountain in Africa.",
]
LIMIT = 128  # the tiny model's max_position_embeddings
LOGGER = summarization_module.logger.name


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 30, vocab_size=150, eos_token="</s>")


def tiny_model(tokenizer):
    config = tiny_pegasus_config(tokenizer, max_position_embeddings=LIMIT, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return longbird.BigBirdPegasusForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture
def calls(model):
    """Records the input ids and output ids of every generate() call the pipeline makes."""
    recorded: list[tuple[list[int], torch.Tensor]] = []
    generate = model.generate

    def recording(*args, **kwargs):
        out = generate(*args, **kwargs)
        recorded.append((kwargs["input_ids"][0].tolist(), out))
        return out

    model.generate = recording
    yield recorded
    del model.generate  # back to the class method


def ids(tokenizer, text: str, special: bool = True) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def decode(tokenizer, output_ids) -> str:
    return tokenizer.decode(output_ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def assert_pieces(tokenizer, inputs: list[list[int]], bare: list[int], limit: int):
    """Each piece is [CLS] text [SEP], at most `limit` long, sizes within one token; together they
    hold every token of `bare` once, in order (no overlap, nothing dropped)."""
    for piece in inputs:
        assert len(piece) <= limit
        assert piece[0] == tokenizer.cls_token_id and piece[-1] == tokenizer.sep_token_id
    assert [t for piece in inputs for t in piece[1:-1]] == bare
    assert max(map(len, inputs)) - min(map(len, inputs)) <= 1


# ------------------------------------------------------------------------------------------------
# strategy="truncate": the default, never silent
# ------------------------------------------------------------------------------------------------


def test_truncation_warns_with_tokens_kept_and_total(tokenizer, model, caplog):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 20)
    total = len(ids(tokenizer, document))
    assert total > LIMIT
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = summarize(document, max_new_tokens=5, min_new_tokens=5)
        summarize(document, max_new_tokens=5, max_input_length=64)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2
    assert f"first {LIMIT} of {total} tokens" in messages[0] and "strategy='chunk'" in messages[0]
    assert f"first 64 of {total} tokens" in messages[1]
    # and what was read is exactly the first LIMIT tokens
    truncated = tokenizer(document, truncation=True, max_length=LIMIT, return_tensors="pt")
    expected = model.generate(
        input_ids=truncated["input_ids"], attention_mask=truncated["attention_mask"], max_new_tokens=5, min_new_tokens=5
    )
    assert out == [{"summary_text": decode(tokenizer, expected[0])}]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        summarize(SENTENCES[0], max_new_tokens=3)  # fits: nothing to warn about
    assert not [r for r in caplog.records if r.name == LOGGER]


# ------------------------------------------------------------------------------------------------
# strategy="chunk": map-reduce
# ------------------------------------------------------------------------------------------------


def test_chunk_summarizes_every_piece_then_their_joined_summaries(tokenizer, model, calls, caplog):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 8)
    bare = ids(tokenizer, document, special=False)
    pieces = -(-len(bare) // (64 - 2))  # room for text next to [CLS] and [SEP]
    assert pieces >= 3
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = summarize(document, strategy="chunk", max_input_length=64, max_new_tokens=4, min_new_tokens=4)
    assert not [r for r in caplog.records if r.name == LOGGER]  # nothing was dropped

    assert len(calls) == pieces + 1
    assert_pieces(tokenizer, [inputs for inputs, _ in calls[:pieces]], bare, limit=64)
    joined = " ".join(decode(tokenizer, output[0]) for _, output in calls[:pieces])
    final_inputs, final_output = calls[-1]
    assert final_inputs == ids(tokenizer, joined)
    assert out == [{"summary_text": decode(tokenizer, final_output[0])}]


def test_chunk_repeats_while_the_joined_summaries_are_too_long(tokenizer, model, calls):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 12)
    limit, room = 32, 30
    bare1 = ids(tokenizer, document, special=False)
    n1 = -(-len(bare1) // room)
    out = summarize(document, strategy="chunk", max_input_length=limit, max_new_tokens=6, min_new_tokens=6)

    assert_pieces(tokenizer, [inputs for inputs, _ in calls[:n1]], bare1, limit)
    bare2 = ids(tokenizer, " ".join(decode(tokenizer, output[0]) for _, output in calls[:n1]), special=False)
    n2 = -(-len(bare2) // room)
    assert n2 >= 2  # the first round's summaries did not fit: a second round
    assert len(calls) == n1 + n2 + 1
    assert_pieces(tokenizer, [inputs for inputs, _ in calls[n1 : n1 + n2]], bare2, limit)
    joined = " ".join(decode(tokenizer, output[0]) for _, output in calls[n1 : n1 + n2])
    assert calls[-1][0] == ids(tokenizer, joined) and len(calls[-1][0]) <= limit
    assert out == [{"summary_text": decode(tokenizer, calls[-1][1][0])}]


def test_chunk_of_a_short_document_is_one_plain_call(tokenizer, model, calls):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES)
    chunked = summarize(document, strategy="chunk", max_new_tokens=5)
    assert len(calls) == 1 and calls[0][0] == ids(tokenizer, document)
    assert chunked == summarize(document, max_new_tokens=5)


def test_chunk_that_cannot_shorten_the_text_raises(tokenizer, model):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 3)
    with pytest.raises(ValueError, match="cannot shorten.*max_new_tokens"):
        summarize(document, strategy="chunk", max_input_length=32, max_new_tokens=40, min_new_tokens=40)


def test_chunk_set_at_pipeline_creation_and_overridden_per_call(tokenizer, model, calls):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer, strategy="chunk", max_input_length=64)
    document = " ".join(SENTENCES * 8)
    summarize(document, max_new_tokens=4)
    assert len(calls) > 1 and all(len(inputs) <= 64 for inputs, _ in calls)
    calls.clear()
    summarize(document, max_new_tokens=4, strategy="truncate")
    assert len(calls) == 1 and len(calls[0][0]) == 64
    calls.clear()
    summarize(document, max_new_tokens=4, num_beams=2, num_return_sequences=2)
    # one summary per piece; num_return_sequences applies to the final summary
    assert [output.shape[0] for _, output in calls] == [1] * (len(calls) - 1) + [2]


# ------------------------------------------------------------------------------------------------
# return format (transformers 4's summarization pipeline)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["truncate", "chunk"])
def test_one_dict_per_document_and_lists_with_several_sequences(tokenizer, model, strategy):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    options = dict(strategy=strategy, max_input_length=64, max_new_tokens=4, min_new_tokens=4)
    documents = [" ".join(SENTENCES * 3), SENTENCES[1]]  # one needs several pieces, one does not
    singles = [summarize(doc, **options) for doc in documents]
    for single in singles:
        assert isinstance(single, list) and len(single) == 1 and set(single[0]) == {"summary_text"}
    assert summarize(documents, **options) == [single[0] for single in singles]
    assert summarize(documents, batch_size=2, **options) == [single[0] for single in singles]
    assert summarize([], **options) == []

    several = dict(options, num_beams=2, num_return_sequences=2)
    per_document = summarize(documents, **several)
    assert len(per_document) == 2
    for doc, sequences in zip(documents, per_document):
        assert isinstance(sequences, list) and len(sequences) == 2
        assert sequences == summarize(doc, **several)  # a string: the list of its sequences
        assert all(isinstance(s["summary_text"], str) for s in sequences)
    assert summarize(documents, batch_size=2, **several) == per_document


# ------------------------------------------------------------------------------------------------
# argument errors
# ------------------------------------------------------------------------------------------------


def test_bad_arguments_name_the_argument_and_the_fix(tokenizer, model):
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 8)
    with pytest.raises(
        ValueError,
        match=rf"max_input_length=256 exceeds the model's limit of {LIMIT}.*"
        rf"max_input_length={LIMIT} or less",
    ):
        summarize(document, max_input_length=256)
    with pytest.raises(ValueError, match="max_input_length=256"):
        pipeline("long-summarization", model=model, tokenizer=tokenizer, max_input_length=256)
    for bad in (0, -4, True, 64.0, "64"):
        with pytest.raises(ValueError, match="max_input_length must be a positive int"):
            summarize(document, max_input_length=bad)
    with pytest.raises(ValueError, match="strategy must be 'truncate'.*or 'chunk'.*'map-reduce'"):
        summarize(document, strategy="map-reduce")
    with pytest.raises(ValueError, match="strategy must be"):
        pipeline("long-summarization", model=model, tokenizer=tokenizer, strategy="Chunk")
    with pytest.raises(ValueError, match="max_input_length=2 leaves no room"):
        summarize(document, strategy="chunk", max_input_length=2)
    with pytest.raises(ValueError, match="non-empty string"):
        summarize([3, document])
    with pytest.raises(ValueError, match="non-empty string"):
        summarize("   ")


# ------------------------------------------------------------------------------------------------
# train_tokenizer(eos_token=...) and the offline route to a summarization pipeline
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wordpiece", "unigram", "bpe"])
def test_train_tokenizer_eos_token_option(kind):
    texts = SENTENCES * 10
    plain = train_tokenizer(texts, vocab_size=120, kind=kind)
    assert plain.eos_token is None and "</s>" not in plain.get_vocab()  # default unchanged
    with_eos = train_tokenizer(texts, vocab_size=120, kind=kind, eos_token="</s>")
    assert with_eos.eos_token == "</s>" and with_eos.eos_token_id == 5  # after pad/unk/cls/sep/mask
    for name in ("pad", "unk", "cls", "sep", "mask"):
        assert getattr(with_eos, f"{name}_token_id") == getattr(plain, f"{name}_token_id")
    encoded = with_eos("Paris is the capital </s>")["input_ids"]
    assert encoded.count(5) == 1 and encoded[0] == with_eos.cls_token_id and encoded[-1] == with_eos.sep_token_id
    assert "</s>" not in with_eos.decode(encoded, skip_special_tokens=True)

    reused = train_tokenizer(texts, vocab_size=120, kind=kind, eos_token="[SEP]")
    assert reused.eos_token_id == reused.sep_token_id and len(reused) == len(plain)


def test_train_tokenizer_rejects_bad_eos_tokens():
    for bad in ("", "   ", " </s>", 5):
        with pytest.raises(ValueError, match="eos_token must be a non-empty string"):
            train_tokenizer(SENTENCES, vocab_size=60, eos_token=bad)


def test_saved_folder_serves_chunked_summaries_with_the_tokenizer_ids(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.eos_token == "</s>" and reloaded.eos_token_id == model.config.eos_token_id == 5

    summarize = pipeline("long-summarization", model=str(tmp_path))
    document = " ".join(SENTENCES * 15)
    assert len(ids(tokenizer, document)) > 3 * LIMIT
    out = summarize(document, strategy="chunk", max_new_tokens=8)
    assert len(out) == 1 and isinstance(out[0]["summary_text"], str) and out[0]["summary_text"]
    # generation stops at the tokenizer's eos: the model's generation config says so
    assert summarize.model.generation_config.eos_token_id == tokenizer.eos_token_id
