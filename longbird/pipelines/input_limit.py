"""How long may a pipeline's input be: one answer for both pipelines.

Only the model's config and the tokenizer are read, so the file also works as Hub remote code.
"""

from __future__ import annotations

#: tokenizers without a known length say `model_max_length = int(1e30)`; lengths from here on mean "unknown"
UNKNOWN_LENGTH = 1_000_000


def position_limit(config) -> int | None:
    """The most tokens one row of the model can hold: its absolute position table
    (`config.max_position_embeddings`); None for ETC, whose relative positions have no limit."""
    if getattr(config, "model_type", None) == "longbird_etc":
        return None
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def input_limit(model, tokenizer) -> int | None:
    """The default number of tokens a pipeline feeds the model at once: the model's position limit,
    or the tokenizer's `model_max_length` when that is smaller (the length the checkpoint was
    trained on) and known (not the "unknown" 1e30); None when neither says."""
    limits = [position_limit(model.config), tokenizer.model_max_length]
    limits = [x for x in limits if isinstance(x, int) and 0 < x < UNKNOWN_LENGTH]
    return min(limits) if limits else None
