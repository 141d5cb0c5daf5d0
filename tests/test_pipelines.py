"""The long-question-answering and long-summarization pipelines (transformers 5 removed its own)."""

import pytest
import torch
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
    config = longbird.BigBirdConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        block_size=8, num_random_blocks=1, max_position_embeddings=512, sep_token_id=tokenizer.sep_token_id,
    )
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


def test_summarization_pipeline_generates_from_long_truncated_input(tokenizer):
    config = longbird.BigBirdPegasusConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=256,
        block_size=8, num_random_blocks=1, pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    model = longbird.BigBirdPegasusForConditionalGeneration(config).eval()
    summarize = pipeline("long-summarization", model=model, tokenizer=tokenizer)
    document = " ".join(SENTENCES * 40)  # longer than max_position_embeddings: truncated, not an error
    assert len(tokenizer(document)["input_ids"]) > 256
    out = summarize(document, max_new_tokens=6, min_new_tokens=6)
    assert isinstance(out, list) and isinstance(out[0]["summary_text"], str) and out[0]["summary_text"]
    expected = model.generate(
        **{k: v for k, v in tokenizer(document, truncation=True, max_length=256, return_tensors="pt").items()
           if k != "token_type_ids"},
        max_new_tokens=6, min_new_tokens=6,
    )
    assert out[0]["summary_text"] == tokenizer.decode(expected[0], skip_special_tokens=True)
    assert len(summarize([document, SENTENCES[0]], max_new_tokens=4)) == 2


def test_pipelines_reject_wrong_models_and_inputs(tokenizer):
    masked_lm = longbird.BigBirdForMaskedLM(
        longbird.BigBirdConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, block_size=8, num_random_blocks=1)
    )
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
