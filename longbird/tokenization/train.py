"""Train a fast tokenizer (WordPiece or SentencePiece-style Unigram) from text."""

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


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, kind: str = "wordpiece") -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` and wrap it for transformers.

    `kind="wordpiece"` (BERT/BigBird-style, lower-cased) or `"unigram"` (SentencePiece-style, cased,
    whitespace kept as "▁"). The result adds `[CLS] a [SEP] (b [SEP])` and token type ids, so
    question/context pairs come out the way BigBird's QA head expects.
    """
    if vocab_size < 10:
        raise ValueError(f"vocab_size must be at least 10 (special tokens included), got {vocab_size}.")
    specials = list(BIGBIRD_SPECIAL_TOKENS.values())
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
    else:
        raise ValueError(f"kind must be 'wordpiece' or 'unigram', got {kind!r}.")
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
    )
