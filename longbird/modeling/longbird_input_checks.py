"""Checks of the inputs every model takes, with errors that name the argument and the fix.

Shared by the three model files: `ValueChecks` (ids inside their tables, 0/1 masks, without a
host sync on an accelerator), `check_integer_ids`, `table_size`, and the checks of BigBird's and
BigBird-Pegasus' inputs (`check_inputs`, `check_global_inputs`). ETC's structure inputs are
checked beside the graph they build (`longbird_global_local_graph.check_etc_inputs`). The heads'
label checks (`sequence_labels`), loss keyword arguments (`check_loss_kwargs`) and ETC's head signatures
(`takes_inputs`) are here too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

_INTEGER_DTYPES = (torch.long, torch.int)  # what nn.Embedding takes


def check_integer_ids(name: str, ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dtype not in _INTEGER_DTYPES:
        got = type(ids).__name__ if not isinstance(ids, torch.Tensor) else f"a tensor of {ids.dtype}"
        raise TypeError(
            f"`{name}` must be a tensor of integer token ids (torch.long or torch.int, e.g. from "
            f"tokenizer(..., return_tensors='pt')), got {got}."
        )


def table_size(embedding: nn.Module, config) -> int:
    """Rows of a token table (ids must be below it); config.vocab_size for a table of another kind."""
    return getattr(embedding, "num_embeddings", config.vocab_size)


def is_exporting() -> bool:
    """True while `torch.export` traces a model: the graph then runs on tensors alone (no value is
    read on the host; `longbird.export` checks inputs before it runs an exported graph)."""
    return torch.compiler.is_exporting()


class ValueChecks:
    """Checks of input *values*: ids inside their embedding table, masks of 0 and 1.

    A value check needs the values on the host. For a CPU tensor that is a min/max next to a
    whole forward pass, so it runs at once and raises at once. For an accelerator tensor, reading
    a value on the host waits for the device to finish its queued work (a sync), which would cost
    every forward its overlap of host and device. So there the check is only reduced on the
    device (one bool per check) and left pending, and the model settles it without a sync of its
    own:

    * `fetch(values)`: where the model moves values to the host anyway (BigBird: each example's
      real length, which its graph is built from), the pending bools travel in the same transfer
      and fail with the same ValueError as on CPU, before any embedding lookup;
    * `assert_on_device()`: where there is no such transfer (ETC, full attention), a CUDA
      `torch._assert_async` stops the run with a device-side assertion rather than letting a bad
      id reach the embedding or a bad mask value silently count as a token; the readable message
      needs the values on the host (run the batch on CPU to see it). Other accelerators, whose
      support of the assertion is not tested here, are checked on the host (one sync).
    """

    def __init__(self):
        self.pending: list[tuple[torch.Tensor, Callable[[], str]]] = []

    @staticmethod
    def deferred(tensor: torch.Tensor) -> bool:
        """Whether a check of `tensor` waits for `fetch`/`assert_on_device` (not on the CPU)."""
        return tensor.device.type != "cpu"

    def require(self, ok: torch.Tensor, message: Callable[[], str]) -> None:
        """`ok`: a bool scalar tensor; `message()`, called only on failure, says what is wrong and the fix."""
        if is_exporting():
            return
        if self.deferred(ok):
            self.pending.append((ok, message))
        elif not bool(ok):
            raise ValueError(message())

    def token_ids(self, name: str, ids: torch.Tensor, vocab_size: int) -> None:
        """Token ids must index the embedding table: an id outside it is the usual sign of a
        tokenizer that is not the model's."""

        def message():
            low, high = _value_range(ids)
            return (
                f"`{name}` holds token ids in [{low}, {high}], but the model's vocabulary has {vocab_size} tokens "
                f"(ids 0..{vocab_size - 1}, config.vocab_size). This usually means the tokenizer is not the "
                f"model's: load both from the same checkpoint, or give a new model vocab_size=len(tokenizer) "
                f"(model.resize_token_embeddings(len(tokenizer)) for a trained one)."
            )

        self._in_range(ids, vocab_size, message)

    def in_range(self, name: str, ids: torch.Tensor, size: int, field: str) -> None:
        """Ids into a table of `size` rows (`config.<field>`)."""

        def message():
            low, high = _value_range(ids)
            return f"`{name}` must lie in [0, {size - 1}] (config.{field}={size}), got values in [{low}, {high}]."

        self._in_range(ids, size, message)

    def zeros_and_ones(self, name: str, mask: torch.Tensor) -> None:
        """A mask of 1 (a real token) and 0 (padding); any other value would be read as a token."""
        if mask.dtype == torch.bool or not mask.numel():
            return

        def message():
            bad = mask[(mask != 0) & (mask != 1)].unique().tolist()[:6]
            return (
                f"`{name}` must hold only 1 (a real token) and 0 (padding), got {bad}; pass the tokenizer's "
                f"attention_mask, or (mask > 0).long() for a mask of weights."
            )

        self.require(((mask == 0) | (mask == 1)).all(), message)

    def _in_range(self, ids: torch.Tensor, size: int, message: Callable[[], str]) -> None:
        if not ids.numel() or is_exporting():
            return
        if self.deferred(ids):
            self.require(((ids >= 0) & (ids < size)).all(), message)
        else:
            low, high = torch.aminmax(ids)
            if int(low) < 0 or int(high) >= size:
                raise ValueError(message())

    def fetch(self, values: torch.Tensor) -> list[int]:
        """`values.tolist()` (1-D integers), with the pending checks in the same transfer; raises
        the first failed check."""
        if not self.pending:
            return values.tolist()
        flags = torch.stack([ok.to(values.device) for ok, _ in self.pending]).to(values.dtype)
        fetched = torch.cat([values.reshape(-1), flags]).tolist()
        self._raise_failed(fetched[values.numel() :])
        return fetched[: values.numel()]

    def assert_on_device(self) -> None:
        """Settle the pending checks without a host transfer (see the class docstring)."""
        if not self.pending:
            return
        oks = [ok for ok, _ in self.pending]
        if all(ok.device.type == "cuda" for ok in oks):
            torch._assert_async(torch.stack([ok.to(oks[0].device) for ok in oks]).all())
            self.pending.clear()
        else:
            self.settle()

    def settle(self) -> None:
        """Settle the pending checks on the host (one transfer)."""
        if self.pending:
            self._raise_failed(torch.stack([ok.cpu() for ok, _ in self.pending]).tolist())

    def _raise_failed(self, flags: list) -> None:
        pending, self.pending = self.pending, []
        for flag, (_, message) in zip(flags, pending):
            if not flag:
                raise ValueError(message())


