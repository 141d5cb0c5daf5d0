"""The caches shared by every call stay correct when models are called from several threads.

Shared between calls are: the slot-routing LRU of the gather executor (`_ROUTINGS`, locked), the
lru_caches that build block graphs (`example_slots`, `_batch_slots`), and the lazily compiled flex
kernel. Each test shrinks the caches so that the threads, asking for more distinct lengths than
the caches hold, evict entries other threads are reading, and shortens the interpreter's thread
switch interval so that threads interleave inside the cache code. Every result must equal the
single-threaded one. (Before the lock, the routing test failed within a second: a thread found an
entry, another evicted it, and the first thread's `move_to_end` raised KeyError.)
"""

from __future__ import annotations

import functools
import random
import sys
import threading
from collections import OrderedDict

import pytest
import torch

from longbird import BigBirdConfig, BigBirdModel, EtcConfig, EtcModel
from longbird.modeling import longbird_block_executors as executors
from longbird.modeling import longbird_block_graph as graphs
from longbird.modeling.longbird_block_graph import SparsePattern, build_block_graph

THREADS = 6
CACHE_SIZE = 3  # entries the shrunken caches hold; every test uses more distinct lengths


@pytest.fixture
def tiny_caches(monkeypatch):
    """Fresh, tiny caches for this test (the module's own caches are left as they were), and
    frequent thread switches."""
    monkeypatch.setattr(executors, "_ROUTINGS", OrderedDict())
    monkeypatch.setattr(executors, "_ROUTINGS_SIZE", CACHE_SIZE)
    for name in ("example_slots", "_batch_slots"):  # looked up as module globals at call time
        cached = getattr(graphs, name)
        monkeypatch.setattr(graphs, name, functools.lru_cache(maxsize=CACHE_SIZE)(cached.__wrapped__))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(work, jobs_per_thread: int) -> list[BaseException]:
    """`work(thread, job)` in THREADS threads started together; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def loop(thread: int) -> None:
        start.wait()
        try:
            for job in range(jobs_per_thread):
                work(thread, job)
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return errors


def test_routing_lru_under_concurrent_lookups_and_evictions(tiny_caches):
    pattern = SparsePattern(block_size=2, num_heads=2, num_random_blocks=1)
    cases = [
        build_block_graph(pattern, 0, nb, [nb], [(0, nb - 1)], torch.ones(1, 2 * nb, dtype=torch.bool), True)
        for nb in range(8, 20)  # 12 structures for a cache of 3
    ]
    device = torch.device("cpu")
    expected = [executors._routing(graph, device).flat.clone() for graph in cases]
    executors._ROUTINGS.clear()

    def work(thread: int, job: int) -> None:
        order = list(range(len(cases)))
        random.Random(thread * 1000 + job).shuffle(order)
        for i in order[: len(cases) // 2]:
            assert torch.equal(executors._routing(cases[i], device).flat, expected[i])

    errors = run_threads(work, jobs_per_thread=25)
    assert not errors, errors[:3]
    assert len(executors._ROUTINGS) <= CACHE_SIZE


def tiny_bigbird() -> BigBirdModel:
    torch.manual_seed(0)
    config = BigBirdConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        block_size=4,
        num_random_blocks=1,
        max_position_embeddings=256,
        attention_backend="gather",
    )
    return BigBirdModel(config).eval()


def tiny_etc() -> EtcModel:
    torch.manual_seed(0)
    config = EtcConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        local_radius=3,
        relative_pos_max_distance=2,
        relative_vocab_size=8,
        num_tokens_per_block=4,
        attention_backend="blocked",
    )
    return EtcModel(config).eval()


@pytest.mark.parametrize("make_model", [tiny_bigbird, tiny_etc], ids=["bigbird", "etc"])
def test_models_called_from_threads_match_single_threaded_outputs(tiny_caches, make_model):
    model = make_model()
    # 8 distinct lengths (more than the caches hold), each with a padded second example
    batches = []
    for i, length in enumerate(range(40, 104, 8)):
        ids = torch.randint(0, 100, (2, length), generator=torch.Generator().manual_seed(i))
        mask = torch.ones(2, length, dtype=torch.long)
        mask[1, length - 5 - i :] = 0
        batches.append({"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        expected = [model(**batch).last_hidden_state for batch in batches]

    def work(thread: int, job: int) -> None:
        i = (thread + 3 * job) % len(batches)
        with torch.no_grad():
            out = model(**batches[i]).last_hidden_state
        torch.testing.assert_close(out, expected[i], atol=1e-5, rtol=1e-5)

    errors = run_threads(work, jobs_per_thread=6)
    assert not errors, errors[:3]
    if isinstance(model, BigBirdModel):
        assert 0 < len(executors._ROUTINGS) <= CACHE_SIZE  # the gather executor did use the shrunken LRU
