"""ETC pretraining: the MLM + CPC collator, and both losses going down on real text (WikiText-2)."""

import re
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from longbird import EtcConfig, EtcForPreTraining
from longbird.tokenization.etc_collators import EtcPretrainingCollator
from longbird.tokenization.etc_featurizer import EtcFeaturizer

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2_subset" / "wiki.valid.tokens"
needs_wikitext = pytest.mark.skipif(not WIKITEXT.exists(), reason=f"real text not available at {WIKITEXT}")
# train_tokenizer(wikitext_articles(60), vocab_size=1500), saved once: the `tokenizers` trainers break ties
# in a different order in every process, and a different vocabulary moves the losses this test compares
TOKENIZER = Path(__file__).resolve().parent / "fixtures" / "wikitext2_wordpiece_1500"


def wikitext_articles(limit: int) -> list[str]:
    """Articles of WikiText-2 (split at top-level ` = Title = ` headings), paragraphs kept."""
    text = WIKITEXT.read_text(encoding="utf-8")
    articles = re.split(r"\n = [^=\n]+ = \n", text)
    return [a.strip() for a in articles if len(a.split()) > 200][:limit]


@pytest.fixture(scope="module")
def corpus():
    articles = wikitext_articles(60)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(TOKENIZER)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[SENT]"]})
    featurizer = EtcFeaturizer(
        tokenizer, max_length=192, max_global_length=24, global_token_id=tokenizer.convert_tokens_to_ids("[SENT]")
    )
    rows = featurizer(articles)
    features = [{k: rows[k][i] for k in rows if k not in ("example_index",)} for i in range(len(rows["input_ids"]))]
    return tokenizer, featurizer, features


@needs_wikitext
def test_collator_masks_whole_cpc_sentences_before_mlm(corpus):
    tokenizer, _, features = corpus
    collator = EtcPretrainingCollator(tokenizer=tokenizer, generator=torch.Generator().manual_seed(0))
    batch = collator(features[:8])
    original, masked, labels = batch["cpc_target_input_ids"], batch["input_ids"], batch["labels"]
    real = batch["attention_mask"].bool()
    cpc = batch["cpc_sentence_mask"].bool()
    sentences = batch["global_attention_mask"].sum(1)
    assert cpc[sentences >= 2].any(1).all(), "every row with two or more sentences masks at least one"
    assert not cpc[sentences < 2].any(), "a lone sentence stays readable"
    assert (cpc.sum(1) < sentences.clamp_min(1)).all(), "never every sentence of a row"
    in_cpc_sentence = torch.gather(cpc, 1, batch["sentence_ids"]) & real
    assert (masked[in_cpc_sentence] == tokenizer.mask_token_id).all()
    assert (labels[in_cpc_sentence] == -100).all(), "CPC tokens are not MLM targets"
    predicted = labels != -100
    assert torch.equal(labels[predicted], original[predicted])
    share = predicted.sum() / (real & ~in_cpc_sentence).sum()
    assert 0.10 < share < 0.20
    assert (masked[~predicted & ~in_cpc_sentence] == original[~predicted & ~in_cpc_sentence]).all()
    assert not cpc[batch["global_attention_mask"] == 0].any()


@needs_wikitext
def test_mlm_and_cpc_losses_decrease_on_real_text(corpus):
    """A tiny ETC trained for 150 steps on WikiText-2 rows: both losses, measured on held-out rows
    with fixed masks, go down (CPC from about log(#masked sentences))."""
    tokenizer, _, features = corpus
    torch.manual_seed(0)
    config = EtcConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        local_radius=16,
        relative_pos_max_distance=4,
        relative_vocab_size=12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
        global_token_id=tokenizer.convert_tokens_to_ids("[SENT]"),
    )
    model = EtcForPreTraining(config)
    held_out_collator = EtcPretrainingCollator(tokenizer=tokenizer, generator=torch.Generator().manual_seed(9))
    held_out = [held_out_collator(features[-16 * (i + 1) : len(features) - 16 * i]) for i in range(3)]
    train = features[:-48]

    def evaluate():
        with torch.no_grad():
            outs = [model(**batch) for batch in held_out]
        return torch.tensor([[o.mlm_loss.item(), o.cpc_loss.item()] for o in outs]).mean(0)

    collator = EtcPretrainingCollator(tokenizer=tokenizer, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before, after = evaluate(), []
    for step in range(150):
        start = (step * 8) % (len(train) - 8)
        model(**collator(train[start : start + 8])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= 120 and step % 10 == 9:
            after.append(evaluate())
    after = torch.stack(after).mean(0)
    print(f"held-out MLM {before[0]:.3f} -> {after[0]:.3f}, CPC {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] < before[0] - 0.5, f"MLM: {before[0]:.3f} -> {after[0]:.3f}"
    assert after[1] < before[1] - 0.15, f"CPC: {before[1]:.3f} -> {after[1]:.3f}"


def test_pretraining_loss_mixes_mlm_and_cpc():
    torch.manual_seed(0)
    config = EtcConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        local_radius=2,
        relative_pos_max_distance=2,
        relative_vocab_size=8,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = EtcForPreTraining(config).eval()
    ids = torch.randint(5, 50, (2, 12))
    sentence_ids = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]] * 2)
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    cpc_mask = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]])
    out = model(
        input_ids=ids,
        global_input_ids=torch.ones(2, 4, dtype=torch.long),
        sentence_ids=sentence_ids,
        labels=labels,
        cpc_sentence_mask=cpc_mask,
        cpc_target_input_ids=ids,
    )
    assert out.cpc_logits.shape == (3, 3)
    torch.testing.assert_close(out.loss, 0.8 * out.mlm_loss + 0.2 * out.cpc_loss)
