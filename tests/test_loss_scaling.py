"""Heads take their losses from transformers (`self.loss_function`): under gradient accumulation
Trainer passes `num_items_in_batch`, and the loss is then summed over the batch's items and
divided by it, so micro-batch losses add up to the mean over the whole accumulated batch."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from longbird import (
    BigBirdConfig,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdPegasusConfig,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForSequenceClassification,
    EtcConfig,
    EtcForMaskedLM,
    EtcForPreTraining,
)


def test_token_classification_loss_is_scaled_by_num_items_in_batch(tiny_kwargs):
    torch.manual_seed(0)
    model = BigBirdForTokenClassification(BigBirdConfig(**tiny_kwargs, num_labels=3)).eval()
    ids = torch.randint(6, 100, (2, 40))
    labels = torch.randint(0, 3, (2, 40))
    labels[:, :5] = -100
    out = model(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(200))
    summed = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(out.loss, summed / 200)
    # without it: the mean, as before
    mean = model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(mean, summed / (labels != -100).sum())


def test_etc_masked_lm_loss_is_scaled_by_num_items_in_batch():
    torch.manual_seed(0)
    config = EtcConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        local_radius=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = EtcForMaskedLM(config).eval()
    ids = torch.randint(5, 50, (2, 20))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    out = model(input_ids=ids, labels=labels, num_items_in_batch=7)
    summed = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(out.loss, summed / 7)


def test_multi_label_loss_is_the_batch_share_under_accumulation(tiny_kwargs):
    """BCE is a mean per batch: with `num_items_in_batch` it becomes this batch's share."""
    torch.manual_seed(0)
    config = BigBirdConfig(**tiny_kwargs, num_labels=3, problem_type="multi_label_classification")
    model = BigBirdForSequenceClassification(config).eval()
    ids = torch.randint(6, 100, (2, 40))
    labels = torch.randint(0, 2, (2, 3))
    out = model(input_ids=ids, labels=labels, num_items_in_batch=12)
    summed = F.binary_cross_entropy_with_logits(out.logits, labels.float(), reduction="sum")
    torch.testing.assert_close(out.loss, summed / 12)
    with pytest.raises(ValueError, match="multi-label `labels` must have shape"):
        model(input_ids=ids, labels=labels[:, :2])


def test_trainer_sees_loss_kwargs():
    """Trainer passes `num_items_in_batch` to a forward with `**kwargs` (and then does not divide
    by the accumulation steps itself); ETC pretraining's composite loss opts out."""
    for head in (BigBirdForTokenClassification, EtcForMaskedLM):
        params = inspect.signature(head.forward).parameters.values()
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params), head
    assert EtcForPreTraining.accepts_loss_kwargs is False
    # transformers' BigBird-Pegasus heads take **kwargs but ignore num_items_in_batch (a plain mean)
    for head in (BigBirdPegasusForConditionalGeneration, BigBirdPegasusForSequenceClassification):
        assert head.accepts_loss_kwargs is False, head


def test_pegasus_loss_is_divided_by_the_accumulation_steps(tmp_path):
    """A seq2seq step under gradient accumulation: Trainer divides the mean loss by the steps."""
    torch.manual_seed(0)
    config = BigBirdPegasusConfig(
        vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, attention_type="original_full",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    )  # fmt: skip
    model = BigBirdPegasusForConditionalGeneration(config)
    args = TrainingArguments(tmp_path, use_cpu=True, report_to="none", gradient_accumulation_steps=2)
    trainer = Trainer(model=model, args=args)
    assert trainer.model_accepts_loss_kwargs is False
    batch = {"input_ids": torch.randint(5, 60, (2, 12)), "labels": torch.randint(5, 60, (2, 4))}
    trainer.current_gradient_accumulation_steps = 2
    step_loss = trainer.training_step(model, batch, num_items_in_batch=torch.tensor(16))
    with torch.no_grad():
        mean = model(**batch).loss
    torch.testing.assert_close(step_loss, mean / 2)


def test_misspelt_keyword_still_fails(tiny_kwargs):
    model = BigBirdForTokenClassification(BigBirdConfig(**tiny_kwargs, num_labels=3))
    with pytest.raises(TypeError, match="labelz"):
        model(input_ids=torch.randint(6, 100, (1, 16)), labelz=torch.zeros(1, 16, dtype=torch.long))
