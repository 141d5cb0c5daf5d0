"""longbird's BigBird-Pegasus against transformers' own BigBird-Pegasus (the offline reference).

Tiny random transformers models are saved and loaded with longbird's class of the same name
(drop-in loading), then compared:

* config / Auto classes / save-load round trip (safetensors);
* parity, every head: `original_full` (eval) and `block_sparse` (training mode, where
  transformers draws its real random plan), outputs, losses and the gradient of every parameter;
  padding in the sparse batch (the unpadded row still matches);
* eval keeps the training plan (and so differs from transformers' eval);
* `generate()`: greedy, beam search, sampling equal transformers' ids, cache on/off, cache type;
* training: labels -> shifted decoder inputs, `DataCollatorForSeq2Seq`, gradient checkpointing;
* the ETC encoder option (structure inputs in forward and generate, tied token table, save/load);
* clear errors for bad input; a 4096-token input; padding never changes real positions.

Token ids follow Pegasus: pad 0, eos 1, bos / decoder start 2; content ids are 3..98.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import transformers
from helpers import EOS, PAD, START, TINY_PEGASUS, TINY_PEGASUS_ETC, VOCAB
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    EncoderDecoderCache,
)

import longbird
from longbird.modeling import modeling_longbird_bigbird_pegasus as ours_module

transformers.logging.set_verbosity_error()  # transformers warns on every padded / short input

TINY, ETC = TINY_PEGASUS, TINY_PEGASUS_ETC
# transformers falls back to original_full at or below (5 + 2 r) * block_size = 72 tokens
SPARSE_LEN = 200
assert SPARSE_LEN > (5 + 2 * TINY["num_random_blocks"]) * TINY["block_size"]

HEADS = (
    "BigBirdPegasusModel",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
)
OUTPUT_KEYS = {
    "BigBirdPegasusModel": ("last_hidden_state", "encoder_last_hidden_state"),
    "BigBirdPegasusForConditionalGeneration": ("logits", "encoder_last_hidden_state"),
    "BigBirdPegasusForSequenceClassification": ("logits",),
    "BigBirdPegasusForQuestionAnswering": ("start_logits", "end_logits"),
}
NUM_LABELS = {"BigBirdPegasusForSequenceClassification": 3}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def tiny(**overrides) -> dict:
    return {**TINY, **overrides}


def make_pair(name, tmp_path, seed=0, **overrides):
    """(transformers model, longbird model loaded from its saved folder), same weights."""
    kwargs = tiny(**overrides)
    if name in NUM_LABELS:
        kwargs.setdefault("num_labels", NUM_LABELS[name])
    torch.manual_seed(seed)
    hf = getattr(transformers, name)(transformers.BigBirdPegasusConfig(**kwargs))
    folder = tmp_path / f"hf-{name}-{seed}"
    hf.save_pretrained(folder)
    ours, info = getattr(longbird, name).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return hf, ours


def make_inputs(name, batch, seq_len, seed=0, real_lengths=None):
    """Model kwargs for head `name` and the `[B, L]` bool mask of real encoder tokens.

    `real_lengths` right-pads each example (pad id, attention_mask 0). Classification inputs end
    with <eos> (the head reads the decoder state there).
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, seq_len), generator=g)
    real = torch.ones(batch, seq_len, dtype=torch.bool)
    kwargs = {}
    if real_lengths is not None:
        for i, n in enumerate(real_lengths):
            real[i, n:] = False
        ids[~real] = PAD
        kwargs["attention_mask"] = real.long()
    lengths = real.sum(1)
    if name == "BigBirdPegasusModel":
        kwargs["decoder_input_ids"] = torch.randint(3, VOCAB, (batch, 16), generator=g)
    elif name == "BigBirdPegasusForConditionalGeneration":
        labels = torch.randint(3, VOCAB, (batch, 12), generator=g)
        labels[0, -3:] = -100  # padded targets
        kwargs["labels"] = labels
    elif name == "BigBirdPegasusForSequenceClassification":
        ids[torch.arange(batch), lengths - 1] = EOS
        kwargs["labels"] = torch.randint(0, NUM_LABELS[name], (batch,), generator=g)
    elif name == "BigBirdPegasusForQuestionAnswering":
        kwargs["start_positions"] = torch.tensor([3 + i for i in range(batch)])
        kwargs["end_positions"] = torch.tensor([7 + i for i in range(batch)])
    kwargs["input_ids"] = ids
    return kwargs, real


def scalar_loss(name, out, real=None):
    """A loss for every head (the base model has none: a fixed projection of both outputs; of the
    encoder's, real positions only when `real` is given: padding positions are unspecified)."""
    if name != "BigBirdPegasusModel":
        return out.loss
    g = torch.Generator().manual_seed(123)
    w1 = torch.randn(out.last_hidden_state.shape, generator=g)
    w2 = torch.randn(out.encoder_last_hidden_state.shape, generator=g)
    if real is not None:
        w2 = w2 * real[..., None]
    return (out.last_hidden_state * w1).sum() + (out.encoder_last_hidden_state * w2).sum()


def forward_backward(model, name, kwargs, train, real=None):
    model.train(train)
    model.zero_grad(set_to_none=True)
    out = model(**kwargs)
    scalar_loss(name, out, real).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return out, grads


