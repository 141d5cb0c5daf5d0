"""The names of ETC's inputs, defined once.

`EtcFeaturizer` makes them, the collators pad them, the question-answering pipeline feeds them to
the model, and the model files check and take them. Plain tuples with no imports, so every one of
those (torch-free ones and remote code included) can import this module.
"""

#: every input `EtcFeaturizer` makes for an ETC model, in the order of its output keys
ETC_INPUTS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "global_input_ids",
    "global_attention_mask",
    "global_token_type_ids",
    "long_breakpoints",
    "global_breakpoints",
    "sentence_ids",
)
#: the inputs with one value per global token, `[batch, global_length]`
ETC_GLOBAL_INPUTS = tuple(name for name in ETC_INPUTS if name.startswith("global_"))
#: the inputs with one value per long token, `[batch, long_length]`
ETC_LONG_INPUTS = tuple(name for name in ETC_INPUTS if name not in ETC_GLOBAL_INPUTS)
#: the structure inputs an ETC encoder takes beside `input_ids` and `attention_mask`
ETC_STRUCTURE_INPUTS = tuple(name for name in ETC_INPUTS if name not in ("input_ids", "attention_mask"))

__all__ = ["ETC_INPUTS", "ETC_GLOBAL_INPUTS", "ETC_LONG_INPUTS", "ETC_STRUCTURE_INPUTS"]