def _value_range(values: torch.Tensor) -> tuple:
    low, high = torch.aminmax(values)
    return low.item(), high.item()


def check_inputs(
    config,
    input_ids,
    inputs_embeds,
    attention_mask,
    token_type_ids,
    position_ids,
    global_prefix_length,
    checks=None,
    vocab_size=None,
):
    """Clear errors for bad input, naming the argument and the fix. Returns (batch, seq_len, device).

    Value checks (ids inside their tables, a 0/1 mask) go to `checks` (`ValueChecks`): at once on
    CPU; on an accelerator the caller settles them (`make_layout`). Without `checks` they are
    settled here. `vocab_size`: rows of the token table (default config.vocab_size)."""
    own_checks = checks is None
    checks = ValueChecks() if own_checks else checks
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
    if input_ids is not None:
        check_integer_ids("input_ids", input_ids)
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch_size, seq_len), got {tuple(input_ids.shape)}.")
        shape, device = tuple(input_ids.shape), input_ids.device
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"`inputs_embeds` must have shape (batch_size, seq_len, {config.hidden_size}), "
                f"got {tuple(inputs_embeds.shape)}."
            )
        shape, device = tuple(inputs_embeds.shape[:2]), inputs_embeds.device
    batch, seq_len = shape
    if batch == 0:
        raise ValueError("The batch is empty (batch_size 0); pass at least one example.")
    if seq_len == 0:
        raise ValueError("The input is empty (seq_len 0); pass at least one token.")
    if seq_len > config.max_position_embeddings:
        raise ValueError(
            f"The input has {seq_len} tokens but the model has max_position_embeddings="
            f"{config.max_position_embeddings}; truncate it (tokenizer(..., truncation=True, "
            f"max_length={config.max_position_embeddings})) or split it into windows."
        )
    for name, value in (
        ("attention_mask", attention_mask),
        ("token_type_ids", token_type_ids),
        ("position_ids", position_ids),
    ):
        if (
            value is not None
            and tuple(value.shape) != shape
            and not (name == "position_ids" and tuple(value.shape) == (1, seq_len))
        ):
            raise ValueError(
                f"`{name}` has shape {tuple(value.shape)} but the input has shape {shape}; pass one value per "
                f"token, e.g. from the same tokenizer call with padding=True."
            )
    if input_ids is not None:
        checks.token_ids("input_ids", input_ids, vocab_size or config.vocab_size)
    if attention_mask is not None:
        checks.zeros_and_ones("attention_mask", attention_mask)
    if token_type_ids is not None:
        checks.in_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
    if position_ids is not None:
        checks.in_range("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings")
    if global_prefix_length is not None and not is_exporting():
        lengths = torch.as_tensor(global_prefix_length).reshape(-1)
        if lengths.numel() != batch:
            raise ValueError(f"`global_prefix_length` needs one value per example ({batch}), got {lengths.numel()}.")
        if int(lengths.min()) < 0 or int(lengths.max()) > seq_len:
            raise ValueError(
                f"`global_prefix_length` asks for up to {int(lengths.max())} global tokens but the sequence "
                f"holds {seq_len}; pass at most the sequence length."
            )
    if own_checks:
        checks.assert_on_device()
    return batch, seq_len, device


