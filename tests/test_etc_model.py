"""Model-level behaviour of longbird's ETC (EtcModel and its heads).

The attention executors are checked against the direct definition in test_etc_attention.py and
the numerics against the TF reference in test_etc_parity.py; here: packing, padding, fixed-block
globals, parameter sharing, heads and their losses, Auto classes and save/load, Trainer column
filtering, gradient checkpointing, attention weights / hidden states, input checks and dtypes.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import longbird  # noqa: F401  (registers the Auto classes)
from longbird import (
    EtcConfig,
    EtcForMaskedLM,
    EtcForPreTraining,
    EtcForQuestionAnswering,
    EtcForSequenceClassification,
    EtcForTokenClassification,
    EtcModel,
)
from longbird.modeling.longbird_global_local_graph import prepare_inputs

VOCAB = 100
HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 64
RADIUS = 3  # blocks of 4: a long input of more than 12 tokens is really blocked
GLOBAL_ID = 1
MASK_ID = 4
BACKENDS = ("dense", "blocked")

# two documents, as sentence lengths: both longer than 3 * (RADIUS + 1) = 12 long tokens
DOC_A = (4, 5, 5)  # 14 long, 3 global
DOC_B = (6, 7)  # 13 long, 2 global
DOC_C = (5, 4, 6, 5)  # 20 long, 4 global


def config(**overrides) -> EtcConfig:
    kwargs = {
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "local_radius": RADIUS,
        "relative_pos_max_distance": 2,
        "relative_vocab_size": 8,  # 2k + 4
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "num_tokens_per_block": 4,
        "attention_backend": "dense",
        # 10x the released init: attention (not the residual embedding path) then dominates the
        # outputs, so masking or layout mistakes show far above the tolerances used here
        "initializer_range": 0.2,
    }
    return EtcConfig(**{**kwargs, **overrides})


def make(cls=EtcModel, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(config(**overrides)).eval()


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def document(lengths, seed):
    """One document: long token ids, each long token's sentence (= global index), global ids."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (sum(lengths),), generator=gen)
    sentences = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    return ids, sentences, torch.full((len(lengths),), GLOBAL_ID)


def alone(doc) -> dict:
    """A document in its own row, unpadded, without breakpoints."""
    ids, sentences, globals_ = doc
    return {
        "input_ids": ids[None],
        "sentence_ids": sentences[None],
        "global_input_ids": globals_[None],
    }


def last_one(n, total=None):
    out = torch.zeros(total or n, dtype=torch.long)
    out[n - 1] = 1
    return out


def pad_to(x, n, value=0):
    return F.pad(x, (0, n - x.shape[-1]), value=value)


def packed(docs, n_long, n_global) -> tuple[dict, list, list]:
    """Documents packed into one row (breakpoints at each one's last token, sentence ids into
    the row's global input), padded to `n_long` / `n_global`. Also each document's long and
    global slices."""
    ids, sentences, globals_, long_bp, global_bp = [], [], [], [], []
    long_slices, global_slices = [], []
    n_l = n_g = 0
    for doc_ids, doc_sentences, doc_globals in docs:
        ids.append(doc_ids)
        sentences.append(doc_sentences + n_g)
        globals_.append(doc_globals)
        long_bp.append(last_one(len(doc_ids)))
        global_bp.append(last_one(len(doc_globals)))
        long_slices.append(slice(n_l, n_l + len(doc_ids)))
        global_slices.append(slice(n_g, n_g + len(doc_globals)))
        n_l, n_g = n_l + len(doc_ids), n_g + len(doc_globals)
    row = {
        "input_ids": pad_to(torch.cat(ids), n_long),
        "sentence_ids": pad_to(torch.cat(sentences), n_long),
        "long_breakpoints": pad_to(torch.cat(long_bp), n_long),
        "global_input_ids": pad_to(torch.cat(globals_), n_global),
        "global_breakpoints": pad_to(torch.cat(global_bp), n_global),
    }
    return {k: v[None] for k, v in row.items()}, long_slices, global_slices


def masked_row(doc, n_long, n_global) -> dict:
    """A document padded to `n_long` / `n_global`, padding given by the attention masks."""
    ids, sentences, globals_ = doc
    return {
        "input_ids": pad_to(ids, n_long),
        "attention_mask": pad_to(torch.ones_like(ids), n_long),
        "sentence_ids": pad_to(sentences, n_long),
        "global_input_ids": pad_to(globals_, n_global),
        "global_attention_mask": pad_to(torch.ones_like(globals_), n_global),
    }


def breakpoint_row(doc, n_long, n_global) -> dict:
    """A document padded to `n_long` / `n_global`, padding given by the breakpoints only."""
    ids, sentences, globals_ = doc
    return {
        "input_ids": pad_to(ids, n_long),
        "long_breakpoints": last_one(len(ids), n_long),
        "sentence_ids": pad_to(sentences, n_long),
        "global_input_ids": pad_to(globals_, n_global),
        "global_breakpoints": last_one(len(globals_), n_global),
    }


def stack(rows: list[dict]) -> dict:
    return {k: torch.stack([row[k] for row in rows]) for k in rows[0]}


def two_documents_batch() -> tuple[dict, list]:
    """DOC_A (padded with masks) and DOC_C in one batch of two rows."""
    docs = [document(DOC_A, 1), document(DOC_C, 3)]
    return stack([masked_row(d, 20, 4) for d in docs]), docs


