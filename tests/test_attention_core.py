"""The block-sparse attention core: graphs (plans, slot tables, dense view) and executors.

The `dense` executor (SDPA over the graph's `[B, H, n, n]` bias) is the oracle; it is itself checked
against a brute-force attention built straight from the slot table. The `gather` executor must equal
it in value and gradient, `flex` (eager on CPU) in value. The reference random plan must equal the
one transformers' BigBird draws.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longbird.modeling import longbird_block_executors as executors
from longbird.modeling.longbird_block_executors import (
    dense_attention,
    flex_attention,
    gather_attention,
    run_attention,
)
from longbird.modeling.longbird_block_graph import (
    BlockGraph,
    SparsePattern,
    build_block_graph,
    example_slots,
    reference_random_plan,
    uniform_random_plan,
)

SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


# --------------------------------------------------------------------------------------------
# Random batches of graphs
# --------------------------------------------------------------------------------------------


@st.composite
def graph_cases(draw, max_blocks=24, block_sizes=(2, 4, 8), max_batch=3, dtypes=(torch.float32, torch.float64)):
    """A random batch: lengths, paddings (also inside the sequence), pattern, extra global blocks."""
    bs = draw(st.sampled_from(block_sizes))
    pattern = SparsePattern(
        block_size=bs,
        num_heads=draw(st.integers(1, 3)),
        window_blocks=draw(st.sampled_from([1, 3, 5])),
        num_random_blocks=draw(st.integers(0, 3)),
        random_plan=draw(st.sampled_from(["reference", "uniform"])),
        max_position_embeddings=4096,
    )
    reference_layout = draw(st.booleans())
    batch = draw(st.integers(1, max_batch))
    example_blocks, example_globals, lengths = [], [], []
    for _ in range(batch):
        nb_real = draw(st.integers(1, max_blocks))
        length = draw(st.integers((nb_real - 1) * bs + 1, nb_real * bs))  # last block partly padding
        extra = draw(st.lists(st.integers(0, max_blocks - 1), max_size=2))
        globals_ = {0} | {b for b in extra if b < nb_real}
        if reference_layout:
            globals_.add(nb_real - 1)
        example_blocks.append(nb_real)
        example_globals.append(tuple(sorted(globals_)))
        lengths.append(length)
    num_blocks = max(example_blocks) + draw(st.integers(0, 2))  # batch padding blocks
    n = num_blocks * bs
    key_valid = torch.zeros(batch, n, dtype=torch.bool)
    for i, length in enumerate(lengths):
        key_valid[i, :length] = True
        holes = draw(st.lists(st.integers(1, max(1, length - 1)), max_size=3))  # attention_mask zeros inside
        for p in holes:
            if p < length:
                key_valid[i, p] = False
    seed = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(dtypes))
    head_dim = draw(st.sampled_from([4, 8]))
    graph = build_block_graph(pattern, seed, num_blocks, example_blocks, example_globals, key_valid, reference_layout)
    return dict(pattern=pattern, graph=graph, key_valid=key_valid, dtype=dtype, head_dim=head_dim, seed=seed)


def qkv(case, requires_grad=False, gen_seed=0):
    g: BlockGraph = case["graph"]
    b, h = g.key_blocks.shape[:2]
    gen = torch.Generator().manual_seed(gen_seed)
    shape = (b, g.seq_len, h, case["head_dim"])
    # [B, n, H, d] in memory, seen as [B, H, n, d]: the layout of the models' projections
    tensors = [
        torch.randn(shape, generator=gen, dtype=torch.float64).to(case["dtype"]).transpose(1, 2) for _ in range(3)
    ]
    return [t.requires_grad_(requires_grad) for t in tensors]


def valid_queries(case) -> torch.Tensor:
    """`[B, 1, n, 1]` 1.0 at real tokens (all of them lie inside their example's blocks)."""
    return case["key_valid"][:, None, :, None].to(case["dtype"])


# --------------------------------------------------------------------------------------------
# gather == dense (forward and backward), flex == dense (forward)
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(case=graph_cases(), chunk_bytes=st.sampled_from([1, executors.CHUNK_BYTES]))
def test_gather_equals_dense_forward_and_gradients(case, chunk_bytes):
    """`chunk_bytes=1`: CPU sparse rows one (example, head) group per chunk."""
    g, dtype = case["graph"], case["dtype"]
    scale = case["head_dim"] ** -0.5
    mask = valid_queries(case)
    weight = torch.randn(*g.key_blocks.shape[:2], g.seq_len, case["head_dim"], dtype=torch.float64).to(dtype)
    results = {}
    default_chunk_bytes, executors.CHUNK_BYTES = executors.CHUNK_BYTES, chunk_bytes
    try:
        for name, fn in (
            ("gather", lambda q, k, v: gather_attention(q, k, v, g, scale)),
            ("dense", lambda q, k, v: dense_attention(q, k, v, g, scale)[0]),
        ):
            q, k, v = qkv(case, requires_grad=True)
            out = fn(q, k, v)
            assert torch.isfinite(out).all(), name
            (out * weight * mask).sum().backward()
            results[name] = (out.detach() * mask, q.grad, k.grad, v.grad)
        with torch.no_grad():  # inference runs the same chunks without autograd
            torch.testing.assert_close(gather_attention(*qkv(case), g, scale) * mask, results["gather"][0])
    finally:
        executors.CHUNK_BYTES = default_chunk_bytes
    tol = TOL[dtype]
    for what, a, b in zip(("out", "dq", "dk", "dv"), results["gather"], results["dense"]):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, what=what: f"{what}: {m}")


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=graph_cases(max_blocks=16, block_sizes=(4, 8), max_batch=2, dtypes=(torch.float32,)))
def test_flex_equals_dense_forward(case):
    g = case["graph"]
    scale = case["head_dim"] ** -0.5
    mask = valid_queries(case)
    q, k, v = qkv(case)
    expected, _ = dense_attention(q, k, v, g, scale)
    with warnings.catch_warnings():  # "flex_attention called without torch.compile()": expected here
        warnings.simplefilter("ignore", UserWarning)
        got = flex_attention(q, k, v, g, scale)
    torch.testing.assert_close(got * mask, expected * mask, atol=1e-5, rtol=1e-5)


