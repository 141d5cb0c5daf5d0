"""BigBird as a decoder: causal self-attention, cross-attention, the cache, BigBirdForCausalLM,
EncoderDecoderModel, against transformers' BigBird (same weights, loaded from its saved folder).

transformers' BigBird decoder with cross-attention (5.24) attends to the encoder states in the
layer's first attention too, and drops the encoder mask in its cross-attention; its cache breaks
with encoder states. A transformers `big_bird` decoder config loads with
`decoder_layout="transformers"`, which reproduces that (parity tests); longbird's own default,
`"standard"`, is causal self-attention then cross-attention.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, EncoderDecoderModel

import longbird

transformers.logging.set_verbosity_error()

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    block_size=8,
    num_random_blocks=2,
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.2,
    sep_token_id=5,
)
DECODER = dict(is_decoder=True, attention_type="original_full")
CROSS = dict(DECODER, add_cross_attention=True)


def make_pair(tmp_path, name="BigBirdForCausalLM", seed=0, **flags):
    """(transformers model, longbird model loaded from its saved folder), eval, same weights."""
    torch.manual_seed(seed)
    hf = getattr(transformers, name)(transformers.BigBirdConfig(**TINY, **flags)).eval()
    folder = tmp_path / f"hf-{name}-{seed}"
    hf.save_pretrained(folder)
    ours, info = getattr(longbird, name).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return hf, ours.eval()


def ids(batch, length, seed=0):
    return torch.randint(3, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


def padded_mask(batch, length, real):
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, real:] = 0
    return mask


def test_causal_first_position_ignores_later_tokens():
    torch.manual_seed(0)
    model = longbird.BigBirdForCausalLM(longbird.BigBirdConfig(**TINY, **DECODER)).eval()
    x = ids(1, 10)
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 100
    with torch.no_grad():
        a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-3


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_parity_with_transformers(tmp_path, padding, cross):
    hf, ours = make_pair(tmp_path, **(CROSS if cross else DECODER))
    x = ids(2, 12)
    inputs = {"input_ids": x, "labels": x, "use_cache": False}
    if padding:
        inputs["attention_mask"] = padded_mask(2, 12, 8)
    if cross:
        inputs["encoder_hidden_states"] = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(1))
        if padding:
            inputs["encoder_attention_mask"] = padded_mask(2, 9, 6)
        assert ours.config.decoder_layout == "transformers"
    with torch.no_grad():
        expected, got = hf(**inputs), ours(**inputs)
    real = inputs.get("attention_mask", torch.ones_like(x)).bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_loads_transformers_decoder_folder(tmp_path):
    hf, ours = make_pair(tmp_path, **CROSS)
    assert ours.config.model_type == "longbird_bigbird" and ours.config.add_cross_attention
    assert ours.cls.predictions.decoder.weight.data_ptr() == ours.bert.embeddings.word_embeddings.weight.data_ptr()
    for name, tensor in hf.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], tensor)


@pytest.mark.parametrize("padding", [False, True])
def test_greedy_generate_matches_transformers(tmp_path, padding):
    hf, ours = make_pair(tmp_path, **DECODER)
    x = ids(2, 7)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    if padding:  # left padding, as for generation
        kwargs["attention_mask"] = torch.tensor([[1] * 7, [0, 0] + [1] * 5])
    with torch.no_grad():
        expected = hf.generate(x, **kwargs, use_cache=False)
        cached = ours.generate(x, **kwargs)
        uncached = ours.generate(x, **kwargs, use_cache=False)
    assert torch.equal(cached, expected) and torch.equal(uncached, expected)


def test_auto_model_for_causal_lm_and_remote_code(tmp_path):
    hf, ours = make_pair(tmp_path, **DECODER)
    ours.save_pretrained(tmp_path / "saved")
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "saved")) is longbird.BigBirdForCausalLM
    auto_map = json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "modeling_longbird_bigbird_heads.BigBirdForCausalLM"
    from test_remote_code import run_without_longbird

    x = ids(2, 6)
    got = run_without_longbird(tmp_path, tmp_path / "saved", "AutoModelForCausalLM", {"input_ids": x})
    with torch.no_grad():
        torch.testing.assert_close(got["logits"], ours(x).logits)
    assert got["module"].startswith("transformers_modules")


def seq2seq(encoder, decoder):
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    return model.eval()


def test_encoder_decoder_matches_transformers(tmp_path):
    hf_encoder, encoder = make_pair(tmp_path, "BigBirdModel", seed=1)
    hf_decoder, decoder = make_pair(tmp_path, seed=2, **CROSS)
    hf, ours = seq2seq(hf_encoder, hf_decoder), seq2seq(encoder, decoder)
    source = ids(2, 20)
    mask = padded_mask(2, 20, 14)
    kwargs = dict(attention_mask=mask, max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        expected = hf.generate(source, **kwargs, use_cache=False)  # transformers' cache breaks here
        assert torch.equal(ours.generate(source, **kwargs), expected)
        assert torch.equal(ours.generate(source, **kwargs, use_cache=False), expected)


def test_encoder_decoder_trains_and_generates():
    torch.manual_seed(0)
    encoder = longbird.BigBirdModel(longbird.BigBirdConfig(**TINY))
    decoder = longbird.BigBirdForCausalLM(longbird.BigBirdConfig(**TINY, **CROSS))
    assert decoder.config.decoder_layout == "standard"
    model = seq2seq(encoder, decoder).train()
    source, labels = ids(2, 40), ids(2, 6, seed=3)
    loss = model(input_ids=source, attention_mask=padded_mask(2, 40, 30), labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert decoder.bert.encoder.layer[0].crossattention.self.key.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        cached = model.generate(source, max_new_tokens=5, do_sample=False)
        uncached = model.generate(source, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached) and cached.shape == (2, 6)


def test_standard_layout_self_attention_sees_earlier_tokens():
    """The default layout's decoder tokens see each other (transformers' layout's do not)."""
    torch.manual_seed(0)
    model = longbird.BigBirdModel(longbird.BigBirdConfig(**TINY, **CROSS)).eval()
    x, memory = ids(1, 6), torch.randn(1, 9, 32)
    y = x.clone()
    y[0, 0] = (x[0, 0] + 1) % 100
    with torch.no_grad():
        a = model(x, encoder_hidden_states=memory).last_hidden_state
        b = model(y, encoder_hidden_states=memory).last_hidden_state
    assert (a[:, 1:] - b[:, 1:]).abs().max() > 1e-3


