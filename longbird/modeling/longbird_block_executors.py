"""Executors: interchangeable kernels that compute attention over a `BlockGraph`.

* `gather`: gathers each sparse row's key/value blocks into a dense `[.., slots * block, d]`
  tensor and runs one batched SDPA call over all rows; global rows run one SDPA call against
  every key. Memory is linear in sequence length; CPU and GPU; autograd (gradients of the
  gathered slots flow back by column structure, `SlotRouting`). On CPU the sparse rows run in
  chunks of whole (example, head) groups (`RowChunk`) whose gathered blocks stay small, and
  training re-gathers in backward instead of keeping the gathered rows (`_SparseRowsCPU`).
* `dense`: SDPA with the graph's `[B, H, n, n]` bias: the test oracle, and the path for inputs so
  short that every pair is attended anyway. The only path that can return attention weights.
* `flex`: torch FlexAttention with a BlockMask and a multiplicity `score_mod`, compiled on GPU.

All return `[B, H, n, d]` and agree to float tolerance (tests/test_attention_core.py).

Global-local graphs (ETC) have their own executors: `longbird_global_local_executors.py`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .longbird_block_graph import BlockGraph
from .longbird_packing import PackedGraph

EXECUTORS = ("gather", "dense", "flex")

# CPU sparse rows run in chunks whose gathered keys (and values) stay under this size: glibc then
# recycles the same heap memory, where one gather of every row (~100 MiB per layer at 4k tokens)
# is a fresh mmap of zeroed pages on every call (page faults: 73 vs 9 ms per layer in
# ../shared/specs/cpu-profile.md), and the backward's gradient buffers shrink alike.
CHUNK_BYTES = 8 << 20


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

    Chooses the executor per call: `dense` when weights are requested or when the graph is full
    attention anyway (`graph.full`: every example too short for a sparse plan), else the
    requested backend (`auto` = `gather`).
    """
    if output_attentions:
        return dense_attention(query, key, value, graph, scale, return_weights=True)
    if backend == "auto":
        backend = "dense" if graph.full else "gather"
    if backend == "gather":
        return gather_attention(query, key, value, graph, scale), None
    if backend == "dense":
        return dense_attention(query, key, value, graph, scale)
    if backend == "flex":
        if not query.is_cuda and torch.is_grad_enabled() and query.requires_grad:
            # torch has no FlexAttention backward on CPU: train with the gather executor there.
            return gather_attention(query, key, value, graph, scale), None
        return flex_attention(query, key, value, graph, scale), None
    raise ValueError(f"attention backend must be one of {EXECUTORS} or 'auto', got {backend!r}")


def run_packed_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    packed: PackedGraph,
    scale: float,
    backend: str = "auto",
    dropout: float = 0.0,
) -> torch.Tensor:
    """Attention over a packed row (`[T, H, d]` each, see `longbird_packing`): per group of equal-shaped
    examples, one batched call on a view of the row, on the group's graph (a `BlockGraph`) or, for
    full attention, its key mask (`dropout` applies there only, as in the padded path).
    Returns `[T, H * d]`."""
    heads, dim = query.shape[1:]
    # one split per input (its backward is one concatenation; a slice per group would write a
    # zero-filled full-size gradient per group)
    sizes = [group.count * group.length for group, _ in packed.parts]
    outs = []
    for (group, graph), q, k, v in zip(packed.parts, *(x.split(sizes) for x in (query, key, value))):
        # [count * length, H, d] -> [count, H, length, d], a view
        q, k, v = (x.view(group.count, group.length, heads, dim).transpose(1, 2) for x in (q, k, v))
        if isinstance(graph, BlockGraph):
            out, _ = run_attention(q, k, v, graph, scale, backend)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=graph[:, None, None, :], dropout_p=dropout, scale=scale
            )
        outs.append(out.transpose(1, 2).reshape(group.count * group.length, heads * dim))
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def _bool_to_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # finfo.min rather than -inf: a row with no visible key (a padding row) stays finite instead
    # of becoming NaN, which would leak into later layers through 0 * NaN.
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