@SETTINGS
@given(case=graph_cases(max_blocks=16, dtypes=(torch.float64,)))
def test_run_attention_dispatch_matches_executors(case):
    g = case["graph"]
    scale = case["head_dim"] ** -0.5
    mask = valid_queries(case)
    q, k, v = qkv(case)
    expected, _ = dense_attention(q, k, v, g, scale)
    for backend in ("auto", "gather", "dense"):
        out, weights = run_attention(q, k, v, g, scale, backend=backend)
        assert weights is None
        torch.testing.assert_close(out * mask, expected * mask, atol=1e-9, rtol=1e-9)
    out, weights = run_attention(q, k, v, g, scale, backend="gather", output_attentions=True)
    assert weights is not None and weights.shape == (*q.shape[:3], q.shape[2])
    torch.testing.assert_close(out * mask, expected * mask, atol=1e-9, rtol=1e-9)
    with pytest.raises(ValueError, match="backend"):
        run_attention(q, k, v, g, scale, backend="nope")


# --------------------------------------------------------------------------------------------
# The dense view against a brute force built from the slot table
# --------------------------------------------------------------------------------------------


def brute_force_counts(g: BlockGraph) -> torch.Tensor:
    """`[B, H, nb, nb]` multiplicities, by looping over the slots."""
    b, h, nb, s = g.key_blocks.shape
    global_rows = [set(int(r) for r in rows if r < nb) for rows in g.global_rows]
    counts = torch.zeros(b, h, nb, nb, dtype=torch.float64)
    for i in range(b):
        for head in range(h):
            for row in range(nb):
                if row in global_rows[i]:
                    counts[i, head, row, :] = 1
                    continue
                for slot in range(s):
                    if g.slot_valid[i, head, row, slot]:
                        counts[i, head, row, int(g.key_blocks[i, head, row, slot])] += 1
    return counts


