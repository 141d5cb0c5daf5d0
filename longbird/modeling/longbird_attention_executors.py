"""Executors: interchangeable kernels that compute attention over a `BlockGraph`.

* `gather`: gathers each sparse row's key/value blocks into a dense `[.., slots * block, d]`
  tensor and runs one batched SDPA call over all rows; global rows run one SDPA call against
  every key. Memory is linear in sequence length; CPU and GPU; autograd.
* `dense`: SDPA with the graph's `[B, H, n, n]` bias: the test oracle, and the path for inputs so
  short that every pair is attended anyway. The only path that can return attention weights.
* `flex`: torch FlexAttention with a BlockMask and a multiplicity `score_mod`, compiled on GPU.

All return `[B, H, n, d]` and agree to float tolerance (tests/test_executors.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .longbird_attention_graph import BlockGraph

EXECUTORS = ("gather", "dense", "flex")


def run_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    graph: BlockGraph,
    scale: float,
    backend: str = "auto",
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of `query` over `key`/`value` (`[B, H, n, d]`) restricted to `graph`.

    Chooses the executor per call: `dense` when weights are requested or when every row of the
    graph is global (short input), else the requested backend (`auto` = `gather`).
    """
    if output_attentions:
        return dense_attention(query, key, value, graph, scale, return_weights=True)
    if backend == "auto":
        backend = "dense" if graph.global_rows.shape[1] >= graph.num_blocks else "gather"
    if backend == "gather":
        return gather_attention(query, key, value, graph, scale), None
    if backend == "dense":
        return dense_attention(query, key, value, graph, scale)
    if backend == "flex":
        return flex_attention(query, key, value, graph, scale), None
    raise ValueError(f"attention backend must be one of {EXECUTORS} or 'auto', got {backend!r}")


def _key_bias(graph: BlockGraph, dtype: torch.dtype) -> torch.Tensor | None:
    """`[B, 1, 1, n]` additive bias hiding padding keys, or None when there is none."""
    if bool(graph.key_valid.all()):
        return None
    return _bool_to_bias(graph.key_valid[:, None, None, :], dtype)


def _bool_to_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # finfo.min rather than -inf: a row with no visible key (a padding row) stays finite instead
    # of becoming NaN, which would leak into later layers through 0 * NaN.
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def gather_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, graph: BlockGraph, scale: float
) -> torch.Tensor:
    b, h, n, d = query.shape
    bs, nb = graph.block_size, graph.num_blocks
    slots = graph.key_blocks.shape[-1]

    # Sparse rows: one index_select of key/value blocks, then one SDPA over B*H*nb rows. Rows go
    # in the batch dimension with one "head": SDPA's CPU kernel works in [batch, len, heads, d],
    # which is then the same memory, so neither it nor autograd copies the gathered blocks.
    rows = b * h * nb
    offsets = torch.arange(b * h, device=query.device).view(b, h, 1, 1) * nb
    flat = (graph.key_blocks + offsets).reshape(-1)
    sorted_flat, order = flat.sort(stable=True)
    k_rows = gather_blocks(key.reshape(rows, bs, d), flat, sorted_flat, order).view(rows, 1, slots * bs, d)
    v_rows = gather_blocks(value.reshape(rows, bs, d), flat, sorted_flat, order).view(rows, 1, slots * bs, d)
    visible = graph.slot_valid.unsqueeze(-1)
    if not bool(graph.key_valid.all()):
        block_offsets = torch.arange(b, device=query.device).view(b, 1, 1, 1) * nb
        key_valid_blocks = graph.key_valid.view(b * nb, bs)
        visible = visible & key_valid_blocks[graph.key_blocks + block_offsets]
    bias = None
    if not bool(visible.all()):
        visible = visible.expand(b, h, nb, slots, bs).reshape(rows, 1, 1, slots * bs)
        bias = _bool_to_bias(visible, query.dtype)
    out = F.scaled_dot_product_attention(
        query.reshape(rows, 1, bs, d), k_rows, v_rows, attn_mask=bias, scale=scale
    ).view(b, h, nb, bs, d)

    # Global rows: every key. Padded row ids point at an extra "trash" block that is cut off.
    global_rows = graph.global_rows
    g = global_rows.shape[1]
    index = global_rows.clamp_max(nb - 1)[:, None, :, None, None].expand(b, h, g, bs, d)
    q_global = query.view(b, h, nb, bs, d).gather(2, index).reshape(b, h, g * bs, d)
    out_global = F.scaled_dot_product_attention(
        q_global, key, value, attn_mask=_key_bias(graph, query.dtype), scale=scale
    ).view(b, h, g, bs, d)
    out = torch.cat([out, out.new_zeros(b, h, 1, bs, d)], dim=2)
    out = out.scatter(2, global_rows[:, None, :, None, None].expand(b, h, g, bs, d), out_global)
    return out[:, :, :nb].reshape(b, h, n, d)