def test_chunked_feed_forward_is_the_same():
    torch.manual_seed(0)
    model = longbird.BigBirdModel(longbird.BigBirdConfig(**TINY)).eval()
    chunked = longbird.BigBirdModel(longbird.BigBirdConfig(**TINY, chunk_size_feed_forward=3)).eval()
    chunked.load_state_dict(model.state_dict())
    x = ids(2, 70)
    with torch.no_grad():
        torch.testing.assert_close(chunked(x).last_hidden_state, model(x).last_hidden_state)


def test_transformers_default_config_still_loads(tmp_path):
    transformers.BigBirdConfig().save_pretrained(tmp_path)
    config = longbird.BigBirdConfig.from_pretrained(tmp_path)
    assert config.attention_type == "block_sparse" and not config.is_decoder
    transformers.BigBirdConfig(is_decoder=True).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="attention_type='original_full'"):
        longbird.BigBirdConfig.from_pretrained(tmp_path)
    assert longbird.BigBirdConfig.from_pretrained(tmp_path, attention_type="original_full").is_decoder


@pytest.mark.parametrize(
    "flags,argument",
    [
        (dict(is_decoder=True), "attention_type"),
        (dict(add_cross_attention=True), "is_decoder"),
        (dict(DECODER, num_global_tokens=2), "num_global_tokens"),
        (dict(pruned_heads={0: [1]}), "pruned_heads"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type"),
        (dict(is_encoder_decoder=True), "is_encoder_decoder"),
        (dict(cross_attention_hidden_size=16), "cross_attention_hidden_size"),
        (dict(per_layer_config={0: {"hidden_act": "relu"}}), "per_layer_config"),
        (dict(hidden_act="no-such-act"), "hidden_act"),
        (dict(decoder_layout="other"), "decoder_layout"),
    ],
)
def test_unsupported_config_flags_raise(flags, argument):
    with pytest.raises(ValueError, match=argument):
        longbird.BigBirdConfig(**TINY, **flags)


def test_bad_decoder_inputs_raise():
    torch.manual_seed(0)
    encoder = longbird.BigBirdModel(longbird.BigBirdConfig(**TINY))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        encoder(ids(1, 5), encoder_hidden_states=torch.randn(1, 4, 32))
    decoder = longbird.BigBirdForCausalLM(longbird.BigBirdConfig(**TINY, **DECODER))
    with pytest.raises(ValueError, match="add_cross_attention"):
        decoder(ids(1, 5), encoder_hidden_states=torch.randn(1, 4, 32))
    config = longbird.BigBirdConfig(**TINY)
    with pytest.raises(ValueError, match="is_decoder"):
        longbird.BigBirdForCausalLM(config)
    config.is_decoder = True  # set afterwards, as EncoderDecoderModel does: checked when a model is built
    with pytest.raises(ValueError, match="attention_type"):
        longbird.BigBirdForCausalLM(config)
    with pytest.raises(ValueError, match="global_prefix_length"):
        decoder.bert(ids(1, 5), global_prefix_length=torch.tensor([2]))