def brute_force_attention(q, k, v, g: BlockGraph, scale: float) -> torch.Tensor:
    """Attention where each query block attends to the concatenation of its slots' key blocks
    (a block in two slots is simply there twice), padding keys dropped. Global rows: all keys."""
    b, h, n, d = q.shape
    bs, nb = g.block_size, g.num_blocks
    out = torch.zeros_like(q)
    for i in range(b):
        rows_global = set(int(r) for r in g.global_rows[i] if r < nb)
        for head in range(h):
            for row in range(nb):
                if row in rows_global:
                    keys = list(range(n))
                else:
                    keys = []
                    for slot in range(g.key_blocks.shape[-1]):
                        if g.slot_valid[i, head, row, slot]:
                            blk = int(g.key_blocks[i, head, row, slot])
                            keys += list(range(blk * bs, (blk + 1) * bs))
                keys = [p for p in keys if g.key_valid[i, p]]
                if not keys:
                    continue
                idx = torch.tensor(keys)
                qs = q[i, head, row * bs : (row + 1) * bs]
                scores = qs @ k[i, head, idx].T * scale
                out[i, head, row * bs : (row + 1) * bs] = torch.softmax(scores, -1) @ v[i, head, idx]
    return out


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=graph_cases(max_blocks=14, max_batch=2, dtypes=(torch.float64,)))
def test_dense_view_matches_brute_force(case):
    g = case["graph"]
    counts = brute_force_counts(g)
    torch.testing.assert_close(g.block_counts().double(), counts, atol=0, rtol=0)

    bias = g.dense_bias(torch.float64)
    bs = g.block_size
    token_counts = counts.repeat_interleave(bs, 2).repeat_interleave(bs, 3) * g.key_valid[:, None, None, :]
    seen = token_counts > 0
    assert torch.equal(bias > torch.finfo(torch.float64).min / 2, seen)
    torch.testing.assert_close(bias[seen].exp(), token_counts[seen], atol=1e-12, rtol=1e-12)

    scale = case["head_dim"] ** -0.5
    q, k, v = qkv(case)
    mask = valid_queries(case)
    expected = brute_force_attention(q, k, v, g, scale)
    got, _ = dense_attention(q, k, v, g, scale)
    torch.testing.assert_close(got * mask, expected * mask, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(gather_attention(q, k, v, g, scale) * mask, expected * mask, atol=1e-10, rtol=1e-10)


def test_repeated_block_counts_twice():
    """Hand-made graph: query block 2 lists key block 1 in two slots (and block 3 once)."""
    bs, nb, heads, d = 4, 4, 1, 8
    key_blocks = torch.tensor([[[[0, 0, 0], [0, 0, 0], [1, 1, 3], [0, 0, 0]]]])
    slot_valid = torch.tensor(
        [[[[True, False, False], [True, False, False], [True, True, True], [True, False, False]]]]
    )
    g = BlockGraph(bs, nb, key_blocks, slot_valid, torch.tensor([[0]]), torch.ones(1, nb * bs, dtype=torch.bool))
    counts = g.block_counts()
    assert counts[0, 0, 2].tolist() == [0.0, 2.0, 0.0, 1.0]
    assert counts[0, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0]  # global row
    bias = g.dense_bias(torch.float64)[0, 0]
    assert torch.allclose(bias[2 * bs, bs : 2 * bs], torch.full((bs,), np.log(2.0), dtype=torch.float64))
    assert torch.all(bias[2 * bs, 3 * bs :] == 0)

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, nb * bs, d, generator=gen, dtype=torch.float64) for _ in range(3))
    scale = d**-0.5
    # explicit: keys of block 1 twice, keys of block 3 once
    idx = torch.tensor(list(range(bs, 2 * bs)) * 2 + list(range(3 * bs, 4 * bs)))
    rows = slice(2 * bs, 3 * bs)
    expected = torch.softmax(q[0, 0, rows] @ k[0, 0, idx].T * scale, -1) @ v[0, 0, idx]
    for out in (dense_attention(q, k, v, g, scale)[0], gather_attention(q, k, v, g, scale)):
        torch.testing.assert_close(out[0, 0, rows], expected, atol=1e-12, rtol=1e-12)
    # and not the same as counting it once
    once = torch.softmax(q[0, 0, rows] @ k[0, 0, idx[bs:]].T * scale, -1) @ v[0, 0, idx[bs:]]
    assert not torch.allclose(expected, once)


# --------------------------------------------------------------------------------------------
# Random plans
# --------------------------------------------------------------------------------------------


