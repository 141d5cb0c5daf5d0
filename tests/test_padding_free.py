"""Padding-free execution (longbird_packing): a padded batch runs its token-wise layers on real
tokens only and attention per example on its own graph; transformers' flattened batches
(`DataCollatorWithFlattening`) give every example the output it gets alone.

Each test compares with the examples run alone (the definition of right) and, where weights are
requested (which keeps the padded layout), with the padded computation; gradients of a padded
batch equal the sum of the examples' own gradients."""

from __future__ import annotations

import pytest
import torch
from transformers import DataCollatorWithFlattening

from longbird import (
    BigBirdConfig,
    BigBirdForMaskedLM,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
    BigBirdModel,
    BigBirdPegasusConfig,
    BigBirdPegasusForConditionalGeneration,
    EtcConfig,
    EtcForMaskedLM,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
)

LENGTHS = [203, 150, 150, 61, 9]  # two of equal length (one group), one too short for a sparse plan
BIGBIRD = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    block_size=8,
    num_random_blocks=2,
    max_position_embeddings=512,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    sep_token_id=3,
)
ETC = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    local_radius=4,
    relative_pos_max_distance=3,
    num_tokens_per_block=8,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
VARIANTS = {
    "itc": dict(),
    "etc_tokens": dict(num_global_tokens=3, random_plan="uniform"),
    "full": dict(attention_type="original_full"),
    "full_global": dict(attention_type="original_full", num_global_tokens=2),
}


def examples(lengths=LENGTHS, seed=0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 100, (n,), generator=generator) for n in lengths]


def padded(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return ids, mask


def flattened(sequences: list[torch.Tensor], **collator_kwargs) -> dict:
    batch = DataCollatorWithFlattening(**collator_kwargs)([{"input_ids": s.tolist()} for s in sequences])
    batch.pop("labels")
    return batch


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def make(cls, config_cls, base, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(config_cls(**{**base, **overrides})).eval()


def gradients(model, loss) -> dict[str, torch.Tensor]:
    """Parameter gradients of `loss()`."""
    model.zero_grad()
    loss().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        close(a[name], b[name], tol=tol)


def token_wise_rows(model, run) -> list[int]:
    """Rows the first feed-forward layer saw during `run()` (padding-free: the real tokens only)."""
    seen = []
    layer = model.encoder.layer[0].intermediate.dense if hasattr(model, "encoder") else model.layers[0]
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[:-1].numel()))
    try:
        run()
    finally:
        handle.remove()
    return seen


