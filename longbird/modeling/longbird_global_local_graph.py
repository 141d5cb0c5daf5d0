"""The attention graph of a global-local (ETC) layer, as data.

ETC has two inputs: a long one (tokens) and a global one (e.g. one token per sentence). Four
pieces say who attends to whom, each a mask plus a relation id per (query, key) pair:

* l2l `[B, n_l, 2r + 1]`: a long token and the long tokens within `radius` of it, in window
  layout (column `c` is the key at offset `c - r`);
* g2g `[B, n_g, n_g]`, l2g `[B, n_l, n_g]`, g2l `[B, n_g, n_l]`: dense, because one side is short.

The pieces are built once per batch from a few structure inputs (which example each token
belongs to, which global token each long token belongs to) by the small composable functions
below, or passed in by the caller ("flexible masking": paragraph cuts, multi-hop relations). The
executors (`longbird_global_local_executors.py`) turn them into the layout
their kernel needs. Relation ids follow the reference: clipped relative positions
`0..2k` for l2l and g2g, and `2k+1` ("other sentence") / `2k+2` ("own sentence") for l2g/g2l.

The bottom of the file turns a model's inputs into the graph (`prepare_inputs`: defaults filled
in the reference's way, inputs checked by `check_etc_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..configuration.configuration_longbird_etc import EtcConfig
from .longbird_input_checks import ValueChecks, check_integer_ids, is_exporting
from .longbird_packing import PackedGroup, Packing, make_packing


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

    def select(self, examples: list[int], n_long: int, n_global: int) -> GlobalLocalGraph:
        """The graph of some rows, cut after `n_long` long and `n_global` global positions."""
        index = torch.tensor(examples, device=self.l2l_mask.device)

        def cut(piece, *sizes):
            return None if piece is None else piece.index_select(0, index)[(slice(None), *map(slice, sizes))]

        long_long, global_global = (n_long,), (n_global, n_global)
        long_global, global_long = (n_long, n_global), (n_global, n_long)
        return GlobalLocalGraph(
            self.radius,
            *(cut(p, *size) for p, size in ((self.l2l_mask, long_long), (self.g2g_mask, global_global))),
            *(cut(p, *size) for p, size in ((self.l2g_mask, long_global), (self.g2l_mask, global_long))),
            *(cut(p, *size) for p, size in ((self.l2l_ids, long_long), (self.g2g_ids, global_global))),
            *(cut(p, *size) for p, size in ((self.l2g_ids, long_global), (self.g2l_ids, global_long))),
        )


@dataclass
class PackedGlobalLocalGraph:
    """A padded ETC batch run padding-free (`longbird_packing`): each side packed into one row,
    examples of equal lengths side by side; per group, its rows on both sides and its graph."""

    long: Packing
    global_: Packing
    parts: list[tuple[PackedGroup, PackedGroup, GlobalLocalGraph]]


def pack_global_local(graph: GlobalLocalGraph, long_example: torch.Tensor, global_example: torch.Tensor):
    """The padding-free form of a padded batch: every example cut after its last real token on
    each side (nothing after it changes its outputs: padding is in no example). None when no row
    has padding at its end."""
    n_long, n_global = long_example.shape[1], global_example.shape[1]
    ends = [
        torch.where(ids.any(1), ids.shape[1] - (ids > 0).flip(1).int().argmax(1), 1)
        for ids in (long_example, global_example)
    ]
    long_ends, global_ends = torch.stack(ends).tolist()
    if all(n == n_long for n in long_ends) and all(n == n_global for n in global_ends):
        return None
    keys = [(-a, -b) for a, b in zip(long_ends, global_ends)]  # the same groups, in the same order, on both sides
    device = long_example.device
    long = make_packing(long_ends, keys, n_long, 0, n_long, 0, device, always=True)
    global_ = make_packing(global_ends, keys, n_global, 0, n_global, 0, device, always=True)
    parts = [
        (lg, gg, graph.select(list(lg.examples), lg.length, gg.length)) for lg, gg in zip(long.groups, global_.groups)
    ]
    return PackedGlobalLocalGraph(long, global_, parts)


def zeros_after_last_token(example_ids: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`[B, n, H] -> [B, n, H]` with zeros after each row's last real token (as a packed batch's)."""
    after = (example_ids > 0).flip(-1).cumsum(-1).flip(-1) == 0
    return lambda hidden: hidden.masked_fill(after[..., None], 0)


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


