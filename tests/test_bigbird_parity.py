"""longbird's BigBird against transformers' own BigBird (the offline reference).

Every test builds a tiny transformers model with random weights, saves it, loads the folder
with longbird's class of the same name and compares outputs and losses:

* drop-in loading (no missing/unexpected keys, same weights, our model_type);
* `original_full` parity (eval, with and without right padding), base model and every head;
* `block_sparse` parity in *training* mode (where transformers draws its real random plan) for
  a length that is a multiple of the block size, one that is not, and the "paper plan" length
  1024 (drawn at max_position_embeddings 1024 and 4096);
* eval keeps the training plan (and so differs from transformers' eval);
* the QA head: question masking, question from token_type_ids, long questions made global;
* sequence classification problem types (single-label, 919-label multi-label, regression);
* Auto classes after `import longbird`.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import longbird

transformers.logging.set_verbosity_error()  # transformers warns on every padded / short input

HEADS = (
    "BigBirdModel",
    "BigBirdForMaskedLM",
    "BigBirdForSequenceClassification",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
)
OUTPUT_KEYS = {
    "BigBirdModel": ("last_hidden_state", "pooler_output"),
    "BigBirdForMaskedLM": ("logits",),
    "BigBirdForSequenceClassification": ("logits",),
    "BigBirdForTokenClassification": ("logits",),
    "BigBirdForQuestionAnswering": ("start_logits", "end_logits"),
}
NUM_LABELS = {"BigBirdForSequenceClassification": 3, "BigBirdForTokenClassification": 4}
CLS_ID, SEP_ID = 1, 5  # SEP_ID == tiny_kwargs()["sep_token_id"]
QUESTION_LEN = 7  # [CLS] + 5 question tokens + [SEP]: shorter than one block (block_size 8)
# Larger than BigBird's default 0.02: sharper attention, so that attending to a wrong block
# moves the outputs well above the tolerances (the plan tests have teeth). Weights are the
# same in both models anyway.
INIT_RANGE = 0.2


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def make_pair(name, tiny_kwargs, tmp_path, seed=0, **overrides):
    """(transformers model, longbird model loaded from its saved folder), same weights."""
    kwargs = {**tiny_kwargs, "initializer_range": INIT_RANGE, **overrides}
    if name in NUM_LABELS and "num_labels" not in kwargs:
        kwargs["num_labels"] = NUM_LABELS[name]
    torch.manual_seed(seed)
    hf = getattr(transformers, name)(transformers.BigBirdConfig(**kwargs))
    folder = tmp_path / f"hf-{name}-{seed}"
    hf.save_pretrained(folder)
    ours, info = getattr(longbird, name).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return hf, ours


def make_inputs(name, batch, seq_len, seed=0, real_lengths=None, question_len=QUESTION_LEN):
    """Model kwargs (with labels / positions) and the `[B, L]` bool mask of real tokens.

    Token ids avoid 0 (pad) and SEP_ID except where placed on purpose. QA inputs are formatted
    `[CLS] question [SEP] context [SEP]`; answers lie in the context, or at [CLS] (no answer).
    `real_lengths` right-pads each example to that many real tokens (attention_mask 0 after).
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 100, (batch, seq_len), generator=g)
    real = torch.ones(batch, seq_len, dtype=torch.bool)
    kwargs = {}
    if real_lengths is not None:
        for i, n in enumerate(real_lengths):
            real[i, n:] = False
        ids[~real] = 0
        kwargs["attention_mask"] = real.long()
    lengths = real.sum(1)
    if name == "BigBirdForQuestionAnswering":
        ids[:, 0] = CLS_ID
        ids[:, question_len - 1] = SEP_ID
        ids[torch.arange(batch), lengths - 1] = SEP_ID
        start = torch.tensor([question_len + 2 + i % 5 if i % 2 == 0 else 0 for i in range(batch)])
        end = torch.where(start > 0, start + 3, start)
        kwargs.update(start_positions=start, end_positions=end)
    elif name == "BigBirdForMaskedLM":
        labels = torch.randint(6, 100, (batch, seq_len), generator=g)
        drop = torch.rand(batch, seq_len, generator=g) < 0.5
        kwargs["labels"] = labels.masked_fill(drop | ~real, -100)
    elif name == "BigBirdForSequenceClassification":
        kwargs["labels"] = torch.randint(0, NUM_LABELS[name], (batch,), generator=g)
    elif name == "BigBirdForTokenClassification":
        labels = torch.randint(0, NUM_LABELS[name], (batch, seq_len), generator=g)
        kwargs["labels"] = labels.masked_fill(~real, -100)
    kwargs["input_ids"] = ids
    return kwargs, real


