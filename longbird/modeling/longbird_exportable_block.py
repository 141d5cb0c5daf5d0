"""The block-sparse graph of a padded batch built from tensors, and a kernel of plain tensor ops that
runs it: what `torch.export` traces and ONNX Runtime runs (`torch.compiler.is_exporting()`).

The eager path builds each example's slot table on the host from its real length and packs the
batch padding-free (`longbird_block_graph`). An exported graph cannot read lengths on the host, so
here the same graph is written per example with tensor ops over the padded batch, in three parts:

* **global blocks**: a prefix of `prefix_blocks[i]` blocks (the extra global tokens, then
  `global_prefix_length`; for BigBird-ITC at least block 0), and for ITC the example's last block.
  An example too short for a sparse plan makes every block a prefix block: full attention;
* **sparse rows** attend the global blocks, their window and their random blocks in one softmax;
  random blocks come from `RandomPlanTable`, every length's plan drawn once by `random_slots`;
* **global rows** attend every valid key.

Every intermediate is `[.., n, c]` with `c` a few blocks (or the global prefix): memory stays linear
in the sequence length. Outputs equal the eager path's (tests/test_export_bigbird.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .longbird_block_graph import SparsePattern, counts_global_twice, random_slots


@dataclass(frozen=True)
class RandomPlanTable:
    """Every sequence length's random blocks for one layer, so a graph can look them up by length.

    `blocks[offsets[nb] + row]` is `[H, r]`: the random key blocks of query block `row` of an
    example of `nb` blocks (`valid` likewise); lengths too short for a sparse plan hold zeros.
    """

    blocks: torch.Tensor  # [sum of lengths, H, r] int64
    valid: torch.Tensor  # [sum of lengths, H, r] bool
    offsets: torch.Tensor  # [max_blocks + 1] int64

    @staticmethod
    def build(pattern: SparsePattern, seed: int, max_blocks: int, layout_blocks: int) -> RandomPlanTable:
        """`layout_blocks`: blocks of extra global tokens in front (0: BigBird-ITC, whose first and
        last block are global: the reference layout)."""
        heads, r = pattern.num_heads, pattern.num_random_blocks
        blocks, valid, offsets = [], [], [0, 0]
        for nb in range(1, max_blocks + 1):
            own = tuple(range(layout_blocks)) if layout_blocks else (0, nb - 1)
            own = tuple(sorted({b for b in own if b < nb}))
            if pattern.fits(nb, len(own)):
                keys, ok = random_slots(pattern, seed, nb, own, layout_blocks == 0)
            else:
                keys, ok = np.zeros((heads, nb, r), np.int64), np.zeros((heads, nb, r), bool)
            blocks.append(keys.transpose(1, 0, 2))
            valid.append(ok.transpose(1, 0, 2))
            offsets.append(offsets[-1] + nb)
        return RandomPlanTable(
            torch.from_numpy(np.concatenate(blocks)),
            torch.from_numpy(np.concatenate(valid)),
            torch.tensor(offsets[:-1], dtype=torch.long),
        )

    def lookup(self, real_blocks: torch.Tensor, num_blocks) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, H, num_blocks, r]` random blocks and validity of each example's rows (rows past an
        example's end repeat its last row: their outputs are discarded)."""
        b, device = real_blocks.shape[0], real_blocks.device
        heads, r = self.blocks.shape[1:]
        rows = torch.arange(num_blocks, device=device).expand(b, num_blocks)
        rows = torch.minimum(rows, (real_blocks[:, None] - 1).expand(b, num_blocks))
        table_rows = self.offsets.to(device)[real_blocks][:, None] + rows  # [B, nb]
        # built in [B, H, nb] order: no transpose (a size-1 axis would make torch.export guard on it)
        index = (table_rows[:, None, :] * heads + torch.arange(heads, device=device)[None, :, None]).reshape(-1)
        blocks = self.blocks.to(device).reshape(-1, r).index_select(0, index).view(b, heads, num_blocks, r)
        valid = self.valid.to(device).reshape(-1, r).index_select(0, index).view(b, heads, num_blocks, r)
        return blocks, valid