# --------------------------------------------------------------------------------------------
# Padded batches run padding-free
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bigbird_padded_batch_equals_examples_alone(variant):
    model = make(BigBirdModel, BigBirdConfig, BIGBIRD, **VARIANTS[variant])
    sequences = examples()
    ids, mask = padded(sequences)
    with torch.no_grad():
        rows = token_wise_rows(model, lambda: model(ids, attention_mask=mask))
        out = model(ids, attention_mask=mask, output_hidden_states=True)
        weights = model(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)  # padded layout
    g = model.config.num_global_tokens
    if model.config.attention_type == "block_sparse":
        g_blocks = -(-g // 8)
        expected_rows = sum((g_blocks + -(-n // 8)) * 8 for n in LENGTHS)
    else:
        expected_rows = sum(g + n for n in LENGTHS)
    assert rows == [expected_rows]  # token-wise layers ran on one packed row of real blocks only
    assert expected_rows < len(LENGTHS) * (g + ids.shape[1])
    for i, (n, sequence) in enumerate(zip(LENGTHS, sequences)):
        with torch.no_grad():
            alone = model(sequence[None], output_hidden_states=True)
        close(out.last_hidden_state[i, :n], alone.last_hidden_state[0])
        close(weights.last_hidden_state[i, :n], alone.last_hidden_state[0])
        close(out.pooler_output[i], alone.pooler_output[0])
        if g:
            close(out.global_last_hidden_state[i], alone.global_last_hidden_state[0])
        for packed_h, padded_h, alone_h in zip(out.hidden_states, weights.hidden_states, alone.hidden_states):
            close(packed_h[i, :n], alone_h[0])
            close(padded_h[i, :n], alone_h[0])
        # after the last real token: zeros, whichever layout ran
        assert not out.last_hidden_state[i, n:].any()
        assert not weights.last_hidden_state[i, n:].any()


def test_bigbird_gradients_equal_examples_alone():
    model = make(BigBirdForTokenClassification, BigBirdConfig, BIGBIRD, num_global_tokens=2, num_labels=3)
    sequences = examples()
    ids, mask = padded(sequences)
    labels = torch.where(mask.bool(), torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(1)), -100)
    assert_same_gradients(*summed_token_loss_gradients(model, sequences, ids, mask, labels), tol=1e-4)


def summed_token_loss_gradients(model, sequences, ids, mask, labels):
    """Gradients of a sum of per-token losses for the padded batch, and for the examples alone
    (the batch's gradient is then the sum of the examples' gradients)."""
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    num_labels = model.config.num_labels
    batch = gradients(
        model, lambda: loss_fn(model(ids, attention_mask=mask).logits.view(-1, num_labels), labels.view(-1))
    )
    alone = gradients(
        model,
        lambda: sum(loss_fn(model(s[None]).logits[0], labels[i, : len(s)]) for i, s in enumerate(sequences)),
    )
    return batch, alone


def test_bigbird_question_answering_padded_and_flattened():
    """Global question tokens (`global_prefix_length` from [SEP]) per example, in both forms."""
    model = make(BigBirdForQuestionAnswering, BigBirdConfig, BIGBIRD)
    sequences = examples()
    for s, q in zip(sequences, (12, 20, 5, 7, 3)):
        s[q] = 3  # [SEP] after a question of q tokens
    ids, mask = padded(sequences)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        flat = model(**flattened(sequences))
    start = 0
    for i, (n, sequence) in enumerate(zip(LENGTHS, sequences)):
        with torch.no_grad():
            alone = model(sequence[None])
        close(out.start_logits[i, :n], alone.start_logits[0])
        close(flat.start_logits[0, start : start + n], alone.start_logits[0])
        close(flat.end_logits[0, start : start + n], alone.end_logits[0])
        start += n


def test_bigbird_pegasus_encoder_padded_batch():
    config = BigBirdPegasusConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        block_size=8,
        num_random_blocks=2,
        max_position_embeddings=512,
        dropout=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(0)
    encoder = BigBirdPegasusForConditionalGeneration(config).eval().get_encoder()
    sequences = examples()
    ids, mask = padded(sequences)
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        for i, (n, sequence) in enumerate(zip(LENGTHS, sequences)):
            close(out[i, :n], encoder(input_ids=sequence[None]).last_hidden_state[0])


@pytest.mark.parametrize("global_input", ["fixed_blocks", "sentences"])
def test_etc_padded_batch_equals_examples_alone(global_input):
    model = make(EtcModel, EtcConfig, ETC)
    sequences = examples()
    ids, mask = padded(sequences)
    inputs, alone_inputs = {"input_ids": ids, "attention_mask": mask}, [{"input_ids": s[None]} for s in sequences]
    if global_input == "sentences":  # one global token per 10 tokens, its own global input length per example
        sentence_count = [-(-n // 10) for n in LENGTHS]
        sentence_ids = torch.zeros_like(ids)
        global_mask = torch.zeros(len(LENGTHS), max(sentence_count), dtype=torch.long)
        for i, (n, count) in enumerate(zip(LENGTHS, sentence_count)):
            sentence_ids[i, :n] = torch.arange(n) // 10
            global_mask[i, :count] = 1
            alone_inputs[i] |= {
                "sentence_ids": sentence_ids[i : i + 1, :n],
                "global_input_ids": torch.ones(1, count, dtype=torch.long),
            }
        inputs |= {
            "sentence_ids": sentence_ids,
            "global_input_ids": torch.ones_like(global_mask),
            "global_attention_mask": global_mask,
        }
    with torch.no_grad():
        rows = token_wise_rows(model, lambda: model(**inputs))
        out = model(**inputs, output_hidden_states=True)
        weights = model(**inputs, output_attentions=True)  # the padded layout
    assert rows[0] == sum(LENGTHS)  # the long input's feed-forward saw real tokens only
    for i, n in enumerate(LENGTHS):
        with torch.no_grad():
            alone = model(**alone_inputs[i], output_hidden_states=True)
        m = alone.global_last_hidden_state.shape[1]
        close(out.last_hidden_state[i, :n], alone.last_hidden_state[0])
        close(weights.last_hidden_state[i, :n], alone.last_hidden_state[0])
        close(out.global_last_hidden_state[i, :m], alone.global_last_hidden_state[0])
        for packed_h, alone_h in zip(out.hidden_states, alone.hidden_states):
            close(packed_h[i, :n], alone_h[0])
        assert not out.last_hidden_state[i, n:].any()
        assert not weights.last_hidden_state[i, n:].any()


def test_etc_rows_of_packed_examples_keep_them_apart():
    """Rows that pack several examples (breakpoints, one global token per sentence) in a padded
    batch: each row equals itself alone, and its examples never see each other."""
    from longbird.modeling.longbird_global_local_graph import sentences_as_examples

    model = make(EtcModel, EtcConfig, ETC)
    rows = [
        sentences_as_examples(examples(lengths, seed=i), global_token_id=1)
        for i, lengths in enumerate(([30, 41, 9], [12, 25]))
    ]
    batch = {}
    for name in rows[0]:
        width = max(row[name].shape[1] for row in rows)
        batch[name] = torch.cat([torch.nn.functional.pad(row[name], (0, width - row[name].shape[1])) for row in rows])
    batch["attention_mask"] = torch.cat(
        [
            torch.nn.functional.pad(torch.ones_like(row["input_ids"]), (0, 80 - row["input_ids"].shape[1]))
            for row in rows
        ]
    )
    batch["global_attention_mask"] = torch.cat(
        [
            torch.nn.functional.pad(torch.ones_like(row["global_input_ids"]), (0, 3 - row["global_input_ids"].shape[1]))
            for row in rows
        ]
    )
    with torch.no_grad():
        out = model(**batch)
        for i, row in enumerate(rows):
            alone = model(**row)
            n, m = row["input_ids"].shape[1], row["global_input_ids"].shape[1]
            close(out.last_hidden_state[i, :n], alone.last_hidden_state[0])
            close(out.global_last_hidden_state[i, :m], alone.global_last_hidden_state[0])
        # the first row's second example alone (its own row) gives the same states: never saw the others
        second = sentences_as_examples([examples([30, 41, 9], seed=0)[1]], global_token_id=1)
        close(out.last_hidden_state[0, 30:71], model(**second).last_hidden_state[0])


def test_etc_gradients_and_explicit_graph_pieces():
    model = make(EtcForTokenClassification, EtcConfig, ETC, num_labels=3)
    sequences = examples()
    ids, mask = padded(sequences)
    labels = torch.where(mask.bool(), torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(1)), -100)
    assert_same_gradients(*summed_token_loss_gradients(model, sequences, ids, mask, labels), tol=1e-4)
    # graph pieces given by the caller (flexible masking): the padded layout, same outputs
    window = 2 * ETC["local_radius"] + 1
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
        explicit = model(ids, attention_mask=mask, l2l_att_mask=torch.ones(len(LENGTHS), ids.shape[1], window)).logits
    real = mask.bool()
    assert not torch.allclose(plain[real], explicit[real])  # the given window (padding keys visible) was used


# --------------------------------------------------------------------------------------------
# transformers' flattened batches
# --------------------------------------------------------------------------------------------

COLLATOR_VARIANTS = [dict(), dict(return_flash_attn_kwargs=True), dict(return_seq_idx=True)]


@pytest.mark.parametrize("collator_kwargs", COLLATOR_VARIANTS, ids=["position_ids", "cu_seq_lens", "seq_idx"])
@pytest.mark.parametrize(
    "cls, config_cls, base, field",
    [
        (BigBirdModel, BigBirdConfig, BIGBIRD, "last_hidden_state"),
        (BigBirdForMaskedLM, BigBirdConfig, BIGBIRD, "logits"),
        (BigBirdForTokenClassification, BigBirdConfig, BIGBIRD, "logits"),
        (EtcModel, EtcConfig, ETC, "last_hidden_state"),
        (EtcForMaskedLM, EtcConfig, ETC, "logits"),
        (EtcForTokenClassification, EtcConfig, ETC, "logits"),
        (EtcForQuestionAnswering, EtcConfig, ETC, "start_logits"),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else None,
)
def test_flattened_batch_equals_examples_alone(cls, config_cls, base, field, collator_kwargs):
    model = make(cls, config_cls, base)
    sequences = examples()
    with torch.no_grad():
        out = model(**flattened(sequences, **collator_kwargs), output_hidden_states=True)
    assert out[field].shape[:2] == (1, sum(LENGTHS))
    start = 0
    for n, sequence in zip(LENGTHS, sequences):
        with torch.no_grad():
            alone = model(sequence[None], output_hidden_states=True)
        close(out[field][0, start : start + n], alone[field][0])
        close(out.hidden_states[-1][0, start : start + n], alone.hidden_states[-1][0])
        start += n


@pytest.mark.parametrize(
    "cls, config_cls, base",
    [(BigBirdForMaskedLM, BigBirdConfig, BIGBIRD), (EtcForMaskedLM, EtcConfig, ETC)],
    ids=["bigbird", "etc"],
)
def test_flattened_masked_lm_loss_and_gradients_equal_padded(cls, config_cls, base):
    """The collator's labels (-100 at each example's first token) give the padded batch's loss."""
    model = make(cls, config_cls, base)
    sequences = examples()
    features = [{"input_ids": s.tolist(), "labels": s.tolist()} for s in sequences]
    flat = DataCollatorWithFlattening()(features)
    ids, mask = padded(sequences)
    labels = torch.where(mask.bool(), ids, -100)
    labels[:, 0] = -100
    with torch.no_grad():
        close(model(**flat).loss, model(ids, attention_mask=mask, labels=labels).loss)
    flat_grads = gradients(model, lambda: model(**flat).loss)
    padded_grads = gradients(model, lambda: model(ids, attention_mask=mask, labels=labels).loss)
    assert_same_gradients(flat_grads, padded_grads, tol=1e-5)


@pytest.mark.parametrize(
    "cls, config_cls, base",
    [(BigBirdForSequenceClassification, BigBirdConfig, BIGBIRD), (EtcForSequenceClassification, EtcConfig, ETC)],
    ids=["bigbird", "etc"],
)
def test_flattened_sequence_classification_pools_per_example(cls, config_cls, base):
    model = make(cls, config_cls, base)
    sequences = examples()
    labels = torch.tensor([0, 1, 1, 0, 1])
    with torch.no_grad():
        out = model(**flattened(sequences), labels=labels)
        ids, mask = padded(sequences)
        padded_out = model(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (len(LENGTHS), 2)
    close(out.logits, padded_out.logits)
    close(out.loss, padded_out.loss)
    for i, sequence in enumerate(sequences):
        with torch.no_grad():
            close(out.logits[i], model(sequence[None]).logits[0])


# --------------------------------------------------------------------------------------------
# Bad flattened batches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, config_cls, base", [(BigBirdModel, BigBirdConfig, BIGBIRD), (EtcModel, EtcConfig, ETC)])
def test_bad_flattened_batches_name_the_argument(cls, config_cls, base):
    model = make(cls, config_cls, base)
    batch = flattened(examples([6, 5, 4]), return_flash_attn_kwargs=True, return_seq_idx=True)
    ids, positions = batch["input_ids"], batch["position_ids"]

    def fails(match, **inputs):
        with pytest.raises(ValueError, match=match):
            model(**inputs)

    gap = positions.clone()
    gap[0, 3] = 4  # 0 1 2 4 4 5 | ...
    fails(r"`position_ids`.*gap or a decrease", input_ids=ids, position_ids=gap)
    decrease = positions.clone()
    decrease[0, 8] = 1  # second example: 0 1 2 1 ...
    fails(r"`position_ids`.*gap or a decrease", input_ids=ids, position_ids=decrease)
    late_start = positions.clone()
    late_start[0, 0] = 1
    fails(r"`position_ids`.*start at 0", input_ids=ids, position_ids=late_start)
    padding = torch.ones_like(ids)
    padding[0, -1] = 0
    fails(r"`attention_mask` that marks padding", input_ids=ids, position_ids=positions, attention_mask=padding)
    fails(
        r"`cu_seq_lens_q`.*disagrees with `position_ids`",
        input_ids=ids,
        position_ids=positions,
        cu_seq_lens_q=torch.tensor([0, 5, 11, 15], dtype=torch.int32),
    )
    fails(r"`cu_seq_lens_k` must rise", input_ids=ids, cu_seq_lens_k=torch.tensor([0, 5, 20], dtype=torch.int32))
    fails(r"`seq_idx` changes example", input_ids=ids, position_ids=positions, seq_idx=torch.zeros_like(ids))
    fails(r"output_attentions=True is not available", input_ids=ids, position_ids=positions, output_attentions=True)
    two_rows = torch.cat([ids, ids])
    fails(r"one row \[1, total\]", input_ids=two_rows, cu_seq_lens_q=batch["cu_seq_lens_q"])
    with pytest.raises(TypeError, match="cu_seq_len_q"):
        model(input_ids=ids, position_ids=positions, cu_seq_len_q=batch["cu_seq_lens_q"])


@pytest.mark.parametrize(
    "cls, config_cls, base", [(BigBirdForMaskedLM, BigBirdConfig, BIGBIRD), (EtcForMaskedLM, EtcConfig, ETC)]
)
def test_gradient_checkpointing_of_a_packed_batch(cls, config_cls, base):
    model = make(cls, config_cls, base).train()
    ids, mask = padded(examples())
    labels = torch.where(mask.bool(), ids, -100)
    plain = gradients(model, lambda: model(ids, attention_mask=mask, labels=labels).loss)
    model.gradient_checkpointing_enable()
    checkpointed = gradients(model, lambda: model(ids, attention_mask=mask, labels=labels).loss)
    assert_same_gradients(plain, checkpointed, tol=1e-6)


def test_etc_flattened_batch_with_a_global_input():
    """Per-token structure inputs come flattened; the global input stays one row per example."""
    model = make(EtcModel, EtcConfig, ETC)
    sequences = examples([50, 23])
    counts = [5, 3]
    sentence_ids = torch.cat([torch.arange(len(s)) // 10 for s in sequences])[None]
    global_ids = torch.ones(2, 5, dtype=torch.long)
    global_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = model(
            **flattened(sequences),
            sentence_ids=sentence_ids,
            global_input_ids=global_ids,
            global_attention_mask=global_mask,
        )
        start = 0
        for i, (sequence, count) in enumerate(zip(sequences, counts)):
            n = len(sequence)
            alone = model(
                sequence[None],
                sentence_ids=(torch.arange(n) // 10)[None],
                global_input_ids=torch.ones(1, count, dtype=torch.long),
            )
            close(out.last_hidden_state[0, start : start + n], alone.last_hidden_state[0])
            close(out.global_last_hidden_state[i, :count], alone.global_last_hidden_state[0])
            start += n