def run_both(hf, ours, kwargs, train):
    hf.train(train)
    ours.train(train)
    with torch.no_grad():
        return hf(**kwargs), ours(**kwargs)


def assert_parity(name, ref, got, atol, real, question_len=None, kwargs=None):
    """Outputs equal at real positions (and not at QA question positions), losses equal."""
    for key in OUTPUT_KEYS[name]:
        a, b = getattr(ref, key), getattr(got, key)
        assert a.shape == b.shape, key
        if key not in ("pooler_output",) and name not in ("BigBirdForSequenceClassification",):  # per token
            keep = real.clone()
            if question_len is not None:
                keep[:, 1:question_len] = False  # masked question tokens: -1e6 vs finfo.min
                assert (a[:, 1:question_len] < -1e5).all() and (b[:, 1:question_len] < -1e5).all()
            a, b = a[keep], b[keep]
        torch.testing.assert_close(b, a, rtol=0, atol=atol, msg=lambda m, key=key: f"{name}.{key}: {m}")
    if ref.get("loss") is not None or got.get("loss") is not None:
        assert ref.loss is not None and got.loss is not None
        expected = ref.loss
        if name == "BigBirdForQuestionAnswering" and not bool(real.all()):
            # padding is never an answer in ours; transformers' softmax counts it: its loss with padding masked
            start, end = (t.masked_fill(~real, torch.finfo(t.dtype).min) for t in (ref.start_logits, ref.end_logits))
            ce = torch.nn.functional.cross_entropy
            expected = (ce(start, kwargs["start_positions"]) + ce(end, kwargs["end_positions"])) / 2
        torch.testing.assert_close(got.loss, expected, rtol=0, atol=atol, msg=lambda m: f"{name}.loss: {m}")


def is_block_sparse(hf):
    base = hf if isinstance(hf, transformers.BigBirdModel) else hf.bert
    return base.attention_type == "block_sparse"


