"""Padding-free execution: a padded batch as one row of real tokens, and flattened batches.

Each example's attention graph ends at its last real token, so nothing after it changes the
example's outputs. A padded batch can therefore run every token-wise layer (projections,
feed-forward, LayerNorm: most of the time) on the real tokens only:

* `Packing`: the internal sequences of a padded batch, each cut after its last real block (or
  token, for full attention), laid end to end in one row `[1, T, H]`. Examples of the same shape
  sit next to each other (a *group*), so attention runs per group as one dense batched call on a
  plain view of the row, each group on its own graph (`PackedGraph`).
* `FlatBatch`: transformers' padding-free format (`DataCollatorWithFlattening`: one row of
  examples end to end, `position_ids` restarting at 0, optionally `cu_seq_lens_*` and
  `seq_idx`), checked, turned into a padded batch for the model (which then packs it) and the
  outputs turned back.

The graph of a group is built exactly as for that example alone, so outputs at real positions
equal those of the padded (and of the unbatched) computation. Outputs at positions after an
example's last real token are zero.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: keyword arguments of transformers' flattening collator (and FlashAttention kwargs) a model accepts
FLATTENING_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


# --------------------------------------------------------------------------------------------
# Packing a padded batch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedGroup:
    """Examples of one shape, side by side in the packed row: rows `start .. start + count * length`
    (groups follow each other, so attention splits the row by `count * length`)."""

    start: int
    count: int
    length: int  # internal positions per example
    examples: tuple[int, ...]  # their indices in the batch
    key: tuple  # what makes their graphs equal (lengths, global blocks)


@dataclass
class Packing:
    """Where each example's internal positions sit in the packed row."""

    groups: list[PackedGroup]
    total: int  # packed rows T
    pack_index: torch.Tensor  # [T] rows of the internal batch flattened to [B * n]
    strip_index: torch.Tensor  # [B * L] packed row of each caller position (T: a zero row)
    global_index: torch.Tensor | None  # [B * g] packed rows of the extra global tokens
    batch: int
    seq_len: int  # the caller's L
    num_global: int
    token_source: torch.Tensor  # [T_tok] caller position (b * L + p) of each packed caller token
    assemble_index: torch.Tensor  # [T] row of [tokens; global tokens; a zero row] for each packed row

    def tokens(self, *inputs: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The caller's per-token inputs (`[B, L]` or `[B, L, H]`; position ids may be `[1, L]` or
        None: then the caller's positions) at the packed tokens only: `[1, T_tok, ...]`."""
        gathered = []
        for x in inputs:
            if x is not None:
                x = x.expand(self.batch, *x.shape[1:]).reshape(self.batch * self.seq_len, *x.shape[2:])
                x = x.index_select(0, self.token_source).unsqueeze(0)
            gathered.append(x)
        return gathered

    def positions(self) -> torch.Tensor:
        """`[1, T_tok]` the caller position of each packed token (default position ids)."""
        return (self.token_source % self.seq_len).unsqueeze(0)

    def assemble(self, tokens: torch.Tensor, global_embeds: torch.Tensor | None) -> torch.Tensor:
        """Embedded packed tokens `[1, T_tok, H]` (+ global tokens `[B, g, H]`) -> the packed row
        `[1, T, H]`: what `pack` makes of the padded internal batch, without embedding the padding."""
        parts = [tokens.squeeze(0)]
        if global_embeds is not None:
            parts.append(global_embeds.to(tokens.dtype).reshape(-1, tokens.shape[-1]))
        parts.append(tokens.new_zeros(1, tokens.shape[-1]))
        return torch.cat(parts).index_select(0, self.assemble_index).unsqueeze(0)

    def pack(self, internal: torch.Tensor) -> torch.Tensor:
        """Internal `[B, n, H]` -> packed `[1, T, H]`."""
        return internal.reshape(-1, internal.shape[-1]).index_select(0, self.pack_index).unsqueeze(0)

    def strip(self, packed: torch.Tensor) -> torch.Tensor:
        """Packed `[1, T, H]` -> the caller's `[B, L, H]` (zeros after each example's last real token)."""
        rows = torch.cat([packed.squeeze(0), packed.new_zeros(1, packed.shape[-1])])
        return rows.index_select(0, self.strip_index).view(self.batch, self.seq_len, -1)

    def global_states(self, packed: torch.Tensor) -> torch.Tensor:
        """Packed `[1, T, H]` -> the extra global tokens' `[B, g, H]`."""
        return packed.squeeze(0).index_select(0, self.global_index).view(self.batch, self.num_global, -1)


def make_packing(
    lengths: list[int],
    keys: list[tuple],
    internal_len: int,
    num_prefix: int,
    seq_len: int,
    num_global: int,
    device,
    ends: list[int] | None = None,
    always: bool = False,
) -> Packing | None:
    """The packing of a batch whose example `i` needs its first `lengths[i]` internal positions;
    examples with equal `keys` (which include the length) form a group. `ends`: one past each
    example's last real token (internal positions; default `lengths`): caller positions from there
    on read zeros. None when packing would not drop anything (no example ends before the padded
    length), unless `always`."""
    batch = len(lengths)
    if not always and all(length == internal_len for length in lengths):
        return None
    order = sorted(range(batch), key=lambda i: (keys[i], i))
    groups, offsets, start = [], [0] * batch, 0
    for i in order:
        if groups and groups[-1].key == keys[i]:
            last = groups[-1]
            groups[-1] = PackedGroup(last.start, last.count + 1, last.length, (*last.examples, i), last.key)
        else:
            groups.append(PackedGroup(start, 1, lengths[i], (i,), keys[i]))
        offsets[i] = start
        start += lengths[i]
    total = start
    pack_index = torch.cat([torch.arange(lengths[i]) + i * internal_len for i in order])
    positions = torch.arange(seq_len) + num_prefix
    length_of = torch.tensor(ends if ends is not None else lengths)[:, None]
    offset_of = torch.tensor(offsets)[:, None]
    strip_index = torch.where(positions < length_of, offset_of + positions, total).reshape(-1)
    global_index = (offset_of + torch.arange(num_global)).reshape(-1) if num_global else None
    # each packed row's source: a caller token, an extra global token, or nothing (block padding)
    example, internal = pack_index // internal_len, pack_index % internal_len
    is_token = (internal >= num_prefix) & (internal < num_prefix + seq_len)
    token_source = (example * seq_len + internal - num_prefix)[is_token]
    is_global = internal < num_global
    zero_row = len(token_source) + batch * num_global
    assemble_index = torch.full_like(pack_index, zero_row)
    assemble_index[is_token] = torch.arange(len(token_source))
    assemble_index[is_global] = len(token_source) + example[is_global] * num_global + internal[is_global]
    return Packing(
        groups,
        total,
        pack_index.to(device),
        strip_index.to(device),
        None if global_index is None else global_index.to(device),
        batch,
        seq_len,
        num_global,
        token_source.to(device),
        assemble_index.to(device),
    )


@dataclass
class PackedGraph:
    """One layer's attention over a packed row: per group, its graph (a `BlockGraph`), or for full
    attention its `[count, length]` key-validity mask."""

    parts: list[tuple[PackedGroup, object]]


# --------------------------------------------------------------------------------------------
# transformers' flattened batches
# --------------------------------------------------------------------------------------------


@dataclass
class FlatBatch:
    """A flattened row `[1, total]` of examples and the padded batch `[B, longest]` it stands for."""

    lengths: list[int]
    to_padded: torch.Tensor  # [B * longest] flat position of each padded position (total: padding)
    to_flat: torch.Tensor  # [total] padded position of each flat position

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def longest(self) -> int:
        return max(self.lengths)

    @property
    def starts(self) -> torch.Tensor:
        """`[B]` flat position of each example's first token."""
        return self.to_flat.new_tensor([0, *self.lengths[:-1]]).cumsum(0)

    def attention_mask(self) -> torch.Tensor:
        return (self.to_padded < sum(self.lengths)).view(self.batch, self.longest).long()

    def pad(self, flat: torch.Tensor | None, fill=0) -> torch.Tensor | None:
        """`[1, total, ...]` -> `[B, longest, ...]` with `fill` after each example."""
        if flat is None:
            return None
        rows = torch.cat([flat.squeeze(0), flat.new_full((1, *flat.shape[2:]), fill)])
        return rows.index_select(0, self.to_padded).view(self.batch, self.longest, *flat.shape[2:])

    def flatten(self, padded: torch.Tensor | None) -> torch.Tensor | None:
        """`[B, longest, ...]` -> `[1, total, ...]`."""
        if padded is None:
            return None
        return padded.reshape(-1, *padded.shape[2:]).index_select(0, self.to_flat).unsqueeze(0)


def flat_batch(
    position_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    flattening: dict,
    first_input: torch.Tensor,
    device: torch.device,
) -> FlatBatch | None:
    """The flattened batch described by `position_ids` restarting at 0 in one row (or by
    `cu_seq_lens_*` / `seq_idx`), or None for an ordinary batch. Raises a `ValueError` naming the
    argument when the description is inconsistent."""
    flattening = {k: v for k, v in flattening.items() if v is not None}
    # one row whose positions restart at 0: several examples (a padded batch's rows never restart)
    if not isinstance(position_ids, torch.Tensor) or position_ids.dim() != 2:
        position_ids = None  # not a flattened batch's: the model checks it
    restarts = position_ids is not None and position_ids.shape[0] == 1 and bool((position_ids[0, 1:] == 0).any())
    if not restarts and not flattening:
        return None
    if first_input.shape[0] != 1:
        raise ValueError(
            f"A flattened batch (position_ids restarting at 0, or cu_seq_lens / seq_idx) must be one row [1, total], "
            f"but the input has {first_input.shape[0]} rows; flatten the whole batch "
            f"(transformers.DataCollatorWithFlattening) or pass a padded batch without these."
        )
    input_len = first_input.shape[1]
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        raise ValueError(
            "A flattened batch (position_ids restarting at 0, or cu_seq_lens / seq_idx) was given with an "
            "`attention_mask` that marks padding; a flattened batch has no padding. Pass either a flattened batch "
            "without attention_mask, or a padded batch with attention_mask and position_ids counting up per row."
        )
    starts = None
    if position_ids is not None:
        pos = position_ids[0].long()
        steps = pos[1:] - pos[:-1]
        bad = ~((steps == 1) | (pos[1:] == 0))
        if int(pos[0]) != 0 or bool(bad.any()):
            at = 0 if int(pos[0]) != 0 else int(bad.nonzero()[0, 0]) + 1
            raise ValueError(
                f"`position_ids` of a flattened batch must start at 0 and count up by 1 inside each example "
                f"(restarting at 0 for the next one), as transformers.DataCollatorWithFlattening makes them; "
                f"found {pos[max(at - 1, 0) : at + 2].tolist()} at position {at} (a gap or a decrease inside an "
                f"example). Build the batch with DataCollatorWithFlattening(position_ids_start=0)."
            )
        starts = (pos == 0).nonzero().squeeze(1).tolist()
    for name in ("cu_seq_lens_q", "cu_seq_lens_k"):
        if name in flattening:
            cu = torch.as_tensor(flattening[name]).reshape(-1).long().tolist()
            if cu[0] != 0 or cu[-1] != input_len or any(b <= a for a, b in zip(cu, cu[1:])):
                raise ValueError(
                    f"`{name}` must rise strictly from 0 to the number of tokens ({input_len}); got {cu[:8]}..."
                )
            if starts is None:
                starts = cu[:-1]
            elif cu[:-1] != starts:
                raise ValueError(
                    f"`{name}` ({cu[:8]}...) disagrees with `position_ids`, which restart at 0 at {starts[:8]}...; "
                    f"pass the values DataCollatorWithFlattening made together, or only position_ids."
                )
    if "seq_idx" in flattening:
        seq_idx = torch.as_tensor(flattening["seq_idx"]).reshape(-1).long()
        changes = [0, *((seq_idx[1:] != seq_idx[:-1]).nonzero().squeeze(1) + 1).tolist()]
        if starts is None:
            starts = changes
        elif changes != starts:
            raise ValueError(
                f"`seq_idx` changes example at {changes[:8]}... but `position_ids` / `cu_seq_lens` start examples "
                f"at {starts[:8]}...; pass the values DataCollatorWithFlattening made together."
            )
    lengths = [b - a for a, b in zip(starts, [*starts[1:], input_len])]
    longest, total = max(lengths), input_len
    padded_pos = torch.arange(longest)[None, :]
    start_of = torch.tensor(starts)[:, None]
    to_padded = torch.where(padded_pos < torch.tensor(lengths)[:, None], start_of + padded_pos, total).reshape(-1)
    to_flat = torch.cat([torch.arange(n) + i * longest for i, n in enumerate(lengths)])
    return FlatBatch(lengths, to_padded.to(device), to_flat.to(device))


#: per-token inputs of a flattened batch, padded to `[B, longest]` before the model runs
TOKEN_INPUTS = ("input_ids", "inputs_embeds", "token_type_ids", "position_ids")


def flattened_batches(
    token_outputs: tuple[str, ...] = (), token_inputs: tuple[str, ...] = TOKEN_INPUTS, token_labels: bool = False
) -> Callable:
    """Decorate a model's `forward` so that it also takes transformers' flattened batches.

    A flattened batch (see `flat_batch`) is padded to `[B, longest]` (the model then runs it
    padding-free, `Packing`), per-token outputs (`last_hidden_state`, `hidden_states` and the
    fields named in `token_outputs`) are flattened back to `[1, total, ...]`; per-example outputs
    (pooled states, sequence-classification logits) stay `[B, ...]`. `token_labels`: `labels` are
    per token (`[1, total]`, -100 between examples as the collator makes them)."""

    def decorate(forward: Callable) -> Callable:
        signature = inspect.signature(forward)

        @functools.wraps(forward)
        def wrapper(self, *args, **kwargs):
            flattening = {name: kwargs.pop(name) for name in FLATTENING_KWARGS if name in kwargs}
            inputs = signature.bind(self, *args, **kwargs).arguments
            inputs.pop("self")
            inputs |= inputs.pop("kwargs", {})
            first = next((inputs[n] for n in ("input_ids", "inputs_embeds") if inputs.get(n) is not None), None)
            if not isinstance(first, torch.Tensor) or first.dim() < 2:
                return forward(self, **inputs)
            flat = flat_batch(inputs.get("position_ids"), inputs.get("attention_mask"), flattening, first, first.device)
            if flat is None:
                return forward(self, **inputs)
            if inputs.get("output_attentions") or (
                inputs.get("output_attentions") is None and self.config.output_attentions
            ):
                raise ValueError(
                    "output_attentions=True is not available for a flattened batch; pass the examples as a padded "
                    "batch (tokenizer(..., padding=True)) to get attention weights."
                )
            names = (*token_inputs, "labels") if token_labels else token_inputs
            for name in names:
                value = inputs.get(name)
                if value is not None:
                    if tuple(value.shape[:2]) != (1, sum(flat.lengths)):
                        raise ValueError(
                            f"`{name}` has shape {tuple(value.shape)} but the flattened batch is [1, "
                            f"{sum(flat.lengths)}]; flatten it the same way (DataCollatorWithFlattening)."
                        )
                    inputs[name] = flat.pad(value, fill=-100 if name == "labels" else 0)
            inputs["attention_mask"] = flat.attention_mask()
            output = forward(self, **inputs)
            for name in ("last_hidden_state", *token_outputs):
                if getattr(output, name, None) is not None:
                    output[name] = flat.flatten(output[name])
            if getattr(output, "hidden_states", None) is not None:
                output["hidden_states"] = tuple(flat.flatten(h) for h in output.hidden_states)
            return output

        return wrapper

    return decorate
