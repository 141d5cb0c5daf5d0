"""Executors of a global-local (ETC) graph: each query input attends two key sets under one softmax,
with relation-id logits.

* long queries (`global_local_attention`): their window of long keys (l2l) and every global key
  (l2g), run `blocked` (three-block windows plus the shared global keys, linear memory) or
  `dense` (the window unskewed to `n x n`: short inputs and the oracle);
* global queries (`global_query_attention`): every global key (g2g) and every long key (g2l).

Both are `fused_attention` over `KeyPart`s, with the reference's -10000 for blocked pairs. The
graph is `GlobalLocalGraph` (`longbird_global_local_graph.py`); `dense` and `blocked` agree to
float tolerance on every query with a visible key (tests/test_etc_attention.py).

On CPU, `blocked` long queries and global queries run in chunks of queries whose scores stay
under `CHUNK_BYTES`, and training reruns a chunk in backward instead of keeping its scores
(`_Chunked`): per-call temporaries stay small whatever the length (no fresh, page-faulting
allocations per layer; cache-sized passes), and the memory kept for backward is the inputs only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import longbird_block_executors as block_executors
from .longbird_global_local_graph import GlobalLocalGraph, PackedGlobalLocalGraph, window_in_range
from .longbird_input_checks import is_exporting

#: the reference adds -10000 (not -inf) to the scores of blocked pairs; a row with no visible key
#: (padding) stays finite, and fp16 can hold it
MASKED_SCORE = -10000.0


@dataclass
class RelativeLogits:
    """Query-side relative logits: `q . embedding[id] + bias[id]` added to `q . k` before scaling
    (Shaw et al.'s key-side term plus a per-head bias; no value-side term)."""

    embedding: torch.Tensor  # [V, H, d]
    bias: torch.Tensor  # [V, H]

    @property
    def num_ids(self) -> int:
        return self.embedding.shape[0]

    def per_id(self, scaled_query: torch.Tensor, scale: float) -> torch.Tensor:
        """`[B, H, ..., Lq, d] -> [B, H, ..., Lq, V + 1]`: the scaled logit of every id for every
        query (V is ~32, far fewer than keys, so pairs only gather), plus id V = MASKED_SCORE:
        a blocked pair is the id V, which adds the reference's -10000 in the same gather."""
        if is_exporting():  # as a bmm of known layouts (einsum's reshapes: see `_matmul`)
            heads, width = scaled_query.shape[1], scaled_query.shape[-1]
            query = _copy(scaled_query.transpose(0, 1)).view(heads, -1, width)
            logits = torch.bmm(query, _copy(self.embedding.permute(1, 2, 0)))
            logits = logits.view(heads, scaled_query.shape[0], *scaled_query.shape[2:-1], -1).transpose(0, 1)
        else:
            logits = torch.einsum("bh...d,vhd->bh...v", scaled_query, self.embedding)
        shape = (1, self.bias.shape[1]) + (1,) * (scaled_query.dim() - 3) + (self.num_ids,)
        # in the logits' dtype: under autocast the bias is a float32 parameter, and float32 here
        # would make every gathered score bias (scores-sized) float32 too
        logits = logits + (self.bias.t() * scale).reshape(shape).to(logits.dtype)
        return F.pad(logits, (0, 1), value=MASKED_SCORE)


@dataclass
class KeyPart:
    """One key set of a fused softmax.

    `key`/`value` `[B, H, ..., Lk, d]`, or `[B, H, Lk, d]` for a key set shared by every query
    block (the global keys of blocked long queries). `mask` (True = visible) broadcastable to the
    scores `[B, H, ..., Lq, Lk]`; `ids` the same shape (None = no relative term): the relation id
    of each pair, or `num_ids` where the pair is blocked (see `masked_ids`).
    """

    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor
    ids: torch.Tensor | None = None


def masked_ids(ids: torch.Tensor | None, mask: torch.Tensor, num_ids: int) -> torch.Tensor | None:
    """Relation ids with blocked pairs replaced by the extra id `num_ids` (MASKED_SCORE)."""
    return None if ids is None else torch.where(mask, ids.long(), num_ids)


def fused_attention(
    query: torch.Tensor,
    parts: list[KeyPart],
    scale: float,
    relative: RelativeLogits | None = None,
    dropout: float = 0.0,
    training: bool = False,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax over the concatenated key sets of `parts`, then the weighted sum of their values;
    the weights `[..., Lq, sum Lk]` too when asked.

    Scores: `(q . k + q . R[id] + b[id]) * scale`, and -10000 for blocked pairs (the reference's
    constant, added like the reference does). The scale is folded into q; the relative logits and
    the mask arrive in one gather that baddbmm adds to `q . k` (one pass over the scores)."""
    query = query * scale
    per_id = relative.per_id(query, scale) if relative is not None else None
    scores = [_part_scores(query, part, per_id) for part in parts]
    probs = torch.softmax(torch.cat(scores, dim=-1), dim=-1) if len(scores) > 1 else torch.softmax(scores[0], dim=-1)
    probs = F.dropout(probs, p=dropout, training=training)
    out = None
    for part, p in zip(parts, probs.split([s.shape[-1] for s in scores], dim=-1)):
        term = _matmul(p, part.value)
        out = term if out is None else out + term
    return out, probs if return_weights else None


def _copy(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy, made whatever the layout. Under `torch.export` only: whether a reshape of
    `x` may be a view depends on its sizes being 1 (a length of 1), so the shape solver would fix
    the length; reshaping a fresh contiguous copy never asks."""
    return x.clone(memory_format=torch.contiguous_format)


def _matmul(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`bias + x @ y` over leading dims, as one (b)addbmm. A `y` with fewer dims (a key set shared
    by every query block) multiplies x's blocks flattened into one sequence, so y is never copied
    per block; `bias` is then laid out over the flat sequence."""
    shape = (*x.shape[:-1], y.shape[-1])
    if is_exporting():
        x, y = _copy(x), _copy(y)
    if y.dim() < x.dim():
        x = x.flatten(2, -2)
    x3 = x.reshape(-1, *x.shape[-2:])
    y3 = y.reshape(-1, *y.shape[-2:])
    if bias is None:
        out = torch.bmm(x3, y3)
    else:
        out = torch.baddbmm(bias.reshape(x3.shape[0], x3.shape[1], y3.shape[2]), x3, y3)
    return out.view(shape)


def _part_scores(query: torch.Tensor, part: KeyPart, per_id: torch.Tensor | None) -> torch.Tensor:
    key_t = part.key.transpose(-1, -2)
    shared = part.key.dim() < query.dim()  # ids/mask are laid out over the flat queries
    if per_id is None or part.ids is None:
        flat = _matmul(query.flatten(2, -2) if shared else query, key_t).masked_fill(~part.mask, MASKED_SCORE)
        return flat.view(*query.shape[:-1], -1)
    if shared:
        per_id = per_id.flatten(2, -2)
    bias = torch.gather(per_id, -1, part.ids.expand(*per_id.shape[:-1], part.key.shape[-2]))
    return _matmul(query, key_t, bias)


def global_local_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    global_key: torch.Tensor,
    global_value: torch.Tensor,
    graph: GlobalLocalGraph,
    scale: float,
    relative: RelativeLogits | None = None,
    backend: str = "auto",
    dropout: float = 0.0,
    training: bool = False,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Long queries (`[B, H, n, d]`) over their window of long keys (l2l) and every global key
    (l2g, `global_key`/`global_value` `[B, H, m, d]`), one softmax.

    `blocked` (the reference's sparse path): queries in blocks of `L = r + 1`, each against the
    previous, own and next key block (`3L` keys, a superset of its window) plus the global keys;
    memory `O(n (3L + m))`. `dense`: the window unskewed to `n x n`, for short inputs and as the
    oracle. `auto`: dense when the input fits in three blocks (blocking would save nothing).
    Weights (`[B, H, n, n + m]`) come from the dense path only.
    """
    n, radius = query.shape[2], graph.radius
    if return_weights:
        backend = "dense"
    elif is_exporting():
        # an exported graph serves every length: dense would hold `n x n` scores, and choosing by
        # length would fix the length at export time (the two agree to float tolerance)
        backend = "blocked"
    if backend == "auto":
        backend = "dense" if n <= 3 * (radius + 1) else "blocked"
    if backend not in ("dense", "blocked"):
        raise ValueError(f"global-local attention backend must be 'auto', 'blocked' or 'dense', got {backend!r}")
    num_ids = relative.num_ids if relative is not None else 0
    local_mask, local_ids, global_mask, global_ids = _long_query_layout(graph, backend, n, num_ids)
    if backend == "dense":
        parts = [KeyPart(key, value, local_mask, local_ids), KeyPart(global_key, global_value, global_mask, global_ids)]
        return fused_attention(query, parts, scale, relative, dropout, training, return_weights)

    block = radius + 1
    nb = _num_blocks(graph, n, block)
    relative_inputs = () if relative is None else (relative.embedding, relative.bias)

    def run(chunk, q, k, v, gk, gv, *rel):  # the query blocks `chunk` (an example range, a block range)
        rows, (start, stop) = chunk
        if stop is None:  # every block in one call, by index (`_block_rows`: sizes may be symbolic)
            q, k, v = (
                _block_rows(q, nb, block),
                _block_rows(k, nb, block, -block, 3),
                _block_rows(v, nb, block, -block, 3),
            )
            local = KeyPart(k, v, local_mask, local_ids)
            global_ = KeyPart(gk, gv, global_mask, global_ids)
        else:
            c = stop - start
            q = _pad_rows(q, 0, c * block - q.shape[2]).unflatten(2, (c, block))
            # the keys of blocks start - 1 .. stop (zeros outside the sequence), as three-block spans
            before, after = block if start == 0 else 0, (stop + 1) * block - min(n, (stop + 1) * block)

            def three_blocks(x):  # [B, H, (c + 2) L, d] -> [B, H, c, 3L, d]: previous, own and next block
                x = _pad_rows(x, before, after).unflatten(2, (c + 2, block))
                return torch.cat([x[:, :, :-2], x[:, :, 1:-1], x[:, :, 2:]], dim=3)

            def cut(x, flat):  # a layout piece of these queries (over the flat queries when `flat`)
                return (
                    None if x is None else x[rows, :, start * block : stop * block] if flat else x[rows, :, start:stop]
                )

            local = KeyPart(three_blocks(k), three_blocks(v), cut(local_mask, False), cut(local_ids, False))
            global_ = KeyPart(gk, gv, cut(global_mask, True), cut(global_ids, True))
        rel = RelativeLogits(*rel) if rel else None
        out, _ = fused_attention(q, [local, global_], scale, rel, dropout, training)
        if stop is None:
            return _unblock_rows(out, n)
        return out.flatten(2, 3)[:, :, : min(n, stop * block) - start * block]

    inputs = (query, key, value, global_key, global_value, *relative_inputs)
    if _one_call(query):
        return run((slice(None), (0, None)), *inputs), None
    elem = query.element_size()
    b, h, m = query.shape[0], query.shape[1], global_key.shape[2]
    chunks = []
    for rows, blocks in _chunks((b, nb), h * block * (3 * block + m) * elem):
        start, stop, _ = blocks.indices(nb)
        queries = (rows, slice(None), slice(start * block, min(n, stop * block)))
        keys = (rows, slice(None), slice(max(0, (start - 1) * block), min(n, (stop + 1) * block)))
        pieces = (queries, keys, keys, (rows,), (rows,), *[()] * len(relative_inputs))
        chunks.append(((rows, (start, stop)), pieces, queries))
    return _chunked(run, chunks, query.shape, dropout if training else 0.0, *inputs), None


def _one_call(query: torch.Tensor) -> bool:
    """Whether an executor runs every query in one call rather than in CPU chunks: on an
    accelerator (small kernels would cost more than they save), and under `torch.export` (the
    chunk plan is a host-side loop over the sizes, which are symbolic there)."""
    return query.device.type != "cpu" or is_exporting()


def _pad_rows(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero rows around `x` (`[B, H, n, d]`); `x` itself (no copy) when there are none (most chunks)."""
    return F.pad(x, (0, 0, before, after)) if before or after else x


def _num_blocks(graph: GlobalLocalGraph, n: int, block: int) -> int:
    """`ceil(n / L)` query blocks. Under `torch.export` a size symbol of its own (shared by every
    layer through the graph's cache): views into `[nb, L]` need divisibility facts about
    `ceil(n / L)` that the shape solver cannot derive from `n`, and would fix the length instead.
    (`(n + L - 1) // L`, not `-(-n // L)`: ONNX's integer division truncates negative values.)"""
    nb = (n + block - 1) // block
    if not is_exporting():
        return nb
    memo = ("num_blocks", block)
    if memo not in graph.cache:
        nb = torch.scalar_tensor(nb, dtype=torch.long).item()
        torch._check(nb >= 1)
        graph.cache[memo] = nb
    return graph.cache[memo]


def _block_rows(x: torch.Tensor, nb: int, block: int, first: int = 0, blocks: int = 1) -> torch.Tensor:
    """`[..., n, d] -> [..., nb, blocks * L, d]`: for query block i, the rows from `i L + first`
    (`blocks * L` of them), zeros outside the sequence. By index rather than by padding and a view:
    no size of it depends on how `n` divides by `L` (see `_num_blocks`)."""
    n = x.shape[-2]
    starts = torch.arange(nb, device=x.device)[:, None] * block
    index = starts + torch.arange(first, first + blocks * block, device=x.device)
    rows = x.index_select(x.dim() - 2, index.flatten().clamp(0, n - 1)).unflatten(-2, index.shape)
    inside = ((index >= 0) & (index < n))[:, :, None]
    # a mask by `&`: ONNX Runtime has no Where (masked_fill) kernel for bool values
    return rows & inside if rows.dtype == torch.bool else rows.masked_fill(~inside, 0)


def _unblock_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """`[B, H, nb, L, d] -> [B, H, n, d]`: the first `n` rows of the blocks (by index, see `_block_rows`)."""
    return x.flatten(2, 3).index_select(2, torch.arange(n, device=x.device))


def _long_query_layout(graph: GlobalLocalGraph, backend: str, n: int, num_ids: int):
    """The l2l/l2g masks and ids in the executor's layout, with a head axis; cached per graph.

    Blocked: l2l `[B, 1, nb, L, 3L]` (each query block's three key blocks) and l2g
    `[B, 1, nb * L, m]` (over the flat, block-padded queries)."""
    memo = ("long", backend, num_ids)
    layout = graph.cache.get(memo)
    if layout is not None:
        return layout
    radius = graph.radius
    # window columns outside the sequence never count, whatever a caller's mask says
    local_mask = graph.l2l_mask & window_in_range(n, radius, graph.l2l_mask.device)
    local_ids, global_mask, global_ids = graph.l2l_ids, graph.l2g_mask, graph.l2g_ids
    if backend == "dense":
        index, valid = _unskew_index(n, radius, local_mask.device)
        local_mask = _take_window(local_mask, index) & valid
        local_ids = None if local_ids is None else _take_window(local_ids, index)
    else:
        block = radius + 1
        nb = _num_blocks(graph, n, block)
        index, valid = _skew_index(block, radius, local_mask.device)

        def to_blocks(x):  # [B, n, w] -> [B, nb, L, w]
            return _block_rows(x, nb, block)

        local_mask = _take_window(to_blocks(local_mask), index) & valid
        local_ids = None if local_ids is None else _take_window(to_blocks(local_ids), index)
        global_mask = to_blocks(global_mask).flatten(1, 2)
        global_ids = None if global_ids is None else to_blocks(global_ids).flatten(1, 2)
    local_ids = masked_ids(local_ids, local_mask, num_ids) if num_ids else None
    global_ids = masked_ids(global_ids, global_mask, num_ids) if num_ids else None
    layout = tuple(None if t is None else t.unsqueeze(1) for t in (local_mask, local_ids, global_mask, global_ids))
    return graph.cache.setdefault(memo, layout)


def _take_window(window: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`window[..., q, index[q, s]]`: window-layout columns to another layout."""
    return torch.gather(window, -1, index.expand(*window.shape[:-1], index.shape[-1]))


def _unskew_index(n: int, radius: int, device):
    """Dense layout: key j of query i is window column `j - i + r`."""
    column = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None] + radius
    valid = (column >= 0) & (column <= 2 * radius)
    return column.clamp(0, 2 * radius), valid


def _skew_index(block: int, radius: int, device):
    """Blocked layout: slot s of the 3-block span of query t (within its block) is window column
    `s - t - 1` (slot `L + t` is the query itself, column r)."""
    column = torch.arange(3 * block, device=device)[None, :] - torch.arange(block, device=device)[:, None] - 1
    valid = (column >= 0) & (column <= 2 * radius)
    return column.clamp(0, 2 * radius), valid


def global_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    long_key: torch.Tensor,
    long_value: torch.Tensor,
    graph: GlobalLocalGraph,
    scale: float,
    relative: RelativeLogits | None = None,
    dropout: float = 0.0,
    training: bool = False,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Global queries (`[B, H, m, d]`) over every global key (g2g) and every long key (g2l), one
    softmax; `O(m (m + n))` memory, linear in the long length."""
    num_ids = relative.num_ids if relative is not None else 0
    memo = ("global", num_ids)
    pieces = graph.cache.get(memo)
    if pieces is None:
        pieces = graph.cache.setdefault(
            memo,
            [
                (
                    mask.unsqueeze(1),
                    masked_ids(ids, mask, num_ids).unsqueeze(1) if num_ids and ids is not None else None,
                )
                for mask, ids in ((graph.g2g_mask, graph.g2g_ids), (graph.g2l_mask, graph.g2l_ids))
            ],
        )
    (g2g_mask, g2g_ids), (g2l_mask, g2l_ids) = pieces
    if return_weights or _one_call(query):
        parts = [KeyPart(key, value, g2g_mask, g2g_ids), KeyPart(long_key, long_value, g2l_mask, g2l_ids)]
        return fused_attention(query, parts, scale, relative, dropout, training, return_weights)
    relative_inputs = () if relative is None else (relative.embedding, relative.bias)

    def run(chunk, q, k, v, lk, lv, *rel):  # the global queries `chunk` (examples, heads, queries)
        rows, heads, queries = chunk

        def cut(x):
            return None if x is None else x[rows, :, queries]

        parts = [KeyPart(k, v, cut(g2g_mask), cut(g2g_ids)), KeyPart(lk, lv, cut(g2l_mask), cut(g2l_ids))]
        rel = RelativeLogits(*rel) if rel else None
        return fused_attention(q, parts, scale, rel, dropout, training)[0]

    (b, h, m), n = query.shape[:3], long_key.shape[2]
    chunks = []
    # chunked by examples, then heads, then queries: a chunk's scores stay small, and so do its
    # gradients of the long keys (one head's each)
    for rows, heads, queries in _chunks((b, h, m), (m + n) * query.element_size()):
        keys = (rows, heads)
        pieces = ((rows, heads, queries), keys, keys, keys, keys, *[(slice(None), heads)] * len(relative_inputs))
        chunks.append(((rows, heads, queries), pieces, (rows, heads, queries)))
    inputs = (query, key, value, long_key, long_value, *relative_inputs)
    return _chunked(run, chunks, query.shape, dropout if training else 0.0, *inputs), None


def etc_attention(
    heads: Callable[[str], torch.Tensor],
    graph: GlobalLocalGraph | PackedGlobalLocalGraph,
    scale: float,
    long_relative: RelativeLogits,
    global_relative: RelativeLogits,
    backend: str,
    dropout: float,
    training: bool,
    return_weights: bool,
):
    """Both query sides of an ETC layer: `heads(role)` gives a projection `[B, H, n, d]` by role
    (`long_query`, `l2l_key`, ...). A packed batch (`[1, H, T, d]`, `PackedGlobalLocalGraph`) runs
    each group of equal-length examples as one batched call on views of the packed rows.
    Returns `(long_out, global_out, long_weights, global_weights)`."""
    long_roles = ("long_query", "l2l_key", "l2l_value", "l2g_key", "l2g_value")
    global_roles = ("global_query", "g2g_key", "g2g_value", "g2l_key", "g2l_value")
    extra = (dropout, training, return_weights)
    if not isinstance(graph, PackedGlobalLocalGraph):
        long_out, long_w = global_local_attention(*map(heads, long_roles), graph, scale, long_relative, backend, *extra)
        global_out, global_w = global_query_attention(*map(heads, global_roles), graph, scale, global_relative, *extra)
        return long_out, global_out, long_w, global_w

    def groups(role: str, side: int):  # [1, H, T, d] -> per group [count, H, length, d], views
        # one split per projection (its backward is one concatenation, not a full-size zero
        # gradient per group as slicing would give)
        sized = [part[side] for part in graph.parts]
        pieces = heads(role).squeeze(0).split([g.count * g.length for g in sized], dim=1)
        return [x.unflatten(1, (g.count, g.length)).transpose(0, 1) for x, g in zip(pieces, sized)]

    def unrows(x):  # [count, H, length, d] -> [H, count * length, d]
        return x.transpose(0, 1).flatten(1, 2)

    long_sides, global_sides = (0, 0, 0, 1, 1), (1, 1, 1, 0, 0)
    long_split = [groups(role, side) for role, side in zip(long_roles, long_sides)]
    global_split = [groups(role, side) for role, side in zip(global_roles, global_sides)]
    long_outs, global_outs = [], []
    for i, (_, _, part) in enumerate(graph.parts):
        long_inputs = [split[i] for split in long_split]
        global_inputs = [split[i] for split in global_split]
        long_out, _ = global_local_attention(*long_inputs, part, scale, long_relative, backend, *extra)
        global_out, _ = global_query_attention(*global_inputs, part, scale, global_relative, *extra)
        long_outs.append(unrows(long_out))
        global_outs.append(unrows(global_out))
    return torch.cat(long_outs, 1)[None], torch.cat(global_outs, 1)[None], None, None


# --------------------------------------------------------------------------------------------
# CPU chunking
# --------------------------------------------------------------------------------------------

#: CPU executors run in chunks of queries whose scores stay under the BigBird gather executor's
#: `CHUNK_BYTES` (one budget for both, its reasons there): every chunk's temporaries then reuse the
#: same heap memory and stay in cache through the gather, softmax and value product. Training
#: recomputes a chunk's scores in backward instead of keeping every query's scores, probabilities
#: and relative logits until then. (Module-level, so tests can patch it here.)
CHUNK_BYTES = block_executors.CHUNK_BYTES


def _chunks(sizes: tuple[int, ...], unit_bytes: int) -> list[tuple[slice, ...]]:
    """Index ranges (a slice per dim of `sizes`) covering `sizes`, each `<= CHUNK_BYTES` where
    possible, an index of the innermost dim costing `unit_bytes`: a chunk ranges over the outermost
    dim one index of which fits (with every inner dim whole, one index of each outer dim)."""
    level = 0
    while level < len(sizes) - 1 and unit_bytes * math.prod(sizes[level + 1 :]) > CHUNK_BYTES:
        level += 1
    step = max(1, CHUNK_BYTES // (unit_bytes * math.prod(sizes[level + 1 :])))
    outer = [()]
    for size in sizes[:level]:
        outer = [(*o, slice(i, i + 1)) for o in outer for i in range(size)]
    inner = (slice(None),) * (len(sizes) - level - 1)
    return [(*o, slice(s, min(s + step, sizes[level])), *inner) for o in outer for s in range(0, sizes[level], step)]


def _chunked(run, chunks, out_shape, dropout: float, *inputs: torch.Tensor) -> torch.Tensor:
    """`out[o] = run(chunk, *(x[i] for x, i in zip(inputs, pieces)))` for each `(chunk, pieces, o)`
    of `chunks`, differentiable in `inputs`; backward reruns each chunk (autograd of one chunk at a
    time: its scores are never kept)."""
    return _Chunked.apply(run, chunks, out_shape, dropout, *inputs)


class _Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, chunks, out_shape, dropout, *inputs):
        out = inputs[0].new_empty(out_shape)
        states = []
        for chunk, pieces, o in chunks:
            if dropout:  # backward replays each chunk's dropout mask
                states.append(torch.get_rng_state())
            out[o] = run(chunk, *(x[i] for x, i in zip(inputs, pieces)))
        ctx.run, ctx.chunks, ctx.states = run, chunks, states
        device = inputs[0].device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(*inputs)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[4:]
        grads = [torch.zeros_like(x) if need else None for x, need in zip(inputs, needs)]
        device, enabled, dtype = ctx.autocast
        for k, (chunk, pieces, o) in enumerate(ctx.chunks):
            leaves = [x[i].detach().requires_grad_(need) for x, i, need in zip(inputs, pieces, needs)]
            with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
                with torch.random.fork_rng(devices=[], enabled=bool(ctx.states)):
                    if ctx.states:
                        torch.set_rng_state(ctx.states[k])
                    out = ctx.run(chunk, *leaves)
            wanted = [(g, x) for g, x in zip(grads, leaves) if g is not None]
            found = torch.autograd.grad(out, [x for _, x in wanted], grad_out[o], allow_unused=True)
            for (grad, _), g, i in zip(wanted, found, (i for i, need in zip(pieces, needs) if need)):
                if g is not None:
                    grad[i].add_(g)
        return None, None, None, None, *grads
