"""Shared fixtures for the longbird test-suite. Keep this file small."""

import pytest
import torch
from helpers import TINY_BIGBIRD


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
    return dict(TINY_BIGBIRD)
