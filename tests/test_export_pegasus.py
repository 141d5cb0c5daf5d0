"""BigBird-Pegasus exported as `encoder_model` + `decoder_model` (longbird.export.seq2seq).

Tiny models, each exported once per module (ONNX, and the `torch.export` programs): the encoder's
outputs, the decoder step (first step with an empty cache, one token at a time, several tokens at
once) and greedy ids from ONNX Runtime against the eager model and `model.generate()`. One model with
a dense (`original_full`) encoder, one with inputs long enough for the block-sparse pattern.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from helpers import EOS, PAD, START, TINY_PEGASUS, VOCAB, run_readme_code

import longbird
from longbird.export import export_model, load_exported
from longbird.export.graphs import write_graph
from longbird.export.seq2seq import greedy_generate, pegasus_graphs
from longbird.tokenization import train_tokenizer

ort = pytest.importorskip("onnxruntime")
transformers.logging.set_verbosity_error()

ATOL = 1e-4
#: (attention_type, source lengths of the batch of 3): 21 and 203 are not multiples of the block (8)
CASES = {
    "original_full": ("original_full", (21, 16, 9)),
    "block_sparse": ("block_sparse", (203, 160, 120)),
}
NEW_TOKENS = 10


def make_model(attention_type: str) -> longbird.BigBirdPegasusForConditionalGeneration:
    torch.manual_seed(0)
    config = longbird.BigBirdPegasusConfig(**{**TINY_PEGASUS, "attention_type": attention_type})
    return longbird.BigBirdPegasusForConditionalGeneration(config).eval()


def padded_batch(lengths, seed=1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded content ids (3..98), rows of the given real lengths."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, TINY_PEGASUS["vocab_size"], (len(lengths), max(lengths)), generator=generator)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


class Exported:
    """A model, its graphs, their ONNX sessions and `torch.export` programs (each written and read back)."""

    def __init__(self, attention_type: str, lengths, folder):
        self.model = make_model(attention_type)
        self.lengths = lengths
        # the ONNX files as users get them: `longbird export` of a saved checkpoint with its tokenizer
        self.model.save_pretrained(folder / "checkpoint")
        train_tokenizer(["a short text to summarize ."] * 20, vocab_size=VOCAB - 20).save_pretrained(
            folder / "checkpoint"
        )
        self.folder = folder / "onnx"
        export_model(folder / "checkpoint", self.folder, "onnx")
        self.sessions = {
            name: ort.InferenceSession(str(self.folder / f"{name}.onnx")) for name in ("encoder_model", "decoder_model")
        }
        self.graphs = {graph.name: graph for graph in pegasus_graphs(self.model)}
        programs = {name: graph.program() for name, graph in self.graphs.items()}
        # the `.pt2` files `longbird export --format torch-export` writes, loaded back
        self.programs = {
            name: torch.export.load(write_graph(graph, folder, "torch-export", programs[name]))
            for name, graph in self.graphs.items()
        }

    def encode(self, ids, mask) -> dict[str, np.ndarray]:
        session = self.sessions["encoder_model"]
        values = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        return {output.name: value for output, value in zip(session.get_outputs(), values)}

    def step(self, encoded, mask, tokens, past=None) -> dict[str, np.ndarray]:
        """One ONNX decoder step; `past`: a previous step's outputs (None: the empty first-step cache)."""
        session = self.sessions["decoder_model"]
        feeds = {"input_ids": tokens.numpy(), "encoder_attention_mask": mask.numpy()}
        for name, value in encoded.items():
            if name.startswith("present."):
                feeds[name.replace("present.", "past_key_values.")] = value
        for model_input in session.get_inputs():
            if ".decoder." in model_input.name:
                present = model_input.name.replace("past_key_values.", "present.")
                if past is None:  # the cross-attention keys' batch, heads and head size; no positions
                    batch, heads, _, head_dim = encoded[present.replace(".decoder.", ".encoder.")].shape
                    feeds[model_input.name] = np.zeros((batch, heads, 0, head_dim), np.float32)
                else:
                    feeds[model_input.name] = past[present]
        values = session.run(None, feeds)
        return {output.name: value for output, value in zip(session.get_outputs(), values)}


# the dense-encoder case only under `-m slow`: each case exports a model (~30-70 s on 2 cores), and the
# sparse one is what the default run must cover
@pytest.fixture(scope="module", params=[pytest.param("original_full", marks=pytest.mark.slow), "block_sparse"])
def exported(request, tmp_path_factory) -> Exported:
    attention_type, lengths = CASES[request.param]
    return Exported(attention_type, lengths, tmp_path_factory.mktemp(f"pegasus-{request.param}"))


def test_output_attentions_is_refused():
    model = make_model("original_full")
    model.config.output_attentions = True
    with pytest.raises(ValueError, match="output_attentions"):
        pegasus_graphs(model)


def test_encoder_matches_eager(exported):
    ids, mask = padded_batch(exported.lengths)
    got = exported.encode(ids, mask)
    with torch.no_grad():
        hidden = exported.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    np.testing.assert_allclose(got["last_hidden_state"], hidden.numpy(), atol=ATOL, rtol=0)
    attention = exported.model.get_decoder().layers[1].encoder_attn
    with torch.no_grad():
        key = attention.k_proj(hidden).view(*hidden.shape[:2], -1, attention.head_dim).transpose(1, 2)
    np.testing.assert_allclose(got["present.1.encoder.key"], key.numpy(), atol=ATOL, rtol=0)


