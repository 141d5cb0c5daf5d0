"""The drop-in classes that complete transformers' BigBird / BigBird-Pegasus set, against
transformers' own classes (the offline reference): `BigBirdForMultipleChoice`,
`BigBirdForPreTraining`, `BigBirdPegasusForCausalLM`, the Pegasus encoders as `PreTrainedModel`s
(`get_encoder()` saves and loads alone), and the config flags that are refused instead of ignored.

As in test_bigbird_parity / test_bigbird_pegasus: a tiny transformers model with random weights
is saved and loaded with longbird's class of the same name; outputs and losses are compared
(`original_full` in eval, with and without right padding; `block_sparse` in training mode,
where transformers draws its real random plan, dropout 0).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers import TINY_BIGBIRD, TINY_PEGASUS, TINY_PEGASUS_ETC
from test_remote_code import run_without_longbird
from transformers import AutoModelForCausalLM, AutoModelForMultipleChoice, AutoModelForPreTraining, PreTrainedModel

import longbird

transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_thread")

# sharp attention: a wrong block moves outputs far above the tolerances
BIGBIRD = {**TINY_BIGBIRD, "initializer_range": 0.2}
PEGASUS, ETC = TINY_PEGASUS, TINY_PEGASUS_ETC
NUM_CHOICES = 3
HEADS = ("BigBirdForMultipleChoice", "BigBirdForPreTraining")


def save_and_load(hf, name, tmp_path, folder="hf"):
    hf.save_pretrained(tmp_path / folder)
    ours, info = getattr(longbird, name).from_pretrained(tmp_path / folder, output_loading_info=True)
    assert type(ours) is getattr(longbird, name)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return ours


def bigbird_pair(name, tmp_path, **overrides):
    torch.manual_seed(0)
    hf = getattr(transformers, name)(transformers.BigBirdConfig(**{**BIGBIRD, **overrides}))
    return hf, save_and_load(hf, name, tmp_path)


def bigbird_inputs(name, batch, seq_len, real_lengths=None, seed=0):
    """Inputs with labels, and the bool mask of real tokens (`[B, L]`, or `[B, C, L]` for choices)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, NUM_CHOICES, seq_len) if name == "BigBirdForMultipleChoice" else (batch, seq_len)
    ids = torch.randint(6, 100, shape, generator=g)
    real = torch.ones(shape, dtype=torch.bool)
    kwargs = {}
    if real_lengths is not None:
        for i, n in enumerate(real_lengths):
            real[i, ..., n:] = False
        ids[~real] = 0
        kwargs["attention_mask"] = real.long()
    if name == "BigBirdForMultipleChoice":
        kwargs["labels"] = torch.randint(0, NUM_CHOICES, (batch,), generator=g)
    else:
        labels = torch.randint(6, 100, shape, generator=g)
        kwargs["labels"] = labels.masked_fill((torch.rand(shape, generator=g) < 0.5) | ~real, -100)
        kwargs["next_sentence_label"] = torch.randint(0, 2, (batch,), generator=g)
    return {"input_ids": ids, **kwargs}, real


def run_both(hf, ours, kwargs, train):
    hf.train(train)
    ours.train(train)
    with torch.no_grad():
        return hf(**kwargs), ours(**kwargs)


def max_diff(name, ref, got, real):
    """max |Δ| over the outputs (per-token outputs at real positions) and the loss."""
    diffs = {"loss": (got.loss - ref.loss).abs().max().item()}
    for key in ("logits", "prediction_logits", "seq_relationship_logits"):
        if ref.get(key) is None:
            continue
        a, b = ref[key], got[key]
        assert a.shape == b.shape, key
        if key == "prediction_logits":
            a, b = a[real], b[real]
        diffs[key] = (a - b).abs().max().item()
    return diffs


# --------------------------------------------------------------------------------------------
# BigBirdForMultipleChoice, BigBirdForPreTraining
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HEADS)
def test_bigbird_head_loads_transformers_checkpoint(name, tmp_path):
    hf, ours = bigbird_pair(name, tmp_path)
    assert ours.config.model_type == "longbird_bigbird"
    our_state = ours.state_dict()
    for key, value in hf.state_dict().items():
        torch.testing.assert_close(our_state[key], value, rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")
    if name == "BigBirdForPreTraining":  # tied, like BigBirdForMaskedLM
        assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
        ours.save_pretrained(tmp_path / "ours")
        again = longbird.BigBirdForPreTraining.from_pretrained(tmp_path / "ours")
        assert again.cls.predictions.decoder.weight is again.bert.embeddings.word_embeddings.weight
        torch.testing.assert_close(again.cls.predictions.decoder.weight, hf.cls.predictions.decoder.weight)


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "right-padding"])
@pytest.mark.parametrize("name", HEADS)
def test_bigbird_head_original_full_matches_transformers(name, padded, tmp_path):
    hf, ours = bigbird_pair(name, tmp_path, attention_type="original_full")
    kwargs, real = bigbird_inputs(name, 2, 50, real_lengths=[50, 33] if padded else None)
    ref, got = run_both(hf, ours, kwargs, train=False)
    diffs = max_diff(name, ref, got, real)
    assert max(diffs.values()) <= 1e-5, diffs


