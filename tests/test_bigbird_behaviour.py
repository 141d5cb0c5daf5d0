"""Model-level behaviour of longbird's BigBird (our classes only; parity with transformers lives in
test_bigbird_parity.py): padding, the short-input path, attention weights, hidden states, ETC,
gradient checkpointing, save/load, torch.compile, input checks and the attention backends."""

from __future__ import annotations

import copy

import pytest
import torch

import longbird.modeling.longbird_block_executors as executors
from longbird import BigBirdConfig, BigBirdModel
from longbird.modeling.longbird_block_graph import BlockGraph

LONG = 203  # 26 blocks of 8: sparse for every tiny config below (not a multiple of the block size)
SHORT = 150  # 19 blocks: still sparse


def make_model(tiny_kwargs, seed=0, **overrides) -> BigBirdModel:
    torch.manual_seed(seed)
    return BigBirdModel(BigBirdConfig(**{**tiny_kwargs, **overrides})).eval()


def ids(batch, length, seed=0):
    return torch.randint(6, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# --------------------------------------------------------------------------------------------
# Padding invariance
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        dict(attention_type="block_sparse"),
        dict(attention_type="block_sparse", num_global_tokens=3, random_plan="uniform"),
        dict(attention_type="original_full"),
    ],
    ids=["itc", "etc", "full"],
)
def test_padding_invariance(tiny_kwargs, overrides):
    model = make_model(tiny_kwargs, **overrides)
    batch_ids = ids(2, LONG)
    mask = torch.ones_like(batch_ids)
    mask[0, SHORT:] = 0
    batch_ids[0, SHORT:] = 0  # pad token
    token_types = torch.zeros_like(batch_ids)
    token_types[:, 40:] = 1
    with torch.no_grad():
        alone = model(batch_ids[:1, :SHORT], token_type_ids=token_types[:1, :SHORT])
        padded = model(batch_ids, attention_mask=mask, token_type_ids=token_types)
        long_alone = model(batch_ids[1:], token_type_ids=token_types[1:])
    assert padded.last_hidden_state.shape == (2, LONG, 32)
    close(padded.last_hidden_state[0, :SHORT], alone.last_hidden_state[0])
    close(padded.last_hidden_state[1], long_alone.last_hidden_state[0])
    close(padded.pooler_output[0], alone.pooler_output[0])
    if overrides.get("num_global_tokens"):
        close(padded.global_last_hidden_state[0], alone.global_last_hidden_state[0])


def test_padding_invariance_in_train_mode_and_gradients(tiny_kwargs):
    """Train mode (same plan as eval, dropout 0): padding still changes nothing, grads included."""
    model = make_model(tiny_kwargs).train()
    batch_ids = ids(2, LONG, seed=3)
    mask = torch.ones_like(batch_ids)
    mask[0, SHORT:] = 0
    alone = model(batch_ids[:1, :SHORT]).last_hidden_state
    padded = model(batch_ids, attention_mask=mask).last_hidden_state
    close(padded[0, :SHORT], alone[0])
    weight = torch.randn(SHORT, 32, generator=torch.Generator().manual_seed(0))
    grads = []
    for out in (alone[0], padded[0, :SHORT]):
        model.zero_grad()
        (out * weight).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        close(grads[1][name], grads[0][name], tol=1e-5)


@pytest.mark.parametrize("overrides", [dict(), dict(num_global_tokens=3, random_plan="uniform")], ids=["itc", "etc"])
def test_train_and_eval_use_the_same_graph(tiny_kwargs, overrides):
    """Dropout 0: train and eval mode give the same output (the random plan does not change)."""
    model = make_model(tiny_kwargs, **overrides)
    batch_ids = ids(2, LONG)
    with torch.no_grad():
        evaluated = model(batch_ids).last_hidden_state
        trained = model.train()(batch_ids).last_hidden_state
        again = model.train()(batch_ids).last_hidden_state
    assert torch.equal(trained, again)
    close(trained, evaluated, tol=0)


