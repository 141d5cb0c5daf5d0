"""BigBird-ETC fed with a global input per example (e.g. EtcFeaturizer's sentence tokens)."""

import pytest
import torch

from longbird import BigBirdConfig, BigBirdForSequenceClassification, BigBirdModel
from longbird.tokenization import EtcDataCollator, EtcFeaturizer, train_tokenizer

TEXTS = [
    "The cell divides. Each half grows again. Then the cycle repeats.",
    "Rivers carry silt to the sea. Deltas form where they slow down.",
    "A short one.",
] * 4


def config(**overrides):
    values = dict(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        block_size=4,
        num_random_blocks=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=256,
    )
    return BigBirdConfig(**{**values, **overrides})


def test_featurizer_rows_train_a_bigbird_classifier():
    tokenizer = train_tokenizer(TEXTS, vocab_size=150)
    featurizer = EtcFeaturizer(tokenizer, max_length=64, max_global_length=8, global_token_id=tokenizer.unk_token_id)
    rows = featurizer(TEXTS)
    features = [{k: rows[k][i] for k in rows if k != "example_index"} for i in range(len(rows["input_ids"]))]
    batch = EtcDataCollator(tokenizer=tokenizer)(features)
    model = BigBirdForSequenceClassification(config(vocab_size=len(tokenizer), num_labels=2))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "global_input_ids", "global_attention_mask")}
    out = model(**inputs, labels=torch.tensor([0, 1, 0] * 4))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.bert.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("backend", ["gather", "dense"])
def test_global_input_equals_learned_tokens_with_the_same_embeddings(backend):
    torch.manual_seed(0)
    global_ids = torch.tensor([[5, 6, 7]])
    learned = BigBirdModel(config(num_global_tokens=3, attention_backend=backend)).eval()
    given = BigBirdModel(config(attention_backend=backend)).eval()
    given.load_state_dict(learned.state_dict(), strict=False)
    with torch.no_grad():
        learned.embeddings.global_token_embeddings.weight.copy_(
            learned.embeddings.word_embeddings.weight[global_ids[0]]
        )
    ids = torch.randint(10, 200, (1, 60))
    a, b = learned(ids), given(ids, global_input_ids=global_ids)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state)
    torch.testing.assert_close(a.global_last_hidden_state, b.global_last_hidden_state)


def test_padding_the_global_input_changes_nothing_without_random_blocks():
    torch.manual_seed(0)
    model = BigBirdModel(config()).eval()
    ids = torch.randint(10, 200, (2, 70))
    global_ids = torch.randint(10, 200, (2, 6))
    global_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    batched = model(ids, global_input_ids=global_ids, global_attention_mask=global_mask)
    alone = model(ids[1:], global_input_ids=global_ids[1:, :4])
    torch.testing.assert_close(batched.last_hidden_state[1:], alone.last_hidden_state)
    torch.testing.assert_close(batched.global_last_hidden_state[1:, :4], alone.global_last_hidden_state)


def test_bad_global_input_is_rejected_by_name():
    model = BigBirdModel(config()).eval()
    ids = torch.randint(10, 200, (2, 20))
    with pytest.raises(ValueError, match="global_input_ids"):
        model(ids, global_input_ids=torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="global_input_ids"):
        model(ids, global_input_ids=torch.ones(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="global_attention_mask"):
        model(ids, global_input_ids=torch.ones(2, 2, dtype=torch.long), global_attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="global_attention_mask"):
        model(ids, global_attention_mask=torch.ones(2, 3))
