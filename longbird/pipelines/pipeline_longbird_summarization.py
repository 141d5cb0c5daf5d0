"""Summarization of long documents, as a transformers pipeline.

transformers 5 removed its `summarization` pipeline; this one brings it back for
encoder-decoder models with long inputs (BigBird-Pegasus). Generation options (`max_new_tokens`,
`num_beams`, `no_repeat_ngram_size`, ...) pass through to `generate()`.

A document longer than `max_input_length` (default: the model's maximum, 4,096 tokens for
BigBird-Pegasus) is never cut silently:

* `strategy="truncate"` (the default) reads the first `max_input_length` tokens and logs a
  warning with the tokens kept and the total;
* `strategy="chunk"` reads all of it, map-reduce style: the document is split into consecutive,
  non-overlapping pieces of equal size (each at most `max_input_length` tokens, the tokenizer's
  special tokens included), every piece is summarized with the same generation options, the
  piece summaries are joined with spaces and summarized again, splitting once more while the
  joined text is still longer than `max_input_length` (at most `MAX_CHUNK_ROUNDS` rounds).

The return format is the one of transformers 4's summarization pipeline: a string gives
`[{"summary_text": ...}]`, a list of N strings gives N dicts (N lists of dicts with
`num_return_sequences > 1`).

Only transformers, torch and the sibling module `input_limit` are imported, so the file also
works as Hub remote code.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.pipelines.base import Pipeline
from transformers.utils import logging

from .input_limit import input_limit, position_limit

logger = logging.get_logger(__name__)

STRATEGIES = ("truncate", "chunk")
#: Map-reduce rounds before "chunk" gives up (each round must shorten the text; with summaries
#: 4x shorter than their pieces, 8 rounds reduce a document 65,000-fold).
MAX_CHUNK_ROUNDS = 8


class LongSummarizationPipeline(Pipeline):
    """`pipeline("long-summarization", model=..., tokenizer=...)` after `import longbird`.

    Call with a string or a list of strings. `max_input_length` is the most tokens one `generate()`
    call reads (default: the model's maximum); `strategy` says what happens to a longer document:
    `"truncate"` (read its beginning, with a warning) or `"chunk"` (summarize model-length pieces,
    then their joined summaries). Every other keyword is a `generate()` option.
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

    def __call__(
        self, documents: str | list[str], *args, **kwargs
    ) -> list[dict[str, str]] | list[list[dict[str, str]]]:
        """Summarize one document (`[{"summary_text": ...}]`) or a list of them (one dict per
        document, or one list of `num_return_sequences` dicts per document when that is > 1)."""
        if isinstance(documents, list) and not documents:
            return []  # the base class would fail on documents[0]
        result = super().__call__(documents, *args, **kwargs)
        # As transformers 4's Text2TextGenerationPipeline: a list of documents with one summary
        # each gives a flat list of dicts, not a list of one-element lists.
        if isinstance(documents, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    # ------------------------------------------------------------------------------------------
    # arguments
    # ------------------------------------------------------------------------------------------

    def _sanitize_parameters(self, max_input_length=None, strategy=None, **generate_kwargs):
        # Validated here, at pipeline(...) and at call time, before any tokenization or generation.
        settings: dict[str, Any] = {}
        if max_input_length is not None:
            if isinstance(max_input_length, bool) or not isinstance(max_input_length, int) or max_input_length <= 0:
                raise ValueError(
                    f"max_input_length must be a positive int (tokens per generate() call), got {max_input_length!r}."
                )
            limit = position_limit(self.model.config)
            if limit is not None and max_input_length > limit:
                raise ValueError(
                    f"max_input_length={max_input_length} exceeds the model's limit of {limit} tokens "
                    f"(config.max_position_embeddings); pass max_input_length={limit} or less, and "
                    f"strategy='chunk' to summarize longer documents in pieces."
                )
            settings["max_input_length"] = max_input_length
        if strategy is not None:
            if strategy not in STRATEGIES:
                raise ValueError(
                    f"strategy must be 'truncate' (read the first max_input_length tokens) or 'chunk' "
                    f"(summarize max_input_length pieces, then their summaries), got {strategy!r}."
                )
            settings["strategy"] = strategy
        # Only what was given: call-time settings are merged over pipeline(...)-time ones.
        return dict(settings), {**settings, **generate_kwargs}, {}

    # ------------------------------------------------------------------------------------------
    # pipeline steps
    # ------------------------------------------------------------------------------------------

    def preprocess(self, document, max_input_length: int | None = None, strategy: str = "truncate"):
        if not isinstance(document, str) or not document.strip():
            raise ValueError(
                f"Each document must be a non-empty string (or pass a list of strings), got {document!r:.60}."
            )
        max_input_length = max_input_length or input_limit(self.model, self.tokenizer)
        if strategy == "chunk":
            # Split in _forward: later rounds split generated text the same way, and a string
            # batches through the pipeline's DataLoader as it is.
            return {"document": document}
        # verbose=False: the total is counted here, the tokenizer need not warn about it.
        encoded = self.tokenizer(document, return_tensors="pt", verbose=False)
        total = encoded["input_ids"].shape[1]
        if max_input_length is not None and total > max_input_length:
            logger.warning(
                f"long-summarization read only the first {max_input_length} of {total} tokens "
                f"({100 * max_input_length / total:.0f}%) of a document (max_input_length={max_input_length}); "
                f"the rest was not summarized. Pass strategy='chunk' to summarize all of it in pieces."
            )
            encoded = self.tokenizer(document, truncation=True, max_length=max_input_length, return_tensors="pt")
        encoded.pop("token_type_ids", None)  # seq2seq encoders take no token types
        return encoded

    def _forward(
        self, model_inputs, strategy: str = "truncate", max_input_length: int | None = None, **generate_kwargs
    ):
        if strategy == "chunk":
            documents = model_inputs["document"]
            documents = [documents] if isinstance(documents, str) else documents  # batch_size 1 or more
            limit = max_input_length or input_limit(self.model, self.tokenizer)
            outputs = [self._summarize_in_pieces(doc, limit, generate_kwargs) for doc in documents]
            return {"output_ids": self._stack(outputs)}
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        # [batch * num_return_sequences, length] -> [batch, num_return_sequences, length], so the
        # pipeline's un-batching hands every document its own sequences.
        batch = model_inputs["input_ids"].shape[0]
        return {"output_ids": output_ids.reshape(batch, output_ids.shape[0] // batch, *output_ids.shape[1:])}

    def postprocess(self, outputs) -> list[dict[str, str]]:
        return [{"summary_text": self._decode(ids)} for ids in outputs["output_ids"][0]]

    # ------------------------------------------------------------------------------------------
    # strategy="chunk"
    # ------------------------------------------------------------------------------------------

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)

    def _pieces(self, text: str, max_input_length: int | None) -> tuple[list[list[int]], int]:
        """`text` as input ids, split into equal pieces of at most `max_input_length` tokens with the
        tokenizer's special tokens around each one; also the unsplit length."""
        full = self.tokenizer(text, verbose=False)["input_ids"]
        if max_input_length is None or len(full) <= max_input_length:
            return [full], len(full)
        bare = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        # The special tokens the tokenizer puts before and after a text (e.g. [CLS] ... [SEP], or
        # ... </s>), found by locating the bare ids inside the full ones; every piece gets them.
        n_special = len(full) - len(bare)
        start = next((i for i in range(n_special + 1) if full[i : i + len(bare)] == bare), None)
        if start is None:
            raise ValueError(
                "strategy='chunk' needs a tokenizer that adds its special tokens before and/or after the text; "
                f"{type(self.tokenizer).__name__} puts them elsewhere. Use strategy='truncate'."
            )
        prefix, suffix = full[:start], full[start + len(bare) :]
        room = max_input_length - len(prefix) - len(suffix)
        if room <= 0:
            raise ValueError(
                f"max_input_length={max_input_length} leaves no room for text next to the tokenizer's "
                f"{len(prefix) + len(suffix)} special tokens; pass a larger max_input_length."
            )
        # Equal sizes (not full pieces and a tiny remainder), so no piece is summarized from a few words.
        count = -(-len(bare) // room)
        size, extra = divmod(len(bare), count)
        pieces, begin = [], 0
        for index in range(count):
            end = begin + size + (index < extra)
            pieces.append(prefix + bare[begin:end] + suffix)
            begin = end
        return pieces, len(full)

    def _generate(self, ids: list[int], generate_kwargs: dict) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=self.device)
        return self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **generate_kwargs)

    def _summarize_in_pieces(self, document: str, max_input_length: int | None, generate_kwargs: dict) -> torch.Tensor:
        """Map-reduce: summarize pieces, join their summaries, repeat until the text fits in one
        generate() call. Returns that call's sequences, [num_return_sequences, length]."""
        # Pieces need one summary each; num_return_sequences applies to the final summary only.
        piece_kwargs = {**generate_kwargs, "num_return_sequences": 1}
        text = document
        for round_ in range(1, MAX_CHUNK_ROUNDS + 1):
            pieces, total = self._pieces(text, max_input_length)
            if len(pieces) == 1:
                return self._generate(pieces[0], generate_kwargs)
            logger.info(
                f"long-summarization (strategy='chunk', round {round_}): {total} tokens in {len(pieces)} pieces "
                f"of at most {max_input_length}."
            )
            text = " ".join(self._decode(self._generate(piece, piece_kwargs)[0]) for piece in pieces)
            shorter = len(self.tokenizer(text, verbose=False)["input_ids"])
            if shorter >= total:
                raise ValueError(
                    f"strategy='chunk' cannot shorten this document: the summaries of its {len(pieces)} pieces are "
                    f"{shorter} tokens, not fewer than the {total} tokens summarized. Generate shorter summaries "
                    f"(e.g. a smaller max_new_tokens / min_new_tokens) or pass a larger max_input_length."
                )
        raise ValueError(
            f"strategy='chunk' stopped after {MAX_CHUNK_ROUNDS} rounds with summaries still longer than "
            f"max_input_length={max_input_length} tokens; generate shorter summaries (e.g. a smaller max_new_tokens)."
        )

    def _stack(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Per-document [num_return_sequences, length_i] -> [documents, num_return_sequences, max length],
        right-padded with the pad token (dropped again by decoding)."""
        length = max(out.shape[-1] for out in outputs)
        pad = self.tokenizer.pad_token_id
        pad = self.model.config.pad_token_id if pad is None else pad
        padded = [torch.nn.functional.pad(out, (0, length - out.shape[-1]), value=pad or 0) for out in outputs]
        return torch.stack(padded)
