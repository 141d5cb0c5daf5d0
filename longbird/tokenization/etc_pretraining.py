"""Batches for ETC pretraining: masked language modelling plus contrastive predictive coding (CPC).

Order, as in the paper: CPC sentences are chosen first and every long token of theirs is masked
(their global tokens stay); MLM then masks `mlm_probability` of the remaining real tokens with
BERT's 80/10/10 rule. Masking is per token (the paper masks whole words; pass word-aligned
tokenizers' output as is, nothing here needs word boundaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from .etc_featurizer import EtcDataCollator


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
