"""Global-local (ETC) attention: the graph builders and the executors.

The executors (blocked, dense) are checked against a direct per-query implementation of the
reference's score function, written from the spec independently of their layouts.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longbird.modeling import longbird_global_local_executors as executors
from longbird.modeling.longbird_global_local_executors import (
    RelativeLogits,
    global_local_attention,
    global_query_attention,
)
from longbird.modeling.longbird_global_local_graph import (
    GlobalLocalGraph,
    build_global_local_graph,
    dense_relative_ids,
    example_ids_from_breakpoints,
    fixed_block_globals,
    local_relative_ids,
)


def random_graph(b, n, m, radius, vocab, gen, p=0.7):
    def mask(*shape):
        return torch.rand(*shape, generator=gen) < p

    def ids(*shape):
        return torch.randint(0, vocab, shape, generator=gen)

    return GlobalLocalGraph(
        radius=radius,
        l2l_mask=mask(b, n, 2 * radius + 1),
        g2g_mask=mask(b, m, m),
        l2g_mask=mask(b, n, m),
        g2l_mask=mask(b, m, n),
        l2l_ids=ids(b, n, 2 * radius + 1),
        g2g_ids=ids(b, m, m),
        l2g_ids=ids(b, n, m),
        g2l_ids=ids(b, m, n),
    )


def reference_long_side(q, k, v, kg, vg, graph, rel, scale):
    """Per query i: keys j = i - r .. i + r inside the sequence (window column c = j - i + r),
    then every global key; score = (q.k + q.R[id] + b[id]) * scale, -10000 where masked."""
    b, h, n, d = q.shape
    r = graph.radius
    out = torch.zeros_like(q)
    visible = torch.zeros(b, n, dtype=torch.bool)
    for bi in range(b):
        for i in range(n):
            cols = [c for c in range(2 * r + 1) if 0 <= i + c - r < n]
            keys = torch.stack([k[bi, :, i + c - r] for c in cols] + [kg[bi, :, j] for j in range(kg.shape[2])], 1)
            vals = torch.stack([v[bi, :, i + c - r] for c in cols] + [vg[bi, :, j] for j in range(vg.shape[2])], 1)
            mask = torch.tensor([bool(graph.l2l_mask[bi, i, c]) for c in cols] + graph.l2g_mask[bi, i].tolist())
            ids = torch.tensor([int(graph.l2l_ids[bi, i, c]) for c in cols] + graph.l2g_ids[bi, i].tolist())
            qi = q[bi, :, i]  # [h, d]
            score = torch.einsum("hd,hkd->hk", qi, keys)
            score = score + torch.einsum("hd,khd->hk", qi, rel.embedding[ids]) + rel.bias[ids].t()
            score = (score * scale).masked_fill(~mask, -10000.0)
            out[bi, :, i] = torch.einsum("hk,hkd->hd", score.softmax(-1), vals)
            visible[bi, i] = bool(mask.any())
    return out, visible


def tensors(b, h, n, m, d, vocab, gen, dtype=torch.float64):
    def t(*shape, s=1.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * s).requires_grad_()

    q, k, v = t(b, h, n, d), t(b, h, n, d), t(b, h, n, d)
    kg, vg, qg = t(b, h, m, d), t(b, h, m, d), t(b, h, m, d)
    rel = RelativeLogits(t(vocab, h, d, s=0.5), t(vocab, h, s=0.5))
    return q, k, v, qg, kg, vg, rel


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 6),
    radius=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_long_side_executors_equal_the_direct_definition(n, m, radius, seed):
    gen = torch.Generator().manual_seed(seed)
    b, h, d, vocab = 2, 2, 4, 7
    q, k, v, _, kg, vg, rel = tensors(b, h, n, m, d, vocab, gen)
    graph = random_graph(b, n, m, radius, vocab, gen)
    scale = d**-0.5
    expected, visible = reference_long_side(q, k, v, kg, vg, graph, rel, scale)
    for backend in ("dense", "blocked"):
        out, _ = global_local_attention(q, k, v, kg, vg, graph, scale, rel, backend=backend)
        torch.testing.assert_close(
            out[visible.unsqueeze(1).expand_as(out[..., 0])],
            expected[visible.unsqueeze(1).expand_as(out[..., 0])],
            atol=1e-10,
            rtol=1e-9,
        )


@pytest.mark.parametrize("n,radius", [(37, 4), (64, 7), (5, 9)])
def test_blocked_and_dense_gradients_agree(n, radius):
    gen = torch.Generator().manual_seed(n)
    b, h, m, d, vocab = 2, 3, 5, 8, 12
    graph = random_graph(b, n, m, radius, vocab, gen)
    # every query sees itself, so no row is fully masked (fully masked rows differ by design)
    graph.l2l_mask[..., radius] = True
    scale = d**-0.5
    grads = {}
    for backend in ("dense", "blocked"):
        gen.manual_seed(1)
        q, k, v, _, kg, vg, rel = tensors(b, h, n, m, d, vocab, gen)
        graph.cache.clear()
        out, _ = global_local_attention(q, k, v, kg, vg, graph, scale, rel, backend=backend)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads[backend] = [out.detach()] + [x.grad for x in (q, k, v, kg, vg, rel.embedding, rel.bias)]
    for dense, blocked in zip(grads["dense"], grads["blocked"]):
        torch.testing.assert_close(blocked, dense, atol=1e-10, rtol=1e-9)


def test_global_side_equals_the_direct_definition():
    gen = torch.Generator().manual_seed(0)
    b, h, n, m, d, vocab = 2, 2, 11, 4, 4, 9
    _, k, v, qg, kg, vg, rel = tensors(b, h, n, m, d, vocab, gen)
    graph = random_graph(b, n, m, 2, vocab, gen)
    graph.g2g_mask |= torch.eye(m, dtype=torch.bool)
    scale = d**-0.5
    out, weights = global_query_attention(qg, kg, vg, k, v, graph, scale, rel, return_weights=True)
    keys, values = torch.cat([kg, k], 2), torch.cat([vg, v], 2)
    mask = torch.cat([graph.g2g_mask, graph.g2l_mask], 2).unsqueeze(1)
    ids = torch.cat([graph.g2g_ids, graph.g2l_ids], 2)
    score = qg @ keys.transpose(-1, -2)
    score = score + torch.einsum("bhqd,bqkhd->bhqk", qg, rel.embedding[ids]) + rel.bias[ids].permute(0, 3, 1, 2)
    expected_weights = (score * scale).masked_fill(~mask, -10000.0).softmax(-1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ values)


def test_full_radius_without_relative_ids_is_standard_attention_over_the_concatenation():
    """The reference's special case: a window covering the whole input, every mask open and no
    relative term make both sides plain attention over [long; global]."""
    gen = torch.Generator().manual_seed(3)
    b, h, n, m, d = 2, 2, 9, 3, 8
    q, k, v, qg, kg, vg, _ = tensors(b, h, n, m, d, 1, gen)
    ones = torch.ones
    graph = GlobalLocalGraph(
        radius=n,
        l2l_mask=ones(b, n, 2 * n + 1, dtype=torch.bool),
        g2g_mask=ones(b, m, m, dtype=torch.bool),
        l2g_mask=ones(b, n, m, dtype=torch.bool),
        g2l_mask=ones(b, m, n, dtype=torch.bool),
    )
    keys, values = torch.cat([k, kg], 2), torch.cat([v, vg], 2)
    for backend in ("dense", "blocked"):
        graph.cache.clear()
        out, _ = global_local_attention(q, k, v, kg, vg, graph, d**-0.5, None, backend=backend)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, keys, values))
    out, _ = global_query_attention(qg, kg, vg, k, v, graph, d**-0.5, None)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(qg, keys, values))


def test_blocked_path_memory_is_linear_in_the_long_length():
    """No [n, n] tensor: a 65k-token input with radius 8 runs in the blocked layout."""
    gen = torch.Generator().manual_seed(0)
    b, h, n, m, d, r = 1, 1, 65_536, 4, 4, 8
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
    kg, vg = (torch.randn(b, h, m, d, generator=gen) for _ in range(2))
    graph = build_global_local_graph(
        torch.ones(b, n, dtype=torch.long),
        torch.ones(b, m, dtype=torch.long),
        torch.arange(n).unsqueeze(0) * m // n,
        r,
        3,
        True,
        False,
    )
    # `auto` must pick the blocked path here: a dense [n, n] float32 score matrix alone is 16 GiB
    out, _ = global_local_attention(q, k, v, kg, vg, graph, 0.5, None, backend="auto")
    assert out.shape == (b, h, n, d) and torch.isfinite(out).all()


@pytest.mark.parametrize("chunk_bytes", [1, 2_000, 1 << 30])
@pytest.mark.parametrize("relative", [True, False])
def test_cpu_chunks_agree_with_one_call_in_values_and_gradients(chunk_bytes, relative, monkeypatch):
    """CPU executors run in chunks of queries (of examples, blocks, heads) and recompute a chunk's
    scores in backward: the same outputs and gradients as one dense / one unchunked call."""
    gen = torch.Generator().manual_seed(5)
    b, h, n, m, d, vocab, radius = 2, 3, 50, 4, 8, 12, 4
    graph = random_graph(b, n, m, radius, vocab, gen)
    graph.l2l_mask[..., radius] = True  # no fully masked long query (dense and blocked differ there by design)
    graph.g2g_mask |= torch.eye(m, dtype=torch.bool)
    scale = d**-0.5
    results = {}
    for chunked in (False, True):
        monkeypatch.setattr(executors, "CHUNK_BYTES", chunk_bytes)
        gen.manual_seed(1)
        q, k, v, qg, kg, vg, rel = tensors(b, h, n, m, d, vocab, gen)
        rel = rel if relative else None
        graph.cache.clear()
        backend = "blocked" if chunked else "dense"
        long_out, _ = global_local_attention(q, k, v, kg, vg, graph, scale, rel, backend=backend)
        # the global side's unchunked path is the one that returns weights
        global_out, _ = global_query_attention(qg, kg, vg, k, v, graph, scale, rel, return_weights=not chunked)
        weights = torch.linspace(-1, 1, long_out.numel(), dtype=long_out.dtype).view_as(long_out)
        ((long_out * weights).sum() + (global_out * global_out).sum()).backward()
        params = (rel.embedding, rel.bias) if relative else ()
        results[chunked] = [long_out.detach(), global_out.detach()] + [x.grad for x in (q, k, v, qg, kg, vg, *params)]
    for one, chunks in zip(results[False], results[True]):
        torch.testing.assert_close(chunks, one, atol=1e-10, rtol=1e-9)


def test_cpu_chunks_replay_their_dropout_in_backward(monkeypatch):
    """With dropout, backward reruns each chunk under the dropout mask of its forward: outputs are
    linear in the values (through the same dropped probabilities), so the loss equals
    <grad of the values, values> only when backward saw forward's masks."""
    monkeypatch.setattr(executors, "CHUNK_BYTES", 2_000)
    gen = torch.Generator().manual_seed(2)
    b, h, n, m, d, vocab, radius = 2, 2, 40, 3, 4, 9, 3
    q, k, v, qg, kg, vg, rel = tensors(b, h, n, m, d, vocab, gen)
    graph = random_graph(b, n, m, radius, vocab, gen)
    torch.manual_seed(0)
    long_out, _ = global_local_attention(q, k, v, kg, vg, graph, d**-0.5, rel, "blocked", 0.5, True)
    global_out, _ = global_query_attention(qg, kg, vg, k, v, graph, d**-0.5, rel, 0.5, True)
    w_long, w_global = torch.randn_like(long_out), torch.randn_like(global_out)
    loss = (long_out * w_long).sum() + (global_out * w_global).sum()
    loss.backward()
    torch.testing.assert_close((v.grad * v).sum() + (vg.grad * vg).sum(), loss.detach())
    assert long_out.shape == (b, h, n, d) and not torch.equal(v.grad, torch.zeros_like(v))