def _hf_attention(block_size, num_heads, r, max_position_embeddings, layer):
    from transformers import BigBirdConfig as HFBigBirdConfig
    from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

    config = HFBigBirdConfig(
        hidden_size=8 * num_heads,
        num_attention_heads=num_heads,
        block_size=block_size,
        num_random_blocks=r,
        max_position_embeddings=max_position_embeddings,
        attention_type="block_sparse",
    )
    return BigBirdBlockSparseAttention(config, seed=layer).train()


def _hf_plan(attn, seq_len: int) -> np.ndarray:
    """rand_attn exactly as `bigbird_block_sparse_attention` builds it in training."""
    bs, r, heads = attn.block_size, attn.num_random_blocks, attn.num_attention_heads
    state = np.random.get_state()
    try:
        np.random.seed(attn.seed)
        if seq_len in [1024, 3072, 4096]:
            rand_attn = [
                attn._bigbird_block_rand_mask(attn.max_seqlen, attn.max_seqlen, bs, bs, r, last_idx=1024)[
                    : (seq_len // bs - 2)
                ]
                for _ in range(heads)
            ]
        else:
            plan_from_length, plan_num_rand_blocks = attn._get_rand_attn_plan(seq_len, bs, r)
            rand_attn = attn._bigbird_block_rand_mask_with_head(
                from_seq_length=seq_len,
                to_seq_length=seq_len,
                from_block_size=bs,
                to_block_size=bs,
                num_heads=heads,
                plan_from_length=plan_from_length,
                plan_num_rand_blocks=plan_num_rand_blocks,
            )
        return np.stack(rand_attn, axis=0)
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize(
    "block_size,r,heads,max_pos,seq_len",
    [
        (8, 3, 4, 512, 96),  # 12 blocks: shortest sparse length
        (8, 3, 4, 512, 104),
        (8, 3, 4, 512, 296),
        (8, 1, 2, 512, 64),
        (8, 2, 3, 512, 200),
        (16, 3, 2, 512, 512),
        (4, 3, 4, 512, 76),  # 19 blocks: generic plan with a r-wide first part
        (8, 3, 4, 4096, 1024),  # paper plan, drawn at max_position_embeddings
        (8, 3, 4, 1024, 1024),
        (64, 3, 4, 4096, 1024),
        (64, 3, 2, 4096, 3072),
        (64, 2, 2, 4096, 4096),
    ],
)
@pytest.mark.parametrize("layer", [0, 1, 3])
def test_reference_plan_equals_transformers(block_size, r, heads, max_pos, seq_len, layer):
    attn = _hf_attention(block_size, heads, r, max_pos, layer)
    expected = _hf_plan(attn, seq_len)
    pattern = SparsePattern(
        block_size=block_size, num_heads=heads, num_random_blocks=r, max_position_embeddings=max_pos
    )
    nb = seq_len // block_size
    ours = reference_random_plan(pattern, nb, seed=layer)
    assert ours.shape == (heads, nb, r)
    np.testing.assert_array_equal(ours[:, 1 : nb - 1], expected)

    # the slot table of an ITC example puts exactly these random blocks in its last r slots
    keys, _ = example_slots(pattern, layer, nb, (0, nb - 1), True)
    np.testing.assert_array_equal(keys[:, 1 : nb - 1, -r:].numpy(), expected)


def _transformers_block_counts(rand_attn: np.ndarray, nb: int) -> np.ndarray:
    """`[H, nb, nb]` how often transformers' block-sparse attention (train mode) puts each key block
    in the softmax of each query block: rows 0 and nb-1 see everything once; row 1 sees
    (0, 1, 2, nb-1), row nb-2 sees (0, nb-3, nb-2, nb-1), middle rows see 0, the 3-block band and
    nb-1, and every row 1..nb-2 additionally sees its random blocks, duplicates included."""
    heads = rand_attn.shape[0]
    counts = np.zeros((heads, nb, nb), dtype=np.int64)
    counts[:, 0, :] = 1
    counts[:, nb - 1, :] = 1
    for row in range(1, nb - 1):
        for blk in {0, nb - 1, row - 1, row, row + 1}:
            counts[:, row, blk] += 1
        for h in range(heads):
            for blk in rand_attn[h, row - 1]:
                counts[h, row, blk] += 1
    return counts


@pytest.mark.parametrize(
    "block_size,max_pos,seq_len",
    [
        (8, 512, 296),  # generic plan
        (8, 1024, 1024),  # paper plan: random blocks may repeat window blocks (kept, counted twice)
        (64, 4096, 1024),  # paper plan drawn at 4096: random blocks may hit the last global block
        (8, 4096, 1024),
    ],
)
def test_reference_graph_multiplicities_equal_transformers(block_size, max_pos, seq_len):
    """The ITC graph of a reference-plan layer counts every key block as often as transformers does."""
    heads, r, layer = 4, 3, 1
    attn = _hf_attention(block_size, heads, r, max_pos, layer)
    expected = _transformers_block_counts(_hf_plan(attn, seq_len), seq_len // block_size)
    pattern = SparsePattern(
        block_size=block_size, num_heads=heads, num_random_blocks=r, max_position_embeddings=max_pos
    )
    nb = seq_len // block_size
    g = build_block_graph(pattern, layer, nb, [nb], [(0, nb - 1)], torch.ones(1, seq_len, dtype=torch.bool), True)
    if seq_len == 1024 and max_pos > seq_len:  # the case that matters: some random block is the last (global) block
        assert (expected[:, 1 : nb - 1, nb - 1] == 2).any()
    got = g.block_counts()[0].long().numpy()
    bad = np.argwhere(got != expected)
    assert bad.size == 0, f"{len(bad)} (head, row, key block) counts differ, first: {bad[:5].tolist()}"


def _np_state_equal(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def test_plans_do_not_touch_global_rng(tiny_kwargs):
    from longbird import BigBirdConfig, BigBirdModel

    torch.manual_seed(0)
    np.random.seed(123)
    models = [
        BigBirdModel(BigBirdConfig(**tiny_kwargs)).train(),
        BigBirdModel(BigBirdConfig(**{**tiny_kwargs, "random_plan": "uniform", "num_global_tokens": 3})).train(),
    ]
    ids = torch.randint(6, 100, (2, 203), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 150:] = 0
    example_slots.cache_clear()  # make sure plans are drawn, not read from the cache

    np_before, torch_before = np.random.get_state(), torch.get_rng_state()
    for plan in ("reference", "uniform"):
        pattern = SparsePattern(block_size=8, num_heads=4, random_plan=plan, max_position_embeddings=4096)
        for nb in (20, 128):
            reference_random_plan(pattern, nb, seed=1)
            uniform_random_plan(pattern, nb, (0, nb - 1), seed=1)
            build_block_graph(
                pattern, 2, nb, [nb, nb - 3], [(0, nb - 1), (0, nb - 4)], torch.ones(2, nb * 8, dtype=torch.bool), True
            )
    for model in models:
        out = model(ids, attention_mask=mask).last_hidden_state
        out.sum().backward()
    assert _np_state_equal(np_before, np.random.get_state())
    assert torch.equal(torch_before, torch.get_rng_state())


def test_plans_are_cached_and_deterministic():
    pattern = SparsePattern(block_size=8, num_heads=4, num_random_blocks=3)
    globals_ = (0, 31)
    a = example_slots(pattern, 0, 32, globals_, True)
    b = example_slots(pattern, 0, 32, globals_, True)
    assert a[0] is b[0] and a[1] is b[1]
    example_slots.cache_clear()
    c = example_slots(pattern, 0, 32, globals_, True)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])  # recomputed: same plan

    kv = torch.ones(1, 32 * 8, dtype=torch.bool)
    g1 = build_block_graph(pattern, 0, 32, [32], [globals_], kv, True)
    g2 = build_block_graph(pattern, 0, 32, [32], [globals_], kv, True)
    g3 = build_block_graph(pattern, 1, 32, [32], [globals_], kv, True)
    assert torch.equal(g1.key_blocks, g2.key_blocks) and torch.equal(g1.slot_valid, g2.slot_valid)
    assert not torch.equal(g1.key_blocks, g3.key_blocks)
    assert not np.array_equal(reference_random_plan(pattern, 32, 0), reference_random_plan(pattern, 32, 1))

    uniform = SparsePattern(block_size=8, num_heads=4, num_random_blocks=3, random_plan="uniform")
    u0, _ = uniform_random_plan(uniform, 32, globals_, 0)
    np.testing.assert_array_equal(u0, uniform_random_plan(uniform, 32, globals_, 0)[0])
    assert not np.array_equal(u0, uniform_random_plan(uniform, 32, globals_, 1)[0])


@pytest.mark.parametrize("num_blocks", [10, 11])
def test_reference_plan_narrow_window_short_input(num_blocks):
    """Any length the pattern admits as sparse must give a graph (here r=3, window 1: 10 and 11 blocks)."""
    pattern = SparsePattern(block_size=4, num_heads=2, window_blocks=1, num_random_blocks=3)
    globals_ = (0, num_blocks - 1)
    assert pattern.fits(num_blocks, len(globals_))
    kv = torch.ones(1, num_blocks * 4, dtype=torch.bool)
    g = build_block_graph(pattern, 0, num_blocks, [num_blocks], [globals_], kv, True)
    case = dict(graph=g, key_valid=kv, dtype=torch.float64, head_dim=4)
    q, k, v = qkv(case)
    torch.testing.assert_close(gather_attention(q, k, v, g, 0.5), dense_attention(q, k, v, g, 0.5)[0])


@SETTINGS
@given(
    nb=st.integers(1, 40),
    window=st.sampled_from([1, 3, 5]),
    r=st.integers(0, 4),
    heads=st.integers(1, 3),
    extra=st.lists(st.integers(0, 39), max_size=3),
    seed=st.integers(0, 10),
)
def test_uniform_plan_excludes_window_and_globals(nb, window, r, heads, extra, seed):
    pattern = SparsePattern(
        block_size=4, num_heads=heads, window_blocks=window, num_random_blocks=r, random_plan="uniform"
    )
    globals_ = tuple(sorted({0} | {b for b in extra if b < nb}))
    plan, valid = uniform_random_plan(pattern, nb, globals_, seed)
    assert plan.shape == valid.shape == (heads, nb, r)
    half = window // 2
    for h in range(heads):
        for row in range(nb):
            free = [b for b in range(nb) if b not in globals_ and abs(b - row) > half]
            picked = plan[h, row][valid[h, row]].tolist()
            assert valid[h, row].tolist() == [True] * len(picked) + [False] * (r - len(picked))
            assert len(picked) == min(r, len(free))
            assert len(set(picked)) == len(picked), "random blocks repeat in a row"
            assert set(picked) <= set(free), "random block in the window or global"


def test_uniform_plan_around_layout_globals_drops_prefix_hits():
    """With a prefix made global (`global_prefix_length`), the uniform plan is still the one drawn
    around the layout's own globals (a function of the length, which an exported graph looks up)
    and a random block that hit the prefix is dropped, not counted twice."""
    pattern = SparsePattern(block_size=8, num_heads=4, window_blocks=3, num_random_blocks=3, random_plan="uniform")
    own, with_prefix = (0,), (0, 1, 2, 3, 4)
    plain_keys, plain_valid = example_slots(pattern, 1, 30, own, False)
    keys, valid = example_slots(pattern, 1, 30, with_prefix, False, own)
    r = pattern.num_random_blocks
    assert torch.equal(keys[..., -r:], plain_keys[..., -r:])  # the same draws
    hits = torch.isin(keys[..., -r:], torch.tensor(with_prefix))
    assert hits.any()  # the check below is not vacuous
    assert torch.equal(valid[..., -r:], plain_valid[..., -r:] & ~hits)


def test_uniform_plan_slot_table_counts_each_block_once():
    """With the uniform plan no key block appears twice among a sparse row's valid slots."""
    pattern = SparsePattern(block_size=8, num_heads=4, window_blocks=5, num_random_blocks=3, random_plan="uniform")
    for globals_, ref in (((0, 29), True), ((0,), False), ((0, 1, 2, 29), True)):
        keys, valid = example_slots(pattern, 3, 30, globals_, ref)
        for h in range(4):
            for row in range(30):
                if row in globals_:
                    continue
                blocks = keys[h, row][valid[h, row]].tolist()
                assert len(blocks) == len(set(blocks))
                assert set(globals_) <= set(blocks)