def check_global_inputs(
    global_input_ids, global_attention_mask, batch: int, vocab_size: int, checks: ValueChecks
) -> None:
    check_integer_ids("global_input_ids", global_input_ids)
    if global_input_ids.dim() != 2 or global_input_ids.shape[0] != batch:
        raise ValueError(
            f"`global_input_ids` must have shape (batch_size={batch}, num_global), got "
            f"{tuple(global_input_ids.shape)}; pass one global input row per input row."
        )
    if global_input_ids.shape[1] == 0:
        raise ValueError("`global_input_ids` holds no token; leave it out to use the config's global tokens.")
    if global_attention_mask is not None and global_attention_mask.shape != global_input_ids.shape:
        raise ValueError(
            f"`global_attention_mask` has shape {tuple(global_attention_mask.shape)} but `global_input_ids` has "
            f"{tuple(global_input_ids.shape)}."
        )
    checks.token_ids("global_input_ids", global_input_ids, vocab_size)
    if global_attention_mask is not None:
        checks.zeros_and_ones("global_attention_mask", global_attention_mask)


#: keyword arguments a head passes on to its loss (Trainer's gradient-accumulation count)
LOSS_KWARGS = ("num_items_in_batch",)


def check_loss_kwargs(head: nn.Module, kwargs: dict) -> None:
    """A head's `**kwargs` carry only its loss's arguments (`LOSS_KWARGS`); anything else is a
    misspelt input, which would otherwise be ignored."""
    unknown = sorted(set(kwargs) - set(LOSS_KWARGS))
    if unknown:
        raise TypeError(f"{type(head).__name__}.forward() got unexpected arguments {unknown}.")


