"""The attention graph of a global-local (ETC) layer, as data.

ETC has two inputs: a long one (tokens) and a global one (e.g. one token per sentence). Four
pieces say who attends to whom, each a mask plus a relation id per (query, key) pair:

* l2l `[B, n_l, 2r + 1]`: a long token and the long tokens within `radius` of it, in window
  layout (column `c` is the key at offset `c - r`);
* g2g `[B, n_g, n_g]`, l2g `[B, n_l, n_g]`, g2l `[B, n_g, n_l]`: dense, because one side is short.

The pieces are built once per batch from a few structure inputs (which example each token
belongs to, which global token each long token belongs to) by the small composable functions
below, or passed in by the caller ("flexible masking": paragraph cuts, multi-hop relations). The
executors (`longbird_attention_executors.global_local_attention`) turn them into the layout
their kernel needs. Relation ids follow the reference: clipped relative positions
`0..2k` for l2l and g2g, and `2k+1` ("other sentence") / `2k+2` ("own sentence") for l2g/g2l.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

@dataclass
class GlobalLocalGraph:
    """Masks (bool, True = may attend) and relation ids (long) of the four attention pieces."""

    radius: int
    l2l_mask: torch.Tensor
    g2g_mask: torch.Tensor
    l2g_mask: torch.Tensor
    g2l_mask: torch.Tensor
    l2l_ids: torch.Tensor | None = None
    g2g_ids: torch.Tensor | None = None
    l2g_ids: torch.Tensor | None = None
    g2l_ids: torch.Tensor | None = None
    #: per-graph memo of executor layouts (one graph serves every layer of a forward pass)
    cache: dict = field(default_factory=dict, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# Relation ids
# --------------------------------------------------------------------------------------------


def relative_position_id(offset: torch.Tensor, max_distance: int) -> torch.Tensor:
    """The reference's clipped relative position label of key offset `j - i`: `min(d, k)` to the
    right (0 is the token itself), `k + min(-d, k)` to the left; `2k + 1` labels in all."""
    return torch.where(offset >= 0, offset.clamp_max(max_distance), max_distance + (-offset).clamp_max(max_distance))


def local_relative_ids(radius: int, max_distance: int, device=None) -> torch.Tensor:
    """`[2r + 1]` relative position ids of the window columns (the same for every query)."""
    return relative_position_id(torch.arange(-radius, radius + 1, device=device), max_distance)


def dense_relative_ids(length: int, max_distance: int, device=None) -> torch.Tensor:
    """`[length, length]` relative position ids (global tokens are ordered like a sequence)."""
    positions = torch.arange(length, device=device)
    return relative_position_id(positions[None, :] - positions[:, None], max_distance)


def membership_ids(sentence_ids: torch.Tensor, num_global: int, max_distance: int) -> torch.Tensor:
    """`[B, n_l, n_g]` l2g ids: `2k + 2` where the global token is the long token's own, else `2k + 1`."""
    own = sentence_ids.unsqueeze(-1) == torch.arange(num_global, device=sentence_ids.device)
    return own.long() + (2 * max_distance + 1)


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def example_ids_from_breakpoints(breakpoints: torch.Tensor) -> torch.Tensor:
    """Reverse cumulative sum of breakpoints (a 1 at the last token of each packed example): the
    examples of a row get distinct ids counting down to 1, padding after the last one gets 0."""
    return breakpoints.flip(-1).cumsum(-1).flip(-1)


def window_offsets(radius: int, device=None) -> torch.Tensor:
    return torch.arange(-radius, radius + 1, device=device)


def window_in_range(length: int, radius: int, device=None) -> torch.Tensor:
    """`[n, 2r + 1]` True where the window column is a position inside the sequence."""
    keys = torch.arange(length, device=device)[:, None] + window_offsets(radius, device)
    return (keys >= 0) & (keys < length)


def window_gather(values: torch.Tensor, radius: int, fill=0) -> torch.Tensor:
    """`[B, n] -> [B, n, 2r + 1]`: each position's neighbours in window layout (`fill` outside)."""
    b, n = values.shape
    keys = torch.arange(n, device=values.device)[:, None] + window_offsets(radius, values.device)
    gathered = values[:, keys.clamp(0, max(n - 1, 0))]
    return gathered.masked_fill(~window_in_range(n, radius, values.device), fill)