# --------------------------------------------------------------------------------------------
# 1. drop-in loading
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HEADS)
def test_loads_transformers_checkpoint_without_missing_or_unexpected_keys(name, tiny_kwargs, tmp_path):
    kwargs = {**tiny_kwargs, **({"num_labels": NUM_LABELS[name]} if name in NUM_LABELS else {})}
    torch.manual_seed(0)
    hf = getattr(transformers, name)(transformers.BigBirdConfig(**kwargs))
    hf.save_pretrained(tmp_path)
    ours, info = getattr(longbird, name).from_pretrained(tmp_path, output_loading_info=True)

    assert type(ours) is getattr(longbird, name)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    assert isinstance(ours.config, longbird.BigBirdConfig)
    assert ours.config.model_type == "longbird_bigbird"
    assert ours.config.block_size == 8 and ours.config.sep_token_id == 5
    # every weight of the checkpoint arrived (random weights: a fresh init would differ)
    hf_state, our_state = hf.state_dict(), ours.state_dict()
    for key, value in hf_state.items():
        assert key in our_state, key
        torch.testing.assert_close(our_state[key], value, rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")


# --------------------------------------------------------------------------------------------
# 2. original_full parity (eval)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "right-padding"])
@pytest.mark.parametrize("name", HEADS)
def test_original_full_matches_transformers(name, padded, tiny_kwargs, tmp_path):
    hf, ours = make_pair(name, tiny_kwargs, tmp_path, attention_type="original_full")
    real_lengths = [50, 33] if padded else None
    kwargs, real = make_inputs(name, 2, 50, real_lengths=real_lengths)
    ref, got = run_both(hf, ours, kwargs, train=False)
    qlen = QUESTION_LEN if name == "BigBirdForQuestionAnswering" else None
    assert_parity(name, ref, got, 1e-5, real, question_len=qlen, kwargs=kwargs)


# --------------------------------------------------------------------------------------------
# 3. block_sparse parity in training mode
# --------------------------------------------------------------------------------------------

SPARSE_CASES = [
    (name, seq_len, max_pos)
    for name in HEADS
    for seq_len, max_pos in (
        (256, 512),  # a multiple of the block size
        (203, 512),  # not a multiple: padded to 208 inside
        (1024, 1024),  # transformers' "paper plan" (seq_len in 1024, 3072, 4096)
        (1024, 4096),  # paper plan drawn at max_position_embeddings 4096, then cut
    )
    # plan drawn at 4096: the base model and one head suffice (runtime)
    if max_pos != 4096 or name in ("BigBirdModel", "BigBirdForMaskedLM")
]


@pytest.mark.parametrize(
    "name,seq_len,max_pos", SPARSE_CASES, ids=[f"{n}-len{s}-maxpos{m}" for n, s, m in SPARSE_CASES]
)
def test_block_sparse_training_matches_transformers(name, seq_len, max_pos, tiny_kwargs, tmp_path):
    hf, ours = make_pair(name, tiny_kwargs, tmp_path, max_position_embeddings=max_pos)
    assert hf.config.attention_type == "block_sparse" and ours.config.attention_type == "block_sparse"
    kwargs, real = make_inputs(name, 2, seq_len, seed=seq_len)
    ref, got = run_both(hf, ours, kwargs, train=True)
    assert is_block_sparse(hf), "transformers fell back to original_full: the test would compare nothing sparse"
    qlen = QUESTION_LEN if name == "BigBirdForQuestionAnswering" else None
    assert_parity(name, ref, got, 1e-4, real, question_len=qlen)


# --------------------------------------------------------------------------------------------
# 4. eval keeps the training plan
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len", [256, 1024])
def test_eval_uses_training_plan_unlike_transformers_eval(seq_len, tiny_kwargs, tmp_path):
    """Our block-sparse plan is a pure function of (length, layer): eval == train (dropout 0).

    transformers' BigBird only draws random blocks in training; in eval its helpers return an
    all-zero plan, i.e. every random slot of every row points at block 0 (already global). So
    a model fine-tuned with random attention is evaluated without it there. We deliberately keep
    the training plan in eval, hence our eval output differs from transformers' eval output
    (while equalling transformers' *training* output).
    """
    hf, ours = make_pair("BigBirdModel", tiny_kwargs, tmp_path, max_position_embeddings=1024)
    kwargs, _ = make_inputs("BigBirdModel", 2, seq_len, seed=3)
    hf_train, ours_train = run_both(hf, ours, kwargs, train=True)
    hf_eval, ours_eval = run_both(hf, ours, kwargs, train=False)
    assert is_block_sparse(hf)

    torch.testing.assert_close(ours_eval.last_hidden_state, ours_train.last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_eval.last_hidden_state, hf_train.last_hidden_state, rtol=0, atol=1e-4)
    diff = (ours_eval.last_hidden_state - hf_eval.last_hidden_state).abs().max().item()
    assert diff > 1e-4, f"our eval output equals transformers' eval (all random blocks = block 0): {diff}"


# --------------------------------------------------------------------------------------------
# 5. question answering head
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attention_type,train,atol",
    [("block_sparse", True, 1e-4), ("original_full", False, 1e-5)],
)
def test_qa_question_from_sep_matches_transformers(attention_type, train, atol, tiny_kwargs, tmp_path):
    name = "BigBirdForQuestionAnswering"
    hf, ours = make_pair(name, tiny_kwargs, tmp_path, attention_type=attention_type)
    kwargs, real = make_inputs(name, 2, 256, seed=11)
    assert "token_type_ids" not in kwargs and (kwargs["input_ids"] == SEP_ID).sum(1).tolist() == [2, 2]
    ref, got = run_both(hf, ours, kwargs, train=train)
    assert hf.bert.attention_type == attention_type
    assert_parity(name, ref, got, atol, real, question_len=QUESTION_LEN)
    # the question tokens (not [CLS]) can never be the answer
    low = torch.finfo(got.start_logits.dtype).min
    assert (got.start_logits[:, 1:QUESTION_LEN] == low).all() and (got.end_logits[:, 1:QUESTION_LEN] == low).all()
    assert (got.start_logits[:, 0] > low).all() and (got.start_logits[:, QUESTION_LEN:] > low).all()


