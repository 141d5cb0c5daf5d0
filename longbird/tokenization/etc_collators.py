"""Collators: ETC feature rows -> padded ``torch`` tensors (Trainer ``data_collator``s).

- :class:`EtcDataCollator` pads the rows of :class:`~longbird.tokenization.EtcFeaturizer` (or any
  rows with ETC's long and global inputs) into a batch.
- :class:`EtcPretrainingCollator` adds the inputs of ETC pretraining: masked language modelling
  plus contrastive predictive coding (CPC).

Pretraining masks in the paper's order: CPC sentences are chosen first and every long token of
theirs is masked (their global tokens stay); MLM then masks `mlm_probability` of the remaining real
tokens with BERT's 80/10/10 rule. Masking is per token (the paper masks whole words; pass
word-aligned tokenizers' output as is, nothing here needs word boundaries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .etc_featurizer import check_int
from .etc_inputs import ETC_GLOBAL_INPUTS, ETC_LONG_INPUTS

__all__ = ["EtcDataCollator", "EtcPretrainingCollator"]

_DROPPED_KEYS = frozenset({"offset_mapping", "global_offset_mapping", "example_index", "example_indices"})


def _as_list(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating))  # bool is an int


def _numeric_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else int(math.ceil(n / multiple) * multiple)


@dataclass
class EtcDataCollator:
    """Pad ETC feature rows (as produced by :class:`EtcFeaturizer`) into ``torch`` tensors.

    Usable as ``Trainer(data_collator=EtcDataCollator(tokenizer=tokenizer))``.

    - Long keys (``input_ids``, ``attention_mask``, ``token_type_ids``, ``long_breakpoints``,
      ``sentence_ids``) are padded to the longest row (rounded up to ``pad_to_multiple_of``);
      global keys (``global_input_ids``, ``global_attention_mask``, ``global_token_type_ids``,
      ``global_breakpoints``) to the longest global row (``global_pad_to_multiple_of``).
    - Pad values: ``pad_token_id`` for ``input_ids`` and ``global_input_ids``; 0 for masks, token
      types, breakpoints (padding is then outside every example) and ``sentence_ids``;
      ``label_pad_token_id`` (-100) for ``labels`` (padded to the long length when each row's
      labels have its ``input_ids`` length, else to the longest labels).
    - Other numeric keys: scalars and equal-length lists are stacked; ragged lists whose
      length is each row's long (or else global) length are padded with 0 like that input.
    - ``offset_mapping``, ``global_offset_mapping``, ``example_index``, ``example_indices`` and
      non-numeric values are dropped unless named in ``keep_keys`` (kept keys become tensors
      when they can, offsets padded with (0, 0), else stay Python lists).

    Raises ``ValueError`` naming the key for inconsistent rows: missing keys, a long key whose
    length differs from ``input_ids``, a global key whose length differs from
    ``global_input_ids``, or a ``sentence_ids`` value outside the row's global input.
    """

    pad_token_id: int | None = None
    tokenizer: Any = None
    pad_to_multiple_of: int | None = None
    global_pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    keep_keys: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.pad_token_id is None and self.tokenizer is not None:
            self.pad_token_id = getattr(self.tokenizer, "pad_token_id", None)
            if self.pad_token_id is None:
                raise ValueError(
                    "the tokenizer has no pad token (tokenizer.pad_token_id is None); pass pad_token_id=... "
                    "or set tokenizer.pad_token."
                )
        if self.pad_token_id is None:
            raise ValueError(
                "EtcDataCollator needs pad_token_id=... or tokenizer=... (to read tokenizer.pad_token_id)."
            )
        check_int("pad_token_id", self.pad_token_id, 0)
        check_int("pad_to_multiple_of", self.pad_to_multiple_of, 1, optional=True)
        check_int("global_pad_to_multiple_of", self.global_pad_to_multiple_of, 1, optional=True)
        if isinstance(self.keep_keys, str):
            self.keep_keys = (self.keep_keys,)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("EtcDataCollator got an empty list of features.")
        rows = [{k: _as_list(v) for k, v in f.items()} for f in features]
        keys = list(rows[0])
        for r, row in enumerate(rows):
            if set(row) != set(keys):
                diff = sorted(set(row) ^ set(keys))
                raise ValueError(f"feature rows have different keys: row {r} differs from row 0 in {diff}.")
        if "input_ids" not in keys:
            raise ValueError("every feature row needs 'input_ids'.")
        has_global = "global_input_ids" in keys
        for k in ETC_GLOBAL_INPUTS:
            if k in keys and not has_global:
                raise ValueError(f"feature rows have {k!r} but no 'global_input_ids'.")

        long_lens = [len(row["input_ids"]) for row in rows]
        global_lens = [len(row["global_input_ids"]) for row in rows] if has_global else None
        n_long = _round_up(max(long_lens), self.pad_to_multiple_of)
        n_global = _round_up(max(global_lens), self.global_pad_to_multiple_of) if global_lens else 0

        def check_lengths(key: str, lengths: list[int], ref: str) -> None:
            for r, row in enumerate(rows):
                if not isinstance(row[key], (list, tuple)) or len(row[key]) != lengths[r]:
                    got = len(row[key]) if isinstance(row[key], (list, tuple)) else type(row[key]).__name__
                    raise ValueError(f"row {r}: {key!r} has length {got} but {ref!r} has length {lengths[r]}.")

        def pad(key: str, length: int, value: int, lengths: list[int]) -> torch.Tensor:
            # integer ids/masks stay int64; float-valued extra keys (soft labels...) stay floats
            floats = key not in ETC_LONG_INPUTS + ETC_GLOBAL_INPUTS and any(
                isinstance(v, (float, np.floating)) for row in rows for v in row[key]
            )
            arr = np.full((len(rows), length), value, dtype=np.float32 if floats else np.int64)
            for r, row in enumerate(rows):
                arr[r, : lengths[r]] = row[key]
            return torch.from_numpy(arr)

        batch: dict[str, Any] = {}
        for key in keys:
            values = [row[key] for row in rows]
            if key in ETC_LONG_INPUTS:
                check_lengths(key, long_lens, "input_ids")
                batch[key] = pad(key, n_long, self.pad_token_id if key == "input_ids" else 0, long_lens)
            elif key in ETC_GLOBAL_INPUTS:
                check_lengths(key, global_lens, "global_input_ids")
                batch[key] = pad(key, n_global, self.pad_token_id if key == "global_input_ids" else 0, global_lens)
            elif key in _DROPPED_KEYS and key not in self.keep_keys:
                continue
            elif key in ("offset_mapping", "global_offset_mapping"):
                lengths = long_lens if key == "offset_mapping" else global_lens
                check_lengths(key, lengths, "input_ids" if key == "offset_mapping" else "global_input_ids")
                arr = np.zeros((len(rows), n_long if key == "offset_mapping" else n_global, 2), dtype=np.int64)
                for r, v in enumerate(values):
                    if v:
                        arr[r, : len(v)] = v
                batch[key] = torch.from_numpy(arr)
            elif key == "labels" and all(_numeric_list(v) for v in values):
                lens = [len(v) for v in values]
                target = n_long if lens == long_lens else max(lens)
                batch[key] = pad(key, target, self.label_pad_token_id, lens)
            elif all(_is_number(v) for v in values):
                batch[key] = torch.tensor(values)
            elif all(_numeric_list(v) for v in values):
                lens = [len(v) for v in values]
                if len(set(lens)) == 1:
                    batch[key] = torch.tensor(values)
                elif lens == long_lens:
                    batch[key] = pad(key, n_long, 0, lens)
                elif global_lens is not None and lens == global_lens:
                    batch[key] = pad(key, n_global, 0, lens)
                elif key in self.keep_keys:
                    batch[key] = values
                else:
                    raise ValueError(
                        f"{key!r} holds lists of different lengths {lens[:8]} that match neither 'input_ids' nor "
                        "'global_input_ids' lengths; make them consistent or remove the key."
                    )
            elif key in self.keep_keys:
                batch[key] = values
            # other non-numeric values (strings, nested structures) are dropped

        if "sentence_ids" in batch and has_global:
            for r, row in enumerate(rows):
                sids = row["sentence_ids"]
                if sids and max(sids) >= global_lens[r]:
                    raise ValueError(
                        f"row {r}: 'sentence_ids' holds {max(sids)}, but the row has only {global_lens[r]} global "
                        "tokens; sentence_ids must index the row's global input."
                    )
        return batch


@dataclass
class EtcPretrainingCollator(EtcDataCollator):
    """`EtcDataCollator` that adds MLM `labels` and the CPC inputs of `EtcForPreTraining`.

    Args (besides EtcDataCollator's):
        mask_token_id / vocab_size: from `tokenizer` when not given.
        mlm_probability: share of the non-CPC real long tokens to predict (0.15).
        cpc_probability: share of each row's sentence globals whose sentences are masked for CPC
            (~0.1 in the paper); at least one per row that has two or more sentences, never all.
        sentence_global_type: `global_token_type_ids` value of sentence globals (EtcFeaturizer: 0);
            only those are CPC candidates (not question or paragraph globals).
        generator: a `torch.Generator` for reproducible masking (default: torch's global RNG).

    Adds: `labels` `[B, n_l]` (-100 where nothing is predicted), `cpc_sentence_mask` `[B, n_g]`
    and `cpc_target_input_ids` `[B, n_l]` (the long input before masking).
    """

    mask_token_id: int | None = None
    vocab_size: int | None = None
    mlm_probability: float = 0.15
    cpc_probability: float = 0.1
    sentence_global_type: int = 0
    special_token_ids: Sequence[int] = ()
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tokenizer is not None:
            if self.mask_token_id is None:
                self.mask_token_id = self.tokenizer.mask_token_id
            if self.vocab_size is None:
                self.vocab_size = len(self.tokenizer)
            if not self.special_token_ids:
                self.special_token_ids = tuple(self.tokenizer.all_special_ids)
        if self.mask_token_id is None or self.vocab_size is None:
            raise ValueError(
                "EtcPretrainingCollator needs mask_token_id and vocab_size (or a tokenizer with a mask token)."
            )
        for name in ("mlm_probability", "cpc_probability"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {value}.")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        if "global_input_ids" not in batch or "sentence_ids" not in batch:
            raise ValueError(
                "EtcPretrainingCollator needs rows with global_input_ids and sentence_ids (EtcFeaturizer "
                "output); CPC masks sentences through them."
            )
        input_ids = batch["input_ids"]
        real = batch["attention_mask"].bool()
        cpc_sentences = self._choose_cpc_sentences(batch, real)
        own = torch.gather(cpc_sentences, 1, batch["sentence_ids"].clamp_min(0))
        cpc_tokens = own & real

        special = torch.isin(input_ids, torch.tensor(list(self.special_token_ids), dtype=input_ids.dtype))
        candidates = real & ~cpc_tokens & ~special
        predicted = candidates & (self._rand(input_ids.shape) < self.mlm_probability)
        labels = torch.where(predicted, input_ids, -100)
        masked = input_ids.clone()
        # BERT's rule: 80% [MASK], 10% a random token, 10% unchanged
        draw = self._rand(input_ids.shape)
        masked[predicted & (draw < 0.8)] = self.mask_token_id
        randomised = predicted & (draw >= 0.8) & (draw < 0.9)
        masked[randomised] = torch.randint(
            self.vocab_size, (int(randomised.sum()),), generator=self.generator, dtype=input_ids.dtype
        )
        masked[cpc_tokens] = self.mask_token_id
        batch.update(
            input_ids=masked,
            labels=labels,
            cpc_sentence_mask=cpc_sentences.long(),
            cpc_target_input_ids=input_ids,
        )
        return batch

    def _rand(self, shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def _choose_cpc_sentences(self, batch: dict, real: torch.Tensor) -> torch.Tensor:
        """`[B, n_g]` True for the sentence globals whose sentences are masked for CPC."""
        n_global = batch["global_input_ids"].shape[1]
        has_tokens = torch.zeros(real.shape[0], n_global, dtype=torch.bool)
        rows = torch.arange(real.shape[0]).unsqueeze(1).expand_as(real)
        has_tokens[rows[real], batch["sentence_ids"][real]] = True
        eligible = has_tokens & batch["global_attention_mask"].bool()
        if "global_token_type_ids" in batch:
            eligible &= batch["global_token_type_ids"] == self.sentence_global_type
        chosen = eligible & (self._rand(eligible.shape) < self.cpc_probability)
        for row in range(eligible.shape[0]):
            candidates = eligible[row].nonzero().squeeze(1)
            if len(candidates) < 2:
                chosen[row] = False  # a lone sentence would leave nothing to read
                continue
            if not chosen[row].any():
                pick = candidates[torch.randint(len(candidates), (1,), generator=self.generator)]
                chosen[row, pick] = True
            if bool(chosen[row, candidates].all()):  # keep at least one sentence readable
                chosen[row, candidates[0]] = False
        return chosen