def sequence_labels(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sequence-classification labels as the loss takes them (`config.problem_type` as transformers
    infers it). Multi-label: one 0/1 value per label, checked against the logits' shape and given
    the logits' dtype (BCE takes floats; 0/1 integer labels are common)."""
    problem = config.problem_type
    if problem is None and config.num_labels > 1 and labels.dtype not in (torch.long, torch.int):
        problem = "multi_label_classification"
    if problem not in (None, "regression", "single_label_classification", "multi_label_classification"):
        raise ValueError(
            f"config.problem_type must be 'regression', 'single_label_classification' or "
            f"'multi_label_classification', got {problem!r}."
        )
    if problem != "multi_label_classification":
        return labels
    if labels.shape != logits.shape:
        raise ValueError(
            f"multi-label `labels` must have shape {tuple(logits.shape)} (one 0/1 value per label), "
            f"got {tuple(labels.shape)}."
        )
    return labels.to(logits.dtype)


def sequence_classification_loss(model, logits: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
    """transformers' loss for the head's problem type (`model.loss_function`), on checked labels.

    MSE and BCE are means over the batch whatever `num_items_in_batch` says, so under gradient
    accumulation they are scaled to this batch's share, as transformers' cross-entropy already is."""
    labels = sequence_labels(model.config, logits, labels)
    loss = model.loss_function(labels, logits, model.config, **kwargs)
    if model.config.problem_type != "single_label_classification" and kwargs.get("num_items_in_batch") is not None:
        loss = loss * labels.numel() / kwargs["num_items_in_batch"]
    return loss


def takes_inputs(model_inputs: tuple[str, ...], *head_inputs: str, annotations: Mapping[str, Any] | None = None):
    """Give a head's `forward(self, inputs, <head_inputs>, **kwargs)` the explicit signature of
    its model's inputs plus its own (Trainer keeps only dataset columns named in the signature;
    the model's inputs stay listed in one place, its forward) and `**kwargs`, the loss's keyword
    arguments (Trainer's `num_items_in_batch`). The head gets the model's inputs as one dict;
    any other argument is a TypeError naming it.

    Type hints: the model's inputs take theirs from `annotations` (name -> annotation, e.g. from
    the model's forward); the head's own inputs and the return type take the decorated forward's."""

    def decorate(forward):
        own_signature = inspect.signature(forward)
        hints = dict(annotations or {})
        hints.update({name: p.annotation for name, p in own_signature.parameters.items() if name in head_inputs})
        empty = inspect.Parameter.empty
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=hints.get(name, empty)
            )
            for name in (*model_inputs, *head_inputs)
        ]
        params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
        signature = inspect.Signature(params, return_annotation=own_signature.return_annotation)

        @functools.wraps(forward)
        def bound_forward(self, *args, **kwargs):
            try:
                arguments = signature.bind(self, *args, **kwargs).arguments
            except TypeError as error:
                raise TypeError(f"{type(self).__name__}.forward(): {error}") from None
            loss_kwargs = arguments.pop("kwargs", {})
            check_loss_kwargs(self, loss_kwargs)
            inputs = {name: arguments[name] for name in model_inputs if name in arguments}
            own = {name: arguments[name] for name in head_inputs if name in arguments}
            return forward(self, inputs, **own, **loss_kwargs)

        bound_forward.__signature__ = signature
        # the published signature's hints (functools.wraps copied the inner forward's, `inputs` included)
        bound_forward.__annotations__ = {
            **{p.name: p.annotation for p in params if p.annotation is not empty},
            **({"return": signature.return_annotation} if signature.return_annotation is not empty else {}),
        }
        return bound_forward

    return decorate


def question_lengths_of(
    input_ids: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    sep_token_id: int | None,
) -> torch.Tensor | None:
    """BigBird QA: per example, the first context token (type 1) when `token_type_ids` mark one,
    else one past the first [SEP] (transformers' rule, which gives 1 when there is no [SEP])."""
    from_sep = None
    if input_ids is not None and sep_token_id is not None:
        from_sep = input_ids.eq(sep_token_id).int().argmax(1) + 1
    if token_type_ids is None:
        return from_sep
    is_context = token_type_ids.bool()
    if attention_mask is not None:
        is_context = is_context & attention_mask.bool()
    from_types = is_context.int().argmax(1)
    has_context = is_context.any(1)
    if from_sep is None:
        return torch.where(has_context, from_types, torch.zeros_like(from_types))
    # all-zero token_type_ids (a tokenizer's default) say nothing: fall back to [SEP]
    return torch.where(has_context, from_types, from_sep)
