"""Executors: interchangeable kernels that compute attention over a `BlockGraph`.

* `gather`: each sparse row attends to its slots' key/value blocks; global rows run one SDPA
  call against every key. Memory is linear in sequence length; CPU and GPU; autograd. GPU: the
  slots' blocks are gathered into a `[.., slots * block, d]` tensor for one batched SDPA call
  (their gradients flow back by column structure, `SlotRouting`). CPU: the slots split into
  parts run by the CPU flash kernels and merged by log-sum-exp (`SlotParts`): the window as an
  overlapping strided view of the keys, the global blocks once per (example, head) for all its
  queries, and only the rest (random blocks) gathered, in chunks (`RowChunk`); training keeps
  only the key/value blocks for backward and re-gathers there (`_SparseRowsCPU`).
* `dense`: SDPA with the graph's `[B, H, n, n]` bias: the test oracle, and the path for inputs so
  short that every pair is attended anyway. The only path that can return attention weights.
* `flex`: torch FlexAttention with a BlockMask and a multiplicity `score_mod`, compiled on GPU.

All return `[B, H, n, d]` and agree to float tolerance (tests/test_attention_core.py). Under
`torch.export` a `TensorBlockGraph` runs on the plain-op kernel of `longbird_exportable_block.py`.

Global-local graphs (ETC) have their own executors: `longbird_global_local_executors.py`.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .longbird_block_graph import BlockGraph
from .longbird_exportable_block import TensorBlockGraph, tensor_block_attention
from .longbird_packing import PackedGraph

EXECUTORS = ("gather", "dense", "flex")

# CPU sparse rows run in chunks whose gathered keys (and values) stay under this size: glibc then
# recycles the same heap memory, where one gather of every row (~100 MiB per layer at 4k tokens)
# is a fresh mmap of zeroed pages on every call (page faults: 73 vs 9 ms per layer in
# ../shared/specs/cpu-profile.md), and the backward's gradient buffers shrink alike.
CHUNK_BYTES = 8 << 20
# float32 elements a low-precision merge sums at a time (`_merge`): 256 KiB, cache-sized
MERGE_ELEMENTS = 1 << 16


def run_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    graph: BlockGraph | TensorBlockGraph,
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
    if isinstance(graph, TensorBlockGraph):  # while exporting, whatever the backend
        return tensor_block_attention(query, key, value, graph, scale), None
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
    sparse_bias: torch.Tensor | None  # GPU: [B*H*nb, 1, 1, S*bs] hides unused slots and padding keys
    cpu: CpuRows | None  # CPU: the slots in parts (`SlotParts`) and their biases
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
            keys_all_valid = bool(host.key_valid.all())
            key_valid = host.key_valid.view(b * nb, bs)[host.key_blocks + torch.arange(b).view(b, 1, 1, 1) * nb]
            visible = (host.slot_valid.unsqueeze(-1) & key_valid).view(b * h * nb, s, bs)  # used, not padding
            routing = sparse_bias = cpu = None
            if device.type == "cpu":
                group_bytes = nb * s * bs * head_dim * torch.empty((), dtype=dtype).element_size()
                cpu = _cpu_rows(host, visible, dtype, max(1, CHUNK_BYTES // group_bytes))
            else:
                routing, sparse_bias = _routing(host, device), _slot_bias(visible, dtype, device)
            key_bias = None if keys_all_valid else _bool_to_bias(host.key_valid[:, None, None, :], dtype).to(device)
            # global rows padded with the id nb are dropped; the rest replace their sparse rows
            rows = host.global_rows
            real = (rows < nb).unsqueeze(1).expand(b, h, rows.shape[1]).reshape(-1)
            target = (rows.unsqueeze(1) + torch.arange(b * h).view(b, h, 1) * nb).reshape(-1)[real]
            source = None if bool(real.all()) else real.nonzero().squeeze(1).to(device)
            plan = GatherPlan(routing, sparse_bias, cpu, key_bias, source, target.to(device))
            plan = graph.cache.setdefault(memo, plan)  # atomic: every caller gets the same plan
        return plan


def _slot_bias(visible: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor | None:
    """`[rows, slots, bs]` visibility -> additive `[rows, 1, 1, slots * bs]` bias (None: all visible)."""
    if bool(visible.all()):
        return None
    return _bool_to_bias(visible.reshape(visible.shape[0], 1, 1, -1), dtype).to(device)


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

    # Sparse rows: B*H*nb rows of one query block each, in the batch dimension with one "head" (the
    # flash kernels work in [batch, len, heads, d], then the same memory: nothing copies the gathers).
    # CPU: in parts (`SlotParts`); GPU: an index_select of the key/value blocks, one SDPA call.
    rows = b * h * nb
    q_rows = query.reshape(rows, 1, bs, d)
    if query.device.type == "cpu":
        if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
            out = _SparseRowsCPU.apply(q_rows, key, value, plan.cpu, scale)
        else:
            k_pad, v_pad = _padded_blocks(key, plan.cpu), _padded_blocks(value, plan.cpu)
            out = _sparse_rows_cpu(q_rows, k_pad, v_pad, plan.cpu, scale)[0]
    else:
        k_blocks, v_blocks = key.reshape(rows, bs, d), value.reshape(rows, bs, d)
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
    if torch.is_grad_enabled():  # autograd may have saved `out` (the CPU rows keep it for backward)
        return out.index_copy(0, plan.global_target, out_global).view(b, h, n, d)
    return out.index_copy_(0, plan.global_target, out_global).view(b, h, n, d)  # ours: no full copy


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


def gather_blocks(blocks: torch.Tensor, routing: SlotRouting) -> torch.Tensor:
    """`blocks[routing.flat]` (`[R*S, ...]`) with a fast, structure-aware backward."""
    return _GatherBlocks.apply(blocks, routing)


# --------------------------------------------------------------------------------------------
# CPU sparse rows: window, global and gathered slots, merged by log-sum-exp
# --------------------------------------------------------------------------------------------
# Attention over a union of key sets merges from each set's output o_p and log-sum-exp l_p:
# l = logsumexp_p l_p, o = sum_p exp(l_p - l) o_p. Backward needs no merge: one part's flash
# backward, given the merged o and l, gives exactly that part's gradients; dQ sums them.
# Key blocks are kept in rows order between `pad` zero blocks, `[pad + B*H*nb + pad, bs, d]`: the
# window of row r is blocks r + offsets, one overlapping strided view for all rows. Window slots
# past a group's ends are hidden; they read the padding or the next group's blocks, which only a
# row that sees no valid key (an all-padding example) averages into its meaningless output.


@dataclass
class RowChunk:
    """Sparse rows `start:stop` (whole (example, head) groups) and what they gather: `slots` `[rows, k]`
    (padded-layout blocks; None: nothing) of slot `columns`, `keep`: where a global column is gathered."""

    start: int
    stop: int
    slots: torch.Tensor | None
    columns: list[int]
    keep: torch.Tensor | None


@dataclass
class SlotParts:
    """How the slot columns split (a function of the graph's structure, cached by it). Window:
    columns whose block is always `row + offset` (`SlotRouting.shifts`). Global: one block per
    (example, head) (`SlotRouting.constants`), run once per group against all of its queries; that
    needs one validity for all of the group's sparse rows, else (rows past an example's end) the
    group gathers the column. The rest (random blocks) is gathered, chunk by chunk."""

    pad: int  # zero blocks at each end (the largest window offset)
    offsets: list[int]  # the window view covers blocks row + offsets[0] .. row + offsets[-1]
    window_columns: list[int | None]  # slot column of each offset (None: a gap, hidden)
    global_slots: torch.Tensor | None  # [B*H * G] padded-layout block of each group's global column
    global_valid: torch.Tensor | None  # [B*H, G] used by every sparse row of the group
    chunks: list[RowChunk]


@dataclass
class CpuRows:
    """The parts of a graph and their additive biases (which depend on padding: not cached)."""

    parts: SlotParts
    num_blocks: int
    window_bias: torch.Tensor | None  # [B*H*nb, 1, 1, W*bs]
    global_bias: torch.Tensor | None  # [B*H, 1, 1, G*bs]
    chunk_biases: list[torch.Tensor | None]  # [rows, 1, 1, k*bs] per chunk


def _window(shifts: list[tuple[int, int]]) -> dict[int, int]:
    """offset -> column of the shift columns that make a dense window; a far offset (a column
    that only looks shifted, e.g. used by one row) and a repeated one are left to the gather."""
    first = dict(reversed([(offset, column) for column, offset in shifts]))  # the first column wins
    keep = sorted(first)
    while keep and keep[-1] - keep[0] + 1 > 2 * len(keep):
        keep.remove(max(keep, key=abs))
    return {o: first[o] for o in keep}


def _slot_parts(host: BlockGraph, groups: int) -> SlotParts:
    """The parts of a graph, the gathered ones in chunks of `groups` (example, head) groups."""

    def build() -> SlotParts:
        b, h, nb, s = host.key_blocks.shape
        count = b * h
        flat = (host.key_blocks + torch.arange(count).view(b, h, 1, 1) * nb).view(-1, s)
        valid = host.slot_valid.reshape(-1, s)
        columns = SlotRouting.from_slots(flat, valid, nb)
        window = _window(columns.shifts)
        pad = max((abs(o) for o in window), default=0)
        sparse = (~host.row_is_global())[:, None, :].expand(b, h, nb).reshape(count, nb)
        uniform, used = {}, {}  # per global column: [B*H] (global rows are replaced anyway)
        for c, _ in columns.constants:
            hit = valid[:, c].view(count, nb)
            every, none = (hit | ~sparse).all(1), (~hit | ~sparse).all(1)
            uniform[c], used[c] = every | none, every & ~none
        taken = set(window.values()) | set(uniform)
        gathered = [c for c in range(s) if c not in taken and bool(valid[:, c].any())]
        chunks = []
        for first in range(0, count, groups):
            rows, here = slice(first * nb, min(count, first + groups) * nb), slice(first, first + groups)
            mixed = {c: (~u[here]).repeat_interleave(nb) for c, u in uniform.items() if not bool(u[here].all())}
            cols = sorted(gathered + list(mixed))
            everywhere = torch.ones(rows.stop - rows.start, dtype=torch.bool)
            keep = torch.stack([mixed.get(c, everywhere) for c in cols], 1) if mixed else None
            chunks.append(RowChunk(rows.start, rows.stop, flat[rows][:, cols] + pad if cols else None, cols, keep))
        global_slots = torch.stack([t for _, t in columns.constants], 1).view(-1) + pad if uniform else None
        global_valid = torch.stack(list(used.values()), 1) if uniform else None
        offsets = list(range(min(window), max(window) + 1)) if window else []
        return SlotParts(pad, offsets, [window.get(o) for o in offsets], global_slots, global_valid, chunks)

    return _cached((host.structure, "cpu", groups), host.structure is not None, build)


def _cpu_rows(host: BlockGraph, visible: torch.Tensor, dtype: torch.dtype, groups: int) -> CpuRows:
    """`visible`: `[B*H*nb, S, bs]` slot used and key not padding."""
    parts, nb = _slot_parts(host, groups), host.num_blocks
    rows, _, bs = visible.shape
    window_bias = global_bias = None
    if parts.offsets:
        window = [visible[:, c] if c is not None else visible.new_zeros(rows, bs) for c in parts.window_columns]
        window_bias = _slot_bias(torch.stack(window, 1), dtype)
    if parts.global_slots is not None:
        b, h = host.key_blocks.shape[:2]
        key_valid = host.key_valid.view(b, 1, nb, bs).expand(b, h, nb, bs).reshape(rows, bs)
        seen = key_valid[parts.global_slots - parts.pad].view(b * h, -1, bs) & parts.global_valid.unsqueeze(-1)
        global_bias = _slot_bias(seen, dtype)
    chunk_biases = []
    for chunk in parts.chunks:
        seen = visible[chunk.start : chunk.stop, chunk.columns]
        chunk_biases.append(_slot_bias(seen if chunk.keep is None else seen & chunk.keep.unsqueeze(-1), dtype))
    return CpuRows(parts, nb, window_bias, global_bias, chunk_biases)


def _padded_blocks(x: torch.Tensor, plan: CpuRows) -> torch.Tensor:
    """`[B, H, n, d]` -> `[pad + B*H*nb + pad, bs, d]`: the blocks in rows order between zero blocks."""
    b, h, n, d = x.shape
    pad, rows = plan.parts.pad, b * h * plan.num_blocks
    out = x.new_empty(rows + 2 * pad, n // plan.num_blocks, d)
    out[:pad] = out[pad + rows :] = 0
    out[pad : pad + rows].view(b, h, n, d).copy_(x)
    return out


def _window_view(blocks: torch.Tensor, plan: CpuRows, rows: slice) -> torch.Tensor:
    """`[rows, 1, W*bs, d]`: row r sees blocks r + offsets (overlapping views of `blocks`)."""
    _, bs, d = blocks.shape
    first = plan.parts.pad + rows.start + plan.parts.offsets[0]
    size = (rows.stop - rows.start, 1, len(plan.parts.offsets) * bs, d)
    return blocks.as_strided(size, (bs * d, bs * d, d, 1), blocks.storage_offset() + first * bs * d)


def _fold_window(grad: torch.Tensor, out: torch.Tensor, plan: CpuRows) -> None:
    """Add the window-view gradient `[rows, 1, W*bs, d]` to the blocks `out` `[rows, bs, d]`, but for
    slots past their group's ends (unused)."""
    nb, d = plan.num_blocks, grad.shape[-1]
    grad = grad.view(-1, nb, len(plan.parts.offsets), grad.shape[-2] // len(plan.parts.offsets), d)
    out = out.view(grad.shape[0], nb, -1, d)
    for j, (offset, column) in enumerate(zip(plan.parts.offsets, plan.parts.window_columns)):
        if column is not None:
            lo, hi = max(0, -offset), nb - max(0, offset)
            out[:, lo + offset : hi + offset] += grad[:, lo:hi, j]


def _global_inputs(q_rows, k_pad, v_pad, plan: CpuRows):
    """Every query of a group `[B*H, 1, nb*bs, d]` and the group's global blocks `[B*H, 1, G*bs, d]`."""
    count, d = q_rows.shape[0] // plan.num_blocks, q_rows.shape[-1]
    k, v = (x.index_select(0, plan.parts.global_slots).view(count, 1, -1, d) for x in (k_pad, v_pad))
    return q_rows.view(count, 1, -1, d), k, v


def _gathered(k_pad, v_pad, chunk: RowChunk):
    rows = chunk.slots.shape[0]
    return (x.index_select(0, chunk.slots.view(-1)).view(rows, 1, -1, x.shape[-1]) for x in (k_pad, v_pad))


def _merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) of attention over all the parts' keys from each part's (out, lse), written over the
    first part's output (a fresh kernel output: ours to overwrite)."""
    lse = functools.reduce(torch.logaddexp, [part_lse for _, part_lse in parts])
    out = parts[0][0]
    if out.dtype == lse.dtype:  # float32 (or 64): in place, every row at once
        for index, (part_out, part_lse) in enumerate(parts):
            weight = (part_lse - lse).exp_().unsqueeze(-1)
            out = part_out.mul_(weight) if index == 0 else out.addcmul_(part_out, weight)
        return out, lse
    # bf16/fp16 outputs, float32 lse: a mixed-dtype in-place op takes 5-8x as long as this, which sums in
    # float32 a few rows at a time and rounds once (no big float32 tensor; each chunk stays in cache)
    rows, row_size = out.shape[0], out[0].numel()
    step = max(1, min(MERGE_ELEMENTS, out.numel() // 8) // row_size)
    for start in range(0, rows, step):
        here = slice(start, start + step)
        total = None
        for part_out, part_lse in parts:
            term = part_out[here].float() * (part_lse[here] - lse[here]).exp().unsqueeze(-1)
            total = term if total is None else total.add_(term)
        out[here] = total
    return out, lse


def _sparse_rows_cpu(q_rows, k_pad, v_pad, plan: CpuRows, scale: float):
    """(out, log-sum-exp) of every sparse row `[B*H*nb, 1, bs, d]`, part by part, merged."""
    r, _, bs, d = q_rows.shape
    parts, results = plan.parts, []
    if parts.global_slots is not None:
        out, lse = _flash(*_global_inputs(q_rows, k_pad, v_pad, plan), plan.global_bias, scale)
        results.append((out.reshape(r, 1, bs, d), lse.reshape(r, 1, bs)))
    if parts.offsets:  # all rows in one call: nothing here is bigger than the output
        window = (_window_view(x, plan, slice(0, r)) for x in (k_pad, v_pad))
        results.append(_flash(q_rows, *window, plan.window_bias, scale))
    if any(chunk.slots is not None for chunk in parts.chunks):
        out = torch.empty_like(q_rows, memory_format=torch.contiguous_format)  # lse: float32 (or 64)
        lse = q_rows.new_empty(q_rows.shape[:-1], dtype=torch.promote_types(q_rows.dtype, torch.float32))
        for chunk, bias in zip(parts.chunks, plan.chunk_biases):  # chunk by chunk: the gathers stay small
            rows = slice(chunk.start, chunk.stop)
            if chunk.slots is None:  # nothing gathered: weight 0
                out[rows], lse[rows] = 0.0, -torch.inf
            else:
                out[rows], lse[rows] = _flash(q_rows[rows], *_gathered(k_pad, v_pad, chunk), bias, scale)
        results.append((out, lse))
    return results[0] if len(results) == 1 else _merge(results)


class _SparseRowsCPU(torch.autograd.Function):
    """Sparse rows for CPU training, keeping only the query rows and the (padded) key/value blocks
    for backward: autograd around the kernels would keep the gathered keys and values (slots-times
    the size of the blocks; a third of a training step's peak at 4k tokens) and their page faults."""

    @staticmethod
    def forward(ctx, q_rows, key, value, plan: CpuRows, scale):
        k_pad, v_pad = _padded_blocks(key, plan), _padded_blocks(value, plan)
        out, lse = _sparse_rows_cpu(q_rows, k_pad, v_pad, plan, scale)
        ctx.save_for_backward(q_rows, k_pad, v_pad, out, lse)
        ctx.plan, ctx.scale, ctx.key_shape = plan, scale, key.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q_rows, k_pad, v_pad, out, lse = ctx.saved_tensors
        plan, scale, parts, pad = ctx.plan, ctx.scale, ctx.plan.parts, ctx.plan.parts.pad
        r, _, bs, d = q_rows.shape
        grad_out = grad_out.contiguous()
        grad_q = torch.zeros_like(q_rows, memory_format=torch.contiguous_format)
        grad_k, grad_v = torch.empty_like(k_pad), torch.empty_like(v_pad)  # zeroed chunk by chunk
        # chunk by chunk, so that the kernels' zero-filled gradients of the window view and of the
        # gathered slots stay small; the global part (its gradients are small) after them
        for chunk, bias in zip(parts.chunks, plan.chunk_biases):
            rows = slice(chunk.start, chunk.stop)
            inputs, saved = (grad_out[rows], q_rows[rows]), (out[rows], lse[rows])
            grad_blocks = [x[pad + chunk.start : pad + chunk.stop].zero_() for x in (grad_k, grad_v)]
            if chunk.slots is not None:
                dq, dk, dv = _flash_backward(*inputs, *_gathered(k_pad, v_pad, chunk), *saved, bias, scale)
                grad_q[rows] += dq
                # one index_add_ from a contiguous source (from a strided slot column: ~10x slower);
                # unused slots carry no gradient and point into their own group
                grad_k.index_add_(0, chunk.slots.view(-1), dk.view(-1, bs, d))
                grad_v.index_add_(0, chunk.slots.view(-1), dv.view(-1, bs, d))
            if parts.offsets:
                window = (_window_view(x, plan, rows) for x in (k_pad, v_pad))
                bias = None if plan.window_bias is None else plan.window_bias[rows]
                dq, dk, dv = _flash_backward(*inputs, *window, *saved, bias, scale)
                grad_q[rows] += dq
                _fold_window(dk, grad_blocks[0], plan)
                _fold_window(dv, grad_blocks[1], plan)
        if parts.global_slots is not None:
            groups = (r // plan.num_blocks, 1, -1)
            q, k, v = _global_inputs(q_rows, k_pad, v_pad, plan)
            dq, dk, dv = _flash_backward(
                grad_out.view(*groups, d), q, k, v, out.view(*groups, d), lse.view(groups), plan.global_bias, scale
            )
            grad_q += dq.view(r, 1, bs, d)
            grad_k.index_add_(0, parts.global_slots, dk.view(-1, bs, d))
            grad_v.index_add_(0, parts.global_slots, dv.view(-1, bs, d))
        grad_k, grad_v = (x[pad : pad + r].view(ctx.key_shape) for x in (grad_k, grad_v))
        return grad_q, grad_k, grad_v, None, None


def _flash(q, k, v, bias, scale):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias, scale=scale)


def _flash_backward(grad_out, q, k, v, out, lse, bias, scale):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, out, lse, 0.0, False, attn_mask=bias, scale=scale
    )


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
