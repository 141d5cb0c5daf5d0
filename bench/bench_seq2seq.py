#!/usr/bin/env python
"""Side-by-side CPU benchmark: longbird's BigBird-Pegasus vs transformers' BigBirdPegasus.

Both models: d_model 768, 12 heads, FFN 3072, 4 encoder + 4 decoder layers, vocab 32000,
block_sparse (block 64, 3 random blocks), max_position_embeddings 4096, fp32, batch 1, dropout
0, seeded random init; the same weights (ours loads the reference's saved folder). Modes:

  encoder   encoder forward over a `--length`-token input
  generate  greedy generate() of exactly `--new-tokens` tokens (min_new_tokens = max_new_tokens)
            from a `--length`-token input, end to end (encoder + decoder with the cache)

Each (model, mode) runs in a fresh subprocess (one warm-up, `--repeats` timed runs, median) and
reports its peak RSS (ru_maxrss of the whole process). Runs are interleaved per mode.

    python bench/bench_seq2seq.py                       # 4096 tokens, 128 new tokens
    python bench/bench_seq2seq.py --length 1024 --new-tokens 16 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("longbird", "hf")
MODES = ("encoder", "generate")
SIZES = dict(
    vocab_size=32000,
    d_model=768,
    encoder_layers=4,
    decoder_layers=4,
    encoder_attention_heads=12,
    decoder_attention_heads=12,
    encoder_ffn_dim=3072,
    decoder_ffn_dim=3072,
    max_position_embeddings=4096,
    block_size=64,
    num_random_blocks=3,
    attention_type="block_sparse",
    dropout=0.0,
    attention_dropout=0.0,
)


def reference_folder(cache: Path) -> Path:
    """transformers' model with seeded random weights, saved once; both models load it."""
    folder = cache / "reference"
    if not (folder / "config.json").exists():
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(**SIZES))
        model.save_pretrained(folder)
    return folder


def worker(args) -> None:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    if args.model == "longbird":
        import longbird

        model = longbird.BigBirdPegasusForConditionalGeneration.from_pretrained(args.folder)
    else:
        model = transformers.BigBirdPegasusForConditionalGeneration.from_pretrained(args.folder)
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    input_ids = torch.randint(3, SIZES["vocab_size"], (1, args.length), generator=gen)
    attention_mask = torch.ones_like(input_ids)

    def step():
        with torch.no_grad():
            if args.mode == "encoder":
                return model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return model.generate(
                input_ids,
                attention_mask=attention_mask,
                do_sample=False,
                num_beams=1,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
            )

    out = step()  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
    record = dict(
        model=args.model,
        mode=args.mode,
        median_s=statistics.median(times),
        times_s=times,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        output=out[0, :12].tolist() if args.mode == "generate" else None,
    )
    print("RESULT " + json.dumps(record), flush=True)


def run(args, folder: Path, model: str, mode: str) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model, "--mode", mode,
        "--folder", str(folder), "--length", str(args.length), "--new-tokens", str(args.new_tokens),
        "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{model} {mode} failed:\n{proc.stderr[-2000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "seq2seq.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = reference_folder(Path(tmp))
        results = {}
        for mode in MODES:
            for model in MODELS:
                results[model, mode] = r = run(args, folder, model, mode)
                print(f"{mode:9s} {model:9s} {r['median_s']:8.3f} s  peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    lines = [
        "# BigBird-Pegasus benchmark (CPU)",
        "",
        f"- input {args.length} tokens, generate {args.new_tokens} new tokens (greedy), batch 1, fp32, "
        f"{args.threads} threads, median of {args.repeats} after a warm-up",
        "",
        "| mode | longbird s | transformers s | speedup | longbird peak MiB | transformers peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        ours, ref = results["longbird", mode], results["hf", mode]
        lines.append(
            f"| {mode} | {ours['median_s']:.3f} | {ref['median_s']:.3f} | {ref['median_s'] / ours['median_s']:.2f}x "
            f"| {ours['peak_rss_mib']:.0f} | {ref['peak_rss_mib']:.0f} |"
        )
    target = results["hf", "generate"]["median_s"] / results["longbird", "generate"]["median_s"]
    lines += ["", f"- generate speedup {target:.2f}x [target >= 1.5] **{'PASS' if target >= 1.5 else 'MISS'}**"]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