# --------------------------------------------------------------------------------------------
# 1. Packing: documents packed in one row equal each document alone
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard_l2g", [False, True], ids=["soft_l2g", "hard_l2g"])
@pytest.mark.parametrize("hard_g2l", [True, False], ids=["hard_g2l", "soft_g2l"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_documents_equal_each_document_alone(backend, hard_g2l, hard_l2g):
    model = make(
        attention_backend=backend,
        use_hard_g2l_mask=hard_g2l,
        use_hard_l2g_mask=hard_l2g,
    )
    docs = [document(DOC_A, 1), document(DOC_B, 2)]
    row, long_slices, global_slices = packed(docs, n_long=30, n_global=6)  # padding after both
    assert row["input_ids"].shape[1] > 3 * (RADIUS + 1)
    with torch.no_grad():
        together = model(**row)
        for doc, ls, gs in zip(docs, long_slices, global_slices):
            single = model(**alone(doc))
            assert single.last_hidden_state.shape[1] > 3 * (RADIUS + 1)  # blocked really blocks
            close(together.last_hidden_state[0, ls], single.last_hidden_state[0])
            close(
                together.global_last_hidden_state[0, gs],
                single.global_last_hidden_state[0],
            )


def test_packed_documents_do_not_see_each_other():
    """Control for the test above: without breakpoints the two documents do mix."""
    model = make()
    docs = [document(DOC_A, 1), document(DOC_B, 2)]
    row, long_slices, _ = packed(docs, n_long=27, n_global=5)
    del row["long_breakpoints"], row["global_breakpoints"]
    with torch.no_grad():
        together = model(**row).last_hidden_state[0, long_slices[1]]
        single = model(**alone(docs[1])).last_hidden_state[0]
    assert (together - single).abs().max() > 1e-3


@pytest.mark.parametrize("global_input", [True, False], ids=["sentence_globals", "fixed_block_globals"])
def test_breakpoints_on_the_long_side_only_are_rejected_or_respected(global_input):
    model = make()
    docs = [document(DOC_A, 1), document(DOC_B, 2)]
    row, long_slices, _ = packed(docs, n_long=27, n_global=5)
    del row["global_breakpoints"]
    if not global_input:
        row = {
            "input_ids": row["input_ids"],
            "long_breakpoints": row["long_breakpoints"],
        }
    try:
        with torch.no_grad():
            together = model(**row)
    except ValueError as error:
        assert "global_breakpoints" in str(error) or "global_input_ids" in str(error)
        return
    # accepted: then the first document must at least read global tokens as it would alone
    graph = prepare_inputs(model.config, **row).graph
    assert bool(graph.l2g_mask[0, long_slices[0]].any(-1).all())
    assert together.last_hidden_state.shape == (1, 27, HIDDEN)


def test_dense_and_blocked_backends_agree_on_a_packed_batch():
    dense = make(attention_backend="dense")
    blocked = make(attention_backend="blocked")
    blocked.load_state_dict(dense.state_dict())
    row, _, _ = packed([document(DOC_A, 1), document(DOC_B, 2)], n_long=30, n_global=6)
    with torch.no_grad():
        a, b = dense(**row), blocked(**row)
    real = row["long_breakpoints"].flip(-1).cumsum(-1).flip(-1)[0] > 0
    close(a.last_hidden_state[0, real], b.last_hidden_state[0, real])
    close(a.global_last_hidden_state[0, :5], b.global_last_hidden_state[0, :5])


# --------------------------------------------------------------------------------------------
# 2. Padding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [masked_row, breakpoint_row], ids=["masks", "breakpoints"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_does_not_change_real_positions(backend, padding):
    model = make(attention_backend=backend)
    doc = document(DOC_A, 1)
    with torch.no_grad():
        single = model(**alone(doc))
        padded = model(**{k: v[None] for k, v in padding(doc, 23, 5).items()})
    assert padded.last_hidden_state.shape == (1, 23, HIDDEN)
    assert padded.global_last_hidden_state.shape == (1, 5, HIDDEN)
    close(padded.last_hidden_state[0, :14], single.last_hidden_state[0])
    close(padded.global_last_hidden_state[0, :3], single.global_last_hidden_state[0])


@pytest.mark.parametrize("padding", [masked_row, breakpoint_row], ids=["masks", "breakpoints"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_two_lengths_equals_each_alone(backend, padding):
    model = make(attention_backend=backend)
    docs = [document(DOC_A, 1), document(DOC_C, 3)]
    batch = stack([padding(d, 20, 4) for d in docs])
    with torch.no_grad():
        out = model(**batch)
        for row, doc, (n_l, n_g) in zip(range(2), docs, [(14, 3), (20, 4)]):
            single = model(**alone(doc))
            close(out.last_hidden_state[row, :n_l], single.last_hidden_state[0])
            close(
                out.global_last_hidden_state[row, :n_g],
                single.global_last_hidden_state[0],
            )


def test_padding_in_train_mode_keeps_gradients():
    """Dropout 0, train mode: the gradient of a loss on real positions ignores the padding."""
    model = make(attention_backend="blocked").train()
    doc = document(DOC_A, 1)
    weight = torch.randn(14, HIDDEN, generator=torch.Generator().manual_seed(0))
    grads = []
    for inputs, n in (
        (alone(doc), 14),
        ({k: v[None] for k, v in masked_row(doc, 23, 5).items()}, 14),
    ):
        model.zero_grad()
        (model(**inputs).last_hidden_state[0, :n] * weight).sum().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        close(grads[1][name], grads[0][name])


# --------------------------------------------------------------------------------------------
# 3. Fixed-block global tokens (input_ids alone)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 10, 13])
def test_fixed_block_globals_from_input_ids_alone(n):
    cfg = config(num_tokens_per_block=4, global_token_id=7)
    ids = torch.randint(5, VOCAB, (2, n), generator=torch.Generator().manual_seed(n))
    expected_globals = -(-n // 4)
    prepared = prepare_inputs(cfg, input_ids=ids)
    assert prepared.global_input_ids.shape == (2, expected_globals)
    assert bool((prepared.global_input_ids == 7).all())
    assert bool(prepared.global_real.all()) and bool(prepared.long_real.all())
    torch.manual_seed(0)
    model = EtcModel(cfg).eval()
    with torch.no_grad():
        out = model(input_ids=ids)
        # the same as passing those global tokens and the block membership explicitly
        explicit = model(
            input_ids=ids,
            global_input_ids=torch.full((2, expected_globals), 7),
            sentence_ids=(torch.arange(n) // 4).expand(2, n),
        )
    assert out.last_hidden_state.shape == (2, n, HIDDEN)
    assert out.global_last_hidden_state.shape == (2, expected_globals, HIDDEN)
    close(out.last_hidden_state, explicit.last_hidden_state)
    close(out.global_last_hidden_state, explicit.global_last_hidden_state)


def test_fixed_block_globals_with_padding():
    """A block of padding only gives a padding global token; real positions are unchanged."""
    cfg = config(num_tokens_per_block=4)
    ids = torch.randint(5, VOCAB, (1, 14), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[:, 6:] = 0
    prepared = prepare_inputs(cfg, input_ids=ids, attention_mask=mask)
    assert prepared.global_input_ids.tolist() == [[GLOBAL_ID, GLOBAL_ID, 0, 0]]
    assert prepared.global_real.tolist() == [[True, True, False, False]]
    torch.manual_seed(0)
    model = EtcModel(cfg).eval()
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask)
        single = model(input_ids=ids[:, :6])
    close(padded.last_hidden_state[:, :6], single.last_hidden_state)
    close(padded.global_last_hidden_state[:, :2], single.global_last_hidden_state)


# --------------------------------------------------------------------------------------------
# 4. Parameter sharing and factorised embeddings
# --------------------------------------------------------------------------------------------

ALL_PROJECTIONS = {
    "long_query",
    "l2l_key",
    "l2l_value",
    "l2g_key",
    "l2g_value",
    "global_query",
    "g2g_key",
    "g2g_value",
    "g2l_key",
    "g2l_value",
}
PROJECTION_PARAMS = HIDDEN * HIDDEN + HIDDEN
OUTPUT_PARAMS = HIDDEN * HIDDEN + HIDDEN
FEED_FORWARD_PARAMS = 2 * HIDDEN * INTERMEDIATE + INTERMEDIATE + HIDDEN + 2 * HIDDEN

SHARING = {
    "default": ({}, ALL_PROJECTIONS, 0),
    "share_qkv": (
        {"share_qkv_projections": True},
        {"long_query", "l2l_key", "l2l_value"},
        -7 * PROJECTION_PARAMS,
    ),
    "share_kv": (
        {"share_kv_projections": True},
        {"long_query", "l2l_key", "l2l_value", "global_query", "g2g_key", "g2g_value"},
        -4 * PROJECTION_PARAMS,
    ),
    "share_output": (
        {"share_att_output_projection": True},
        ALL_PROJECTIONS,
        -OUTPUT_PARAMS,
    ),
    "separate_ff": (
        {"share_feed_forward_params": False},
        ALL_PROJECTIONS,
        FEED_FORWARD_PARAMS,
    ),
}


@pytest.mark.parametrize("name", list(SHARING))
def test_sharing_flags_set_the_modules_and_parameter_count(name):
    flags, projections, per_layer_delta = SHARING[name]
    model = make(**flags).train()
    default = make()
    attention = model.layers[0].attention
    present = {n for n in ALL_PROJECTIONS if isinstance(getattr(attention, n, None), torch.nn.Linear)}
    assert present == projections
    assert isinstance(attention.long_output, torch.nn.Linear)
    assert (attention.global_output is None) == bool(flags.get("share_att_output_projection"))
    layer = model.layers[0]
    separate = flags.get("share_feed_forward_params") is False
    assert hasattr(layer, "long_feed_forward") == separate
    assert hasattr(layer, "global_feed_forward") == separate
    assert hasattr(layer, "feed_forward") != separate
    assert model.num_parameters() - default.num_parameters() == LAYERS * per_layer_delta
    # forward + backward: every parameter takes part
    doc = document(DOC_A, 1)
    out = model(**{k: v[None] for k, v in masked_row(doc, 16, 4).items()})
    (out.last_hidden_state.square().mean() + out.global_last_hidden_state.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def _unshared_copy(shared: EtcModel, flags: dict) -> EtcModel:
    """A model without sharing whose every role holds the weights the shared model uses for it."""
    plain = make()
    state = dict(shared.state_dict())
    owners = {}
    if flags.get("share_qkv_projections"):
        owners = {"global_query": "long_query"}
        owners |= {f"{p}_key": "l2l_key" for p in ("l2g", "g2g", "g2l")}
        owners |= {f"{p}_value": "l2l_value" for p in ("l2g", "g2g", "g2l")}
    elif flags.get("share_kv_projections"):
        owners = {
            "l2g_key": "l2l_key",
            "l2g_value": "l2l_value",
            "g2l_key": "g2g_key",
            "g2l_value": "g2g_value",
        }
    if flags.get("share_att_output_projection"):
        owners["global_output"] = "long_output"
    for key in list(plain.state_dict()):
        if key in state:
            continue
        parts = key.split(".")
        if parts[3] in owners:  # layers.<i>.attention.<role>.<weight|bias>
            state[key] = state[".".join(parts[:3] + [owners[parts[3]], parts[4]])]
    plain.load_state_dict(state)
    return plain


@pytest.mark.parametrize("name", ["share_qkv", "share_kv", "share_output"])
def test_sharing_flags_mean_the_reference_sharing(name):
    """A shared model equals an unshared one whose roles hold copies of the owners' weights."""
    flags = SHARING[name][0]
    shared = make(seed=1, **flags)
    plain = _unshared_copy(shared, flags)
    row, _, _ = packed([document(DOC_A, 1), document(DOC_B, 2)], n_long=30, n_global=6)
    with torch.no_grad():
        a, b = shared(**row), plain(**row)
    close(a.last_hidden_state, b.last_hidden_state)
    close(a.global_last_hidden_state, b.global_last_hidden_state)


def test_separate_feed_forward_with_equal_weights_equals_shared():
    shared = make(seed=1)
    separate = make(share_feed_forward_params=False)
    state = {}
    for key, value in shared.state_dict().items():
        if ".feed_forward." in key:
            state[key.replace(".feed_forward.", ".long_feed_forward.")] = value
            state[key.replace(".feed_forward.", ".global_feed_forward.")] = value
        else:
            state[key] = value
    separate.load_state_dict(state)
    inputs = alone(document(DOC_A, 1))
    with torch.no_grad():
        close(
            shared(**inputs).global_last_hidden_state,
            separate(**inputs).global_last_hidden_state,
        )
        # and each side really uses its own copy: change the global one in the last layer
        separate.layers[-1].global_feed_forward.dense_out.bias.add_(torch.randn(HIDDEN))
        changed, before = separate(**inputs), shared(**inputs)
    close(changed.last_hidden_state, before.last_hidden_state)
    assert (changed.global_last_hidden_state - before.global_last_hidden_state).abs().max() > 1e-3


def test_factorised_embeddings_project_and_tie_the_mlm_decoder():
    plain = make()
    assert plain.embeddings.token_projection is None
    model = make(EtcForMaskedLM, embedding_size=16).train()
    embeddings = model.etc.embeddings
    assert embeddings.token_embeddings.weight.shape == (VOCAB, 16)
    assert isinstance(embeddings.token_projection, torch.nn.Linear)
    assert (
        embeddings.token_projection.in_features,
        embeddings.token_projection.out_features,
    ) == (16, HIDDEN)
    assert model.lm_head.decoder.weight is embeddings.token_embeddings.weight
    inputs = alone(document(DOC_A, 1))
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[0, 2:5] = inputs["input_ids"][0, 2:5]
    out = model(**inputs, labels=labels)
    assert out.logits.shape == (1, 14, VOCAB)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert embeddings.token_projection.weight.grad.abs().sum() > 0
    assert embeddings.token_embeddings.weight.grad.abs().sum() > 0


def test_inputs_embeds_from_the_input_embedding_table_equal_input_ids():
    """Without factorisation, inputs_embeds from the input embedding table equal input_ids."""
    model = make()
    ids = alone(document(DOC_A, 1))
    with torch.no_grad():
        a = model(**ids)
        embeds = model.get_input_embeddings()(ids["input_ids"])
        b = model(
            inputs_embeds=embeds,
            sentence_ids=ids["sentence_ids"],
            global_input_ids=ids["global_input_ids"],
        )
    close(a.last_hidden_state, b.last_hidden_state)


def test_factorised_inputs_embeds_from_the_input_embedding_table_equal_input_ids():
    model = make(embedding_size=16)
    ids = alone(document(DOC_A, 1))
    with torch.no_grad():
        a = model(**ids)
        embeds = model.get_input_embeddings()(ids["input_ids"])
        b = model(
            inputs_embeds=embeds,
            sentence_ids=ids["sentence_ids"],
            global_input_ids=ids["global_input_ids"],
        )
    close(a.last_hidden_state, b.last_hidden_state)


# --------------------------------------------------------------------------------------------
# 5. Heads
# --------------------------------------------------------------------------------------------


def assert_encoder_has_gradients(model):
    for name in (
        "embeddings.token_embeddings.weight",
        "layers.0.attention.long_query.weight",
        "layers.0.attention.global_query.weight",
        "layers.1.feed_forward.dense_in.weight",
    ):
        grad = model.etc.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@pytest.mark.parametrize("problem", ["single_label", "multi_label", "regression"])
def test_sequence_classification_losses(problem):
    num_labels = 1 if problem == "regression" else 3
    extra = {"problem_type": "multi_label_classification"} if problem == "multi_label" else {}
    model = make(EtcForSequenceClassification, num_labels=num_labels, **extra).train()
    batch, _ = two_documents_batch()
    gen = torch.Generator().manual_seed(0)
    if problem == "single_label":
        labels = torch.tensor([2, 0])
    elif problem == "multi_label":
        labels = torch.randint(0, 2, (2, 3), generator=gen).float()
    else:
        labels = torch.randn(2, generator=gen)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (2, num_labels)
    if problem == "single_label":
        expected = F.cross_entropy(out.logits, labels)
    elif problem == "multi_label":
        expected = F.binary_cross_entropy_with_logits(out.logits, labels)
    else:
        expected = F.mse_loss(out.logits.squeeze(-1), labels)
    close(out.loss, expected)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert_encoder_has_gradients(model)


def test_sequence_classification_reads_the_first_global_token():
    model = make(EtcForSequenceClassification, num_labels=3)
    batch, _ = two_documents_batch()
    with torch.no_grad():
        logits = model(**batch).logits
        first = model.etc(**batch).global_last_hidden_state[:, 0]
        expected = model.classifier(torch.tanh(model.dense(first)))
    close(logits, expected)


def test_token_classification_ignores_minus_100():
    model = make(EtcForTokenClassification, num_labels=5).train()
    batch, _ = two_documents_batch()
    labels = torch.randint(0, 5, (2, 20), generator=torch.Generator().manual_seed(0))
    labels[0, 14:] = -100  # padding
    labels[1, :3] = -100
    out = model(**batch, labels=labels)
    assert out.logits.shape == (2, 20, 5)
    keep = labels != -100
    close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))
    out.loss.backward()
    assert_encoder_has_gradients(model)


def test_question_answering_loss_and_padding_logits():
    model = make(EtcForQuestionAnswering).train()
    batch, _ = two_documents_batch()  # row 0 is padded after 14 long / 3 global tokens
    start, end = torch.tensor([2, 5]), torch.tensor([4, 9])
    facts = torch.tensor([[1, 0, -100, -100], [0, 1, 1, -100]])
    out = model(**batch, start_positions=start, end_positions=end, supporting_fact_labels=facts)
    assert out.start_logits.shape == out.end_logits.shape == (2, 20)
    assert out.supporting_fact_logits.shape == (2, 4)
    lowest = torch.finfo(out.start_logits.dtype).min
    assert bool((out.start_logits[0, 14:] == lowest).all()) and bool((out.end_logits[0, 14:] == lowest).all())
    assert bool((out.start_logits[:, :14] > lowest).all())
    span = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    labelled = facts != -100
    fact = F.binary_cross_entropy_with_logits(out.supporting_fact_logits[labelled], facts[labelled].float())
    close(out.loss, (span + fact) / 2)
    out.loss.backward()
    assert_encoder_has_gradients(model)
    assert model.supporting_facts.weight.grad.abs().sum() > 0


def test_question_answering_ignores_positions_outside_the_input():
    model = make(EtcForQuestionAnswering)
    batch, _ = two_documents_batch()
    with torch.no_grad():
        out = model(
            **batch,
            start_positions=torch.tensor([2, 50]),
            end_positions=torch.tensor([4, 60]),
        )
    expected = (
        F.cross_entropy(out.start_logits[:1], torch.tensor([2]))
        + F.cross_entropy(out.end_logits[:1], torch.tensor([4]))
    ) / 2
    close(out.loss, expected)


def test_masked_lm_loss_ignores_minus_100():
    model = make(EtcForMaskedLM).train()
    batch, _ = two_documents_batch()
    labels = torch.full((2, 20), -100)
    labels[0, 3], labels[1, 7], labels[1, 19] = 11, 12, 13
    out = model(**batch, labels=labels)
    keep = labels != -100
    close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))
    out.loss.backward()
    assert_encoder_has_gradients(model)


@pytest.mark.parametrize("embedding_size", [None, 16])
def test_masked_lm_tied_weights_survive_save_and_load(tmp_path, embedding_size):
    model = make(EtcForMaskedLM, embedding_size=embedding_size)
    with torch.no_grad():  # make the tie observable: change the shared table before saving
        model.etc.embeddings.token_embeddings.weight.mul_(3.0)
    assert model.lm_head.decoder.weight is model.etc.embeddings.token_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = EtcForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.lm_head.decoder.weight is loaded.etc.embeddings.token_embeddings.weight
    batch, _ = two_documents_batch()
    with torch.no_grad():
        close(loaded(**batch).logits, model(**batch).logits, tol=0)
        loaded.etc.embeddings.token_embeddings.weight[7].add_(1.0)
    assert bool((loaded.lm_head.decoder.weight[7] == loaded.etc.embeddings.token_embeddings.weight[7]).all())


def cpc_batch():
    """Two rows of three sentences; sentences (0, 0), (0, 2) and (1, 1) are masked for CPC."""
    rows = [document((4, 5, 3), 11), document((5, 4, 3), 12)]
    batch = stack([{"input_ids": r[0], "sentence_ids": r[1], "global_input_ids": r[2]} for r in rows])
    cpc_mask = torch.tensor([[1, 0, 1], [0, 1, 0]])
    masked_tokens = cpc_mask.gather(1, batch["sentence_ids"]).bool()
    targets = batch["input_ids"].clone()
    batch["input_ids"] = batch["input_ids"].masked_fill(masked_tokens, MASK_ID)
    labels = torch.where(masked_tokens, targets, -100)
    return batch, cpc_mask, targets, labels


def test_pretraining_mlm_and_cpc_losses():
    model = make(EtcForPreTraining).train()
    assert model.config.cpc_loss_weight == 0.2
    batch, cpc_mask, targets, labels = cpc_batch()
    out = model(**batch, labels=labels, cpc_sentence_mask=cpc_mask, cpc_target_input_ids=targets)
    assert out.logits.shape == (2, 12, VOCAB)
    assert out.cpc_logits.shape == (3, 3)
    keep = labels != -100
    close(out.mlm_loss, F.cross_entropy(out.logits[keep], labels[keep]))
    close(out.cpc_loss, F.cross_entropy(out.cpc_logits, torch.arange(3)))
    close(out.loss, 0.8 * out.mlm_loss + 0.2 * out.cpc_loss)
    out.loss.backward()
    assert_encoder_has_gradients(model)
    assert model.cpc_head[0].weight.grad.abs().sum() > 0


def test_pretraining_cpc_logits_compare_predictions_with_sentences_encoded_alone():
    """cpc_logits[i, j] = cos(cpc_head(global state of masked sentence i), global state of
    sentence j encoded alone with one global token) / temperature."""
    model = make(EtcForPreTraining, cpc_temperature=0.5)
    batch, cpc_mask, targets, labels = cpc_batch()
    with torch.no_grad():
        out = model(
            **batch,
            labels=labels,
            cpc_sentence_mask=cpc_mask,
            cpc_target_input_ids=targets,
        )
        encoded = model.etc(**batch).global_last_hidden_state
        predictions, alone_states = [], []
        for b, g in [(0, 0), (0, 2), (1, 1)]:
            predictions.append(model.cpc_head(encoded[b, g]))
            sentence = targets[b][batch["sentence_ids"][b] == g]
            single = model.etc(
                input_ids=sentence[None],
                global_input_ids=torch.tensor([[GLOBAL_ID]]),
                sentence_ids=torch.zeros_like(sentence)[None],
            )
            alone_states.append(single.global_last_hidden_state[0, 0])
    expected = F.normalize(torch.stack(predictions), dim=-1) @ F.normalize(torch.stack(alone_states), dim=-1).t() / 0.5
    close(out.cpc_logits, expected)


# --------------------------------------------------------------------------------------------
# 6. Auto classes and save/load
# --------------------------------------------------------------------------------------------

AUTO = [
    ("AutoModel", EtcModel),
    ("AutoModelForMaskedLM", EtcForMaskedLM),
    ("AutoModelForPreTraining", EtcForPreTraining),
    ("AutoModelForSequenceClassification", EtcForSequenceClassification),
    ("AutoModelForTokenClassification", EtcForTokenClassification),
    ("AutoModelForQuestionAnswering", EtcForQuestionAnswering),
]


def test_auto_config_for_model():
    import transformers

    cfg = transformers.AutoConfig.for_model("longbird_etc", hidden_size=HIDDEN, num_attention_heads=HEADS)
    assert type(cfg) is EtcConfig
    assert (cfg.hidden_size, cfg.num_attention_heads) == (HIDDEN, HEADS)


@pytest.mark.parametrize("auto_name,cls", AUTO, ids=[a for a, _ in AUTO])
def test_auto_classes_build_and_round_trip(tmp_path, auto_name, cls):
    import transformers

    auto = getattr(transformers, auto_name)
    torch.manual_seed(0)
    model = auto.from_config(config()).eval()
    assert type(model) is cls
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert type(transformers.AutoConfig.from_pretrained(tmp_path)) is EtcConfig
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=0, rtol=0, msg=key)
    inputs = alone(document(DOC_A, 1))
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    first = "last_hidden_state" if cls is EtcModel else ("start_logits" if cls is EtcForQuestionAnswering else "logits")
    close(a[first], b[first], tol=1e-6)


# --------------------------------------------------------------------------------------------
# 7. Trainer column filtering and unknown arguments
# --------------------------------------------------------------------------------------------

ENCODER_COLUMNS = {
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "global_input_ids",
    "global_attention_mask",
    "global_token_type_ids",
    "long_breakpoints",
    "global_breakpoints",
    "sentence_ids",
    "l2l_att_mask",
    "g2g_att_mask",
    "l2g_att_mask",
    "g2l_att_mask",
    "l2l_relative_att_ids",
    "g2g_relative_att_ids",
    "l2g_relative_att_ids",
    "g2l_relative_att_ids",
}
HEAD_COLUMNS = [
    (EtcForSequenceClassification, {"labels"}),
    (EtcForTokenClassification, {"labels"}),
    (EtcForMaskedLM, {"labels"}),
    (EtcForPreTraining, {"labels", "cpc_sentence_mask", "cpc_target_input_ids"}),
    (
        EtcForQuestionAnswering,
        {"start_positions", "end_positions", "supporting_fact_labels"},
    ),
]


@pytest.mark.parametrize("cls,head_columns", HEAD_COLUMNS, ids=[c.__name__ for c, _ in HEAD_COLUMNS])
def test_head_signatures_name_every_input(cls, head_columns):
    from transformers.utils import find_labels

    class_params = set(inspect.signature(cls.forward).parameters)
    model = cls(config(num_labels=2))
    bound_params = list(inspect.signature(model.forward).parameters)  # what Trainer inspects
    assert "self" not in bound_params
    assert ENCODER_COLUMNS | head_columns <= set(bound_params)
    assert ENCODER_COLUMNS | head_columns | {"self"} <= class_params
    assert set(find_labels(cls)) == {c for c in head_columns if "label" in c or c.endswith("_positions")}


def test_trainer_keeps_only_the_model_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    from transformers import Trainer, TrainingArguments

    batch, _ = two_documents_batch()
    columns = {k: v.tolist() for k, v in batch.items()}
    columns |= {"labels": [0, 1], "text": ["a", "b"], "idx": [0, 1]}
    dataset = datasets.Dataset.from_dict(columns)
    model = make(EtcForSequenceClassification, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = Trainer(model=model, args=args)
    kept = trainer._remove_unused_columns(dataset)
    assert set(kept.column_names) == set(batch) | {"labels"}


@pytest.mark.parametrize("cls", [c for c, _ in HEAD_COLUMNS], ids=[c.__name__ for c, _ in HEAD_COLUMNS])
def test_heads_reject_unknown_keywords(cls):
    model = make(cls)
    with pytest.raises(TypeError, match="global_ids_typo"):
        model(
            **alone(document(DOC_A, 1)),
            global_ids_typo=torch.zeros(1, 3, dtype=torch.long),
        )


def test_heads_take_input_ids_positionally():
    model = make(EtcForSequenceClassification, num_labels=2)
    ids = alone(document(DOC_A, 1))["input_ids"]
    with torch.no_grad():
        close(model(ids).logits, model(input_ids=ids).logits)


# --------------------------------------------------------------------------------------------
# 8. Gradient checkpointing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(backend):
    """QA with supporting facts: a loss on both sides, so every parameter gets a gradient."""
    batch, _ = two_documents_batch()
    labels = {
        "start_positions": torch.tensor([2, 5]),
        "end_positions": torch.tensor([4, 9]),
        "supporting_fact_labels": torch.tensor([[1, 0, -100, -100], [0, 1, 1, 0]]),
    }
    results = []
    for checkpointing in (False, True):
        model = make(EtcForQuestionAnswering, attention_backend=backend).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.etc.layers)
        out = model(**batch, **labels)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), grads))
    (loss, grads), (ck_loss, ck_grads) = results
    close(ck_loss, loss, tol=1e-6)
    assert ck_grads.keys() == grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        close(ck_grads[name], grads[name], tol=1e-6)