# --------------------------------------------------------------------------------------------
# Graph builders
# --------------------------------------------------------------------------------------------


def test_relative_position_ids_follow_the_reference_labels():
    # spec example: k=3, r=5 gives 6,6,6,5,4,0,1,2,3,3,3
    assert local_relative_ids(5, 3).tolist() == [6, 6, 6, 5, 4, 0, 1, 2, 3, 3, 3]
    ids = dense_relative_ids(5, 2)
    assert ids.diagonal().eq(0).all()
    assert ids[0].tolist() == [0, 1, 2, 2, 2] and ids[4].tolist() == [4, 4, 4, 3, 0]


def test_example_ids_from_breakpoints():
    bp = torch.tensor([[0, 1, 0, 0, 1, 0, 0, 0, 1, 0]])
    assert example_ids_from_breakpoints(bp).tolist() == [[3, 3, 2, 2, 2, 1, 1, 1, 1, 0]]


def test_graph_of_two_packed_examples_keeps_them_apart():
    long_ids = example_ids_from_breakpoints(torch.tensor([[0, 0, 1, 0, 1, 0]]))  # 2,2,2,1,1,0
    global_ids = example_ids_from_breakpoints(torch.tensor([[1, 0, 1]]))  # 2,1,1
    sentence_ids = torch.tensor([[0, 0, 0, 1, 2, 0]])
    graph = build_global_local_graph(long_ids, global_ids, sentence_ids, 2, 2, hard_g2l=True, hard_l2g=False)
    # long token 2 (example A) sees token 1 and 0 on the left, nothing of example B on the right
    assert graph.l2l_mask[0, 2].tolist() == [True, True, True, False, False]
    assert graph.l2g_mask[0, 2].tolist() == [True, False, False]
    # hard g2l: global 2 reads only long token 4 (its sentence)
    assert graph.g2l_mask[0, 2].tolist() == [False, False, False, False, True, False]
    assert graph.l2g_ids[0, 3].tolist() == [5, 6, 5]  # own sentence 2k+2, others 2k+1
    torch.testing.assert_close(graph.g2l_ids, graph.l2g_ids.transpose(1, 2))


def test_fixed_block_globals():
    mask = torch.tensor([[1] * 7 + [0] * 3])
    sentence_ids, global_mask = fixed_block_globals(mask, 3)
    assert sentence_ids.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3]]
    assert global_mask.tolist() == [[1, 1, 1, 0]]
    assert math.ceil(10 / 3) == global_mask.shape[1]