@lru_cache(maxsize=64)
def plan_table(pattern: SparsePattern, seed: int, max_blocks: int, layout_blocks: int) -> RandomPlanTable:
    """Layer `seed`'s table (built once per process: an export traces every layer's). Built with
    real tensors even while tracing: the traced graph then holds the table as a constant."""
    with unset_fake_temporarily():
        return RandomPlanTable.build(pattern, seed, max_blocks, layout_blocks)


@dataclass
class TensorBlockGraph:
    """One layer's block graph of a padded batch, as tensors (see the module docstring)."""

    block_size: int
    window_blocks: int
    real_blocks: torch.Tensor  # [B] blocks up to the example's last real token
    prefix_blocks: torch.Tensor  # [B] global blocks in front (all blocks: full attention)
    prefix_width: int  # tokens of the widest prefix in the batch (read from the data: symbolic when traced)
    last_block: torch.Tensor | None  # [B] BigBird-ITC: the example's last block (global); else None
    random: torch.Tensor  # [B, H, nb, r] random key blocks of each row
    random_valid: torch.Tensor  # [B, H, nb, r]
    key_valid: torch.Tensor  # [B, n] bool
    #: uniform plans drop a random block that is global (reference plans count it twice)
    drop_global_random: bool


def tensor_block_graphs(
    config,
    pattern: SparsePattern,
    tables: list[RandomPlanTable],
    key_valid: torch.Tensor,
    token_end: torch.Tensor,
    layout_blocks: int,
    global_prefix_length: torch.Tensor | None,
) -> list[TensorBlockGraph]:
    """Every layer's graph of a batch laid out by `make_layout` (`key_valid` `[B, n]`, `token_end`
    `[B]` one past each example's last real token), with the same globals and plans as eager."""
    bs = pattern.block_size
    real_blocks = layout_blocks + (token_end - 1) // bs + 1
    prefix = torch.full_like(real_blocks, max(layout_blocks, 1))
    if global_prefix_length is not None:
        # (x + bs - 1) // bs, not -(-x // bs): ONNX divides integers by truncation
        extra = (global_prefix_length.reshape(-1).to(torch.long) + bs - 1) // bs
        prefix = torch.maximum(prefix, layout_blocks + extra)
    prefix = torch.minimum(prefix, real_blocks)
    last = real_blocks - 1 if layout_blocks == 0 else None
    num_globals = prefix + (last >= prefix).long() if last is not None else prefix
    fits = real_blocks > num_globals + pattern.window_blocks + 2 * pattern.num_random_blocks
    prefix = torch.where(fits, prefix, real_blocks)  # too short for a sparse plan: full attention
    num_blocks = key_valid.shape[1] // bs
    widest = prefix.max().item()  # once for every layer: one data-dependent size in the traced graph
    torch._check(widest >= 1)
    torch._check(widest <= num_blocks)
    drop = not counts_global_twice(pattern, layout_blocks == 0)
    graphs = []
    for table in tables:
        random, random_valid = table.lookup(real_blocks, num_blocks)
        graphs.append(
            TensorBlockGraph(
                bs, pattern.window_blocks, real_blocks, prefix, widest * bs, last, random, random_valid, key_valid, drop
            )
        )
    return graphs


