"""The long-question-answering and long-summarization pipelines (transformers 5 removed its own)."""

import numpy as np
import pytest
import torch
from helpers import tiny_bigbird_config, tiny_pegasus_config
from transformers import pipeline

import longbird
from longbird.tokenization import train_tokenizer

SENTENCES = [
    "The river Nile flows north through Egypt into the Mediterranean Sea.",
    "Paris is the capital of France and its largest city.",
    "Mount Kilimanjaro is the highest mountain in Africa.",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 30, vocab_size=150)


def qa_model(tokenizer, target: str | None):
    """A tiny BigBird QA model whose logits point at the tokens of `target` (or at [CLS] when None),
    so the pipeline's windowing and offsets can be checked exactly."""
    config = tiny_bigbird_config(tokenizer, max_position_embeddings=512, sep_token_id=tokenizer.sep_token_id)
    model = longbird.BigBirdForQuestionAnswering(config).eval()
    ids = [] if target is None else tokenizer(target, add_special_tokens=False)["input_ids"]
    forward = model.forward

    def pointed(input_ids=None, **kwargs):
        out = forward(input_ids=input_ids, **kwargs)
        start = torch.zeros_like(out.start_logits)
        end = torch.zeros_like(out.end_logits)
        if ids:
            for pos in range(input_ids.shape[1] - len(ids) + 1):
                if input_ids[0, pos : pos + len(ids)].tolist() == ids and pos > 0:
                    start[0, pos] = end[0, pos + len(ids) - 1] = 20.0
        else:
            start[0, 0] = end[0, 0] = 20.0
        out.start_logits, out.end_logits = start, end
        return out

    model.forward = pointed
    return model


def test_answer_found_in_a_later_window_with_exact_character_offsets(tokenizer):
    context = " ".join(SENTENCES[:2] * 8 + SENTENCES[2:])  # the answer only near the end
    qa = pipeline("long-question-answering", model=qa_model(tokenizer, "kilimanjaro"), tokenizer=tokenizer)
    for options in ({}, {"max_seq_len": 64, "doc_stride": 16}):  # one window, then many
        answer = qa(question="Which is the highest mountain?", context=context, **options)
        assert answer["answer"].lower() == "kilimanjaro"
        assert context[answer["start"] : answer["end"]] == answer["answer"]
        assert answer["start"] == context.index("Kilimanjaro")


def test_top_k_batches_and_impossible_answers(tokenizer):
    context = " ".join(SENTENCES)
    qa = pipeline("long-question-answering", model=qa_model(tokenizer, "paris"), tokenizer=tokenizer)
    answers = qa(question="Which city?", context=context, top_k=3)
    assert len(answers) == 3 and answers[0]["answer"] == "Paris"
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    batch = qa(question=["Which city?", "Capital?"], context=[context, context])
    assert [a["answer"] for a in batch] == ["Paris", "Paris"]
    nothing = pipeline("long-question-answering", model=qa_model(tokenizer, None), tokenizer=tokenizer)
    assert nothing(question="Which city?", context=context, handle_impossible_answer=True)["answer"] == ""
    assert nothing(question="Which city?", context=context)["answer"] != ""


def scored_model(tokenizer, scores: dict[str, float], max_position_embeddings: int = 512):
    """A tiny BigBird QA model whose start and end logits are `scores[word]` on the context tokens
    of each (one-token) word and 0 everywhere else: logits fixed by construction."""
    config = tiny_bigbird_config(
        tokenizer, max_position_embeddings=max_position_embeddings, sep_token_id=tokenizer.sep_token_id
    )
    model = longbird.BigBirdForQuestionAnswering(config).eval()
    by_id = {tokenizer.convert_tokens_to_ids(word): value for word, value in scores.items()}
    forward = model.forward

    def fixed(input_ids=None, token_type_ids=None, **kwargs):
        out = forward(input_ids=input_ids, token_type_ids=token_type_ids, **kwargs)
        logits = torch.zeros_like(out.start_logits)
        for pos, token in enumerate(input_ids[0].tolist()):
            if token in by_id and token_type_ids[0, pos] == 1:  # context tokens only
                logits[0, pos] = by_id[token]
        out.start_logits, out.end_logits = logits, logits.clone()
        return out

    model.forward = fixed
    return model