def test_decoder_steps_match_eager(exported):
    """Logits and self-attention caches: all targets in one step from an empty cache, and one token per
    step, against the eager model on the whole target sequence."""
    ids, mask = padded_batch(exported.lengths)
    targets = torch.randint(3, TINY_PEGASUS["vocab_size"], (3, 6), generator=torch.Generator().manual_seed(2))
    targets[:, 0] = START
    with torch.no_grad():
        ref = exported.model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, use_cache=True)
    encoded = exported.encode(ids, mask)

    at_once = exported.step(encoded, mask, targets)
    np.testing.assert_allclose(at_once["logits"], ref.logits.numpy(), atol=ATOL, rtol=0)
    cache = ref.cache.self_attention_cache.layers[1]
    np.testing.assert_allclose(at_once["present.1.decoder.value"], cache.values.numpy(), atol=ATOL, rtol=0)

    past = None
    for position in range(targets.shape[1]):
        past = exported.step(encoded, mask, targets[:, position : position + 1], past)
        np.testing.assert_allclose(past["logits"][:, 0], ref.logits[:, position].numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(past["present.0.decoder.key"], at_once["present.0.decoder.key"], atol=ATOL, rtol=0)


def test_programs_match_eager(exported):
    """The `torch.export` programs at shapes other than the traced ones (batch 3, another length)."""
    ids, mask = padded_batch(exported.lengths)
    encoder = exported.graphs["encoder_model"].module
    with torch.no_grad():
        want = encoder(ids, mask)
        got = exported.programs["encoder_model"].module()(ids, mask)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
        step, program = exported.graphs["decoder_model"].module, exported.programs["decoder_model"].module()
        for past, new in ((0, 1), (5, 3)):  # the first step (empty cache), a later one with several tokens
            caches = []
            for i in range(exported.model.config.decoder_layers):
                caches += [torch.randn(3, 4, past, 8), torch.randn(3, 4, past, 8), want[1 + 2 * i], want[2 + 2 * i]]
            tokens = torch.arange(5, 5 + new).expand(3, new)
            for a, b in zip(program(tokens, mask, *caches), step(tokens, mask, *caches)):
                torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_greedy_matches_generate(exported):
    ids, mask = padded_batch(exported.lengths)
    model = exported.model
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=NEW_TOKENS)
    sessions = exported.sessions
    got = greedy_generate(
        sessions["encoder_model"],
        sessions["decoder_model"],
        ids.numpy(),
        mask.numpy(),
        NEW_TOKENS,
        model.generation_config,
    )
    np.testing.assert_array_equal(got, want.numpy())


def test_greedy_early_eos_matches_generate(exported):
    """A row that ends early is padded, the loop stops when all have ended: the token the model picks
    third for row 0 is made an EOS id too."""
    ids, mask = padded_batch(exported.lengths)
    model = exported.model
    with torch.no_grad():
        plain = model.generate(ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=NEW_TOKENS)
    settings = transformers.GenerationConfig(**model.generation_config.to_dict())
    settings.eos_token_id = [EOS, int(plain[0, 3])]
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, generation_config=settings, max_new_tokens=NEW_TOKENS)
    sessions = exported.sessions
    got = greedy_generate(
        sessions["encoder_model"], sessions["decoder_model"], ids.numpy(), mask.numpy(), NEW_TOKENS, settings
    )
    np.testing.assert_array_equal(got, want.numpy())
    assert (got[0, 4:] == PAD).all()


def test_greedy_eos_settings_match_generate(exported):
    """min_length and forced_eos_token_id (set on real Pegasus checkpoints)."""
    ids, mask = padded_batch(exported.lengths, seed=3)
    model = exported.model
    settings = transformers.GenerationConfig(**{**model.generation_config.to_dict(), "min_length": 4})
    settings.forced_eos_token_id = EOS
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, generation_config=settings, max_new_tokens=6, do_sample=False)
    sessions = exported.sessions
    got = greedy_generate(sessions["encoder_model"], sessions["decoder_model"], ids.numpy(), mask.numpy(), 6, settings)
    np.testing.assert_array_equal(got, want.numpy())
    assert (got[:, -1] == EOS).all()


def test_unsupported_generation_setting_is_refused(exported):
    settings = transformers.GenerationConfig(decoder_start_token_id=START, eos_token_id=EOS, no_repeat_ngram_size=3)
    ids, mask = padded_batch(exported.lengths)
    sessions = exported.sessions
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        greedy_generate(sessions["encoder_model"], sessions["decoder_model"], ids.numpy(), mask.numpy(), 3, settings)


def test_exported_folder_generates_like_pytorch(exported):
    """`load_exported` of the folder `longbird export` wrote: `generate()` gives PyTorch's greedy ids,
    bad input is refused before the sessions run, and the folder's README code runs."""
    ids, mask = padded_batch(exported.lengths)
    model = exported.model
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=NEW_TOKENS)
    onnx_model = load_exported(exported.folder)
    assert type(onnx_model).__name__ == "ORTModelForSeq2SeqLM"
    got = onnx_model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        onnx_model.generate(torch.full((1, model.config.max_position_embeddings + 1), 5), max_new_tokens=2)
    with pytest.raises(ValueError, match="greedily"):
        onnx_model.generate(ids, attention_mask=mask, num_beams=4)
    assert "encoder_model.onnx" in (exported.folder / "README.md").read_text()
    assert "tensor([[" in run_readme_code(exported.folder)  # the README's generate() printed its ids
