import pytest

from longbird.tokenization import train_tokenizer

TEXTS = [
    "BigBird attends to a window, a few global tokens and random blocks.",
    "Long documents do not fit in 512 tokens; sparse attention makes them fit.",
    "The question is global and every context token can see it.",
] * 20


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_trained_tokenizer_round_trips_and_marks_pairs(kind):
    tok = train_tokenizer(TEXTS, vocab_size=200, kind=kind)
    enc = tok("Where is the question?", "The question is global.")
    ids = enc["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    first_sep = ids.index(tok.sep_token_id)
    # token types: 0 up to and including the first [SEP], 1 after it
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    text = tok.decode(tok("window tokens")["input_ids"], skip_special_tokens=True)
    assert text.replace(" ", "").lower() == "windowtokens"


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(TEXTS, kind="bpe-ish")