def tensor_block_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, graph: TensorBlockGraph, scale: float
) -> torch.Tensor:
    """Attention over `graph` (`query`/`key`/`value` `[B, H, n, d]`), in plain tensor ops. Returns `[B, H, n, d]`."""
    b, h, n, d = query.shape
    bs = graph.block_size
    nb = n // bs
    device, dtype = query.device, query.dtype
    low = torch.finfo(dtype).min / 2  # half: a score plus `low` cannot overflow to -inf, even in fp16
    blocks = torch.arange(nb, device=device)
    prefix, last = graph.prefix_blocks, graph.last_block
    is_global = blocks[None, :] < prefix[:, None]  # [B, nb]
    if last is not None:
        is_global = is_global | (blocks[None, :] == last[:, None])
    width = graph.prefix_width
    key_ok = graph.key_valid  # [B, n]
    key_ok_blocks = key_ok.view(b, nb, bs)

    # --- sparse rows: [prefix and last block | window | random blocks], one softmax computed online
    # part by part (flash-style), so only one part's scores `[B, H, n, c]` live at a time (c: the
    # prefix and last block, or a few blocks): ONNX Runtime's memory stays a few hidden states. No
    # concatenation along the blocks and no broadcast batched matmul (both make torch.export guard
    # on a one-block input).
    q = (query * scale).contiguous()
    qb = q.view(b, h, nb, bs, d)
    kb, vb = key.reshape(b, h, nb, bs, d), value.reshape(b, h, nb, bs, d)
    softmax = _OnlineSoftmax((b, h, nb, bs, d))
    token_block = torch.arange(width, device=device) // bs
    in_prefix = token_block[None, :] < prefix[:, None]  # [B, width]
    prefix_ok = in_prefix & key_ok[:, :width]
    k_global, v_global, global_ok = key[:, :, :width], value[:, :, :width], prefix_ok
    if last is not None:  # the last block joins the prefix: one part, one softmax pass fewer
        k_global = torch.cat([k_global, _block_of(kb, last)], 2)  # [B, H, width + bs, d]
        v_global = torch.cat([v_global, _block_of(vb, last)], 2)
        last_ok = _block_of(key_ok_blocks[:, None], last)[:, 0] & (last >= prefix)[:, None]  # [B, bs]
        global_ok = torch.cat([prefix_ok, last_ok], 1)
    softmax.add(_masked(q @ k_global.transpose(-1, -2), global_ok[:, None, None, :], low), v_global)
    # the window's blocks, then the random blocks, each one part: `[bs, w * bs]` score blocks keep the
    # matrix products large enough to run at full speed
    half = graph.window_blocks // 2
    neighbours = blocks[:, None] + torch.arange(-half, half + 1, device=device)[None, :]  # [nb, w]
    index = neighbours.clamp(0, nb - 1)  # out of range: any block, masked below
    ok = (neighbours[None] >= 0) & (neighbours[None] < graph.real_blocks[:, None, None]) & ~is_global[:, index]
    ok = ok[..., None] & key_ok_blocks.index_select(1, index.reshape(-1)).view(b, nb, -1, bs)  # [B, nb, w, bs]
    k_window, v_window = (x.index_select(2, index.reshape(-1)).view(b, h, nb, -1, d) for x in (kb, vb))
    softmax.add(_masked(qb @ k_window.transpose(-1, -2), ok.view(b, 1, nb, 1, -1), low), v_window)
    if graph.random.shape[-1]:
        rand = graph.random  # [B, H, nb, r]
        ok = graph.random_valid
        if graph.drop_global_random:
            ok = ok & ~_gather_blocks(is_global[:, None, :, None], rand)
        ok = ok[..., None] & _gather_blocks(key_ok_blocks[:, None], rand).view(*rand.shape, bs)  # [B, H, nb, r, bs]
        scores = qb @ _gather_blocks(kb, rand).transpose(-1, -2)  # [B, H, nb, bs, r bs]
        softmax.add(_masked(scores, ok.view(b, h, nb, 1, -1), low), _gather_blocks(vb, rand))
    out = softmax.result()

    # --- global rows: the prefix rows, then (ITC) the last block's rows, attend every valid key;
    # written over those rows only (a select over all n rows is two more passes a layer)
    key_bias = torch.where(key_ok, 0.0, low).to(dtype)[:, None, None, :]
    prefix_rows = _full_rows(query[:, :, :width], key, value, key_bias, scale)  # [B, H, width, d]
    head = torch.where(in_prefix[:, None, :, None], prefix_rows, out[:, :, :width])
    out = torch.cat([head, out[:, :, width:]], 2)
    if last is not None:
        last_rows = _full_rows(_block_of(query.reshape(b, h, nb, bs, d), last), key, value, key_bias, scale)
        flat = out.reshape(b * h * nb, bs, d).index_copy(0, _block_rows(b, h, nb, last), last_rows.reshape(-1, bs, d))
        out = flat.view(b, h, n, d)
    return out