@dataclass
class GatherPlan:
    """What the gather executor derives from a graph, computed once on the host and cached."""

    routing: SlotRouting | None  # GPU: slot -> key block index and its gradient routing
    chunks: list[RowChunk]  # CPU: the sparse rows in (example, head)-aligned chunks, each with its routing
    sparse_bias: torch.Tensor | None  # [B*H*nb, 1, 1, S*bs] hides unused slots and padding keys
    key_bias: torch.Tensor | None  # [B, 1, 1, n] hides padding keys from global rows
    global_source: torch.Tensor | None  # which of the [B*H*G] global-row results are real rows
    global_target: torch.Tensor  # where they go among the B*H*nb output rows

    @staticmethod
    def of(graph: BlockGraph, dtype: torch.dtype, device: torch.device, head_dim: int) -> GatherPlan:
        memo = (dtype, device, head_dim)
        plan = graph.cache.get(memo)  # one lookup: safe if another thread fills the memo meanwhile
        if plan is None:
            host = graph.on_host()
            b, h, nb, s = host.key_blocks.shape
            bs = host.block_size
            routing, chunks = None, []
            if device.type == "cpu":
                group_bytes = nb * s * bs * head_dim * torch.empty((), dtype=dtype).element_size()
                chunks = _row_chunks(host, device, max(1, CHUNK_BYTES // group_bytes))
            else:
                routing = _routing(host, device)
            visible = host.slot_valid.unsqueeze(-1)
            keys_all_valid = bool(host.key_valid.all())
            if not keys_all_valid:
                key_valid_blocks = host.key_valid.view(b * nb, bs)
                visible = visible & key_valid_blocks[host.key_blocks + torch.arange(b).view(b, 1, 1, 1) * nb]
            sparse_bias = None
            if not bool(visible.all()):
                visible = visible.expand(b, h, nb, s, bs).reshape(b * h * nb, 1, 1, s * bs)
                sparse_bias = _bool_to_bias(visible, dtype).to(device)
            key_bias = None if keys_all_valid else _bool_to_bias(host.key_valid[:, None, None, :], dtype).to(device)
            # global rows padded with the id nb are dropped; the rest replace their sparse rows
            rows = host.global_rows
            real = (rows < nb).unsqueeze(1).expand(b, h, rows.shape[1]).reshape(-1)
            target = (rows.unsqueeze(1) + torch.arange(b * h).view(b, h, 1) * nb).reshape(-1)[real]
            source = None if bool(real.all()) else real.nonzero().squeeze(1).to(device)
            plan = GatherPlan(routing, chunks, sparse_bias, key_bias, source, target.to(device))
            plan = graph.cache.setdefault(memo, plan)  # atomic: every caller gets the same plan
        return plan


# Caches shared by every call (and so by every thread): `_ROUTINGS` below is guarded by a lock;
# the graph-building caches (longbird_block_graph) are functools.lru_cache, which is
# thread-safe; `graph.cache` memos belong to one batch's graph and are filled with
# dict.get/setdefault only (never evicted). tests/test_thread_safety.py runs models from several
# threads against a tiny LRU and compares with single-threaded outputs.

_ROUTINGS: OrderedDict = OrderedDict()  # (graph structure, device[, chunking]) -> routing(s); a small LRU
_ROUTINGS_SIZE = 256
_ROUTINGS_LOCK = threading.Lock()


def _routing(host: BlockGraph, device: torch.device) -> SlotRouting:
    """The slot routing of a graph (rows in (example, head, block) order, slots pointing at blocks
    of the same (example, head))."""

    def build() -> SlotRouting:
        b, h, nb, s = host.key_blocks.shape
        flat = host.key_blocks + torch.arange(b * h).view(b, h, 1, 1) * nb
        return SlotRouting.from_slots(flat.view(-1, s), host.slot_valid.view(-1, s), nb).to(device)

    return _cached((host.structure, device), host.structure is not None, build)


@dataclass
class RowChunk:
    """Sparse rows `start:stop` (whole (example, head) groups, so their slots only point at key
    blocks `start:stop`) and the routing of that chunk in local block numbers."""

    start: int
    stop: int
    routing: SlotRouting


def _row_chunks(host: BlockGraph, device: torch.device, groups: int) -> list[RowChunk]:
    """The sparse rows cut into chunks of `groups` (example, head) groups."""

    def build() -> list[RowChunk]:
        b, h, nb, s = host.key_blocks.shape
        slots, valid = host.key_blocks.reshape(b * h, nb, s), host.slot_valid.reshape(b * h, nb, s)
        chunks = []
        for first in range(0, b * h, groups):
            last = min(b * h, first + groups)
            local = slots[first:last] + torch.arange(last - first).view(-1, 1, 1) * nb
            routing = SlotRouting.from_slots(local.view(-1, s), valid[first:last].reshape(-1, s), nb)
            chunks.append(RowChunk(first * nb, last * nb, routing.to(device)))
        return chunks

    return _cached((host.structure, device, groups), host.structure is not None, build)


def _cached(memo, cacheable: bool, build):
    """`build()`, kept in the `_ROUTINGS` LRU under `memo` (routings depend only on a graph's
    structure, so batches of one shape share them).

    Lookup (with its move to the LRU end) and insert (with its eviction) each hold the lock, so
    a thread never sees an entry vanish between them; the value itself is built outside it
    (two threads may build the same one; the first stored wins)."""
    if not cacheable:
        return build()
    with _ROUTINGS_LOCK:
        value = _ROUTINGS.get(memo)
        if value is not None:
            _ROUTINGS.move_to_end(memo)
            return value
    value = build()
    with _ROUTINGS_LOCK:
        value = _ROUTINGS.setdefault(memo, value)
        _ROUTINGS.move_to_end(memo)
        while len(_ROUTINGS) > _ROUTINGS_SIZE:
            _ROUTINGS.popitem(last=False)
    return value


def gather_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, graph: BlockGraph, scale: float
) -> torch.Tensor:
    b, h, n, d = query.shape
    bs, nb = graph.block_size, graph.num_blocks
    slots = graph.key_blocks.shape[-1]
    plan = GatherPlan.of(graph, query.dtype, query.device, d)

    # Sparse rows: index_select of key/value blocks, then SDPA over B*H*nb rows (on CPU chunk by
    # chunk, `_sparse_rows_cpu`). Rows go in the batch dimension with one "head": SDPA's CPU kernel
    # works in [batch, len, heads, d], which is then the same memory, so nothing copies the gathers.
    rows = b * h * nb
    q_rows, k_blocks, v_blocks = query.reshape(rows, 1, bs, d), key.reshape(rows, bs, d), value.reshape(rows, bs, d)
    if query.device.type == "cpu":
        if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
            out = _SparseRowsCPU.apply(q_rows, k_blocks, v_blocks, plan, scale)
        else:
            out = _sparse_rows_cpu(q_rows, k_blocks, v_blocks, plan, scale)[0]
    else:
        k_rows = gather_blocks(k_blocks, plan.routing).view(rows, 1, slots * bs, d)
        v_rows = gather_blocks(v_blocks, plan.routing).view(rows, 1, slots * bs, d)
        out = F.scaled_dot_product_attention(q_rows, k_rows, v_rows, attn_mask=plan.sparse_bias, scale=scale)
    out = out.reshape(rows, bs * d)

    # Global rows: every key; their results replace the sparse results of those rows.
    global_rows = graph.global_rows
    g = global_rows.shape[1]
    index = global_rows.clamp_max(nb - 1)[:, None, :, None, None].expand(b, h, g, bs, d)
    q_global = query.view(b, h, nb, bs, d).gather(2, index).reshape(b, h, g * bs, d)
    out_global = F.scaled_dot_product_attention(q_global, key, value, attn_mask=plan.key_bias, scale=scale).reshape(
        b * h * g, bs * d
    )
    if plan.global_source is not None:
        out_global = out_global.index_select(0, plan.global_source)
    return out.index_copy(0, plan.global_target, out_global).view(b, h, n, d)


@dataclass
class SlotRouting:
    """How gradients of gathered slots flow back to key blocks, column by column.

    Sending each slot's gradient to its block one by one (index_add_ in slot order) hops through
    memory and was the slowest op of a CPU training step. Most slot columns have structure:
    window columns point at `row + offset` (one shifted add) and global columns at one block
    per (example, head) (a sum over rows); only random columns need a scatter. Slots that are
    not used (masked) carry no gradient in the forward computation; the shifted add would route
    them anyway, so their contribution is subtracted again (`fix_*`).
    """

    flat: torch.Tensor  # [R, S] block index of every slot (R = B*H*nb rows)
    shifts: list[tuple[int, int]]  # (column, offset)
    constants: list[tuple[int, torch.Tensor]]  # (column, [B*H] destination block)
    scattered: list[int]  # columns routed slot by slot
    fix_rows: torch.Tensor  # unused slots in structured columns: row, column, routed destination
    fix_cols: torch.Tensor
    fix_dest: torch.Tensor

    @staticmethod
    def from_slots(flat: torch.Tensor, valid: torch.Tensor, num_blocks: int) -> SlotRouting:
        """Classify the columns of a `[R, S]` slot table (host tensors; rows in (b, h, block) order)."""
        r, s = flat.shape
        rows = torch.arange(r)
        shifts, constants, scattered = [], [], []
        fix_rows, fix_cols, fix_dest = [], [], []
        for c in range(s):
            used = valid[:, c]
            if not bool(used.any()):
                continue  # never attended: no gradient at all
            offset = flat[:, c] - rows
            first = offset[used][0]
            if bool((offset[used] == first).all()):
                o = int(first)
                shifts.append((c, o))
                dest = rows + o
                keep = ~used & (dest >= 0) & (dest < r)
            else:
                per_row = flat[:, c].view(-1, num_blocks)
                used_rows = used.view(-1, num_blocks)
                target = torch.where(used_rows, per_row, per_row.new_full((), -1)).amax(1)
                if not bool(torch.where(used_rows, per_row == target[:, None], True).all()):
                    scattered.append(c)
                    continue
                target = torch.where(target < 0, per_row[:, 0], target)
                constants.append((c, target))
                dest = target.repeat_interleave(num_blocks)
                keep = ~used
            fix_rows.append(rows[keep])
            fix_cols.append(torch.full_like(rows[keep], c))
            fix_dest.append(dest[keep])
        cat = lambda xs: torch.cat(xs) if xs else rows[:0]  # noqa: E731
        return SlotRouting(flat, shifts, constants, scattered, cat(fix_rows), cat(fix_cols), cat(fix_dest))

    def to(self, device: torch.device) -> SlotRouting:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return SlotRouting(
            move(self.flat),
            self.shifts,
            [(c, move(t)) for c, t in self.constants],
            self.scattered,
            move(self.fix_rows),
            move(self.fix_cols),
            move(self.fix_dest),
        )

    def backward(self, grad: torch.Tensor, num_blocks: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """`grad` of the gathered slots `[R, S, ...]` -> gradient of the blocks `[num_blocks, ...]`
        (written into `out` when given)."""
        r, s = self.flat.shape
        g = grad.reshape(r, s, -1)
        result = out
        out = g.new_zeros(num_blocks, g.shape[-1]) if out is None else out.view(num_blocks, -1).zero_()
        for c, o in self.shifts:
            lo, hi = max(0, -o), r - max(0, o)
            out[lo + o : hi + o] += g[lo:hi, c]
        for c, target in self.constants:
            out.index_add_(0, target, g[:, c].reshape(target.numel(), -1, g.shape[-1]).sum(1))
        for c in self.scattered:
            out.index_add_(0, self.flat[:, c], g[:, c])
        if self.fix_rows.numel():
            out.index_add_(0, self.fix_dest, -g[self.fix_rows, self.fix_cols])
        return out.view(num_blocks, *grad.shape[2:]) if result is None else result


class _GatherBlocks(torch.autograd.Function):
    """`blocks.index_select(0, routing.flat)` with the structured backward of `SlotRouting`."""

    @staticmethod
    def forward(ctx, blocks, routing):
        ctx.routing = routing
        ctx.num_blocks = blocks.shape[0]
        return blocks.index_select(0, routing.flat.reshape(-1))

    @staticmethod
    def backward(ctx, grad):
        r, s = ctx.routing.flat.shape
        return ctx.routing.backward(grad.view(r, s, *grad.shape[1:]), ctx.num_blocks), None


class _SparseRowsCPU(torch.autograd.Function):
    """Sparse-row attention for CPU training that keeps only the key/value *blocks* for backward.

    Autograd around SDPA would keep the gathered `[rows, slots * block, d]` keys and values
    (slots-times the size of the blocks) until backward; re-gathering them there, chunk by chunk,
    saves that memory (a third of a training step's peak at 4k tokens) and its page faults. Uses
    the CPU flash-attention kernels SDPA itself uses.
    """

    @staticmethod
    def forward(ctx, q_rows, k_blocks, v_blocks, plan, scale):
        out, lse = _sparse_rows_cpu(q_rows, k_blocks, v_blocks, plan, scale)
        ctx.save_for_backward(q_rows, k_blocks, v_blocks, out, lse)
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q_rows, k_blocks, v_blocks, out, lse = ctx.saved_tensors
        plan, bs = ctx.plan, q_rows.shape[-2]
        grad_out = grad_out.contiguous()
        # contiguous: the blocks may be a strided view of the model's [B, n, H, d] projections
        grad_q, grad_k, grad_v = (
            torch.empty_like(x, memory_format=torch.contiguous_format) for x in (q_rows, k_blocks, v_blocks)
        )
        for chunk in plan.chunks:
            rows = slice(chunk.start, chunk.stop)
            k_rows, v_rows = _gathered_rows(k_blocks[rows], v_blocks[rows], chunk.routing, bs)
            grad_q[rows], grad_k_rows, grad_v_rows = _FLASH_CPU_BACKWARD(
                grad_out[rows], q_rows[rows], k_rows, v_rows, out[rows], lse[rows], 0.0, False,
                attn_mask=_rows_of(plan.sparse_bias, rows), scale=ctx.scale,
            )  # fmt: skip
            count, slots = chunk.routing.flat.shape
            for grad_rows, grad_blocks in ((grad_k_rows, grad_k), (grad_v_rows, grad_v)):
                grad_rows = grad_rows.view(count, slots, *grad_blocks.shape[1:])
                chunk.routing.backward(grad_rows, count, out=grad_blocks[rows])
        return grad_q, grad_k, grad_v, None, None


_FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_FLASH_CPU_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _sparse_rows_cpu(q_rows, k_blocks, v_blocks, plan: GatherPlan, scale: float):
    """Flash attention of every sparse row, chunk by chunk: `(out, log-sum-exp)` of all rows."""
    bs = q_rows.shape[-2]
    out = torch.empty_like(q_rows, memory_format=torch.contiguous_format)
    # [rows, 1, block]; kept in float32 (or float64) whatever the input dtype, as the kernel does
    lse = q_rows.new_empty(q_rows.shape[:-1], dtype=torch.promote_types(q_rows.dtype, torch.float32))
    for chunk in plan.chunks:
        rows = slice(chunk.start, chunk.stop)
        k_rows, v_rows = _gathered_rows(k_blocks[rows], v_blocks[rows], chunk.routing, bs)
        out[rows], lse[rows] = _FLASH_CPU(
            q_rows[rows], k_rows, v_rows, 0.0, False, attn_mask=_rows_of(plan.sparse_bias, rows), scale=scale
        )
    return out, lse


def _rows_of(bias: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return None if bias is None else bias[rows]


def _gathered_rows(k_blocks, v_blocks, routing: SlotRouting, block_size: int):
    rows, slots = routing.flat.shape
    flat = routing.flat.reshape(-1)
    d = k_blocks.shape[-1]
    k_rows = k_blocks.index_select(0, flat).view(rows, 1, slots * block_size, d)
    v_rows = v_blocks.index_select(0, flat).view(rows, 1, slots * block_size, d)
    return k_rows, v_rows


def gather_blocks(blocks: torch.Tensor, routing: SlotRouting) -> torch.Tensor:
    """`blocks[routing.flat]` (`[R*S, ...]`) with a fast, structure-aware backward."""
    return _GatherBlocks.apply(blocks, routing)


def dense_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    graph: BlockGraph,
    scale: float,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if graph.full:  # short input: full attention, only padding keys hidden, no n x n bias
        bias = _bool_to_bias(graph.key_valid[:, None, None, :], query.dtype)
    else:
        bias = graph.dense_bias(query.dtype)
    if not return_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale), None
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale + bias
    # clamped: in fp16, finfo.min + a score below -16 rounds to -inf, and a row with no visible key to NaN
    weights = torch.softmax(scores.clamp_min(torch.finfo(scores.dtype).min), dim=-1)
    return torch.matmul(weights, value), weights


_compiled_flex = None
_COMPILE_LOCK = threading.Lock()


def flex_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, graph: BlockGraph, scale: float
) -> torch.Tensor:
    """FlexAttention over the graph: BlockMask from the block counts, log-multiplicity score_mod.

    Compiled on CUDA, and on CPU under no_grad (inference); a CPU call that needs gradients runs
    flex's eager (dense) reference instead, since torch has no compiled flex backward on CPU.
    """
    from torch.nn.attention.flex_attention import flex_attention as _flex

    global _compiled_flex
    memo = ("flex", query.dtype, query.device)
    masks = graph.cache.get(memo)
    if masks is None:
        masks = graph.cache.setdefault(memo, _flex_masks(graph, query.dtype, query.device))
    block_mask, score_mod = masks
    fn = _flex
    if query.is_cuda or not torch.is_grad_enabled():
        if _compiled_flex is None:
            with _COMPILE_LOCK:  # one compiled wrapper for every thread
                if _compiled_flex is None:
                    _compiled_flex = torch.compile(_flex, dynamic=False)
        fn = _compiled_flex
    return fn(query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scale)


def _flex_masks(graph: BlockGraph, dtype: torch.dtype, device: torch.device):
    """BlockMask and multiplicity score_mod of a graph, derived on the host (no device syncs)."""
    host = graph.on_host()
    bs = host.block_size
    counts = host.block_counts()
    seen = (counts > 0).to(device)
    key_valid = host.key_valid.to(device)

    def mask_mod(bi, hi, qi, ki):
        return seen[bi, hi, qi // bs, ki // bs] & key_valid[bi, ki]

    score_mod = None
    if bool((counts > 1).any()):  # repeated blocks only occur with some reference plans
        log_counts = counts.clamp_min(1).log().to(device=device, dtype=dtype)

        def score_mod(score, bi, hi, qi, ki):
            return score + log_counts[bi, hi, qi // bs, ki // bs]

    tile = max(128, bs) if device.type == "cuda" else bs
    return _block_mask_from_graph(counts > 0, bs, host.seq_len, mask_mod, tile, device), score_mod


def _block_mask_from_graph(seen: torch.Tensor, block_size: int, n: int, mask_mod, tile: int, device):
    """A FlexAttention BlockMask straight from the graph's block pattern (no n x n evaluation).

    flex's GPU kernels work in tiles of 128; a tile is visited when any of its graph blocks is,
    and `mask_mod` masks exactly inside it.
    """
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask

    if tile % block_size:
        b, h = seen.shape[:2]
        return create_block_mask(mask_mod, b, h, n, n, device=device, BLOCK_SIZE=tile)
    per_tile = tile // block_size
    b, h, nb, _ = seen.shape
    tiles = -(-nb // per_tile)
    padded = seen.new_zeros(b, h, tiles * per_tile, tiles * per_tile)
    padded[:, :, :nb, :nb] = seen
    visited = padded.view(b, h, tiles, per_tile, tiles, per_tile).any(5).any(3)
    kv_num_blocks = visited.sum(-1, dtype=torch.int32)
    kv_indices = torch.argsort(~visited, dim=-1, stable=True).to(torch.int32)
    block_mask = BlockMask.from_kv_blocks(
        kv_num_blocks, kv_indices, BLOCK_SIZE=tile, mask_mod=mask_mod, seq_lengths=(n, n)
    )
    return block_mask.to(device)