def test_best_span_of_a_middle_window_beats_the_short_last_window(tokenizer):
    """Issue 10: "kilimanjaro" (start and end logit 3) sits in a middle window, "nile" (2.2) only in
    the short last one. A softmax per window made the last window win (its few tokens share the
    mass); scored across all windows the middle span must win, with its own character offsets."""
    question, options = "Which is the highest mountain?", {"max_seq_len": 128, "doc_stride": 16}
    scores = {"kilimanjaro": 3.0, "nile": 2.2}
    for after in range(16):  # fillers after the answer until it is in a middle window, "nile" in the last only
        context = " ".join([SENTENCES[1]] * 20 + [SENTENCES[2]] + [SENTENCES[1]] * after + [SENTENCES[0]])
        windows = tokenizer(
            question, context, truncation="only_second", max_length=128, stride=16, return_overflowing_tokens=True
        )
        contexts = [
            [t for t, kind in zip(ids, types) if kind == 1]
            for ids, types in zip(windows["input_ids"], windows["token_type_ids"])
        ]
        ids = {word: tokenizer.convert_tokens_to_ids(word) for word in scores}
        holding = {word: [w for w, tokens in enumerate(contexts) if ids[word] in tokens] for word in scores}
        middle = holding["kilimanjaro"]
        if (
            holding["nile"] == [len(contexts) - 1]
            and len(contexts[-1]) < len(contexts[0]) / 2
            and len(middle) == 1
            and 0 < middle[0] < len(contexts) - 1
        ):
            break
    else:
        pytest.fail("no filler count puts 'kilimanjaro' in a middle window and 'nile' in a short last one only")

    def per_window(word: str, window: int) -> float:  # p(start) * p(end) of the old per-window softmax
        p = np.exp(scores[word]) / (np.exp(scores[word]) + len(contexts[window]))  # others and [CLS] at 0
        return float(p * p)

    assert per_window("nile", len(contexts) - 1) > per_window("kilimanjaro", middle[0])  # the old rule's pick
    qa = pipeline("long-question-answering", model=scored_model(tokenizer, scores), tokenizer=tokenizer)
    answers = qa(question=question, context=context, top_k=2, **options)
    assert [a["answer"] for a in answers] == ["Kilimanjaro", "Nile"]
    assert answers[0]["start"] == context.index("Kilimanjaro") and answers[1]["start"] == context.index("Nile")
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in answers)
    assert answers[0]["score"] / answers[1]["score"] == pytest.approx(np.exp(2 * (3.0 - 2.2)), rel=1e-4)


def test_max_seq_len_beyond_the_model_is_named(tokenizer):
    qa = pipeline("long-question-answering", model=scored_model(tokenizer, {"paris": 1.0}, 256), tokenizer=tokenizer)
    context = " ".join(SENTENCES * 40)  # longer than the model: one 100,000-token "window" would break it
    with pytest.raises(
        ValueError,
        match=r"max_seq_len=100000 exceeds the model's limit of 256 tokens.*"
        r"pass max_seq_len <= 256",
    ):
        qa(question="Which city?", context=context, max_seq_len=100000)
    for bad in (0, -5, 1.5):
        with pytest.raises(ValueError, match="max_seq_len must be an integer >= 1"):
            qa(question="Which city?", context=context, max_seq_len=bad)
    with pytest.raises(ValueError, match="doc_stride must be an integer >= 0"):
        qa(question="Which city?", context=context, doc_stride=-1)
    assert qa(question="Which city?", context=context, max_seq_len=256)["answer"] == "Paris"  # the limit itself


def test_summarization_pipeline_generates_from_long_truncated_input(tokenizer):
    config = tiny_pegasus_config(tokenizer, max_position_embeddings=256, eos_token_id=tokenizer.sep_token_id)
    model = longbird.BigBirdPegasusForConditionalGeneration(config).eval()
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 40)  # longer than max_position_embeddings: truncated, not an error
    assert len(tokenizer(document)["input_ids"]) > 256
    # an untrained model may pick only special tokens, which decode to "": keep them out of the draw
    no_specials = {"suppress_tokens": tokenizer.all_special_ids}
    out = summarize(document, max_new_tokens=6, min_new_tokens=6, **no_specials)
    assert isinstance(out, list) and isinstance(out[0]["summary_text"], str) and out[0]["summary_text"]
    expected = model.generate(
        **{
            k: v
            for k, v in tokenizer(document, truncation=True, max_length=256, return_tensors="pt").items()
            if k != "token_type_ids"
        },
        max_new_tokens=6,
        min_new_tokens=6,
        **no_specials,
    )
    assert out[0]["summary_text"] == tokenizer.decode(expected[0], skip_special_tokens=True)
    assert len(summarize([document, SENTENCES[0]], max_new_tokens=4)) == 2


def test_pipelines_reject_wrong_models_and_inputs(tokenizer):
    masked_lm = longbird.BigBirdForMaskedLM(tiny_bigbird_config(tokenizer))
    with pytest.raises(ValueError, match="question-answering model"):
        pipeline("long-question-answering", model=masked_lm, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="encoder-decoder"):
        pipeline("long-summarization", model=masked_lm, tokenizer=tokenizer)
    qa = pipeline("long-question-answering", model=qa_model(tokenizer, "paris"), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="context"):
        qa(question="Which city?", context="   ")
    with pytest.raises(ValueError, match="doc_stride"):
        qa(question="Which city? " * 20, context=" ".join(SENTENCES), max_seq_len=64, doc_stride=32)
    with pytest.raises(ValueError, match="as many contexts"):
        qa(question=["a?", "b?"], context=["one"])