# --------------------------------------------------------------------------------------------
# 9. Hidden states, attention weights, tuples
# --------------------------------------------------------------------------------------------


def test_hidden_states_and_attention_weights():
    model = make(attention_backend="blocked")
    batch, _ = two_documents_batch()  # n_l = 20 > 12: blocked without weights
    with torch.no_grad():
        plain = model(**batch)
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    close(out.last_hidden_state, plain.last_hidden_state)
    close(out.global_last_hidden_state, plain.global_last_hidden_state)
    assert len(out.hidden_states) == len(out.global_hidden_states) == LAYERS + 1
    assert len(out.attentions) == len(out.global_attentions) == LAYERS
    assert all(h.shape == (2, 20, HIDDEN) for h in out.hidden_states)
    assert all(h.shape == (2, 4, HIDDEN) for h in out.global_hidden_states)
    close(out.hidden_states[-1], out.last_hidden_state, tol=0)
    close(out.global_hidden_states[-1], out.global_last_hidden_state, tol=0)
    long_real = batch["attention_mask"].bool()
    global_real = batch["global_attention_mask"].bool()
    for long_w, glob_w in zip(out.attentions, out.global_attentions):
        assert long_w.shape == (2, HEADS, 20, 20 + 4)
        assert glob_w.shape == (2, HEADS, 4, 4 + 20)
        close(
            long_w.sum(-1)[long_real.unsqueeze(1).expand(-1, HEADS, -1)],
            torch.ones(2 * HEADS * 20 - HEADS * 6),
        )
        close(
            glob_w.sum(-1)[global_real.unsqueeze(1).expand(-1, HEADS, -1)],
            torch.ones(2 * HEADS * 4 - HEADS),
        )
        # the window: a long query never reads a long key further than local_radius away
        distance = (torch.arange(20)[None, :] - torch.arange(20)[:, None]).abs()
        assert bool((long_w[..., :20][..., distance > RADIUS] == 0).all())
        # real queries read no padding key (row 0: long 14.., global 3..)
        assert bool((long_w[0][:, :14, 14:20] == 0).all()) and bool((long_w[0][:, :14, 23] == 0).all())
        # hard g2l: a global token reads only its own sentence's long tokens
        own = batch["sentence_ids"].unsqueeze(1) == torch.arange(4)[None, :, None]  # [B, n_g, n_l]
        own = own & long_real.unsqueeze(1)
        assert bool(
            (glob_w[..., 4:][(~own).unsqueeze(1).expand(-1, HEADS, -1, -1) & global_real[:, None, :, None]] == 0).all()
        )


