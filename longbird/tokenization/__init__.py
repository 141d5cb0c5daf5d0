"""Tokenizers and input featurizers. Existing Hugging Face tokenizers load as they are
(AutoTokenizer); `train_tokenizer` trains new ones from a corpus with the `tokenizers` library;
`EtcFeaturizer` turns documents into ETC's long + global inputs (sentences from `sentences`,
input names from `etc_inputs`), and the collators (`etc_collators`) batch them."""

from .etc_collators import EtcDataCollator, EtcPretrainingCollator
from .etc_featurizer import EtcFeaturizer
from .sentences import sentence_spans, split_sentences
from .train import BIGBIRD_SPECIAL_TOKENS, train_dna_tokenizer, train_tokenizer

__all__ = [
    "BIGBIRD_SPECIAL_TOKENS",
    "train_tokenizer",
    "train_dna_tokenizer",
    "EtcFeaturizer",
    "EtcDataCollator",
    "EtcPretrainingCollator",
    "sentence_spans",
    "split_sentences",
]
