"""Helpers shared by test modules: tiny model configs over a tokenizer's vocabulary, JSONL data files, and
running the code of an exported folder's README.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path, as for hub_server). Each config
takes `tokenizer`'s length as its vocabulary; `overrides` set what a test needs beyond the tiny sizes
(max_position_embeddings, token ids, ...), or replace them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import longbird


def tiny_bigbird_config(tokenizer, **overrides) -> longbird.BigBirdConfig:
    """One BigBird layer: hidden 32, 2 heads, FFN 64, block 8, 1 random block."""
    sizes = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        block_size=8,
        num_random_blocks=1,
    )
    return longbird.BigBirdConfig(vocab_size=len(tokenizer), **{**sizes, **overrides})


def tiny_etc_config(tokenizer, **overrides) -> longbird.EtcConfig:
    """One ETC layer: hidden 32, 2 heads, FFN 64, local radius 4, relative positions up to 3 (12 ids)."""
    sizes = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        local_radius=4,
        relative_pos_max_distance=3,
        relative_vocab_size=12,
    )
    return longbird.EtcConfig(vocab_size=len(tokenizer), **{**sizes, **overrides})


def tiny_pegasus_config(tokenizer, **overrides) -> longbird.BigBirdPegasusConfig:
    """One encoder and one decoder layer: d_model 32, 2 heads, FFN 32, block 8, 1 random block; the pad
    id (also the decoder start) is `tokenizer`'s."""
    sizes = dict(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        block_size=8,
        num_random_blocks=1,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return longbird.BigBirdPegasusConfig(vocab_size=len(tokenizer), **{**sizes, **overrides})


def write_jsonl(path, rows) -> str:
    """`rows` as JSON Lines at `path`; returns the path as a string (for a --*_file flag)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


#: a tiny BigBird config valid for transformers' and longbird's BigBirdConfig (parity tests)
TINY_BIGBIRD = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    block_size=8,
    num_random_blocks=3,
    max_position_embeddings=512,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    sep_token_id=5,
)


#: a tiny BigBird-Pegasus config valid for transformers' and longbird's config (parity tests)
PAD, EOS, START = 0, 1, 2
VOCAB = 99
TINY_PEGASUS = dict(
    vocab_size=VOCAB,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
    block_size=8,
    num_random_blocks=2,
    max_position_embeddings=512,
    dropout=0.0,
    attention_dropout=0.0,
    # 10x the default init: sharper attention, so a wrong block / mask moves outputs far above
    # the tolerances. Weights are the same in both models anyway.
    init_std=0.2,
    pad_token_id=PAD,
    eos_token_id=EOS,
    bos_token_id=START,
    decoder_start_token_id=START,
)
#: ETC-encoder fields for a tiny BigBird-Pegasus with encoder_type='etc'
TINY_PEGASUS_ETC = dict(local_radius=8, relative_pos_max_distance=4, relative_vocab_size=12, num_tokens_per_block=10)


def run_readme_code(folder: Path) -> str:
    """Runs the Python block of an exported folder's README.md in that folder; returns its stdout."""
    text = (folder / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_bench(script: str, *args: str) -> str:
    """Runs `bench/<script>` with `args` (give it `--out`); asserts it succeeded; returns its stdout."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "bench" / script), *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