def test_hard_l2g_mask_lets_a_long_token_read_only_its_own_global_token():
    model = make(use_hard_l2g_mask=True, use_hard_g2l_mask=False)
    batch, _ = two_documents_batch()
    with torch.no_grad():
        weights = model(**batch, output_attentions=True).attentions
    own = batch["sentence_ids"].unsqueeze(-1) == torch.arange(4)  # [B, n_l, n_g]
    real = batch["attention_mask"].bool()
    for long_w in weights:
        to_globals = long_w[..., 20:].permute(0, 2, 3, 1)[real]  # [real queries, n_g, heads]
        assert bool((to_globals[~own[real]] == 0).all())
        assert bool((to_globals[own[real]] > 0).all())


def test_heads_pass_hidden_states_and_attentions():
    model = make(EtcForTokenClassification, num_labels=2)
    batch, _ = two_documents_batch()
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == LAYERS + 1 and len(out.attentions) == LAYERS


def test_return_dict_false_gives_tuples():
    model = make()
    batch, _ = two_documents_batch()
    with torch.no_grad():
        out = model(**batch, return_dict=False)
        full = model(**batch, return_dict=False, output_hidden_states=True)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == (2, 20, HIDDEN) and out[1].shape == (2, 4, HIDDEN)
    assert isinstance(full, tuple) and len(full) == 4 and len(full[2]) == LAYERS + 1
    head = make(EtcForSequenceClassification, num_labels=2)
    with torch.no_grad():
        loss, logits = head(**batch, labels=torch.tensor([0, 1]), return_dict=False)
        (only_logits,) = head(**batch, return_dict=False)
    assert loss.dim() == 0 and logits.shape == (2, 2)
    close(only_logits, logits, tol=0)
    head.config.return_dict = False
    with torch.no_grad():
        assert isinstance(head(**batch), tuple)