def assert_outputs_close(name, ref, got, atol, rows=slice(None), real=None):
    """`real` (`[B, L]` bool): compare the encoder's outputs at real positions only (after an
    example's last real token longbird's encoder outputs are not computed: see longbird_packing)."""
    for key in OUTPUT_KEYS[name]:
        a, b = getattr(ref, key)[rows], getattr(got, key)[rows]
        assert a.shape == b.shape, key
        if real is not None and key == "encoder_last_hidden_state":
            a, b = a[real], b[real]
        torch.testing.assert_close(b, a, rtol=0, atol=atol, msg=lambda m, key=key: f"{name}.{key}: {m}")
    if ref.get("loss") is not None or got.get("loss") is not None:
        assert ref.loss is not None and got.loss is not None
        torch.testing.assert_close(got.loss, ref.loss, rtol=0, atol=atol, msg=lambda m: f"{name}.loss: {m}")


def assert_grads_close(ref_grads, got_grads, atol, rtol):
    assert set(ref_grads) == set(got_grads), set(ref_grads) ^ set(got_grads)
    with_grad = 0
    for key, a in ref_grads.items():
        b = got_grads[key]
        assert (a is None) == (b is None), key
        if a is None:
            continue
        with_grad += 1
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m, key=key: f"grad of {key}: {m}")
    assert with_grad >= len(ref_grads) - 1, "almost every parameter must get a gradient"


def hf_encoder(hf):
    base = hf if isinstance(hf, transformers.BigBirdPegasusModel) else hf.model
    return base.encoder