@pytest.mark.parametrize("seq_len", [256, 203])
@pytest.mark.parametrize("name", HEADS)
def test_bigbird_head_block_sparse_training_matches_transformers(name, seq_len, tmp_path):
    hf, ours = bigbird_pair(name, tmp_path)
    kwargs, real = bigbird_inputs(name, 2, seq_len, seed=seq_len)
    ref, got = run_both(hf, ours, kwargs, train=True)
    assert hf.bert.attention_type == "block_sparse", "transformers fell back to original_full"
    diffs = max_diff(name, ref, got, real)
    assert max(diffs.values()) <= 1e-4, diffs


def test_multiple_choice_output_shapes_loss_and_tuple(tmp_path):
    model = longbird.BigBirdForMultipleChoice(longbird.BigBirdConfig(**BIGBIRD)).eval()
    kwargs, _ = bigbird_inputs("BigBirdForMultipleChoice", 2, 40)
    with torch.no_grad():
        out = model(**kwargs, output_hidden_states=True)
        as_tuple = model(**kwargs, return_dict=False)
        embeds = model.bert.embeddings.word_embeddings(kwargs["input_ids"])
        from_embeds = model(inputs_embeds=embeds, labels=kwargs["labels"])
    assert out.logits.shape == (2, NUM_CHOICES)
    assert out.hidden_states[-1].shape == (2 * NUM_CHOICES, 40, 32)  # one row per choice, as transformers
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, kwargs["labels"]))
    torch.testing.assert_close(as_tuple[1], out.logits)
    torch.testing.assert_close(from_embeds.logits, out.logits, rtol=0, atol=1e-5)


def test_pretraining_output_fields_and_loss():
    model = longbird.BigBirdForPreTraining(longbird.BigBirdConfig(**BIGBIRD)).eval()
    kwargs, _ = bigbird_inputs("BigBirdForPreTraining", 2, 40)
    with torch.no_grad():
        out = model(**kwargs)
        mlm_only = model(input_ids=kwargs["input_ids"], labels=kwargs["labels"])
        no_labels = model(input_ids=kwargs["input_ids"], next_sentence_label=kwargs["next_sentence_label"])
    assert isinstance(out, transformers.models.big_bird.modeling_big_bird.BigBirdForPreTrainingOutput)
    assert out.prediction_logits.shape == (2, 40, 100) and out.seq_relationship_logits.shape == (2, 2)
    ce = torch.nn.functional.cross_entropy
    mlm = ce(out.prediction_logits.reshape(-1, 100), kwargs["labels"].reshape(-1))
    nsp = ce(out.seq_relationship_logits, kwargs["next_sentence_label"])
    torch.testing.assert_close(out.loss, mlm + nsp)
    torch.testing.assert_close(mlm_only.loss, mlm)
    assert no_labels.loss is None  # as transformers: NSP alone gives no loss


@pytest.mark.parametrize(
    "inputs,pattern",
    [
        ({"input_ids": torch.ones(2, 40, dtype=torch.long)}, r"`input_ids` must have shape \[batch, num_choices"),
        (
            {"inputs_embeds": torch.ones(2, 40, 32)},
            r"`inputs_embeds` must have shape \[batch, num_choices, seq_len, hidden_size\]",
        ),
        (
            {"input_ids": torch.ones(2, 3, 40, dtype=torch.long), "attention_mask": torch.ones(6, 40)},
            r"`attention_mask` must have shape \[batch, num_choices, seq_len\]",
        ),
        (
            {"input_ids": torch.ones(2, 3, 40, dtype=torch.long), "token_type_ids": torch.zeros(2, 4, 40).long()},
            r"`token_type_ids` has \[batch, num_choices\] = \(2, 4\)",
        ),
        ({}, r"exactly one of `input_ids` or `inputs_embeds`"),
    ],
    ids=["input_ids-rank2", "inputs_embeds-rank3", "attention_mask-rank2", "choices-mismatch", "no-input"],
)
def test_multiple_choice_wrong_shapes_raise(inputs, pattern):
    model = longbird.BigBirdForMultipleChoice(longbird.BigBirdConfig(**BIGBIRD))
    with pytest.raises(ValueError, match=pattern):
        model(**inputs)