# --------------------------------------------------------------------------------------------
# Short inputs: full attention per call, model unchanged
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,length",
    [
        (dict(), 1),
        (dict(), 7),
        (dict(), 40),
        (dict(), 88),  # 11 blocks: one short of the sparse plan
        (dict(num_global_tokens=3, random_plan="uniform"), 40),
    ],
)
def test_short_input_runs_full_attention_without_changing_the_model(tiny_kwargs, overrides, length):
    model = make_model(tiny_kwargs, **overrides)
    fresh = copy.deepcopy(model)
    full = make_model(tiny_kwargs, attention_type="original_full", **overrides)
    full.load_state_dict(model.state_dict())

    short = ids(2, length, seed=1)
    mask = torch.ones_like(short)
    mask[1, length // 2 + 1 :] = 0
    with torch.no_grad():
        out = model(short, attention_mask=mask)
        expected = full(short, attention_mask=mask)
    assert model.config.attention_type == "block_sparse"
    assert out.last_hidden_state.shape == (2, length, 32)
    real = mask.bool()  # outputs at padding positions are unspecified
    close(out.last_hidden_state[real], expected.last_hidden_state[real])
    close(out.pooler_output, expected.pooler_output)

    if overrides.get("num_global_tokens"):
        close(out.global_last_hidden_state, expected.global_last_hidden_state)

    long_ids = ids(2, LONG, seed=2)
    with torch.no_grad():
        close(model(long_ids).last_hidden_state, fresh(long_ids).last_hidden_state, tol=0)


def test_short_input_in_a_batch_with_a_long_one(tiny_kwargs):
    """Short and long examples in one batch: the short one gets full attention, the long one sparse."""
    model = make_model(tiny_kwargs)
    full = make_model(tiny_kwargs, attention_type="original_full")
    full.load_state_dict(model.state_dict())
    batch_ids = ids(2, LONG, seed=4)
    mask = torch.ones_like(batch_ids)
    mask[0, 40:] = 0
    with torch.no_grad():
        out = model(batch_ids, attention_mask=mask).last_hidden_state
        short_full = full(batch_ids[:1, :40]).last_hidden_state
        long_alone = model(batch_ids[1:]).last_hidden_state
    close(out[0, :40], short_full[0])
    close(out[1], long_alone[0])


@pytest.mark.parametrize("length", [80, 88])
def test_narrow_window_every_length_runs(tiny_kwargs, length):
    model = make_model(tiny_kwargs, window_blocks=1)
    with torch.no_grad():
        assert model(ids(1, length)).last_hidden_state.shape == (1, length, 32)


# --------------------------------------------------------------------------------------------
# Attention weights and hidden states
# --------------------------------------------------------------------------------------------


def test_dense_matrix_never_built_without_output_attentions(tiny_kwargs, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the [B, H, n, n] matrix was built")

    monkeypatch.setattr(executors, "dense_attention", forbidden)
    monkeypatch.setattr(BlockGraph, "dense_bias", forbidden)
    for overrides in (dict(), dict(num_global_tokens=3, random_plan="uniform")):
        model = make_model(tiny_kwargs, **overrides).train()
        batch_ids = ids(2, LONG)
        mask = torch.ones_like(batch_ids)
        mask[0, SHORT:] = 0
        out = model(batch_ids, attention_mask=mask, output_hidden_states=True)
        out.last_hidden_state.sum().backward()
        assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("overrides", [dict(), dict(num_global_tokens=3, random_plan="uniform")], ids=["itc", "etc"])
def test_output_attentions(tiny_kwargs, overrides):
    model = make_model(tiny_kwargs, **overrides)
    batch_ids = ids(2, LONG)
    mask = torch.ones_like(batch_ids)
    mask[0, SHORT:] = 0
    with torch.no_grad():
        plain = model(batch_ids, attention_mask=mask)
        out = model(batch_ids, attention_mask=mask, output_attentions=True)
    close(out.last_hidden_state, plain.last_hidden_state)
    g = overrides.get("num_global_tokens", 0)
    assert len(out.attentions) == tiny_kwargs["num_hidden_layers"]
    for weights in out.attentions:
        assert weights.shape == (2, tiny_kwargs["num_attention_heads"], g + LONG, g + LONG)
        real = torch.cat([torch.ones(2, g, dtype=torch.bool), mask.bool()], 1)  # [B, g + L]
        sums = weights.sum(-1)  # [B, H, g + L]
        close(sums[real[:, None, :].expand_as(sums)], torch.ones(int(real.sum()) * weights.shape[1]))
        assert (weights >= 0).all()
        # padding keys get no weight
        assert weights[0, :, :, g + SHORT :].abs().max() == 0
        # block sparse: some pairs are not attended (the matrix is not full)
        assert (weights[1] == 0).any()


def test_output_attentions_original_full_and_short(tiny_kwargs):
    for overrides, length in ((dict(attention_type="original_full"), LONG), (dict(), 40)):
        model = make_model(tiny_kwargs, **overrides)
        with torch.no_grad():
            out = model(ids(2, length), output_attentions=True)
        for weights in out.attentions:
            assert weights.shape == (2, 4, length, length)
            close(weights.sum(-1), torch.ones(2, 4, length))


@pytest.mark.parametrize("overrides", [dict(), dict(attention_type="original_full"), dict(num_global_tokens=3)])
def test_output_hidden_states(tiny_kwargs, overrides):
    model = make_model(tiny_kwargs, **overrides)
    with torch.no_grad():
        out = model(ids(2, LONG), output_hidden_states=True)
    assert len(out.hidden_states) == tiny_kwargs["num_hidden_layers"] + 1
    for h in out.hidden_states:
        assert h.shape == (2, LONG, 32)
    close(out.hidden_states[-1], out.last_hidden_state, tol=0)
    as_tuple = model(ids(2, LONG), output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)


# --------------------------------------------------------------------------------------------
# BigBird-ETC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_global_tokens=4),
        dict(num_global_tokens=4, num_random_blocks=0, window_blocks=5, random_plan="uniform"),
        dict(num_global_tokens=4, num_random_blocks=2, window_blocks=5, random_plan="uniform"),
    ],
)
def test_etc_global_tokens(tiny_kwargs, overrides):
    model = make_model(tiny_kwargs, **overrides).train()
    batch_ids = ids(2, LONG)
    mask = torch.ones_like(batch_ids)
    mask[1, 100:] = 0
    out = model(batch_ids, attention_mask=mask)
    assert out.last_hidden_state.shape == (2, LONG, 32)
    assert out.global_last_hidden_state.shape == (2, 4, 32)
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.global_last_hidden_state).all()
    (out.last_hidden_state.sum() + out.global_last_hidden_state.sum()).backward()
    assert model.embeddings.global_token_embeddings.weight.grad.abs().sum() > 0
    # the pooler reads the first global token
    close(out.pooler_output, model.activation(model.pooler(out.global_last_hidden_state[:, 0])))