# --------------------------------------------------------------------------------------------
# 10. Bad input
# --------------------------------------------------------------------------------------------


def bad_inputs():
    doc = alone(document(DOC_A, 1))  # 14 long, 3 global
    n = 14

    def with_(**changes):
        return {**doc, **changes}

    return {
        "batch_sizes_differ": (
            with_(global_input_ids=doc["global_input_ids"].repeat(2, 1)),
            "global.input",
        ),
        "sentence_ids_past_global": (
            with_(sentence_ids=torch.full((1, n), 3)),
            "sentence_ids",
        ),
        "negative_sentence_ids": (
            with_(sentence_ids=torch.full((1, n), -1)),
            "sentence_ids",
        ),
        "l2l_relative_ids_too_big": (
            with_(l2l_relative_att_ids=torch.full((1, n, 2 * RADIUS + 1), 8)),
            "l2l_relative_att_ids",
        ),
        "g2l_relative_ids_too_big": (
            with_(g2l_relative_att_ids=torch.full((1, 3, n), 9)),
            "g2l_relative_att_ids",
        ),
        "long_breakpoints_with_a_2": (
            with_(long_breakpoints=last_one(n)[None] * 2),
            "long_breakpoints",
        ),
        "global_breakpoints_with_a_2": (
            with_(global_breakpoints=torch.tensor([[0, 0, 2]])),
            "global_breakpoints",
        ),
        "empty_global_input": (
            with_(global_input_ids=torch.zeros(1, 0, dtype=torch.long)),
            "global_input_ids",
        ),
        "sentence_ids_without_global_input": (
            {"input_ids": doc["input_ids"], "sentence_ids": doc["sentence_ids"]},
            "sentence_ids",
        ),
        "global_breakpoints_without_global_input": (
            {
                "input_ids": doc["input_ids"],
                "global_breakpoints": torch.tensor([[0, 0, 1]]),
            },
            "global_breakpoints",
        ),
        "l2l_mask_wrong_shape": (
            with_(l2l_att_mask=torch.ones(1, n, 2 * RADIUS)),
            "l2l_att_mask",
        ),
        "g2l_mask_wrong_shape": (
            with_(g2l_att_mask=torch.ones(1, n, 3)),
            "g2l_att_mask",
        ),
        "attention_mask_wrong_shape": (
            with_(attention_mask=torch.ones(1, n + 1)),
            "attention_mask",
        ),
        "token_type_ids_too_big": (
            with_(token_type_ids=torch.full((1, n), 16)),
            "token_type_ids",
        ),
        "no_long_input": ({"global_input_ids": doc["global_input_ids"]}, "input_ids"),
        "global_input_without_sentence_ids": (
            {
                "input_ids": doc["input_ids"],
                "global_input_ids": doc["global_input_ids"],
            },
            "sentence_ids",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [c for c in bad_inputs()],
)
def test_bad_inputs_raise_naming_the_argument(case):
    inputs, name = bad_inputs()[case]
    model = make()
    with pytest.raises((ValueError, TypeError), match=name):
        model(**inputs)


@pytest.mark.parametrize(
    "overrides,name",
    [
        (
            {"relative_pos_max_distance": 2, "relative_vocab_size": 7},
            "relative_vocab_size",
        ),
        ({"attention_backend": "foo"}, "attention_backend"),
        ({"hidden_size": 30}, "hidden_size"),
        ({"local_radius": 0}, "local_radius"),
        ({"num_tokens_per_block": 0}, "num_tokens_per_block"),
        ({"cpc_loss_weight": 1.5}, "cpc_loss_weight"),
    ],
)
def test_bad_config_raises_naming_the_field(overrides, name):
    with pytest.raises(ValueError, match=name):
        config(**overrides)


def test_smallest_valid_relative_vocab_and_explicit_head_size():
    config(relative_pos_max_distance=2, relative_vocab_size=8)
    cfg = config(hidden_size=30, att_size_per_head=8)
    assert cfg.head_size == 8
    model = EtcModel(cfg).eval()
    with torch.no_grad():
        out = model(**alone(document(DOC_A, 1)))
    assert out.last_hidden_state.shape == (1, 14, 30)


# --------------------------------------------------------------------------------------------
# 11. Dtype
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_is_close_to_float32(backend):
    model = make(attention_backend=backend)
    batch, _ = two_documents_batch()
    with torch.no_grad():
        reference = model(**batch)
        out = model.to(torch.bfloat16)(**batch)
    assert out.last_hidden_state.dtype == out.global_last_hidden_state.dtype == torch.bfloat16
    real = batch["attention_mask"].bool()
    greal = batch["global_attention_mask"].bool()
    for got, want in (
        (out.last_hidden_state[real], reference.last_hidden_state[real]),
        (
            out.global_last_hidden_state[greal],
            reference.global_last_hidden_state[greal],
        ),
    ):
        assert torch.isfinite(got).all()
        diff = (got.float() - want).abs()
        # bf16 is ~0.035 / 0.007 off here; dropping the masks moves outputs by ~1.5 / 0.3
        assert diff.max() < 0.1 and diff.mean() < 0.02, (diff.max(), diff.mean())


@pytest.mark.parametrize("cls", [EtcForQuestionAnswering, EtcForPreTraining])
def test_bfloat16_heads_run(cls):
    model = make(cls).to(torch.bfloat16)
    if cls is EtcForQuestionAnswering:
        batch, _ = two_documents_batch()
        with torch.no_grad():
            out = model(
                **batch,
                start_positions=torch.tensor([1, 2]),
                end_positions=torch.tensor([3, 4]),
            )
        assert out.start_logits.dtype == torch.bfloat16
        assert bool((out.start_logits[0, 14:] == torch.finfo(torch.bfloat16).min).all())
    else:
        batch, cpc_mask, targets, labels = cpc_batch()
        with torch.no_grad():
            out = model(
                **batch,
                labels=labels,
                cpc_sentence_mask=cpc_mask,
                cpc_target_input_ids=targets,
            )
        assert out.cpc_logits.shape == (3, 3)
    assert torch.isfinite(out.loss)


def test_qa_never_answers_with_padding_given_by_breakpoints_alone():
    model = make(EtcForQuestionAnswering)
    ids, sentences, globals_ = document(DOC_A, 1)
    n = len(ids)
    row = {
        "input_ids": torch.cat([ids, torch.zeros(4, dtype=torch.long)])[None],
        "sentence_ids": torch.cat([sentences, torch.zeros(4, dtype=torch.long)])[None],
        "global_input_ids": globals_[None],
        "long_breakpoints": torch.nn.functional.one_hot(torch.tensor(n - 1), n + 4)[None],
        "global_breakpoints": torch.nn.functional.one_hot(torch.tensor(len(globals_) - 1), len(globals_))[None],
    }
    with torch.no_grad():
        out = model(**row)
    lowest = torch.finfo(out.start_logits.dtype).min
    assert (out.start_logits[0, n:] == lowest).all() and (out.end_logits[0, n:] == lowest).all()
    assert (out.start_logits[0, :n] > lowest).all()