def etc_model(cls=longbird.BigBirdPegasusForConditionalGeneration, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(longbird.BigBirdPegasusConfig(**tiny(encoder_type="etc", etc_config=dict(ETC), **overrides)))


def etc_structure(batch=2, seq_len=60, sentence_len=15):
    """One global token per sentence of `sentence_len` long tokens, and each token's sentence."""
    n_global = -(-seq_len // sentence_len)
    return {
        "global_input_ids": torch.full((batch, n_global), 1, dtype=torch.long),
        "sentence_ids": (torch.arange(seq_len) // sentence_len).expand(batch, -1).clone(),
    }


# --------------------------------------------------------------------------------------------
# 1. config, Auto classes, drop-in loading, save/load
# --------------------------------------------------------------------------------------------


def test_config_fields_and_model_type():
    config = longbird.BigBirdPegasusConfig(**TINY)
    assert config.model_type == "longbird_bigbird_pegasus"
    assert isinstance(config, transformers.BigBirdPegasusConfig)  # every reference field, same meaning
    assert config.hidden_size == 32 and config.num_hidden_layers == 2 and config.num_attention_heads == 4
    assert config.encoder_type == "bigbird" and config.etc_config is None
    assert config.num_global_tokens == 0 and config.window_blocks == 3 and config.random_plan == "reference"
    # defaults are transformers' (a reference config.json means the same thing here)
    ref, default = transformers.BigBirdPegasusConfig(), longbird.BigBirdPegasusConfig()
    for field in (
        "vocab_size",
        "d_model",
        "block_size",
        "num_random_blocks",
        "attention_type",
        "use_bias",
        "scale_embedding",
        "decoder_start_token_id",
        "pad_token_id",
        "eos_token_id",
    ):
        assert getattr(default, field) == getattr(ref, field), field


AUTO = {
    "BigBirdPegasusModel": AutoModel,
    "BigBirdPegasusForConditionalGeneration": AutoModelForSeq2SeqLM,
    "BigBirdPegasusForSequenceClassification": AutoModelForSequenceClassification,
    "BigBirdPegasusForQuestionAnswering": AutoModelForQuestionAnswering,
}


@pytest.mark.parametrize("name", HEADS)
def test_auto_classes_and_safetensors_round_trip(name, tmp_path):
    config = AutoConfig.for_model(
        "longbird_bigbird_pegasus", **tiny(**({"num_labels": 3} if name in NUM_LABELS else {}))
    )
    assert type(config) is longbird.BigBirdPegasusConfig
    assert type(AUTO[name].from_config(config)) is getattr(longbird, name)

    torch.manual_seed(0)
    model = getattr(longbird, name)(config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    loaded_config = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded_config) is longbird.BigBirdPegasusConfig
    assert loaded_config.model_type == "longbird_bigbird_pegasus"
    loaded, info = AUTO[name].from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is getattr(longbird, name)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    for key, value in model.state_dict().items():
        torch.testing.assert_close(
            loaded.state_dict()[key], value, rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}"
        )
    kwargs, _ = make_inputs(name, 2, 100, seed=1)
    with torch.no_grad():
        a, b = model(**kwargs), loaded.eval()(**kwargs)
    assert_outputs_close(name, a, b, 0.0)


@pytest.mark.parametrize("name", HEADS)
def test_loads_transformers_checkpoint_without_missing_or_unexpected_keys(name, tmp_path):
    kwargs = tiny(**({"num_labels": 3} if name in NUM_LABELS else {}))
    torch.manual_seed(0)
    hf = getattr(transformers, name)(transformers.BigBirdPegasusConfig(**kwargs))
    hf.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bigbird_pegasus"
    ours, info = getattr(longbird, name).from_pretrained(tmp_path, output_loading_info=True)
    assert type(ours) is getattr(longbird, name)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    assert type(ours.config) is longbird.BigBirdPegasusConfig
    assert ours.config.model_type == "longbird_bigbird_pegasus"
    hf_state, our_state = hf.state_dict(), ours.state_dict()
    assert set(hf_state) == set(our_state)
    for key, value in hf_state.items():
        torch.testing.assert_close(our_state[key], value, rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")
    # one token table: encoder, decoder (and the LM head) share it, as in the reference
    base = ours.model if hasattr(ours, "model") else ours
    assert base.encoder.embed_tokens.weight is base.shared.weight
    assert base.decoder.embed_tokens.weight is base.shared.weight
    if name == "BigBirdPegasusForConditionalGeneration":
        assert ours.lm_head.weight is base.shared.weight


@pytest.mark.parametrize("name", HEADS)
def test_conditional_generation_folder_loads_into_every_head_like_transformers(name, tmp_path):
    """A summarization checkpoint loaded into another head: the same loading report as
    transformers' own class (only the new head missing, final_logits_bias unused), same weights."""
    torch.manual_seed(0)
    hf = transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(**TINY))
    hf.save_pretrained(tmp_path)
    _, ref_info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True)
    ours, info = getattr(longbird, name).from_pretrained(tmp_path, output_loading_info=True)
    assert type(ours) is getattr(longbird, name)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert set(info[key]) == set(ref_info[key]), (key, info[key], ref_info[key])
    assert not any(k.startswith(("model.", "encoder.", "decoder.", "shared")) for k in info["missing_keys"])
    hf_state = {k.removeprefix("model."): v for k, v in hf.state_dict().items()}
    for key, value in ours.state_dict().items():
        key = key.removeprefix("model.")
        if key in hf_state:
            torch.testing.assert_close(value, hf_state[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")


# --------------------------------------------------------------------------------------------
# 2. parity: original_full (eval) and block_sparse (training mode), outputs + gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "right-padding"])
@pytest.mark.parametrize("name", HEADS)
def test_original_full_matches_transformers(name, padded, tmp_path):
    hf, ours = make_pair(name, tmp_path, attention_type="original_full")
    kwargs, real = make_inputs(name, 2, 60, real_lengths=[60, 41] if padded else None)
    ref, ref_grads = forward_backward(hf, name, kwargs, train=False, real=real)
    got, got_grads = forward_backward(ours, name, kwargs, train=False, real=real)
    assert_outputs_close(name, ref, got, 1e-5, real=real)
    assert_grads_close(ref_grads, got_grads, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", HEADS)
def test_block_sparse_training_matches_transformers(name, tmp_path):
    hf, ours = make_pair(name, tmp_path)
    assert hf.config.attention_type == "block_sparse" and ours.config.attention_type == "block_sparse"
    kwargs, _ = make_inputs(name, 2, SPARSE_LEN, seed=7)  # no padding: see the test below
    ref, ref_grads = forward_backward(hf, name, kwargs, train=True)
    got, got_grads = forward_backward(ours, name, kwargs, train=True)
    assert hf_encoder(hf).attention_type == "block_sparse", "transformers fell back to original_full"
    assert_outputs_close(name, ref, got, 1e-4)
    assert_grads_close(ref_grads, got_grads, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seq_len", [SPARSE_LEN, 203], ids=["len200", "len203-not-a-block-multiple"])
def test_block_sparse_with_padding_unpadded_row_matches(seq_len, tmp_path):
    """With right padding, transformers' "last global block" of a padded example is a padding
    block (it only knows the padded length); ours is the example's last real block, so that padding
    never changes an example's outputs. A documented, deliberate difference: the padded row differs,
    the unpadded row of the same batch still matches."""
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path)
    kwargs, _ = make_inputs(name, 2, seq_len, seed=3, real_lengths=[seq_len, 130])
    hf.train()
    ours.train()
    with torch.no_grad():
        ref, got = hf(**kwargs), ours(**kwargs)
    assert hf_encoder(hf).attention_type == "block_sparse"
    torch.testing.assert_close(got.logits[0], ref.logits[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(got.encoder_last_hidden_state[0], ref.encoder_last_hidden_state[0], rtol=0, atol=1e-4)
    diff = (got.encoder_last_hidden_state[1, :130] - ref.encoder_last_hidden_state[1, :130]).abs().max()
    assert diff > 1e-4, "the padded row is expected to differ (different last global block)"


@pytest.mark.parametrize("seq_len", [40, 72])
def test_short_inputs_match_transformers_fallback_without_changing_the_model(seq_len, tmp_path):
    """At or below (5 + 2r) blocks transformers falls back to full attention (for good); ours runs
    full attention for that call only, so the next long input is still block-sparse."""
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path)
    long_kwargs, _ = make_inputs(name, 2, SPARSE_LEN, seed=12)
    with torch.no_grad():
        long_before = ours.train()(**long_kwargs)
        kwargs, _ = make_inputs(name, 2, seq_len, seed=seq_len, real_lengths=[seq_len, seq_len // 2 + 1])
        ref, got = hf.train()(**kwargs), ours(**kwargs)
        long_after = ours(**long_kwargs)
    assert hf_encoder(hf).attention_type == "original_full"  # transformers switched for good
    assert ours.config.attention_type == "block_sparse"
    real = kwargs["attention_mask"].bool()
    torch.testing.assert_close(
        got.encoder_last_hidden_state[real], ref.encoder_last_hidden_state[real], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(got.logits, ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, ref.loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(long_after.logits, long_before.logits, rtol=0, atol=0)


def test_eval_uses_training_plan_unlike_transformers_eval(tmp_path):
    """Our block-sparse plan is a pure function of (length, layer): eval == train (dropout 0).
    transformers draws random blocks only in training (eval: every random slot is block 0)."""
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path)
    kwargs, _ = make_inputs(name, 2, SPARSE_LEN, seed=5)
    with torch.no_grad():
        hf_train, ours_train = hf.train()(**kwargs), ours.train()(**kwargs)
        hf_eval, ours_eval = hf.eval()(**kwargs), ours.eval()(**kwargs)
    assert hf_encoder(hf).attention_type == "block_sparse"
    for key in ("encoder_last_hidden_state", "logits"):
        torch.testing.assert_close(getattr(ours_eval, key), getattr(ours_train, key), rtol=0, atol=1e-6)
        torch.testing.assert_close(getattr(ours_eval, key), getattr(hf_train, key), rtol=0, atol=1e-4)
        diff = (getattr(ours_eval, key) - getattr(hf_eval, key)).abs().max().item()
        assert diff > 1e-3, f"{key}: our eval output equals transformers' eval (random blocks = block 0): {diff}"


def test_sequence_classification_reads_the_last_eos(tmp_path):
    """The head reads the decoder state at the last <eos> (transformers' rule), in our model too."""
    name = "BigBirdPegasusForSequenceClassification"
    hf, ours = make_pair(name, tmp_path, attention_type="original_full")
    kwargs, _ = make_inputs(name, 2, 40, seed=2)
    kwargs["input_ids"][:, 10] = EOS  # two <eos> per example: the last one counts
    with torch.no_grad():
        ref, got = hf.eval()(**kwargs), ours.eval()(**kwargs)
        hidden = ours.model(input_ids=kwargs["input_ids"]).last_hidden_state[:, -1]
        manual = ours.classification_head(hidden)
    assert_outputs_close(name, ref, got, 1e-5)
    torch.testing.assert_close(got.logits, manual, rtol=0, atol=1e-6)


@pytest.mark.parametrize("attention_type,train", [("original_full", False), ("block_sparse", True)])
def test_encoder_attentions_and_inner_hidden_states_match_transformers(attention_type, train, tmp_path):
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path, attention_type=attention_type)
    kwargs, _ = make_inputs(name, 2, SPARSE_LEN, seed=1)
    with torch.no_grad():
        ref = hf.train(train)(**kwargs, output_hidden_states=True, output_attentions=True)
        got = ours.train(train)(**kwargs, output_hidden_states=True, output_attentions=True)
    assert hf_encoder(hf).attention_type == attention_type
    assert len(got.encoder_attentions) == len(ref.encoder_attentions) == 2
    for a, b in zip(ref.encoder_attentions, got.encoder_attentions):
        assert b.shape == a.shape == (2, 4, SPARSE_LEN, SPARSE_LEN)
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert len(got.encoder_hidden_states) == len(ref.encoder_hidden_states) == 3
    for a, b in zip(ref.encoder_hidden_states[:-1], got.encoder_hidden_states[:-1]):  # embeddings, layer 1
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    for a, b in zip(ref.decoder_hidden_states, got.decoder_hidden_states):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)


def test_last_encoder_hidden_state_matches_transformers(tmp_path):
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path, attention_type="original_full")
    kwargs, _ = make_inputs(name, 2, 60, seed=1)
    with torch.no_grad():
        ref = hf.eval()(**kwargs, output_hidden_states=True)
        got = ours.eval()(**kwargs, output_hidden_states=True)
    torch.testing.assert_close(ref.encoder_hidden_states[-1], ref.encoder_last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(got.encoder_hidden_states[-1], ref.encoder_hidden_states[-1], rtol=0, atol=1e-5)


def test_config_output_flags_reach_the_encoder(tmp_path):
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(
        name, tmp_path, attention_type="original_full", output_hidden_states=True, output_attentions=True
    )
    kwargs, _ = make_inputs(name, 2, 40, seed=1)
    with torch.no_grad():
        ref, got = hf.eval()(**kwargs), ours.eval()(**kwargs)
    assert ref.encoder_hidden_states is not None and ref.encoder_attentions is not None
    assert got.decoder_hidden_states is not None  # transformers' decoder reads the config
    assert got.encoder_hidden_states is not None, "config.output_hidden_states=True gave no encoder_hidden_states"
    assert got.encoder_attentions is not None, "config.output_attentions=True gave no encoder_attentions"


# --------------------------------------------------------------------------------------------
# 3. generate()
# --------------------------------------------------------------------------------------------

GEN = dict(max_new_tokens=10, min_new_tokens=10)
# With the LM head tied to the scaled token table, a tiny random model just repeats one token
# whatever the input; an untied head gives varied, input-dependent ids (comparisons with teeth).
GEN_MODEL = dict(init_std=0.1, tie_word_embeddings=False)


@pytest.mark.parametrize("attention_type", ["original_full", "block_sparse"])
def test_generate_matches_transformers(attention_type, tmp_path):
    """Greedy, beam search and sampling give transformers' token ids. block_sparse: the reference
    in training mode (dropout 0) uses the plan ours uses in eval."""
    name = "BigBirdPegasusForConditionalGeneration"
    hf, ours = make_pair(name, tmp_path, attention_type=attention_type, **GEN_MODEL)
    assert ours.lm_head.weight is not ours.model.shared.weight
    hf.train(attention_type == "block_sparse")
    ours.eval()
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(3, VOCAB, (2, SPARSE_LEN), generator=g)
    inputs = {"input_ids": ids}
    if attention_type == "original_full":  # padding reaches the decoder's cross-attention mask
        ids[1, 150:] = PAD
        inputs["attention_mask"] = (ids != PAD).long()
    with torch.no_grad():
        ref_out = hf.generate(**inputs, return_dict_in_generate=True, output_logits=True, **GEN)
        got_out = ours.generate(**inputs, return_dict_in_generate=True, output_logits=True, **GEN)
        ref, got = ref_out.sequences, got_out.sequences
        assert got.shape == (2, 11) and (got[:, 0] == START).all()
        assert got.tolist() == ref.tolist(), "greedy"
        assert got[0].tolist() != got[1].tolist(), "both rows generated the same ids: the input had no effect"
        for a, b in zip(ref_out.logits, got_out.logits):  # the step scores too, not only their argmax
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)

        ref_beam = hf.generate(**inputs, num_beams=3, **GEN)
        got_beam = ours.generate(**inputs, num_beams=3, **GEN)
        assert got_beam.tolist() == ref_beam.tolist(), "beam search"

        torch.manual_seed(2024)
        ref_sample = hf.generate(**inputs, do_sample=True, top_k=0, **GEN)
        torch.manual_seed(2024)
        got_sample = ours.generate(**inputs, do_sample=True, top_k=0, **GEN)
        assert got_sample.shape == (2, 11)
        assert got_sample.tolist() == ref_sample.tolist(), "sampling, same seed"
        assert got_sample.tolist() != got.tolist(), "sampling drew the greedy ids: it sampled nothing"
    assert hf_encoder(hf).attention_type == attention_type


def test_generate_cache_on_off_and_cache_type(tmp_path):
    _, ours = make_pair("BigBirdPegasusForConditionalGeneration", tmp_path, **GEN_MODEL)
    ours.eval()
    ids = torch.randint(3, VOCAB, (2, SPARSE_LEN), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cached = ours.generate(input_ids=ids, use_cache=True, **GEN)
        uncached = ours.generate(input_ids=ids, use_cache=False, **GEN)
        assert cached.tolist() == uncached.tolist()

        out = ours.generate(input_ids=ids, return_dict_in_generate=True, **GEN)
        assert isinstance(out.cache, EncoderDecoderCache)
        assert out.sequences.tolist() == cached.tolist()

        step = ours(input_ids=ids, decoder_input_ids=cached[:, :4], use_cache=True)
        assert isinstance(step.cache, EncoderDecoderCache)
        # one more step from the cache == the full forward's last position
        nxt = ours(
            encoder_outputs=(step.encoder_last_hidden_state,),
            decoder_input_ids=cached[:, 4:5],
            cache=step.cache,
            use_cache=True,
        )
        full = ours(input_ids=ids, decoder_input_ids=cached[:, :5], use_cache=False)
    torch.testing.assert_close(nxt.logits[:, -1], full.logits[:, -1], rtol=0, atol=1e-5)


def test_eager_decoder_attention_matches_sdpa(tmp_path):
    name = "BigBirdPegasusForConditionalGeneration"
    hf, sdpa = make_pair(name, tmp_path, attention_type="original_full", **GEN_MODEL)
    eager = longbird.BigBirdPegasusForConditionalGeneration.from_pretrained(
        tmp_path / f"hf-{name}-0", attn_implementation="eager"
    )
    assert eager.config._attn_implementation == "eager"
    kwargs, _ = make_inputs(name, 2, 60, seed=3, real_lengths=[60, 45])
    with torch.no_grad():
        a, b = sdpa.eval()(**kwargs), eager.eval()(**kwargs)
        torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=1e-5)
        inputs = {k: kwargs[k] for k in ("input_ids", "attention_mask")}
        assert eager.generate(**inputs, **GEN).tolist() == hf.eval().generate(**inputs, **GEN).tolist()


# --------------------------------------------------------------------------------------------
# 4. training
# --------------------------------------------------------------------------------------------


def test_labels_give_loss_with_shifted_decoder_inputs():
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(longbird.BigBirdPegasusConfig(**TINY)).eval()
    kwargs, _ = make_inputs("BigBirdPegasusForConditionalGeneration", 2, 100, seed=4)
    labels = kwargs["labels"]
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    expected = torch.full_like(labels, PAD)
    expected[:, 0] = START
    expected[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, PAD)
    assert decoder_input_ids.tolist() == expected.tolist()
    with torch.no_grad():
        implicit = model(**kwargs)
        explicit = model(**kwargs, decoder_input_ids=decoder_input_ids)
        manual = torch.nn.functional.cross_entropy(implicit.logits.reshape(-1, VOCAB), labels.reshape(-1))
    torch.testing.assert_close(implicit.logits, explicit.logits, rtol=0, atol=0)
    torch.testing.assert_close(implicit.loss, explicit.loss, rtol=0, atol=0)
    torch.testing.assert_close(implicit.loss, manual, rtol=0, atol=1e-6)
    assert implicit.cache is None  # labels turn the cache off, as in transformers


def test_data_collator_for_seq2seq_builds_decoder_inputs():
    from longbird.tokenization import train_tokenizer

    texts = [
        "the bird sings a long song in the morning",
        "sparse attention reads long documents",
        "a short summary of a long article",
        "the encoder reads and the decoder writes",
    ] * 3
    tokenizer = train_tokenizer(texts, vocab_size=VOCAB)
    assert tokenizer.pad_token_id == PAD
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(
        longbird.BigBirdPegasusConfig(**tiny(vocab_size=len(tokenizer)))
    ).eval()
    features = []
    for source, target in zip(texts[:3], texts[1:4]):
        enc = tokenizer(source, return_token_type_ids=False)
        enc["labels"] = tokenizer(target)["input_ids"]
        features.append(dict(enc))
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, model=model, return_tensors="pt")
    batch = collator(features)
    labels = batch["labels"]
    assert (labels == -100).any(), "targets of different lengths: some label padding expected"
    expected = torch.full_like(labels, PAD)
    expected[:, 0] = START
    expected[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, PAD)
    assert batch["decoder_input_ids"].tolist() == expected.tolist()
    with torch.no_grad():
        from_collator = model(**batch)
        from_labels = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    torch.testing.assert_close(from_collator.loss, from_labels.loss, rtol=0, atol=0)


def test_gradient_checkpointing_same_loss_and_gradients():
    name = "BigBirdPegasusForConditionalGeneration"
    kwargs, _ = make_inputs(name, 2, SPARSE_LEN, seed=9)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = longbird.BigBirdPegasusForConditionalGeneration(longbird.BigBirdPegasusConfig(**TINY))
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        calls = []  # transformers 5.x checkpoints `forward` itself: count a submodule's calls
        hook = model.model.encoder.layers[0].fc1.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        out, grads = forward_backward(model, name, kwargs, train=True)
        hook.remove()
        # checkpointing re-runs the encoder layer's forward in backward
        assert len(calls) == (2 if checkpointing else 1), (checkpointing, len(calls))
        results.append((out, grads))
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    torch.testing.assert_close(ckpt.loss, plain.loss, rtol=0, atol=1e-6)
    assert_grads_close(plain_grads, ckpt_grads, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------
# 5. ETC encoder option
# --------------------------------------------------------------------------------------------


def test_etc_encoder_builds_with_its_fields_and_ties_the_token_table():
    model = etc_model()
    config = model.config
    assert config.encoder_type == "etc"
    encoder = model.get_encoder()
    assert isinstance(encoder, ours_module.EtcPegasusEncoder)
    etc = encoder.etc.config
    assert etc.local_radius == 8 and etc.relative_pos_max_distance == 4
    assert etc.relative_vocab_size == 12 and etc.num_tokens_per_block == 10
    assert (etc.hidden_size, etc.num_hidden_layers, etc.num_attention_heads, etc.intermediate_size) == (32, 2, 4, 37)
    assert etc.vocab_size == VOCAB and etc.pad_token_id == PAD
    shared = model.model.shared.weight
    assert encoder.embed_tokens.weight is shared
    assert encoder.etc.embeddings.token_embeddings.weight is shared
    assert model.model.decoder.embed_tokens.weight is shared
    assert model.lm_head.weight is shared


def test_etc_encoder_trains():
    model = etc_model().train()
    ids = torch.randint(3, VOCAB, (2, 60), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(3, VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))
    out = model(input_ids=ids, labels=labels, **etc_structure())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    etc = model.model.encoder.etc
    for name, param in etc.layers[0].named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient for layers.0.{name}"
    for name, param in etc.embeddings.named_parameters():  # includes the shared token table
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient for embeddings.{name}"
    # the table gets gradient from both sides (encoder input + decoder input/LM head)
    assert model.model.shared.weight.grad[ids.unique()].abs().sum() > 0


def test_etc_structure_inputs_change_and_drive_the_encoder():
    model = etc_model().eval()
    ids = torch.randint(3, VOCAB, (2, 60), generator=torch.Generator().manual_seed(0))
    dec = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    structure = etc_structure()
    breakpoints = {
        "long_breakpoints": torch.zeros(2, 60, dtype=torch.long).index_fill_(1, torch.tensor([29, 59]), 1),
        "global_breakpoints": torch.zeros(2, 4, dtype=torch.long).index_fill_(1, torch.tensor([1, 3]), 1),
    }
    with torch.no_grad():
        plain = model(input_ids=ids, decoder_input_ids=dec)
        with_structure = model(input_ids=ids, decoder_input_ids=dec, **structure)
        packed = model(input_ids=ids, decoder_input_ids=dec, **structure, **breakpoints)
        encoder = model.get_encoder()
        enc_structure = encoder(input_ids=ids, **structure).last_hidden_state
        enc_packed = encoder(input_ids=ids, **structure, **breakpoints).last_hidden_state
        enc_plain = encoder(input_ids=ids).last_hidden_state
        from_encoder = model(encoder_outputs=(enc_structure,), decoder_input_ids=dec)
    torch.testing.assert_close(with_structure.encoder_last_hidden_state, enc_structure, rtol=0, atol=0)
    torch.testing.assert_close(packed.encoder_last_hidden_state, enc_packed, rtol=0, atol=0)
    torch.testing.assert_close(plain.encoder_last_hidden_state, enc_plain, rtol=0, atol=0)
    torch.testing.assert_close(with_structure.logits, from_encoder.logits, rtol=0, atol=1e-6)
    assert (with_structure.encoder_last_hidden_state - plain.encoder_last_hidden_state).abs().max() > 1e-4
    assert (packed.encoder_last_hidden_state - with_structure.encoder_last_hidden_state).abs().max() > 1e-4
    assert (with_structure.logits - plain.logits).abs().max() > 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_etc_generate_uses_structure_inputs(num_beams):
    model = etc_model().eval()
    ids = torch.randint(3, VOCAB, (2, 60), generator=torch.Generator().manual_seed(0))
    structure = etc_structure()
    kw = dict(num_beams=num_beams, **GEN)
    with torch.no_grad():
        out = model.generate(input_ids=ids, **structure, return_dict_in_generate=True, output_logits=True, **kw)
        plain = model.generate(input_ids=ids, return_dict_in_generate=True, output_logits=True, **kw)
        encoder_outputs = model.get_encoder()(input_ids=ids, **structure)
        given = model.generate(
            input_ids=ids, encoder_outputs=encoder_outputs, return_dict_in_generate=True, output_logits=True, **kw
        )
        first_step = model(input_ids=ids, decoder_input_ids=torch.full((2, 1), START), **structure).logits[:, -1]
    assert out.sequences.shape == (2, 11)
    assert out.sequences.tolist() == given.sequences.tolist()
    for a, b in zip(out.logits, given.logits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    first = out.logits[0][::num_beams]  # beams of an example start from the same logits
    torch.testing.assert_close(first, first_step, rtol=0, atol=1e-5)
    assert (out.logits[0] - plain.logits[0]).abs().max() > 1e-4, "generate ignored the structure inputs"


@pytest.mark.parametrize("encoder_type", ["bigbird", "etc"])
def test_resize_token_embeddings_keeps_the_table_tied(encoder_type):
    overrides = {"encoder_type": encoder_type, "etc_config": dict(ETC) if encoder_type == "etc" else None}
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(longbird.BigBirdPegasusConfig(**tiny(**overrides))).eval()
    ids = torch.randint(3, VOCAB, (2, 100), generator=torch.Generator().manual_seed(0))
    dec = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids, decoder_input_ids=dec)
    model.resize_token_embeddings(VOCAB + 5)
    shared = model.model.shared.weight
    assert shared.shape == (VOCAB + 5, 32) and model.config.vocab_size == VOCAB + 5
    assert model.model.encoder.embed_tokens.weight is shared and model.model.decoder.embed_tokens.weight is shared
    assert model.lm_head.weight is shared and model.final_logits_bias.shape == (1, VOCAB + 5)
    with torch.no_grad():
        after = model(input_ids=ids, decoder_input_ids=dec)
    torch.testing.assert_close(after.encoder_last_hidden_state, before.encoder_last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(after.logits[..., :VOCAB], before.logits, rtol=0, atol=1e-5)


def test_etc_save_load_round_trip(tmp_path):
    model = etc_model().eval()
    ids = torch.randint(3, VOCAB, (2, 60), generator=torch.Generator().manual_seed(0))
    dec = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is longbird.BigBirdPegasusForConditionalGeneration
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert loaded.config.encoder_type == "etc" and dict(loaded.config.etc_config) == ETC
    shared = loaded.model.shared.weight
    assert loaded.model.encoder.embed_tokens.weight is shared
    assert loaded.model.decoder.embed_tokens.weight is shared and loaded.lm_head.weight is shared
    loaded.eval()
    with torch.no_grad():
        for extra in ({}, etc_structure()):
            a = model(input_ids=ids, decoder_input_ids=dec, **extra)
            b = loaded(input_ids=ids, decoder_input_ids=dec, **extra)
            torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
            torch.testing.assert_close(b.encoder_last_hidden_state, a.encoder_last_hidden_state, rtol=0, atol=0)


@pytest.mark.parametrize("name", HEADS)
def test_etc_inputs_on_a_bigbird_encoder_raise(name):
    torch.manual_seed(0)
    model = getattr(longbird, name)(
        longbird.BigBirdPegasusConfig(**tiny(**({"num_labels": 3} if name in NUM_LABELS else {})))
    )
    ids = torch.randint(3, VOCAB, (2, 60))
    ids[:, -1] = EOS
    with pytest.raises(ValueError, match="global_input_ids") as error:
        model(input_ids=ids, **etc_structure())
    assert "sentence_ids" in str(error.value) and "encoder_type" in str(error.value)
    with pytest.raises(ValueError, match="long_breakpoints"):
        model(input_ids=ids, long_breakpoints=torch.zeros_like(ids))


def test_etc_inputs_to_generate_on_a_bigbird_encoder_raise():
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(longbird.BigBirdPegasusConfig(**TINY)).eval()
    ids = torch.randint(3, VOCAB, (2, 60))
    with pytest.raises(ValueError, match="global_input_ids"):
        model.generate(input_ids=ids, **etc_structure(), **GEN)


def test_forward_signature_lists_etc_inputs():
    """Trainer keeps only dataset columns named in forward's signature; generate() checks it too."""
    for name in HEADS:
        params = inspect.signature(getattr(longbird, name).forward).parameters
        for field in ours_module.ETC_ENCODER_INPUTS:
            assert field in params, (name, field)
        assert "input_ids" in params and "attention_mask" in params


# --------------------------------------------------------------------------------------------
# 6. bad input: clear errors
# --------------------------------------------------------------------------------------------


def _model(**overrides):
    torch.manual_seed(0)
    return longbird.BigBirdPegasusForConditionalGeneration(longbird.BigBirdPegasusConfig(**tiny(**overrides))).eval()


def test_missing_pad_token_id_when_labels_are_shifted():
    model = _model(pad_token_id=None)
    ids, labels = torch.randint(3, VOCAB, (2, 40)), torch.randint(3, VOCAB, (2, 8))
    with pytest.raises(ValueError, match=r"pad_token_id.*decoder_input_ids"):
        model(input_ids=ids, labels=labels)
    # with explicit decoder inputs nothing needs shifting
    model(input_ids=ids, labels=labels, decoder_input_ids=torch.full_like(labels, START))


def test_missing_decoder_start_token_id_when_labels_are_shifted():
    # transformers' (strict) config rejects None at construction, naming the field ...
    with pytest.raises(Exception, match="decoder_start_token_id"):
        longbird.BigBirdPegasusConfig(**tiny(decoder_start_token_id=None))
    # ... and the model's check catches a config where it is None anyway (validation bypassed)
    model = _model()
    object.__setattr__(model.config, "decoder_start_token_id", None)
    ids, labels = torch.randint(3, VOCAB, (2, 40)), torch.randint(3, VOCAB, (2, 8))
    with pytest.raises(ValueError, match=r"config\.decoder_start_token_id.*set config\.decoder_start_token_id"):
        model(input_ids=ids, labels=labels)


def test_labels_longer_than_max_position_embeddings():
    model = _model(max_position_embeddings=64)
    ids = torch.randint(3, VOCAB, (1, 40))
    with pytest.raises(ValueError, match=r"`labels` has 65 positions.*max_position_embeddings.*truncate"):
        model(input_ids=ids, labels=torch.randint(3, VOCAB, (1, 65)))
    with pytest.raises(ValueError, match=r"`decoder_input_ids` has 65 positions"):
        model(input_ids=ids, decoder_input_ids=torch.randint(3, VOCAB, (1, 65)))
    model(input_ids=ids, labels=torch.randint(3, VOCAB, (1, 64)))  # at the limit: fine


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_encoder_input_longer_than_max_position_embeddings(attention_type):
    model = _model(max_position_embeddings=64, attention_type=attention_type)
    with pytest.raises(ValueError, match=r"65 tokens.*max_position_embeddings=64.*truncat"):
        model(input_ids=torch.randint(3, VOCAB, (1, 65)), decoder_input_ids=torch.full((1, 2), START))
    with pytest.raises(ValueError, match=r"65 tokens.*max_position_embeddings=64"):
        model.generate(input_ids=torch.randint(3, VOCAB, (1, 65)), max_new_tokens=2)


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("encoder_type", "longformer", r"encoder_type must be 'bigbird' or 'etc'.*longformer"),
        ("attention_type", "sliding", r"attention_type must be 'block_sparse' or 'original_full'.*sliding"),
        ("encoder_attention_heads", 5, r"hidden_size \(32\) must be divisible by num_attention_heads \(5\)"),
        ("window_blocks", 2, r"window_blocks"),
    ],
)
def test_bad_config_values_raise(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        longbird.BigBirdPegasusConfig(**tiny(**{field: value}))


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_num_global_tokens_works_or_is_rejected(attention_type):
    try:
        config = longbird.BigBirdPegasusConfig(**tiny(num_global_tokens=2, attention_type=attention_type))
    except ValueError as error:  # rejecting it, naming the field, is a fine answer
        assert "num_global_tokens" in str(error)
        return
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusModel(config).eval()
    ids = torch.randint(3, VOCAB, (2, 100))
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=torch.full((2, 3), START))
    assert out.encoder_last_hidden_state.shape == (2, 100, 32)


# --------------------------------------------------------------------------------------------
# 7. long input, padding invariance
# --------------------------------------------------------------------------------------------


def test_encoder_runs_4096_tokens():
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(
        longbird.BigBirdPegasusConfig(**tiny(max_position_embeddings=4096))
    ).eval()
    ids = torch.randint(3, VOCAB, (1, 4096))
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=torch.full((1, 4), START))
    assert out.encoder_last_hidden_state.shape == (1, 4096, 32)
    assert out.logits.shape == (1, 4, VOCAB)
    assert torch.isfinite(out.encoder_last_hidden_state).all() and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_padding_never_changes_real_positions(attention_type, train):
    torch.manual_seed(0)
    model = longbird.BigBirdPegasusForConditionalGeneration(
        longbird.BigBirdPegasusConfig(**tiny(attention_type=attention_type))
    ).train(train)
    g = torch.Generator().manual_seed(8)
    n = 150
    example = torch.randint(3, VOCAB, (1, n), generator=g)
    dec = torch.randint(3, VOCAB, (1, 7), generator=g)
    with torch.no_grad():
        alone = model(input_ids=example, decoder_input_ids=dec)
        for total in (152, 160, 203, 256):  # inside the last block, whole blocks, not a multiple
            other = torch.randint(3, VOCAB, (1, total), generator=g)
            ids = torch.cat([torch.nn.functional.pad(example, (0, total - n), value=PAD), other])
            mask = (torch.arange(total) < n).long()[None]
            mask = torch.cat([mask, torch.ones(1, total, dtype=torch.long)])
            batch = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec.expand(2, -1))
            torch.testing.assert_close(
                batch.encoder_last_hidden_state[0, :n],
                alone.encoder_last_hidden_state[0],
                rtol=0,
                atol=1e-5,
                msg=lambda m, total=total: f"padded to {total}: {m}",
            )
            torch.testing.assert_close(batch.logits[0], alone.logits[0], rtol=0, atol=1e-5)


def test_tokenizer_output_with_token_type_ids_feeds_a_bigbird_encoder():
    """Tokenizers often return token_type_ids; Pegasus has no token types, so they are ignored
    (and mean nothing) with the BigBird encoder, instead of being taken for ETC inputs."""
    from longbird.tokenization import train_tokenizer

    texts = ["a long document about rivers and the sea", "another short text"] * 10
    tokenizer = train_tokenizer(texts, vocab_size=60)
    config = longbird.BigBirdPegasusConfig(**tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    model = longbird.BigBirdPegasusForConditionalGeneration(config).eval()
    batch = tokenizer(texts[:2], padding=True, return_tensors="pt")
    assert "token_type_ids" in batch
    labels = tokenizer(texts[2:4], padding=True, return_tensors="pt").input_ids
    with torch.no_grad():
        with_types = model(**batch, labels=labels).logits
        without = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).logits
    torch.testing.assert_close(with_types, without)
