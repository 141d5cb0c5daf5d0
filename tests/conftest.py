"""Shared fixtures for the longbird test-suite. Keep this file small."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """torch on one thread during the test: tiny models run fastest so (and busy CI machines make two
    threads spin). A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
