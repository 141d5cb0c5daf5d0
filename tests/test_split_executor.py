"""The CPU gather executor's split of the slots: window (a strided view), global (once per group)
and gathered parts, merged by log-sum-exp (`SlotParts` in longbird_block_executors).

tests/test_attention_core.py checks it on the graphs BigBird builds; here it meets slot tables
built by hand (window gaps, far shifts, repeated blocks, no structure), batches whose rows past an
example's end gather a global column while other chunks gather nothing, low precision, and inputs
that are strided views of a fused projection.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attention_core import graph_cases, qkv, valid_queries

from longbird.modeling import longbird_block_executors as executors
from longbird.modeling.longbird_block_executors import GatherPlan, _window, dense_attention, gather_attention
from longbird.modeling.longbird_block_graph import BlockGraph, SparsePattern, build_block_graph

CPU = torch.device("cpu")


def test_window_takes_the_dense_run_of_shift_offsets():
    assert _window([(2, -1), (3, 0), (4, 1)]) == {-1: 2, 0: 3, 1: 4}
    assert _window([(0, 0), (1, 1), (2, 37)]) == {0: 0, 1: 1}  # a column that only looks shifted
    assert _window([(0, 0), (1, 0), (2, 1)]) == {0: 0, 1: 2}  # a repeated offset: gathered
    assert _window([(0, -2), (1, 0), (2, 2)]) == {-2: 0, 0: 1, 2: 2}  # gaps are hidden in the view
    assert _window([]) == {}


@st.composite
def slot_tables(draw):
    """A graph from a hand-made slot table: window columns at chosen offsets (gaps allowed), a
    constant column per group, random columns; random validity and padding; no structure."""
    bs, nb = draw(st.sampled_from([2, 4])), draw(st.integers(2, 10))
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    offsets = draw(st.lists(st.integers(-2, 2), min_size=0, max_size=3, unique=True))
    rows = torch.arange(nb).view(1, 1, nb).expand(b, h, nb)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 10**6)))
    columns, valid = [], []
    for o in offsets:
        block = rows + o
        columns.append(block.clamp(0, nb - 1))
        valid.append((block >= 0) & (block < nb))
    for _ in range(draw(st.integers(0, 2))):  # global-like: one block per (example, head)
        columns.append(torch.randint(0, nb, (b, h, 1), generator=gen).expand(b, h, nb))
        valid.append(torch.ones(b, h, nb, dtype=torch.bool))
    for _ in range(draw(st.integers(0 if columns else 1, 2))):  # random
        columns.append(torch.randint(0, nb, (b, h, nb), generator=gen))
        valid.append(torch.ones(b, h, nb, dtype=torch.bool))
    key_blocks, slot_valid = torch.stack(columns, -1), torch.stack(valid, -1)
    slot_valid &= torch.rand(slot_valid.shape, generator=gen) > draw(st.sampled_from([0.0, 0.3]))
    slot_valid[..., 0] |= ~slot_valid.any(-1)  # every row keeps a slot
    key_valid = torch.rand(b, nb * bs, generator=gen) > draw(st.sampled_from([0.0, 0.3]))
    key_valid[:, 0] = True
    global_rows = torch.full((b, 1), nb, dtype=torch.long)
    if draw(st.booleans()):
        global_rows[:, 0] = torch.randint(0, nb, (b,), generator=gen)
    return BlockGraph(bs, nb, key_blocks.contiguous(), slot_valid, global_rows, key_valid)


def fused_qkv(b, h, n, d, dtype, gen_seed=0):
    """q, k, v as `[B, H, n, d]` views of one `[B, n, 3, H, d]` projection (requires grad)."""
    fused = torch.randn(b, n, 3, h, d, generator=torch.Generator().manual_seed(gen_seed), dtype=torch.float64)
    fused = fused.to(dtype).requires_grad_()
    return fused, [fused[:, :, i].transpose(1, 2) for i in range(3)]


def sees_a_key(g: BlockGraph) -> torch.Tensor:
    """`[B, H, n, 1]` 1.0 on queries with at least one visible key (the others average garbage)."""
    bias = g.dense_bias(torch.float64)
    return (bias > torch.finfo(torch.float64).min / 2).any(-1, keepdim=True).double()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=slot_tables(), chunk_bytes=st.sampled_from([1, executors.CHUNK_BYTES]))
def test_hand_made_slot_tables_equal_dense(g, chunk_bytes):
    b, h = g.key_blocks.shape[:2]
    d, scale = 4, 0.5
    mask = sees_a_key(g)
    weight = torch.randn(b, h, g.seq_len, d, dtype=torch.float64) * mask
    results = {}
    default, executors.CHUNK_BYTES = executors.CHUNK_BYTES, chunk_bytes
    try:
        for name, fn in (("gather", gather_attention), ("dense", lambda *a: dense_attention(*a)[0])):
            fused, (q, k, v) = fused_qkv(b, h, g.seq_len, d, torch.float64)
            out = fn(q, k, v, g, scale)
            assert torch.isfinite(out).all()
            (out * weight).sum().backward()
            results[name] = (out.detach() * mask, fused.grad)
        with torch.no_grad():
            out = gather_attention(*fused_qkv(b, h, g.seq_len, d, torch.float64)[1], g, scale)
    finally:
        executors.CHUNK_BYTES = default
    torch.testing.assert_close(out * mask, results["dense"][0], atol=1e-9, rtol=1e-9)
    for a, e in zip(results["gather"], results["dense"]):
        torch.testing.assert_close(a, e, atol=1e-9, rtol=1e-9)


def padded_batch_graph(lengths, bs=4, r=0):
    """BigBird's graph of a padded batch: the shorter examples' rows past their end gather their
    last global block; the longest example's chunks gather nothing when there are no random blocks."""
    pattern = SparsePattern(block_size=bs, num_heads=2, num_random_blocks=r, random_plan="uniform")
    blocks = [-(-n // bs) for n in lengths]
    nb = max(blocks)
    key_valid = torch.arange(nb * bs)[None, :] < torch.tensor(lengths)[:, None]
    globals_ = [(0, x - 1) for x in blocks]
    return build_block_graph(pattern, 0, nb, blocks, globals_, key_valid, True), key_valid


@pytest.mark.parametrize("r", [0, 2])
def test_rows_past_an_example_end_gather_its_global_column(monkeypatch, r):
    monkeypatch.setattr(executors, "CHUNK_BYTES", 1)  # one (example, head) group per chunk
    g, key_valid = padded_batch_graph([64, 37, 50], r=r)
    chunks = GatherPlan.of(g, torch.float64, CPU, 4).cpu.parts.chunks
    assert any(c.keep is not None for c in chunks)  # the short examples gather a global column...
    if r == 0:
        assert any(c.slots is None for c in chunks)  # ...the longest gathers nothing
    mask = key_valid[:, None, :, None].double()
    case = dict(graph=g, head_dim=4, dtype=torch.float64)
    grads = {}
    for name, fn in (("gather", gather_attention), ("dense", lambda *a: dense_attention(*a)[0])):
        q, k, v = qkv(case, requires_grad=True)
        out = fn(q, k, v, g, 0.5)
        (out * mask).sum().backward()
        grads[name] = (out.detach() * mask, q.grad, k.grad, v.grad)
    for a, e in zip(grads["gather"], grads["dense"]):
        torch.testing.assert_close(a, e, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=graph_cases(max_blocks=16, block_sizes=(4, 8), dtypes=(torch.float64,)))
def test_low_precision_stays_low_and_agrees_with_float64(case, dtype):
    g = case["graph"]
    scale = case["head_dim"] ** -0.5
    mask = valid_queries(case)
    results = {}
    for precision in (torch.float64, dtype):
        q, k, v = (x.detach().to(precision).requires_grad_() for x in qkv(case))
        out = gather_attention(q, k, v, g, scale)
        assert out.dtype == precision
        (out.double() * mask).sum().backward()
        assert q.grad.dtype == k.grad.dtype == v.grad.dtype == precision
        results[precision] = [out.detach() * mask.to(precision), q.grad, k.grad, v.grad]
    for a, e in zip(results[dtype], results[torch.float64]):
        torch.testing.assert_close(a.double(), e, atol=3e-2, rtol=3e-2)
