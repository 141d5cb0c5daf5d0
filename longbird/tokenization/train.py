"""Train a fast tokenizer (WordPiece, SentencePiece-style Unigram or byte-level BPE) from text, or
a BPE tokenizer for DNA."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

#: BERT-style special tokens, in the id order BigBird checkpoints use for pad/unk/cls/sep/mask.
BIGBIRD_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, kind: str = "wordpiece", eos_token: str | None = None
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` and wrap it for transformers.

    `kind="wordpiece"` (BERT/BigBird-style, lower-cased), `"unigram"` (SentencePiece-style, cased,
    whitespace kept as "▁") or `"bpe"` (byte-level BPE, cased, no unknown tokens). The result adds
    `[CLS] a [SEP] (b [SEP])` and token type ids, so question/context pairs come out the way
    BigBird's QA head expects.

    `eos_token` (e.g. `"</s>"`) adds an end-of-sequence token for seq2seq models such as
    BigBird-Pegasus, with the id after the five BigBird special tokens (pad 0, unk 1, cls 2, sep 3,
    mask 4, eos 5), so `tokenizer.eos_token_id` can go into the model config as `eos_token_id`
    (BigBird-Pegasus's default eos id, 1, is `[UNK]` in these vocabularies). Inputs keep the `[CLS] a [SEP]` template;
    generation ends at the eos token. An existing special token (e.g. `"[SEP]"`) is reused, not
    added twice. Left out, the tokenizer has no eos token, as before.
    """
    if vocab_size < 10:
        raise ValueError(f"vocab_size must be at least 10 (special tokens included), got {vocab_size}.")
    specials = list(BIGBIRD_SPECIAL_TOKENS.values())
    if eos_token is not None:
        if not isinstance(eos_token, str) or not eos_token.strip() or eos_token != eos_token.strip():
            raise ValueError(
                f"eos_token must be a non-empty string without surrounding spaces (e.g. eos_token='</s>'), "
                f"got {eos_token!r}."
            )
        if eos_token not in specials:
            specials.append(eos_token)  # last, so the BigBird ids (pad 0 ... mask 4) stay as they are
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    elif kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="[UNK]")
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:
        raise ValueError(f"kind must be 'wordpiece', 'unigram' or 'bpe', got {kind!r}.")
    return _finish(tokenizer, texts, trainer, eos_token=eos_token)


def train_dna_tokenizer(sequences: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A BPE tokenizer for DNA, like BigBird's genomics setup (BPE over the raw sequence, so tokens
    are variable-length k-mers; BigBird used 32k tokens of ~8.8 bp on the human genome).

    Sequences are upper-cased, never split at whitespace or punctuation (a sequence is one word
    to BPE), and decode back to the exact (upper-cased) sequence. Characters outside the training
    alphabet (e.g. IUPAC codes other than N) become `[UNK]`.
    """
    if vocab_size < 10:
        raise ValueError(f"vocab_size must be at least 10 (special tokens included), got {vocab_size}.")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(base.lower(), base) for base in "ACGTN"] + [normalizers.Strip()]
    )
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(BIGBIRD_SPECIAL_TOKENS.values()), initial_alphabet=list("ACGTN")
    )
    return _finish(tokenizer, sequences, trainer)


def _finish(
    tokenizer: Tokenizer, texts: Iterable[str], trainer, eos_token: str | None = None
) -> PreTrainedTokenizerFast:
    """Train, add BigBird's `[CLS] a [SEP] (b [SEP])` template and wrap for transformers."""
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **BIGBIRD_SPECIAL_TOKENS,
        **({} if eos_token is None else {"eos_token": eos_token}),
    )