# --------------------------------------------------------------------------------------------
# Gradient checkpointing, save/load, torch.compile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [dict(), dict(num_global_tokens=3, random_plan="uniform")], ids=["itc", "etc"])
def test_gradient_checkpointing_same_gradients(tiny_kwargs, overrides):
    batch_ids = ids(2, LONG)
    mask = torch.ones_like(batch_ids)
    mask[0, SHORT:] = 0
    grads, calls = [], []
    for checkpointing in (False, True):
        model = make_model(tiny_kwargs, **overrides).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        count = [0]
        # a module inside the layer (the layer's own hooks stay outside the checkpoint)
        model.encoder.layer[0].intermediate.register_forward_hook(
            lambda *a, count=count: count.__setitem__(0, count[0] + 1)
        )
        out = model(batch_ids, attention_mask=mask)
        (out.last_hidden_state * torch.linspace(-1, 1, 32)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        calls.append(count[0])
    assert calls[1] > calls[0], "gradient checkpointing did not recompute the layer"
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        close(grads[1][name], grads[0][name], tol=1e-6)


def test_save_load_round_trip(tiny_kwargs, tmp_path):
    model = make_model(tiny_kwargs, num_global_tokens=2, random_plan="uniform", window_blocks=5)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = BigBirdModel.from_pretrained(tmp_path).eval()
    assert loaded.config.num_global_tokens == 2 and loaded.config.window_blocks == 5
    assert loaded.config.random_plan == "uniform"
    batch_ids = ids(2, LONG)
    with torch.no_grad():
        a, b = model(batch_ids), loaded(batch_ids)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert torch.equal(a.global_last_hidden_state, b.global_last_hidden_state)
    assert torch.equal(a.pooler_output, b.pooler_output)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_matches_eager(tiny_kwargs):
    """Inductor (measured ~25 s cold, ~4 s with a warm cache on this 2-core machine)."""
    model = make_model(tiny_kwargs)
    compiled = torch.compile(model)
    batch_ids = ids(2, SHORT + 10)
    try:
        for cut in (SHORT, 100, 30, SHORT + 10):  # different masks (hence graphs) with one shape
            mask = torch.ones_like(batch_ids)
            mask[1, cut:] = 0
            with torch.no_grad():
                expected = model(batch_ids, attention_mask=mask).last_hidden_state
                got = compiled(batch_ids, attention_mask=mask).last_hidden_state
            close(got, expected)
    finally:
        torch._dynamo.reset()


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(hidden_size=30), "hidden_size"),
        (dict(window_blocks=4), "window_blocks"),
        (dict(window_blocks=0), "window_blocks"),
        (dict(attention_type="sparse"), "attention_type"),
        (dict(random_plan="sometimes"), "random_plan"),
        (dict(attention_backend="cuda"), "attention_backend"),
    ],
)
def test_bad_config(tiny_kwargs, overrides, match):
    with pytest.raises(ValueError, match=match):
        BigBirdConfig(**{**tiny_kwargs, **overrides})


