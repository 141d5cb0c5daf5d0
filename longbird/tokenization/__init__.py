"""Tokenizers. Existing Hugging Face tokenizers load as they are (AutoTokenizer); this module
trains new ones from a corpus with the `tokenizers` library."""

from .train import BIGBIRD_SPECIAL_TOKENS, train_tokenizer

__all__ = ["BIGBIRD_SPECIAL_TOKENS", "train_tokenizer"]