# --------------------------------------------------------------------------------------------
# A model's inputs -> the graph
# --------------------------------------------------------------------------------------------

#: explicit graph inputs a caller may pass (flexible masking), and the graph fields they fill
GRAPH_INPUTS = {
    "l2l_att_mask": "l2l_mask",
    "g2g_att_mask": "g2g_mask",
    "l2g_att_mask": "l2g_mask",
    "g2l_att_mask": "g2l_mask",
    "l2l_relative_att_ids": "l2l_ids",
    "g2g_relative_att_ids": "g2g_ids",
    "l2g_relative_att_ids": "l2g_ids",
    "g2l_relative_att_ids": "g2l_ids",
}


@dataclass
class EtcInputs:
    """A batch after defaults are filled in: both sides' ids/types/masks and the graph."""

    input_ids: torch.Tensor | None
    token_type_ids: torch.Tensor
    global_input_ids: torch.Tensor | None
    global_token_type_ids: torch.Tensor
    long_real: torch.Tensor  # [B, n_l] bool
    global_real: torch.Tensor  # [B, n_g] bool
    graph: GlobalLocalGraph
    examples: tuple[torch.Tensor, torch.Tensor]  # per side [B, n]: example id of each token (0: padding)
    explicit_graph: bool  # the caller passed graph pieces (then the batch is not packed)


def prepare_inputs(config: EtcConfig, *, vocab_size: int | None = None, **inputs) -> EtcInputs:
    """Fill in what the caller left out, following the reference, and build the graph.

    * No global input: fixed-block global tokens (one per `num_tokens_per_block` long tokens).
    * No breakpoints: one example per row, its real tokens given by the attention masks.
    * Explicit `*_att_mask` / `*_relative_att_ids` replace the built pieces.

    `vocab_size`: rows of the token table (default config.vocab_size).
    """
    check_etc_inputs(config, inputs, vocab_size)
    input_ids, embeds = inputs.get("input_ids"), inputs.get("inputs_embeds")
    first = input_ids if input_ids is not None else embeds
    batch, n_long, device = first.shape[0], first.shape[1], first.device
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones(batch, n_long, dtype=torch.long, device=device)
    sentence_ids = inputs.get("sentence_ids")
    global_ids, global_embeds = inputs.get("global_input_ids"), inputs.get("global_inputs_embeds")
    global_mask = inputs.get("global_attention_mask")
    if global_ids is None and global_embeds is None:
        if inputs.get("global_breakpoints") is not None:
            raise ValueError(
                "`global_breakpoints` were given without `global_input_ids`; pass the global input too, or "
                "neither (fixed-block global tokens are then built)."
            )
        sentence_ids, global_mask = fixed_block_globals(attention_mask, config.num_tokens_per_block)
        global_ids = torch.where(global_mask.bool(), config.global_token_id, config.pad_token_id or 0)
    n_global = (global_ids if global_ids is not None else global_embeds).shape[1]
    if global_mask is None:
        global_mask = torch.ones(batch, n_global, dtype=torch.long, device=device)

    long_example = example_ids(inputs.get("long_breakpoints"), attention_mask)
    global_example = example_ids(inputs.get("global_breakpoints"), global_mask)
    given = {field: inputs.get(name) for name, field in GRAPH_INPUTS.items()}
    graph = build_global_local_graph(
        long_example,
        global_example,
        sentence_ids,
        config.local_radius,
        config.relative_pos_max_distance,
        config.use_hard_g2l_mask,
        config.use_hard_l2g_mask,
        given,
    )
    token_types = inputs.get("token_type_ids")
    global_types = inputs.get("global_token_type_ids")
    return EtcInputs(
        input_ids=input_ids,
        # the reference's default segment ids: 1 on the long side, 0 on the global side
        token_type_ids=token_types if token_types is not None else torch.ones_like(attention_mask, dtype=torch.long),
        global_input_ids=global_ids,
        global_token_type_ids=global_types
        if global_types is not None
        else torch.zeros_like(global_mask, dtype=torch.long),
        long_real=long_example > 0,
        global_real=global_example > 0,
        graph=graph,
        examples=(long_example, global_example),
        explicit_graph=any(v is not None for v in given.values()),
    )