# --------------------------------------------------------------------------------------------
# BigBirdPegasusForCausalLM
# --------------------------------------------------------------------------------------------


def causal_pair(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BigBirdPegasusForCausalLM(transformers.BigBirdPegasusConfig(**PEGASUS))
    ours = save_and_load(hf, "BigBirdPegasusForCausalLM", tmp_path)
    return hf, ours


def test_causal_lm_loads_transformers_checkpoint_and_is_a_decoder(tmp_path):
    hf, ours = causal_pair(tmp_path)
    assert ours.config.model_type == "longbird_bigbird_pegasus"
    assert ours.config.is_decoder and not ours.config.is_encoder_decoder
    our_state = ours.state_dict()
    assert set(our_state) == set(hf.state_dict())
    for key, value in hf.state_dict().items():
        torch.testing.assert_close(our_state[key], value, rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "right-padding"])
def test_causal_lm_matches_transformers(padded, train, tmp_path):
    hf, ours = causal_pair(tmp_path)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 20), generator=g)
    kwargs = {"input_ids": ids, "labels": torch.randint(3, 99, (2, 20), generator=g)}
    real = torch.ones(2, 20, dtype=torch.bool)
    if padded:
        real[1, 13:] = False
        kwargs["attention_mask"] = real.long()
        kwargs["labels"] = kwargs["labels"].masked_fill(~real, -100)
    kwargs["encoder_hidden_states"] = torch.randn(2, 30, 32, generator=g)  # cross-attention too
    ref, got = run_both(hf, ours, kwargs, train=train)
    assert got.logits.shape == (2, 20, 99) and got.loss.shape == ()
    torch.testing.assert_close(got.logits[real], ref.logits[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, ref.loss, rtol=0, atol=1e-5)


def test_causal_lm_greedy_generate_matches_transformers(tmp_path):
    hf, ours = causal_pair(tmp_path)
    prompt = torch.randint(3, 99, (2, 6), generator=torch.Generator().manual_seed(2))
    hf.eval()
    ours.eval()
    expected = hf.generate(prompt, max_new_tokens=10, do_sample=False)
    got = ours.generate(prompt, max_new_tokens=10, do_sample=False)
    assert torch.equal(got, expected)


# --------------------------------------------------------------------------------------------
# Auto classes and remote code
# --------------------------------------------------------------------------------------------


def our_models():
    torch.manual_seed(0)
    return {
        "AutoModelForMultipleChoice": longbird.BigBirdForMultipleChoice(longbird.BigBirdConfig(**BIGBIRD)),
        "AutoModelForPreTraining": longbird.BigBirdForPreTraining(longbird.BigBirdConfig(**BIGBIRD)),
        "AutoModelForCausalLM": longbird.BigBirdPegasusForCausalLM(longbird.BigBirdPegasusConfig(**PEGASUS)),
    }


def test_auto_classes_give_ours(tmp_path):
    autos = {
        "AutoModelForMultipleChoice": AutoModelForMultipleChoice,
        "AutoModelForPreTraining": AutoModelForPreTraining,
        "AutoModelForCausalLM": AutoModelForCausalLM,
    }
    for auto, model in our_models().items():
        model.save_pretrained(tmp_path / auto)
        loaded = autos[auto].from_pretrained(tmp_path / auto)
        assert type(loaded) is type(model), auto
        assert type(autos[auto].from_config(model.config)) is type(model), auto


@pytest.mark.parametrize("auto", ["AutoModelForMultipleChoice", "AutoModelForCausalLM"])
def test_saved_model_runs_from_its_own_code(auto, tmp_path):
    model = our_models()[auto].eval()
    model.save_pretrained(tmp_path / "saved")
    g = torch.Generator().manual_seed(0)
    if auto == "AutoModelForMultipleChoice":
        inputs = {"input_ids": torch.randint(6, 100, (2, NUM_CHOICES, 30), generator=g)}
        with torch.no_grad():
            expected = model(**inputs).logits
        got = run_without_longbird(tmp_path, tmp_path / "saved", auto, dict(inputs))["logits"]
    else:
        prompt = torch.randint(3, 99, (1, 5), generator=g)
        generate = {"max_new_tokens": 6, "do_sample": False}
        expected = model.generate(prompt, **generate)
        got = run_without_longbird(tmp_path, tmp_path / "saved", auto, {"input_ids": prompt, "generate": generate})
        got = got["sequences"]
    torch.testing.assert_close(got, expected)


# --------------------------------------------------------------------------------------------
# Pegasus encoders: PreTrainedModels that save and load alone
# --------------------------------------------------------------------------------------------


def test_bigbird_encoder_saves_and_loads_alone(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(**PEGASUS))
    full = save_and_load(hf, "BigBirdPegasusForConditionalGeneration", tmp_path)
    encoder = full.get_encoder()
    assert isinstance(encoder, PreTrainedModel) and type(encoder) is longbird.BigBirdPegasusEncoder
    encoder.save_pretrained(tmp_path / "encoder")
    alone, info = longbird.BigBirdPegasusEncoder.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids = torch.randint(3, 99, (2, 200), generator=torch.Generator().manual_seed(3))
    for module in (encoder, alone, hf.get_encoder()):
        module.train()  # transformers' real random plan (dropout 0)
    with torch.no_grad():
        expected = encoder(input_ids=ids).last_hidden_state
        torch.testing.assert_close(alone(input_ids=ids).last_hidden_state, expected, rtol=0, atol=0)
        # transformers' own encoder, saved alone, loads too
        hf.get_encoder().save_pretrained(tmp_path / "hf-encoder")
        from_hf = save_and_load(hf.get_encoder(), "BigBirdPegasusEncoder", tmp_path, "hf-encoder").train()
        reference = hf.get_encoder()(input_ids=ids).last_hidden_state
        torch.testing.assert_close(from_hf(input_ids=ids).last_hidden_state, reference, rtol=0, atol=1e-4)
    # the full model still saves and loads with one tied token table
    full.save_pretrained(tmp_path / "full")
    again, info = longbird.BigBirdPegasusForConditionalGeneration.from_pretrained(
        tmp_path / "full", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    base = again.model
    assert base.encoder.embed_tokens.weight is base.shared.weight is base.decoder.embed_tokens.weight


def test_etc_encoder_saves_and_loads_alone(tmp_path):
    torch.manual_seed(0)
    config = longbird.BigBirdPegasusConfig(**PEGASUS, encoder_type="etc", etc_config=dict(ETC))
    full = longbird.BigBirdPegasusForConditionalGeneration(config).eval()
    encoder = full.get_encoder()
    assert isinstance(encoder, PreTrainedModel) and type(encoder) is longbird.EtcPegasusEncoder
    assert encoder.etc.config.initializer_range == PEGASUS["init_std"]  # init_std reaches the ETC encoder
    encoder.save_pretrained(tmp_path / "encoder")
    alone, info = longbird.EtcPegasusEncoder.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids = torch.randint(3, 99, (2, 60), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(
            alone.eval()(input_ids=ids).last_hidden_state, encoder(input_ids=ids).last_hidden_state, rtol=0, atol=0
        )
    with pytest.raises(ValueError, match=r"BigBirdPegasusEncoder needs config.encoder_type='bigbird'.*use EtcPegasus"):
        longbird.BigBirdPegasusEncoder.from_pretrained(tmp_path / "encoder")


def test_etc_encoder_set_input_embeddings_replaces_the_one_table():
    config = longbird.BigBirdPegasusConfig(**PEGASUS, encoder_type="etc", etc_config=dict(ETC))
    model = longbird.BigBirdPegasusForConditionalGeneration(config)
    keys = set(model.state_dict())
    model.resize_token_embeddings(120)
    shared = model.model.shared.weight
    assert shared.shape[0] == 120
    assert model.model.encoder.embed_tokens.weight is shared  # the getter sees the new table
    assert set(model.state_dict()) == keys  # no second table registered beside ETC's


# --------------------------------------------------------------------------------------------
# Config flags: implemented or refused
# --------------------------------------------------------------------------------------------


def test_encoder_layerdrop_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.BigBirdPegasusConfig(**{**PEGASUS, "encoder_layers": 6}, encoder_layerdrop=0.5)
    hf = transformers.BigBirdPegasusForConditionalGeneration(config)
    ours = save_and_load(hf, "BigBirdPegasusForConditionalGeneration", tmp_path)
    ids = torch.randint(3, 99, (2, 200), generator=torch.Generator().manual_seed(4))
    outputs = []
    for seed in range(3):
        with torch.no_grad():
            torch.manual_seed(seed)
            ref = hf.get_encoder().train()(input_ids=ids).last_hidden_state
            torch.manual_seed(seed)
            got = ours.get_encoder().train()(input_ids=ids).last_hidden_state
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
        outputs.append(got)
    assert any((a - outputs[0]).abs().max() > 1e-3 for a in outputs[1:]), "layerdrop dropped nothing"
    with torch.no_grad():  # eval: every layer
        torch.testing.assert_close(
            ours.get_encoder().eval()(input_ids=ids).last_hidden_state,
            ours.get_encoder()(input_ids=ids).last_hidden_state,
        )


@pytest.mark.parametrize("name", ["BigBirdPegasusForConditionalGeneration", "BigBirdPegasusForCausalLM"])
def test_transformers_default_pegasus_configs_load(name, tmp_path):
    transformers.BigBirdPegasusConfig().save_pretrained(tmp_path)  # every default
    config = longbird.BigBirdPegasusConfig.from_pretrained(tmp_path)
    assert config.encoder_type == "bigbird" and config.chunk_size_feed_forward == 0
    small = transformers.BigBirdPegasusConfig(**PEGASUS)
    getattr(transformers, name)(small).save_pretrained(tmp_path / "model")  # CausalLM: is_decoder=True
    getattr(longbird, name).from_pretrained(tmp_path / "model")


def test_default_etc_config_round_trips(tmp_path):
    longbird.EtcConfig().save_pretrained(tmp_path)
    assert longbird.EtcConfig.from_pretrained(tmp_path).to_dict() == longbird.EtcConfig().to_dict()


PEGASUS_REFUSED = [
    ({"chunk_size_feed_forward": 4}, r"chunk_size_feed_forward=4 is not supported"),
    ({"pruned_heads": {0: [1]}}, r"pruned_heads=.* is not supported"),
    ({"encoder_layerdrop": 1.0}, r"encoder_layerdrop must lie in \[0, 1\)"),
    ({"activation_function": "nope"}, r"activation_function 'nope'"),
    ({"decoder_attention_heads": 5}, r"decoder_attention_heads"),
]
ETC_REFUSED = [
    ({"num_global_tokens": 2}, r"num_global_tokens=2 configures the BigBird encoder.*encoder_type is 'etc'"),
    ({"window_blocks": 5}, r"window_blocks=5 configures the BigBird encoder"),
    ({"random_plan": "uniform"}, r"random_plan='uniform' configures the BigBird encoder"),
    ({"attention_backend": "dense"}, r"attention_backend='dense' configures the BigBird encoder.*etc_config"),
    ({"attention_type": "original_full"}, r"attention_type='original_full' configures the BigBird encoder"),
    ({"encoder_layerdrop": 0.1}, r"encoder_layerdrop=0.1 is not implemented by the ETC encoder"),
    ({"etc_config": {**ETC, "local_radus": 3}}, r"etc_config has keys \['local_radus'\] that are no EtcConfig"),
    ({"etc_config": {**ETC, "hidden_size": 64}}, r"etc_config sets \['hidden_size'\].*\(d_model\)"),
]


@pytest.mark.parametrize(
    "fields,pattern", PEGASUS_REFUSED, ids=[next(iter(f)) + "-pegasus" for f, _ in PEGASUS_REFUSED]
)
def test_pegasus_config_refuses_flags_it_would_ignore(fields, pattern):
    with pytest.raises(ValueError, match=pattern):
        longbird.BigBirdPegasusConfig(**{**PEGASUS, **fields})


@pytest.mark.parametrize("fields,pattern", ETC_REFUSED, ids=[next(iter(f)) + "-etc" for f, _ in ETC_REFUSED])
def test_pegasus_etc_config_refuses_bigbird_encoder_options(fields, pattern):
    with pytest.raises(ValueError, match=pattern):
        longbird.BigBirdPegasusConfig(**{**PEGASUS, "encoder_type": "etc", "etc_config": dict(ETC), **fields})


@pytest.mark.parametrize(
    "flag,value",
    [
        ("is_decoder", True),
        ("add_cross_attention", True),
        ("is_encoder_decoder", True),
        ("chunk_size_feed_forward", 8),
        ("pruned_heads", {0: [1]}),
    ],
)
def test_etc_config_refuses_flags_it_would_ignore(flag, value, tmp_path):
    with pytest.raises(ValueError, match=rf"{flag}=.* is not supported"):
        longbird.EtcConfig(**{flag: value})