def local_segment_mask(example_ids: torch.Tensor, radius: int) -> torch.Tensor:
    """l2l: the window, restricted to keys of the same example."""
    return (window_gather(example_ids, radius, fill=-1) == example_ids.unsqueeze(-1)) & window_in_range(
        example_ids.shape[1], radius, example_ids.device
    )


def segment_mask(query_ids: torch.Tensor, key_ids: torch.Tensor) -> torch.Tensor:
    """`[B, q, k]` True where query and key belong to the same example."""
    return query_ids.unsqueeze(-1) == key_ids.unsqueeze(-2)


def own_global_mask(sentence_ids: torch.Tensor, num_global: int) -> torch.Tensor:
    """`[B, n_l, n_g]` True where the global token is the long token's own (hard l2g / g2l)."""
    return sentence_ids.unsqueeze(-1) == torch.arange(num_global, device=sentence_ids.device)


# --------------------------------------------------------------------------------------------
# The graph of a batch
# --------------------------------------------------------------------------------------------


def build_global_local_graph(
    long_example_ids: torch.Tensor,
    global_example_ids: torch.Tensor,
    sentence_ids: torch.Tensor | None,
    radius: int,
    max_distance: int,
    hard_g2l: bool,
    hard_l2g: bool,
    given: dict[str, torch.Tensor] | None = None,
) -> GlobalLocalGraph:
    """The four pieces from example ids and the token-to-global map; `given` pieces (keys like
    `l2l_mask`, `g2l_ids`) replace the built ones (flexible masking)."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    device = long_example_ids.device
    n_l, n_g = long_example_ids.shape[1], global_example_ids.shape[1]

    def piece(name, build):
        return given[name].to(device) if name in given else build()

    def need_sentence_ids(name):
        if sentence_ids is None:
            raise ValueError(
                f"`sentence_ids` (each long token's global token index) is needed to build `{name}`; "
                f"pass sentence_ids, or pass `{name}` itself."
            )
        return sentence_ids

    def l2g_mask():
        mask = segment_mask(long_example_ids, global_example_ids)
        return mask & own_global_mask(need_sentence_ids("l2g_mask"), n_g) if hard_l2g else mask

    def g2l_mask():
        mask = segment_mask(global_example_ids, long_example_ids)
        return mask & own_global_mask(need_sentence_ids("g2l_mask"), n_g).transpose(1, 2) if hard_g2l else mask

    def l2g_ids():
        return membership_ids(need_sentence_ids("l2g_ids"), n_g, max_distance)

    batch = long_example_ids.shape[0]
    l2g = piece("l2g_ids", l2g_ids)
    return GlobalLocalGraph(
        radius=radius,
        l2l_mask=piece("l2l_mask", lambda: local_segment_mask(long_example_ids, radius)).bool(),
        g2g_mask=piece("g2g_mask", lambda: segment_mask(global_example_ids, global_example_ids)).bool(),
        l2g_mask=piece("l2g_mask", l2g_mask).bool(),
        g2l_mask=piece("g2l_mask", g2l_mask).bool(),
        l2l_ids=piece("l2l_ids", lambda: local_relative_ids(radius, max_distance, device).expand(batch, n_l, -1)),
        g2g_ids=piece("g2g_ids", lambda: dense_relative_ids(n_g, max_distance, device).expand(batch, -1, -1)),
        l2g_ids=l2g,
        g2l_ids=piece("g2l_ids", lambda: l2g.transpose(1, 2)),
    )


def fixed_block_globals(attention_mask: torch.Tensor, tokens_per_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's fixed-block global input: one global token per `tokens_per_block` long
    tokens. Returns `(sentence_ids [B, n_l], global_attention_mask [B, n_g])`; a global token is
    real when its block holds a real token."""
    b, n = attention_mask.shape
    num_global = -(-n // tokens_per_block)
    sentence_ids = (torch.arange(n, device=attention_mask.device) // tokens_per_block).expand(b, n)
    padded = torch.nn.functional.pad(attention_mask.bool(), (0, num_global * tokens_per_block - n))
    global_mask = padded.view(b, num_global, tokens_per_block).any(-1)
    return sentence_ids, global_mask.long()