def _masked(scores: torch.Tensor, ok: torch.Tensor, low: float) -> torch.Tensor:
    # an additive bias built at the mask's small broadcast shape: ONNX Runtime's Where would make
    # a second score-sized buffer
    return scores + torch.where(ok, 0.0, low).to(scores.dtype)


def _full_rows(q, key, value, key_bias, scale) -> torch.Tensor:
    """Rows that attend every key (`q` `[B, H, m, d]`)."""
    return F.scaled_dot_product_attention(q, key, value, attn_mask=key_bias, scale=scale)


def _block_of(blocks: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`blocks` `[B, H, nb, ...]` -> `[B, H, ...]`: the block `index[b]` of each example."""
    b, h, nb = blocks.shape[:3]
    flat = blocks.reshape(b * h * nb, *blocks.shape[3:])
    return flat.index_select(0, _block_rows(b, h, nb, index)).view(b, h, *blocks.shape[3:])


def _block_rows(b: int, h: int, nb: int, index: torch.Tensor) -> torch.Tensor:
    """Rows of `[B * H * nb, ...]` that hold the block `index[b]` of each example and head: `[B * H]`."""
    rows = (torch.arange(b, device=index.device)[:, None] * h + torch.arange(h, device=index.device)) * nb
    return (rows + index[:, None]).reshape(-1)


def _gather_blocks(blocks: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`blocks` `[B, G, nb, bs, ...]` (G = H, or 1 for all heads alike), `index` `[B, H, nb, r]` ->
    `[B, H, nb, r * bs, ...]`."""
    b, g, nb = blocks.shape[:3]
    h, r = index.shape[1], index.shape[-1]
    flat = blocks.reshape(b * g * nb, *blocks.shape[3:])
    heads = torch.arange(h, device=index.device) if g > 1 else torch.zeros(h, dtype=torch.long, device=index.device)
    base = ((torch.arange(b, device=index.device)[:, None] * g + heads[None, :]) * nb)[:, :, None, None]
    picked = flat.index_select(0, (base + index).reshape(-1))
    return picked.view(b, h, nb, r * blocks.shape[3], *blocks.shape[4:])


class _OnlineSoftmax:
    """softmax(concatenated scores) @ concatenated values, one part at a time: a running maximum,
    sum and output, rescaled as each part comes (as flash attention does over key tiles)."""

    def __init__(self, shape: tuple):
        self.shape = shape  # [B, H, nb, bs, d] of the queries
        self.top = self.total = self.out = None

    def add(self, scores: torch.Tensor, values: torch.Tensor) -> None:
        """`scores` `[B, H, n, c]` with `values` `[B, H, c, d]`, or per block `[B, H, nb, bs, c]` with
        `[B, H, nb, c, d]`."""
        b, h, nb, bs, d = self.shape
        flat = scores.reshape(b, h, nb * bs, scores.shape[-1])
        top = flat.amax(-1, keepdim=True)
        if self.top is not None:
            top = torch.maximum(self.top, top)
        weights = torch.exp(scores - (top.view(b, h, nb, bs, 1) if scores.dim() == 5 else top))
        part = (weights @ values).reshape(b, h, nb * bs, d)
        total = weights.sum(-1, keepdim=True).reshape(b, h, nb * bs, 1)
        if self.out is not None:
            rescale = torch.exp(self.top - top)
            part, total = self.out * rescale + part, self.total * rescale + total
        self.top, self.total, self.out = top, total, part

    def result(self) -> torch.Tensor:
        return self.out / self.total