def example_ids(breakpoints: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """Per token: its packed example's id (> 0), or 0 for padding (after the last breakpoint, or
    masked)."""
    if breakpoints is None:
        return mask.long()
    return example_ids_from_breakpoints(breakpoints.long()) * mask.long()


def check_etc_inputs(config: EtcConfig, inputs: dict, vocab_size: int | None = None) -> None:
    """Clear errors, naming the argument and the fix, for inputs that would fail deep in torch or
    give silently wrong outputs."""
    input_ids, embeds = inputs.get("input_ids"), inputs.get("inputs_embeds")
    if (input_ids is None) == (embeds is None):
        raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds` (the long input).")
    if input_ids is not None:
        check_integer_ids("input_ids", input_ids)
    first = input_ids if input_ids is not None else embeds
    if first.dim() != (2 if input_ids is not None else 3):
        expected = "[batch, long_length]" if input_ids is not None else "[batch, long_length, hidden]"
        name = "input_ids" if input_ids is not None else "inputs_embeds"
        raise ValueError(f"`{name}` must be {expected}; got shape {tuple(first.shape)}.")
    batch, n_long = first.shape[:2]
    if batch == 0:
        raise ValueError("The batch is empty (batch_size 0); pass at least one example.")
    if n_long == 0:
        raise ValueError("The long input is empty (0 tokens); pass at least one token per row.")
    global_ids, global_embeds = inputs.get("global_input_ids"), inputs.get("global_inputs_embeds")
    if global_ids is not None and global_embeds is not None:
        raise ValueError("Pass at most one of `global_input_ids` and `global_inputs_embeds` (the global input).")
    if global_ids is not None:
        check_integer_ids("global_input_ids", global_ids)
    global_first = global_ids if global_ids is not None else global_embeds
    if global_first is not None and global_first.dim() != (2 if global_ids is not None else 3):
        name = "global_input_ids" if global_ids is not None else "global_inputs_embeds"
        expected = "[batch, global_length]" if global_ids is not None else "[batch, global_length, hidden]"
        raise ValueError(
            f"`{name}` must be {expected}; got shape {tuple(global_first.shape)}. For one example, add the batch "
            f"dimension (e.g. ids.unsqueeze(0)), as for `input_ids`."
        )
    n_global = None if global_first is None else global_first.shape[1]
    if global_first is not None:
        if global_first.shape[0] != batch:
            raise ValueError(
                f"The long input has batch size {batch} but the global input has {global_first.shape[0]}; "
                f"pass one global input row per long input row."
            )
        if n_global == 0:
            raise ValueError(
                "The global input is empty (0 global tokens); ETC needs at least one global token per row: "
                "pass one per sentence (see EtcFeaturizer), or leave `global_input_ids` out to get "
                "fixed-block global tokens."
            )
    if n_global is None and inputs.get("sentence_ids") is not None:
        raise ValueError("`sentence_ids` were given without `global_input_ids`; pass the global tokens they point at.")
    if (inputs.get("long_breakpoints") is None) != (inputs.get("global_breakpoints") is None):
        raise ValueError(
            "Pass `long_breakpoints` and `global_breakpoints` together (one 1 per packed example on each side), "
            "or neither for one example per row."
        )
    long_shape, global_shape = (batch, n_long), (batch, n_global)
    expected = {
        "attention_mask": long_shape,
        "token_type_ids": long_shape,
        "long_breakpoints": long_shape,
        "sentence_ids": long_shape,
        "position_ids": long_shape,
        "global_attention_mask": global_shape,
        "global_token_type_ids": global_shape,
        "global_breakpoints": global_shape,
        "global_position_ids": global_shape,
    }
    window = 2 * config.local_radius + 1
    pieces = {"l2l": (batch, n_long, window), "g2g": (batch, n_global, n_global)}
    pieces |= {"l2g": (batch, n_long, n_global), "g2l": (batch, n_global, n_long)}
    for piece, shape in pieces.items():
        expected[f"{piece}_att_mask"] = shape
        expected[f"{piece}_relative_att_ids"] = shape
    for name, shape in expected.items():
        value = inputs.get(name)
        if value is None:
            continue
        if None in shape:
            raise ValueError(f"`{name}` was given without a global input; pass `global_input_ids` too.")
        if tuple(value.shape) != shape:
            raise ValueError(f"`{name}` has shape {tuple(value.shape)}, expected {shape}.")
    if is_exporting():
        # the checks below read values on the host, which a traced graph cannot: an exported
        # graph's caller checks its inputs before running it
        return
    for name in ("long_breakpoints", "global_breakpoints", *(k for k in GRAPH_INPUTS if k.endswith("mask"))):
        value = inputs.get(name)
        if value is not None and value.numel() and not bool(((value == 0) | (value == 1)).all()):
            raise ValueError(f"`{name}` must hold only 0 and 1, got values {sorted(value.unique().tolist())[:6]}.")
    for name in (k for k in GRAPH_INPUTS if k.endswith("ids")):
        value = inputs.get(name)
        if value is not None and value.numel():
            low, high = int(value.min()), int(value.max())
            if low < 0 or high >= config.relative_vocab_size:
                raise ValueError(
                    f"`{name}` must lie in [0, {config.relative_vocab_size - 1}] (config.relative_vocab_size="
                    f"{config.relative_vocab_size}), got values in [{low}, {high}]."
                )
    sentence_ids = inputs.get("sentence_ids")
    if sentence_ids is not None and sentence_ids.numel():
        real = inputs.get("attention_mask")
        ids = sentence_ids if real is None else sentence_ids[real.bool()]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_global):
            raise ValueError(
                f"`sentence_ids` point at global tokens {int(ids.min())}..{int(ids.max())} but the global input "
                f"has {n_global} tokens (indices 0..{n_global - 1}); give every long token the index of an "
                f"existing global token."
            )
    for name, table in (("token_type_ids", "segment_vocab_size"), ("global_token_type_ids", "segment_vocab_size")):
        value = inputs.get(name)
        size = getattr(config, table)
        if value is not None and value.numel() and (int(value.min()) < 0 or int(value.max()) >= size):
            raise ValueError(f"`{name}` must lie in [0, {size - 1}] (config.{table}={size}).")
    # ids and 0/1 masks: checked at once on CPU; on an accelerator without a host sync (ValueChecks)
    checks = ValueChecks()
    for name in ("input_ids", "global_input_ids"):
        if inputs.get(name) is not None:
            checks.token_ids(name, inputs[name], vocab_size or config.vocab_size)
    for name in ("attention_mask", "global_attention_mask"):
        if inputs.get(name) is not None:
            checks.zeros_and_ones(name, inputs[name])
    checks.assert_on_device()


def sentences_as_examples(sentences: list[torch.Tensor], global_token_id: int) -> dict:
    """One packed row where every sentence (`[n_i]` token ids) is its own example with one global
    token (each global token then summarises exactly its sentence): a model's inputs."""
    lengths = torch.tensor([len(s) for s in sentences], device=sentences[0].device)
    ids = torch.cat(sentences)
    ends = lengths.cumsum(0) - 1
    breakpoints = torch.zeros_like(ids).index_fill_(0, ends, 1)
    count = len(sentences)
    return {
        "input_ids": ids[None],
        "long_breakpoints": breakpoints[None],
        "sentence_ids": torch.repeat_interleave(torch.arange(count, device=ids.device), lengths)[None],
        "global_input_ids": torch.full((1, count), global_token_id, device=ids.device),
        "global_breakpoints": torch.ones(1, count, dtype=torch.long, device=ids.device),
    }