def test_bad_input(tiny_kwargs):
    model = make_model(tiny_kwargs)
    good = ids(2, 100)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(ids(1, 513))
    with pytest.raises(ValueError, match="attention_mask"):
        model(good, attention_mask=torch.ones(2, 99, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(good, token_type_ids=torch.zeros(1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(good, token_type_ids=torch.full((2, 100), 2, dtype=torch.long))
    with pytest.raises(ValueError, match="global_prefix_length"):
        model(good, global_prefix_length=torch.tensor([3, 101]))
    with pytest.raises(TypeError, match="input_ids"):
        model([[7, 8, 9]])
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(good, inputs_embeds=torch.zeros(2, 100, 32))
    with pytest.raises(ValueError, match="input_ids"):
        model(good, inputs_embeds=torch.zeros(2, 100, 32))
    # a good call still works afterwards
    with torch.no_grad():
        assert model(good).last_hidden_state.shape == (2, 100, 32)


# --------------------------------------------------------------------------------------------
# attention_backend
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [dict(), dict(num_global_tokens=3, random_plan="uniform")], ids=["itc", "etc"])
def test_attention_backends_agree(tiny_kwargs, overrides):
    batch_ids = ids(2, LONG)
    mask = torch.ones_like(batch_ids)
    mask[0, SHORT:] = 0
    outputs = {}
    for backend in ("auto", "gather", "dense"):
        model = make_model(tiny_kwargs, attention_backend=backend, **overrides)
        with torch.no_grad():
            outputs[backend] = model(batch_ids, attention_mask=mask).last_hidden_state
    close(outputs["gather"], outputs["auto"])
    close(outputs["dense"], outputs["auto"])


def test_short_input_builds_no_square_bias(tiny_kwargs, monkeypatch):
    """A short input runs full attention through a [B, 1, 1, n] padding bias, not an n x n one."""
    from longbird.modeling.longbird_block_graph import BlockGraph

    def forbidden(self, dtype=torch.float32):
        raise AssertionError("dense_bias built for a short input")

    monkeypatch.setattr(BlockGraph, "dense_bias", forbidden)
    model = make_model(tiny_kwargs)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 30:] = 0
    with torch.no_grad():
        out = model(ids(2, 40), attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all()
