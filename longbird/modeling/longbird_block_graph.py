"""Who attends to whom: block-sparse attention graphs as data.

A sequence of `n` tokens is cut into `n / block_size` blocks. Every query block is either

* a **global row**: it attends to every key (global tokens, short inputs), or
* a **sparse row**: it attends to a short list of key blocks, its *slots*: the global blocks,
  a sliding window of `window_blocks` blocks, and `num_random_blocks` random blocks.

A slot table `key_blocks[b, h, row, slot]` plus a validity mask is all an executor needs; see
`longbird_block_executors.py` for the kernels that run it. A slot that repeats a key block
counts that block twice in the softmax, as transformers' and the original TF BigBird do for their
random blocks; `BlockGraph.block_counts` gives the multiplicities the dense oracle uses.

Plans are pure functions of (number of blocks, layer, pattern) and cached. They never touch the
global numpy or torch random state, and training and evaluation use the same plan.

The bottom of the file lays a batch out for the graph (`SequenceLayout`: extra global tokens in
front, block padding at the end) and builds every layer's graph from it (`layer_graphs`); the
BigBird and BigBird-Pegasus encoders call these, then strip the layout from their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from transformers.masking_utils import create_bidirectional_mask

from .longbird_input_checks import ValueChecks, is_exporting
from .longbird_packing import PackedGraph, Packing, make_packing

# The reference BigBird draws special "paper" plans for these lengths (transformers and TF alike).
_PAPER_PLAN_LENGTHS = (1024, 3072, 4096)


@dataclass(frozen=True)
class SparsePattern:
    """The config-level description of a BigBird graph (everything but the input)."""

    block_size: int
    num_heads: int
    window_blocks: int = 3
    num_random_blocks: int = 3
    random_plan: str = "reference"  # "reference" (transformers/TF draws) or "uniform"
    max_position_embeddings: int = 4096  # the reference's paper plans are drawn at this length

    def fits(self, num_blocks: int, num_global_blocks: int) -> bool:
        """Whether a sparse plan exists for a sequence of `num_blocks` blocks.

        Below this length the graph would cover (nearly) every pair anyway and the reference falls
        back to full attention; with two global blocks and a window of 3 this is transformers'
        rule `seq_len > (5 + 2 r) * block_size`.
        """
        return num_blocks > num_global_blocks + self.window_blocks + 2 * self.num_random_blocks


# --------------------------------------------------------------------------------------------
# Random plans: [num_heads, num_blocks, r] arrays of key-block ids (rows of global blocks unused)
# --------------------------------------------------------------------------------------------


def reference_random_plan(pattern: SparsePattern, num_blocks: int, seed: int) -> np.ndarray:
    """Random blocks exactly as transformers' BigBird draws them in training for layer `seed`.

    Reproduces the draws (and so the random-number stream) of the original TF implementation and
    of `transformers.BigBirdBlockSparseAttention` with `np.random.seed(seed)`, using a private
    `RandomState` instead of the global one. Rows 0 and `num_blocks - 1` (global) are zeros.
    """
    r, bs, heads = pattern.num_random_blocks, pattern.block_size, pattern.num_heads
    rng = np.random.RandomState(seed)
    plan = np.zeros((heads, num_blocks, r), dtype=np.int64)
    if r == 0:
        return plan
    if num_blocks * bs in _PAPER_PLAN_LENGTHS:
        # The paper plan is drawn for max_position_embeddings and cut; random blocks lie in the
        # first 1024 tokens. One independent draw per head, in head order.
        full_blocks = pattern.max_position_embeddings // bs
        for h in range(heads):
            rows = _paper_plan(full_blocks, r, last_idx=1024, block_size=bs, rng=rng)
            plan[h, 1 : num_blocks - 1] = rows[: num_blocks - 2]
        return plan
    plan_lengths, plan_counts = _plan_bounds(num_blocks, r)
    rows = _headwise_plan(num_blocks, heads, plan_lengths, plan_counts, rng)
    plan[:, 1 : num_blocks - 1] = rows
    return plan


def _paper_plan(num_blocks: int, r: int, last_idx: int, block_size: int, rng) -> np.ndarray:
    """Rows 1..num_blocks-2 of the reference 'paper' plan (including its edge-row quirks)."""
    out = np.zeros((num_blocks - 2, r), dtype=np.int64)
    middle = np.arange(1, num_blocks - 1)
    last = num_blocks - 1
    if last_idx > 2 * block_size:
        last = last_idx // block_size - 1
    for i in range(1, num_blocks - 1):
        start, end = i - 2, i
        if i == 1:
            choices = middle[2:last]
        elif i == 2:
            choices = middle[3:last]
        elif i in (num_blocks - 3, num_blocks - 2):
            # The reference does not exclude the window here, so a random block can repeat a
            # window block; we keep that (the repeated block counts twice) to stay faithful.
            choices = middle[:last]
        elif start > last:
            choices = middle[:last]
        elif end + 1 == last:
            choices = middle[:start]
        else:
            choices = np.concatenate((middle[:start], middle[end + 1 : last]))
        out[i - 1] = rng.permutation(choices)[:r]
    return out


def _plan_bounds(num_blocks: int, r: int) -> tuple[list[int], list[int]]:
    """Block ranges and random counts of the reference's generic plan."""
    if 2 * r + 5 < num_blocks:
        return [2 * r + 5, num_blocks], [r, 0]
    if r + 5 < num_blocks:
        return [r + 5, num_blocks], [r // 2, r - r // 2]
    return [num_blocks], [r]


def _headwise_plan(num_blocks, heads, plan_lengths, plan_counts, rng) -> np.ndarray:
    """Rows 1..num_blocks-2 of the reference's per-head plan (`..._with_head`)."""
    total = int(sum(plan_counts))
    plan = np.zeros((heads, num_blocks, total), dtype=np.int64)
    top = 1
    last_plan = plan_lengths.index(num_blocks)
    for p in range(last_plan + 1):
        if p > 0:
            if plan_counts[p] > 0:
                lo, hi = int(sum(plan_counts[:p])), int(sum(plan_counts[: p + 1]))
                for row in range(top, plan_lengths[p - 1]):
                    for h in range(heads):
                        plan[h, row, lo:hi] = _row_draw(row, plan_lengths[p - 1], plan_lengths[p], plan_counts[p], rng)
            for q in range(p):
                if plan_counts[q] == 0:
                    continue
                for row in range(plan_lengths[p - 1], plan_lengths[p]):
                    lo = int(sum(plan_counts[:q]))
                    to_start = plan_lengths[q - 1] if q > 0 else 0
                    hi = int(sum(plan_counts[: q + 1]))
                    for h in range(heads):
                        plan[h, row, lo:hi] = _row_draw(row, to_start, plan_lengths[q], plan_counts[q], rng)
        if plan_counts[p] == 0:
            continue
        hi = int(sum(plan_counts[: p + 1]))
        lo, from_start, to_start = 0, top, 0
        if p > 0:
            lo = int(sum(plan_counts[:p]))
            from_start = to_start = plan_lengths[p - 1]
        for row in range(from_start, plan_lengths[p]):
            for h in range(heads):
                plan[h, row, lo:hi] = _row_draw(row, to_start, plan_lengths[p], plan_counts[p], rng)
    return plan[:, 1 : num_blocks - 1]


def _row_draw(row: int, to_start: int, to_end: int, count: int, rng) -> np.ndarray:
    """`count` random blocks in [to_start, to_end) avoiding the window and the global blocks."""
    permuted = rng.permutation(np.arange(to_start, to_end))
    illegal = set(range(row - 1, row + 2)) | {0, to_end - 1}
    if row == 1:
        illegal.add(to_end - 2)
    if row == to_end - 2:
        illegal.add(1)
    chosen = [b for b in permuted if b not in illegal][:count]
    return np.asarray(chosen, dtype=np.int64)


def uniform_random_plan(
    pattern: SparsePattern, num_blocks: int, global_blocks: tuple[int, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`r` distinct random blocks per (head, row), drawn from the whole sequence.

    Excludes the row's window and the global blocks, so no block is counted twice. Returns the
    plan and a validity mask (False where fewer than `r` blocks were left to draw from).
    """
    r, half = pattern.num_random_blocks, pattern.window_blocks // 2
    rng = np.random.RandomState(seed)
    plan = np.zeros((pattern.num_heads, num_blocks, r), dtype=np.int64)
    valid = np.zeros_like(plan, dtype=bool)
    is_global = np.zeros(num_blocks, dtype=bool)
    is_global[list(global_blocks)] = True
    for h in range(pattern.num_heads):
        for row in range(num_blocks):
            free = ~is_global
            free[max(0, row - half) : row + half + 1] = False
            choices = np.flatnonzero(free)
            picked = rng.permutation(choices)[:r]
            plan[h, row, : len(picked)] = picked
            valid[h, row, : len(picked)] = True
    return plan, valid


def counts_global_twice(pattern: SparsePattern, reference_layout: bool) -> bool:
    """Whether the reference plan is drawn: it exists only for its own layout (first/last block
    global, a window of 3), and a random block of it that is global counts twice."""
    return pattern.random_plan == "reference" and reference_layout and pattern.window_blocks == 3


def random_slots(
    pattern: SparsePattern, seed: int, num_blocks: int, plan_globals: tuple[int, ...], reference_layout: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One example's random blocks `[H, num_blocks, r]` and their validity (see `example_slots`)."""
    if counts_global_twice(pattern, reference_layout) and pattern.num_random_blocks > 0:
        rand = reference_random_plan(pattern, num_blocks, seed)
        return rand, np.ones_like(rand, dtype=bool)
    return uniform_random_plan(pattern, num_blocks, plan_globals, seed)


# --------------------------------------------------------------------------------------------
# One example's slot table
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def example_slots(
    pattern: SparsePattern,
    seed: int,
    num_blocks: int,
    global_blocks: tuple[int, ...],
    reference_layout: bool,
    plan_globals: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot table of one example: key blocks `[H, num_blocks, S]` and their validity.

    Slots are: every global block, the window (clipped to the sequence), then the random blocks.
    A window slot that is a global block is dropped (that block is already a slot).
    `reference_layout` (first and last block global) selects the reference random plan when the
    pattern asks for it and the window is the reference's 3 blocks; other layouts draw uniformly.
    `plan_globals`: the layout's own global blocks (default `global_blocks`). A uniform plan is
    drawn around these alone, so that it is a function of the length (an exported graph reads it
    from a table, `longbird_exportable_block`); a drawn block that is global for another reason
    (`global_prefix_length`) is then dropped.
    """
    heads, half = pattern.num_heads, pattern.window_blocks // 2
    rows = np.arange(num_blocks)
    globals_ = np.broadcast_to(np.asarray(global_blocks, dtype=np.int64), (num_blocks, len(global_blocks)))
    window = rows[:, None] + np.arange(-half, half + 1)[None, :]
    window_ok = (window >= 0) & (window < num_blocks)
    window = np.clip(window, 0, num_blocks - 1)
    is_global = np.zeros(num_blocks, dtype=bool)
    is_global[list(global_blocks)] = True
    window_ok &= ~is_global[window]
    rand, rand_ok = random_slots(pattern, seed, num_blocks, plan_globals or global_blocks, reference_layout)
    if not counts_global_twice(pattern, reference_layout):
        rand_ok = rand_ok & ~is_global[rand]  # a no-op unless a prefix made more blocks global
    # Random slots stay as drawn: the reference plan can hit a global block (e.g. the last block
    # of a 1024-token input when the plan is drawn for 4096) and then counts it twice, as
    # transformers and the TF original do; a uniform plan's never count (dropped above).

    def per_head(a):
        return np.broadcast_to(a, (heads, *a.shape))

    keys = np.concatenate([per_head(globals_), per_head(window), rand], axis=-1)
    valid = np.concatenate([per_head(np.ones_like(globals_, dtype=bool)), per_head(window_ok), rand_ok], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(keys)), torch.from_numpy(np.ascontiguousarray(valid))


# --------------------------------------------------------------------------------------------
# The graph of a batch
# --------------------------------------------------------------------------------------------


@dataclass
class BlockGraph:
    """The attention graph of one layer for one batch, at block granularity.

    Attributes:
        block_size: tokens per block.
        num_blocks: blocks per (padded) sequence; `n = num_blocks * block_size`.
        key_blocks: `[B, H, num_blocks, S]` key block of each slot of each sparse row.
        slot_valid: `[B, H, num_blocks, S]` False for unused slots.
        global_rows: `[B, G]` query blocks attending to every key; padded with `num_blocks`.
        key_valid: `[B, n]` False for padding keys (attention_mask == 0 and block padding).
    """

    block_size: int
    num_blocks: int
    key_blocks: torch.Tensor
    slot_valid: torch.Tensor
    global_rows: torch.Tensor
    key_valid: torch.Tensor
    #: every example attends all its keys (too short for a sparse plan): plain full attention
    full: bool = False
    #: hashable identity of the padding-independent part (slot tables, global rows), or None
    structure: tuple | None = field(default=None, compare=False)
    #: the same graph in host memory: executors derive their index tensors from it without
    #: device synchronisation (set by `to`)
    host: BlockGraph | None = field(default=None, repr=False, compare=False)
    #: per-graph memo of executor-specific data (one graph serves k and v, forward and backward)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def seq_len(self) -> int:
        return self.num_blocks * self.block_size

    def on_host(self) -> BlockGraph:
        return self.host if self.host is not None else self

    def to(self, device: torch.device | str) -> BlockGraph:
        if self.key_blocks.device == torch.device(device):
            return self
        return BlockGraph(
            self.block_size,
            self.num_blocks,
            self.key_blocks.to(device, non_blocking=True),
            self.slot_valid.to(device, non_blocking=True),
            self.global_rows.to(device, non_blocking=True),
            self.key_valid.to(device, non_blocking=True),
            full=self.full,
            structure=self.structure,
            host=self.on_host(),
        )

    def row_is_global(self) -> torch.Tensor:
        """`[B, num_blocks]` True for global query rows."""
        b = self.global_rows.shape[0]
        flags = torch.zeros(b, self.num_blocks + 1, dtype=torch.bool, device=self.global_rows.device)
        flags.scatter_(1, self.global_rows, True)
        return flags[:, : self.num_blocks]

    def block_counts(self) -> torch.Tensor:
        """`[B, H, nb, nb]` how often each query block sees each key block (0 = not at all)."""
        b, h, nb, s = self.key_blocks.shape
        counts = torch.zeros(b, h, nb, nb, dtype=torch.float32, device=self.key_blocks.device)
        counts.scatter_add_(3, self.key_blocks, self.slot_valid.float())
        counts = torch.where(self.row_is_global()[:, None, :, None], torch.ones_like(counts), counts)
        return counts

    def dense_bias(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`[B, H, n, n]` additive attention bias equal to this graph: log(multiplicity) or -inf-like.

        The test oracle (and `flex`'s reference in tests); O(n^2) memory. Short inputs
        (`full`) do not use it: `dense_attention` then takes the key-validity bias alone.
        """
        counts = self.block_counts()
        bs = self.block_size
        counts = counts.repeat_interleave(bs, dim=2).repeat_interleave(bs, dim=3)
        counts = (counts * self.key_valid[:, None, None, :]).to(dtype)
        return torch.where(counts > 0, counts.clamp_min(1).log(), torch.finfo(dtype).min)


def build_block_graph(
    pattern: SparsePattern,
    seed: int,
    num_blocks: int,
    example_blocks: list[int],
    example_globals: list[tuple[int, ...]],
    key_valid: torch.Tensor,
    reference_layout: bool,
    example_plan_globals: list[tuple[int, ...]] | None = None,
) -> BlockGraph:
    """Assemble the graph of a batch from per-example (cached) slot tables.

    Args:
        num_blocks: padded blocks of the batch.
        example_blocks: blocks holding real tokens, per example (its graph ends there, so padding
            after it never changes the example's outputs).
        example_globals: global blocks per example. An example too short for a sparse plan gets
            every block global (full attention), decided per example and per call.
        key_valid: `[B, n]` bool.
        example_plan_globals: per example, the layout's own global blocks (see `example_slots`).
    """
    plan_globals = tuple(map(tuple, example_plan_globals or example_globals))
    structure = (
        pattern,
        seed,
        num_blocks,
        tuple(example_blocks),
        tuple(map(tuple, example_globals)),
        reference_layout,
        plan_globals,
    )
    key_blocks, slot_valid, global_rows = _batch_slots(*structure)
    full = all(not pattern.fits(nb, len(g)) or len(g) >= nb for nb, g in zip(example_blocks, example_globals))
    return BlockGraph(
        pattern.block_size, num_blocks, key_blocks, slot_valid, global_rows, key_valid, full=full, structure=structure
    )


@lru_cache(maxsize=256)
def _batch_slots(pattern, seed, num_blocks, example_blocks, example_globals, reference_layout, plan_globals):
    """The padding-independent part of a batch's graph, cached: batches of the same shape reuse it."""
    heads = pattern.num_heads
    keys, valid, rows = [], [], []
    for nb_real, globals_, own in zip(example_blocks, example_globals, plan_globals):
        if pattern.fits(nb_real, len(globals_)):
            k, v = example_slots(pattern, seed, nb_real, globals_, reference_layout, own)
        else:  # too short for a sparse plan: full attention for this example (all rows global)
            globals_ = tuple(range(nb_real))
            k = torch.zeros(heads, nb_real, 1, dtype=torch.long)
            v = torch.ones(heads, nb_real, 1, dtype=torch.bool)
        keys.append(k)
        valid.append(v)
        rows.append(list(globals_))
    width = max(k.shape[-1] for k in keys)
    key_blocks = torch.zeros(len(keys), heads, num_blocks, width, dtype=torch.long)
    slot_valid = torch.zeros(len(keys), heads, num_blocks, width, dtype=torch.bool)
    for i, (k, v) in enumerate(zip(keys, valid)):
        key_blocks[i, :, : k.shape[1], : k.shape[2]] = k
        slot_valid[i, :, : v.shape[1], : v.shape[2]] = v
        # rows past the example's end: attend to block 0 only (outputs are discarded, kept finite)
        slot_valid[i, :, k.shape[1] :, 0] = True
    longest = max(len(r) for r in rows)
    global_rows = torch.full((len(rows), longest), num_blocks, dtype=torch.long)
    for i, r in enumerate(rows):
        global_rows[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return key_blocks, slot_valid, global_rows


# --------------------------------------------------------------------------------------------
# A batch laid out for the graph: where global tokens, real tokens and block padding sit
# --------------------------------------------------------------------------------------------


@dataclass
class SequenceLayout:
    """How a batch is laid out inside the encoder.

    Internal sequence = `[extra global tokens, padded to whole blocks] + [tokens] + [padding to a
    whole block]` (block_sparse) or `[extra global tokens] + [tokens]` (original_full).
    """

    num_prefix: int  # internal positions before the first token (extra global tokens + their padding)
    num_global: int  # extra global tokens (learned, or the caller's global_input_ids)
    seq_len: int  # tokens given by the caller
    key_valid: torch.Tensor  # [B, n] bool over the internal sequence
    global_blocks: list[tuple[int, ...]]  # per example (block_sparse only)
    plan_globals: list[tuple[int, ...]]  # per example: global_blocks less the prefix ones (`example_slots`)
    real_blocks: list[int]  # per example: blocks up to the last real token (block_sparse only)
    token_end: torch.Tensor  # [B] one past each example's last real token
    #: set when the batch runs padding-free: hidden states are then one packed row `[1, T, H]`
    packing: Packing | None = None
    #: while exporting (lengths stay tensors, `longbird_exportable_block`): the caller's prefix
    global_prefix_length: torch.Tensor | None = None

    def strip(self, hidden: torch.Tensor) -> torch.Tensor:
        """Internal `[B, n, H]` (or packed `[1, T, H]`) -> the caller's `[B, seq_len, H]`; zeros after
        each example's last real token (in both layouts, so outputs never depend on the layout)."""
        if self.packing is not None:
            return self.packing.strip(hidden)
        after_end = torch.arange(self.seq_len, device=hidden.device) >= self.token_end[:, None]
        return hidden[:, self.num_prefix : self.num_prefix + self.seq_len].masked_fill(after_end[..., None], 0)

    def global_states(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """The extra global tokens' `[B, g, H]` (None without them)."""
        if not self.num_global:
            return None
        if self.packing is not None:
            return self.packing.global_states(hidden)
        return hidden[:, : self.num_global]


def make_layout(
    config,
    attention_mask: torch.Tensor,
    global_prefix_length: torch.Tensor | None,
    global_attention_mask: torch.Tensor | None = None,
    checks: ValueChecks | None = None,
    pack: bool = True,
) -> SequenceLayout:
    """`config`: a BigBird or BigBird-Pegasus config. `global_attention_mask` `[B, g]`: the caller's
    global input (replaces the learned tokens).
    `checks`: the input checks still pending on an accelerator; they are settled here, before any
    embedding lookup, riding on the transfer of the per-example lengths the graph is built from.
    `pack`: run padding-free when the batch has padding (off when attention weights are wanted:
    they are returned padded)."""
    checks = checks if checks is not None else ValueChecks()
    exporting = is_exporting()
    pack = pack and not exporting  # an exported graph runs the padded batch: no lengths on the host
    batch, seq_len = attention_mask.shape
    device = attention_mask.device
    mask = attention_mask.bool()
    if global_attention_mask is not None:
        globals_valid = global_attention_mask.bool()
    else:
        globals_valid = torch.ones(batch, config.num_global_tokens, dtype=torch.bool, device=device)
    g = globals_valid.shape[1]
    has_token = mask.any(1)
    last = torch.where(
        has_token, seq_len - 1 - mask.flip(1).int().argmax(1), torch.zeros_like(has_token, dtype=torch.long)
    )
    if config.attention_type == "original_full":
        key_valid = torch.cat([globals_valid, mask], 1)
        if not pack:
            checks.assert_on_device()  # no host transfer on this path
            return SequenceLayout(g, g, seq_len, key_valid, [], [], [], last + 1)
        lengths = checks.fetch(g + last + 1)
        keys = [(length,) for length in lengths]
        packing = make_packing(lengths, keys, g + seq_len, g, seq_len, g, device)
        return SequenceLayout(g, g, seq_len, key_valid, [], [], [], last + 1, packing)

    bs = config.block_size
    g_blocks = -(-g // bs)
    num_prefix = g_blocks * bs
    pad = (seq_len + bs - 1) // bs * bs - seq_len  # whole blocks (a form torch.export can reason about)
    key_valid = torch.cat(
        [
            globals_valid,
            torch.zeros(batch, num_prefix - g, dtype=torch.bool, device=device),
            mask,
            torch.zeros(batch, pad, dtype=torch.bool, device=device),
        ],
        dim=1,
    )
    if exporting:
        return SequenceLayout(
            num_prefix, g, seq_len, key_valid, [], [], [], last + 1, global_prefix_length=global_prefix_length
        )
    # An example's graph ends at its last real token: padding after it never changes its outputs.
    token_end = checks.fetch(last + 1)
    real_blocks = [g_blocks + (end - 1) // bs + 1 for end in token_end]
    prefix_blocks = [0] * batch
    if global_prefix_length is not None:
        prefix_blocks = (-(-global_prefix_length.to(torch.long) // bs)).tolist()
    global_blocks, plan_globals = [], []
    for nb_real, extra in zip(real_blocks, prefix_blocks):
        own = set(range(g_blocks))
        if g == 0:  # BigBird-ITC: the first and the last block of the example are global
            own |= {0, nb_real - 1}
        plan_globals.append(tuple(sorted(own)))
        lead = own | set(range(g_blocks, g_blocks + extra))
        global_blocks.append(tuple(sorted(b for b in lead if b < nb_real)))
    packing = None
    if pack:
        lengths = [nb * bs for nb in real_blocks]
        keys = [(nb, globals_, own) for nb, globals_, own in zip(real_blocks, global_blocks, plan_globals)]
        ends = [num_prefix + end for end in token_end]
        packing = make_packing(lengths, keys, num_prefix + seq_len + pad, num_prefix, seq_len, g, device, ends)
    return SequenceLayout(
        num_prefix, g, seq_len, key_valid, global_blocks, plan_globals, real_blocks, last + 1, packing
    )


def sparse_pattern(config) -> SparsePattern:
    """The config-level part of the block-sparse graph (BigBird and BigBird-Pegasus configs)."""
    return SparsePattern(
        block_size=config.block_size,
        num_heads=config.num_attention_heads,
        window_blocks=config.window_blocks,
        num_random_blocks=config.num_random_blocks,
        random_plan=config.random_plan,
        max_position_embeddings=config.max_position_embeddings,
    )


def to_internal(hidden: torch.Tensor, layout: SequenceLayout, global_embeds: torch.Tensor | None) -> torch.Tensor:
    """`[B, L, H]` -> the internal sequence: global tokens (+ block padding) in front, the end
    padded to a whole block."""
    batch = hidden.shape[0]
    parts = [] if global_embeds is None else [global_embeds.to(hidden.dtype)]
    gap = layout.num_prefix - layout.num_global
    tail = layout.key_valid.shape[1] - layout.num_prefix - layout.seq_len
    if gap:
        parts.append(hidden.new_zeros(batch, gap, hidden.shape[2]))
    parts.append(hidden)
    if is_exporting() or tail:  # exporting: the tail's size is symbolic (zero for some lengths)
        parts.append(hidden.new_zeros(batch, tail, hidden.shape[2]))
    internal = torch.cat(parts, dim=1) if len(parts) > 1 else hidden
    return layout.packing.pack(internal) if layout.packing is not None else internal


def layer_graphs(config, pattern: SparsePattern, layout: SequenceLayout, hidden: torch.Tensor):
    """Per layer: the block graph (block_sparse), or one dense mask for every layer (original_full);
    for a packed batch, per layer a `PackedGraph` (each group's graph or key mask).
    Returns `(graphs, full_mask)`."""
    if layout.packing is not None:
        return packed_layer_graphs(config, pattern, layout, hidden.device), None
    if config.attention_type != "block_sparse":
        full_mask = create_bidirectional_mask(
            config=config, inputs_embeds=hidden, attention_mask=layout.key_valid.to(torch.long)
        )
        return [None] * config.num_hidden_layers, full_mask
    n = hidden.shape[1]
    if is_exporting():
        from .longbird_exportable_block import plan_table, tensor_block_graphs  # it builds on this module

        layout_blocks = layout.num_prefix // config.block_size
        max_blocks = layout_blocks + -(-config.max_position_embeddings // config.block_size)
        tables = [plan_table(pattern, layer, max_blocks, layout_blocks) for layer in range(config.num_hidden_layers)]
        graphs = tensor_block_graphs(
            config, pattern, tables, layout.key_valid, layout.token_end, layout_blocks, layout.global_prefix_length
        )
        return graphs, None
    graphs = []
    for layer in range(config.num_hidden_layers):
        graph = build_block_graph(
            pattern,
            seed=layer,
            num_blocks=n // config.block_size,
            example_blocks=layout.real_blocks,
            example_globals=layout.global_blocks,
            key_valid=layout.key_valid.cpu(),
            reference_layout=layout.num_global == 0,
            example_plan_globals=layout.plan_globals,
        )
        graphs.append(graph.to(hidden.device))
    return graphs, None


def packed_layer_graphs(config, pattern: SparsePattern, layout: SequenceLayout, device) -> list[PackedGraph]:
    """Per layer, each group's graph: built exactly as for one of its examples alone."""
    key_valid = layout.key_valid.cpu()
    groups = layout.packing.groups
    group_masks = [key_valid[list(group.examples), : group.length] for group in groups]
    if config.attention_type != "block_sparse":
        parts = [(group, mask.to(device)) for group, mask in zip(groups, group_masks)]
        return [PackedGraph(parts)] * config.num_hidden_layers
    graphs = []
    for layer in range(config.num_hidden_layers):
        parts = []
        for group, mask in zip(groups, group_masks):
            num_blocks, globals_, own = group.key
            graph = build_block_graph(
                pattern,
                seed=layer,
                num_blocks=num_blocks,
                example_blocks=[num_blocks] * group.count,
                example_globals=[globals_] * group.count,
                key_valid=mask,
                reference_layout=layout.num_global == 0,
                example_plan_globals=[own] * group.count,
            )
            parts.append((group, graph.to(device)))
        graphs.append(PackedGraph(parts))
    return graphs


def strip_attention(weights: torch.Tensor, layout: SequenceLayout) -> torch.Tensor:
    """Drop block padding (and the padding after extra global tokens) from attention weights."""
    g = layout.num_prefix
    keep = list(range(layout.num_global)) + list(range(g, g + layout.seq_len))
    index = torch.tensor(keep, device=weights.device)
    return weights.index_select(2, index).index_select(3, index)