class _GatherBlocks(torch.autograd.Function):
    """`blocks.index_select(0, index)` whose backward adds gradients in sorted index order.

    autograd's own backward (index_add_ in slot order) hops between destination blocks and was
    the slowest op of a training step on CPU; sorted, the same sums run ~2x faster.
    """

    @staticmethod
    def forward(ctx, blocks, index, sorted_index, order):
        ctx.save_for_backward(sorted_index, order)
        ctx.num_blocks = blocks.shape[0]
        return blocks.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        sorted_index, order = ctx.saved_tensors
        flat_grad = grad.reshape(grad.shape[0], -1).index_select(0, order)
        blocks_grad = flat_grad.new_zeros(ctx.num_blocks, flat_grad.shape[1]).index_add_(0, sorted_index, flat_grad)
        return blocks_grad.view(ctx.num_blocks, *grad.shape[1:]), None, None, None


def gather_blocks(blocks, index, sorted_index, order) -> torch.Tensor:
    """`blocks[index]` with a fast backward; `sorted_index, order = index.sort(stable=True)`."""
    return _GatherBlocks.apply(blocks, index, sorted_index, order)


def dense_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    graph: BlockGraph,
    scale: float,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    bias = graph.dense_bias(query.dtype)
    if not return_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale), None
    weights = torch.softmax(torch.matmul(query, key.transpose(-1, -2)) * scale + bias, dim=-1)
    return torch.matmul(weights, value), weights


_compiled_flex = None


def flex_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, graph: BlockGraph, scale: float
) -> torch.Tensor:
    """FlexAttention over the graph: BlockMask from the block counts, log-multiplicity score_mod.

    Compiled on CUDA. On CPU it runs eagerly (a dense fallback, for tests only): torch has no
    FlexAttention backward on CPU.
    """
    from torch.nn.attention.flex_attention import flex_attention as _flex

    global _compiled_flex
    b, h, n, _ = query.shape
    bs = graph.block_size
    counts = graph.block_counts()
    log_counts = counts.clamp_min(1).log().to(query.dtype)
    seen = counts > 0
    key_valid = graph.key_valid

    def mask_mod(bi, hi, qi, ki):
        return seen[bi, hi, qi // bs, ki // bs] & key_valid[bi, ki]

    def score_mod(score, bi, hi, qi, ki):
        return score + log_counts[bi, hi, qi // bs, ki // bs]

    block_mask = _block_mask_from_graph(seen, bs, n, mask_mod)
    fn = _flex
    if query.is_cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(_flex, dynamic=False)
        fn = _compiled_flex
    return fn(query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scale)


def _block_mask_from_graph(seen: torch.Tensor, block_size: int, n: int, mask_mod):
    """A FlexAttention BlockMask straight from the graph's block pattern (no n x n evaluation).

    flex's GPU kernels work in tiles of 128; a tile is visited when any of its graph blocks is,
    and `mask_mod` masks exactly inside it.
    """
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask

    tile = max(128, block_size)
    if tile % block_size:
        b, h = seen.shape[:2]
        return create_block_mask(mask_mod, b, h, n, n, device=seen.device, BLOCK_SIZE=tile)
    per_tile = tile // block_size
    b, h, nb, _ = seen.shape
    tiles = -(-nb // per_tile)
    padded = seen.new_zeros(b, h, tiles * per_tile, tiles * per_tile)
    padded[:, :, :nb, :nb] = seen
    visited = padded.view(b, h, tiles, per_tile, tiles, per_tile).any(5).any(3)
    kv_num_blocks = visited.sum(-1, dtype=torch.int32)
    kv_indices = torch.argsort(~visited, dim=-1, stable=True).to(torch.int32)
    return BlockMask.from_kv_blocks(kv_num_blocks, kv_indices, BLOCK_SIZE=tile, mask_mod=mask_mod, seq_lengths=(n, n))
