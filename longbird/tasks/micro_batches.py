"""Training steps in token-budget micro-batches (`--micro_batch_tokens N` of every fine-tuning recipe).

A padded batch of long-tailed lengths runs packed, so its compute is that of its real tokens, but
its backward keeps the activations of all of them: for README's batch (4,096 tokens down to 350)
2.9x those of its longest example. A step in micro-batches of at most N real tokens each (whole
examples, longest first, first fit) keeps the activations of one micro-batch at a time and
accumulates the gradients of the whole batch: each micro-batch's loss is scaled by its share of
the batch's loss items (labelled tokens, or examples when the labels are per example), so the sum
is the batch's mean loss, exactly as the Trainer computes it for the whole batch. Micro-batches keep
the batch's padded width: the models skip padding, so it costs no compute.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class MicroBatch:
    inputs: dict[str, Any]
    items: int  # loss items: labels other than -100, or examples when the batch has no labels


def real_lengths(batch: Mapping[str, Any]) -> torch.Tensor:
    """Real tokens per example: the `attention_mask` count, else the full width of `input_ids`."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return mask.ne(0).sum(-1)
    input_ids = batch.get("input_ids")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("micro-batching needs `input_ids` of shape [batch, length] to count each example's tokens.")
    return torch.full((input_ids.shape[0],), input_ids.shape[1])


def loss_items(batch: Mapping[str, Any]) -> torch.Tensor:
    """Loss items per example, as transformers counts them for `num_items_in_batch`."""
    labels = batch.get("labels")
    if isinstance(labels, torch.Tensor) and labels.dim() >= 1:
        return labels.ne(-100).reshape(labels.shape[0], -1).sum(-1)
    return torch.ones(len(real_lengths(batch)), dtype=torch.long)


def check_token_budget(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of tokens (e.g. 4096); got {value!r}.")


def split_by_tokens(batch: Mapping[str, Any], max_tokens: int) -> list[MicroBatch]:
    """Whole examples of `batch` grouped into micro-batches of at most `max_tokens` real tokens
    (first fit, longest first; an example longer than `max_tokens` is a micro-batch alone). Every
    tensor whose first dimension is the batch is cut by rows; anything else is passed on as is."""
    check_token_budget(max_tokens, "max_tokens")
    lengths, items = real_lengths(batch).tolist(), loss_items(batch).tolist()
    groups: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fit = next((g for g, free in enumerate(room) if lengths[i] <= free), None)
        if fit is None:
            groups.append([i])
            room.append(max_tokens - lengths[i])
        else:
            groups[fit].append(i)
            room[fit] -= lengths[i]
    size = len(lengths)
    pieces = []
    for group in groups:
        rows = torch.tensor(sorted(group))
        inputs = {
            key: value.index_select(0, rows.to(value.device))
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size
            else value
            for key, value in batch.items()
        }
        pieces.append(MicroBatch(inputs, sum(items[i] for i in group)))
    return pieces


def run_in_turn(pieces: list[MicroBatch], step: Callable[[MicroBatch, bool], T], device: torch.device) -> list[T]:
    """`step(piece, is_last)` for each piece in order. On CPU, the host memory the previous piece
    freed is handed back before the next one: glibc keeps freed activation-sized blocks in its heap
    and the next piece's slightly different sizes grow it (README's batch in bench_padding.py: peak
    2,571 MiB without this, 2,154 with it), at ~0.1 s a piece at 4,096 tokens."""
    results = []
    for k, piece in enumerate(pieces):
        last = k == len(pieces) - 1
        results.append(step(piece, last))
        if not last and device.type == "cpu":
            release_freed_host_memory()
    return results


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only (not musl)
    except (AttributeError, OSError):
        return None


def release_freed_host_memory() -> None:
    """Return the C heap's free pages to the system (glibc `malloc_trim`); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class MicroBatchedTraining:
    """Trainer mixin: with `micro_batch_tokens`, each training batch runs in micro-batches of at
    most that many real tokens, gradients accumulated (`class T(MicroBatchedTraining, Trainer)`).
    Peak memory: that of the largest micro-batch; the gradients and logged loss: the whole batch's.
    Losses that are not one mean over items (several terms, or negatives taken from the whole batch)
    are not split exactly; the recipes that train those refuse the flag."""

    def __init__(self, *args: Any, micro_batch_tokens: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if micro_batch_tokens is not None:
            check_token_budget(micro_batch_tokens, "micro_batch_tokens")
        self.micro_batch_tokens = micro_batch_tokens
        self._loss_scale: float | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        pieces = split_by_tokens(inputs, self.micro_batch_tokens) if self.micro_batch_tokens else []
        # a piece with nothing to predict adds no gradient (a batch with nothing at all runs whole)
        pieces = [p for p in pieces if p.items > 0] if len(pieces) > 1 else []
        if not pieces:
            return super().training_step(model, inputs, num_items_in_batch)
        if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
            # Trainer divides such a loss by the items of every accumulated batch (of every process
            # with --average_tokens_across_devices) and not by the accumulation steps: mirror it
            denominator = float(num_items_in_batch) / self.current_gradient_accumulation_steps
            if self.args.average_tokens_across_devices:
                denominator /= self.accelerator.num_processes
        else:
            denominator = float(sum(p.items for p in pieces))

        def step(piece: MicroBatch, last: bool) -> torch.Tensor:
            self._loss_scale = piece.items / denominator
            # gradients are all-reduced once, after the last piece
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                return super(MicroBatchedTraining, self).training_step(model, piece.inputs, None)

        try:
            return sum(run_in_turn(pieces, step, self.args.device))
        finally:
            self._loss_scale = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self._loss_scale is None:
            return result
        if return_outputs:
            loss, outputs = result
            return loss * self._loss_scale, outputs
        return result * self._loss_scale
