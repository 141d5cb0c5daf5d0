"""Shared fixtures for the longbird test-suite. Keep this file small."""

import pytest


@pytest.fixture
def tiny_kwargs():
    """kwargs of a tiny BigBird config, valid for transformers' and longbird's BigBirdConfig."""
    return dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        block_size=8,
        num_random_blocks=3,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        sep_token_id=5,
    )
