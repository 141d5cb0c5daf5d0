import csv
from pathlib import Path

import pytest

from longbird.tokenization import train_dna_tokenizer, train_tokenizer

EPDNEW = Path(__file__).resolve().parents[2] / "shared" / "data" / "epdnew_promoters_300" / "fold_1.csv"

TEXTS = [
    "BigBird attends to a window, a few global tokens and random blocks.",
    "Long documents do not fit in 512 tokens; sparse attention makes them fit.",
    "The question is global and every context token can see it.",
] * 20


@pytest.mark.parametrize("kind", ["wordpiece", "unigram", "bpe"])
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
    with pytest.raises(ValueError, match="vocab_size"):
        train_dna_tokenizer(["ACGT"], vocab_size=5)


def test_byte_level_bpe_has_no_unknown_tokens():
    tok = train_tokenizer(TEXTS, vocab_size=300, kind="bpe")
    text = "Ünïcode and émojis 🐦 never become unknown"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


@pytest.mark.skipif(not EPDNEW.exists(), reason=f"DNA data not available at {EPDNEW}")
def test_dna_tokenizer_learns_kmers_and_round_trips():
    with EPDNEW.open() as f:
        sequences = [row["sequence"] for row, _ in zip(csv.DictReader(f), range(400))]
    tok = train_dna_tokenizer(sequences, vocab_size=1000)
    assert len(tok) == 1000
    held_out = sequences[-1]
    ids = tok(held_out.lower(), add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == held_out.upper()  # exact, case-normalised round trip
    assert tok.unk_token_id not in ids
    bases_per_token = len(held_out) / len(ids)
    print(f"DNA BPE, 1,000 tokens: {bases_per_token:.1f} bp per token on a held-out promoter")
    assert bases_per_token > 3, f"BPE should merge bases into k-mers, got {bases_per_token:.2f} bp per token"
    enc = tok(held_out)
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