def test_qa_input_without_sep_matches_transformers(tiny_kwargs, tmp_path):
    """Input ids with no [SEP] at all and no token_type_ids (e.g. a context-only input).

    transformers takes `argmax(input_ids == sep) + 1 == 1` as the question length: [CLS] is the
    question (token type 0), every other token is context (token type 1), nothing is masked.
    Our head documents "from the first [SEP] ... as transformers does", so it must agree.
    """
    name = "BigBirdForQuestionAnswering"
    hf, ours = make_pair(name, tiny_kwargs, tmp_path, attention_type="original_full")
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(6, 100, (2, 40), generator=g)
    ids[:, 0] = CLS_ID
    kwargs = {"input_ids": ids, "start_positions": torch.tensor([4, 0]), "end_positions": torch.tensor([6, 0])}
    ref, got = run_both(hf, ours, kwargs, train=False)
    assert_parity(name, ref, got, 1e-5, torch.ones(2, 40, dtype=torch.bool))


def _question_without_sep(batch, seq_len, question_len, seed=0):
    """`[CLS] question context ... [SEP]` with the question marked only by token_type_ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 100, (batch, seq_len), generator=g)
    ids[:, 0] = CLS_ID
    ids[:, -1] = SEP_ID  # the only [SEP]: a [SEP]-based guess would take everything as question
    token_type_ids = torch.ones(batch, seq_len, dtype=torch.long)
    token_type_ids[:, :question_len] = 0
    return ids, token_type_ids


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_qa_question_from_token_type_ids(attention_type, tiny_kwargs, tmp_path):
    _, ours = make_pair("BigBirdForQuestionAnswering", tiny_kwargs, tmp_path, attention_type=attention_type)
    ours.eval()
    qlen = 12
    ids, tt = _question_without_sep(2, 256, qlen)
    with torch.no_grad():
        out = ours(input_ids=ids, token_type_ids=tt)
    low = torch.finfo(out.start_logits.dtype).min
    for logits in (out.start_logits, out.end_logits):
        assert (logits[:, 1:qlen] == low).all(), "question tokens must be masked"
        assert (logits[:, 0] > low).all(), "[CLS] stays a candidate (no answer)"
        assert (logits[:, qlen:] > low).all(), "context tokens must stay candidates"


def test_long_question_is_global(tiny_kwargs, tmp_path):
    """A question longer than one block: BigBirdModel's global_prefix_length changes the
    outputs, and the QA head passes the question lengths as global_prefix_length."""
    _, ours = make_pair("BigBirdForQuestionAnswering", tiny_kwargs, tmp_path)
    ours.eval()
    qlen = 21  # 3 blocks of 8
    ids, tt = _question_without_sep(2, 256, qlen, seed=5)
    lengths = torch.tensor([qlen, qlen])

    with torch.no_grad():
        plain = ours.bert(input_ids=ids, token_type_ids=tt).last_hidden_state
        global_ = ours.bert(input_ids=ids, token_type_ids=tt, global_prefix_length=lengths).last_hidden_state
    assert (plain - global_).abs().max() > 1e-4, "global_prefix_length had no effect on a long question"

    seen = []
    hook = ours.bert.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("global_prefix_length")), with_kwargs=True
    )
    try:
        with torch.no_grad():
            from_tt = ours(input_ids=ids, token_type_ids=tt)
            from_lengths = ours(input_ids=ids, token_type_ids=tt, question_lengths=lengths)
    finally:
        hook.remove()
    assert len(seen) == 2 and all(s is not None and s.reshape(-1).tolist() == [qlen, qlen] for s in seen), seen

    # manual computation of the head on top of the global-prefix encoder output
    with torch.no_grad():
        logits = ours.qa_classifier(global_)
        logits_plain = ours.qa_classifier(plain)
    context = slice(qlen, None)
    for out in (from_tt, from_lengths):
        torch.testing.assert_close(out.start_logits[:, context], logits[:, context, 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.end_logits[:, context], logits[:, context, 1], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.start_logits[:, 0], logits[:, 0, 0], rtol=0, atol=1e-6)
        assert (out.start_logits[:, context] - logits_plain[:, context, 0]).abs().max() > 1e-4


def test_long_question_from_sep_is_global(tiny_kwargs, tmp_path):
    """Same with the question found from [SEP] only (no token_type_ids)."""
    _, ours = make_pair("BigBirdForQuestionAnswering", tiny_kwargs, tmp_path)
    ours.eval()
    kwargs, _ = make_inputs("BigBirdForQuestionAnswering", 2, 256, seed=2, question_len=21)
    ids = kwargs["input_ids"]
    tt = torch.ones_like(ids)
    tt[:, :21] = 0
    with torch.no_grad():
        out = ours(input_ids=ids)
        manual = ours.qa_classifier(
            ours.bert(input_ids=ids, token_type_ids=tt, global_prefix_length=torch.tensor([21, 21])).last_hidden_state
        )
    torch.testing.assert_close(out.start_logits[:, 21:], manual[:, 21:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.end_logits[:, 21:], manual[:, 21:, 1], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# 6. sequence classification problem types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_labels,problem,make_labels",
    [
        pytest.param(3, "single_label_classification", lambda g: torch.randint(0, 3, (2,), generator=g), id="single"),
        pytest.param(
            919, "multi_label_classification", lambda g: (torch.rand(2, 919, generator=g) < 0.1).float(), id="multi919"
        ),
        pytest.param(1, "regression", lambda g: torch.randn(2, generator=g), id="regression"),
    ],
)
def test_sequence_classification_problem_types(num_labels, problem, make_labels, tiny_kwargs, tmp_path):
    name = "BigBirdForSequenceClassification"
    hf, ours = make_pair(name, tiny_kwargs, tmp_path, attention_type="original_full", num_labels=num_labels)
    kwargs, real = make_inputs(name, 2, 40, seed=1)
    kwargs["labels"] = make_labels(torch.Generator().manual_seed(4))
    ref, got = run_both(hf, ours, kwargs, train=False)
    assert got.logits.shape == (2, num_labels)
    assert ours.config.problem_type == hf.config.problem_type == problem
    assert_parity(name, ref, got, 1e-5, real)


@pytest.mark.parametrize("shape", [(2, 918), (2 * 919,), (2, 919, 1)])
def test_multi_label_wrong_shape_raises(shape, tiny_kwargs):
    config = longbird.BigBirdConfig(**tiny_kwargs, attention_type="original_full", num_labels=919)
    torch.manual_seed(0)
    model = longbird.BigBirdForSequenceClassification(config).eval()
    ids = torch.randint(6, 100, (2, 40))
    with pytest.raises(ValueError, match="multi-label"):
        model(input_ids=ids, labels=torch.zeros(shape))
    # also once the problem type is known
    model(input_ids=ids, labels=torch.zeros(2, 919))
    assert model.config.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match="multi-label"):
        model(input_ids=ids, labels=torch.zeros(shape))


# --------------------------------------------------------------------------------------------
# 7. Auto classes
# --------------------------------------------------------------------------------------------

AUTO = {
    "BigBirdModel": AutoModel,
    "BigBirdForMaskedLM": AutoModelForMaskedLM,
    "BigBirdForSequenceClassification": AutoModelForSequenceClassification,
    "BigBirdForTokenClassification": AutoModelForTokenClassification,
    "BigBirdForQuestionAnswering": AutoModelForQuestionAnswering,
}


@pytest.mark.parametrize("name", HEADS)
def test_auto_classes_give_our_classes(name, tiny_kwargs, tmp_path):
    config = longbird.BigBirdConfig(**tiny_kwargs, **({"num_labels": NUM_LABELS[name]} if name in NUM_LABELS else {}))
    torch.manual_seed(0)
    ours = getattr(longbird, name)(config)
    ours.save_pretrained(tmp_path)

    loaded_config = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded_config) is longbird.BigBirdConfig
    assert loaded_config.model_type == "longbird_bigbird"
    model, info = AUTO[name].from_pretrained(tmp_path, output_loading_info=True)
    assert type(model) is getattr(longbird, name)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
