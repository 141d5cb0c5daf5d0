"""Summarization of long documents, as a transformers pipeline.

transformers 5 removed its `summarization` pipeline; this one brings it back for
encoder-decoder models with long inputs (BigBird-Pegasus): the document is truncated to the
model's maximum input length (4,096 tokens for BigBird-Pegasus, not 1,024) and summarized with
`generate()`; generation options (`max_new_tokens`, `num_beams`, `no_repeat_ngram_size`, ...)
pass through.

Only transformers and torch are imported, so the file also works as Hub remote code.
"""

from __future__ import annotations

from transformers.pipelines.base import Pipeline


class LongSummarizationPipeline(Pipeline):
    """`pipeline("long-summarization", model=..., tokenizer=...)` after `import longbird`.

    Call with a string or a list of strings; returns `[{"summary_text": ...}]` per document.
    `max_input_length` truncates documents (default: the model's maximum); every other keyword is
    a `generate()` option.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.model.config, "is_encoder_decoder", False) or not hasattr(self.model, "generate"):
            raise ValueError(
                f"long-summarization needs an encoder-decoder model with generate() (e.g. "
                f"BigBirdPegasusForConditionalGeneration), got {type(self.model).__name__}."
            )

    def _sanitize_parameters(self, max_input_length=None, **generate_kwargs):
        preprocess = {} if max_input_length is None else {"max_input_length": max_input_length}
        return preprocess, generate_kwargs, {}

    def preprocess(self, document, max_input_length: int | None = None):
        if not isinstance(document, str) or not document.strip():
            raise ValueError(f"Each document must be a non-empty string, got {document!r:.60}.")
        if max_input_length is None:
            limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
            max_input_length = min(x for x in limits if isinstance(x, int) and x > 0)
        encoded = self.tokenizer(document, truncation=True, max_length=max_input_length, return_tensors="pt")
        encoded.pop("token_type_ids", None)  # seq2seq encoders take no token types
        return encoded

    def _forward(self, inputs, **generate_kwargs):
        return {"output_ids": self.model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, outputs):
        return [
            {"summary_text": self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)}
            for ids in outputs["output_ids"]
        ]
