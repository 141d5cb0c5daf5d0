"""`longbird speed`: build a BigBird encoder, run long inputs through it, print speed and memory.

Each measurement runs in a fresh process so its peak memory (ru_maxrss) is its own. The model is
randomly initialised: this shows what the sparse core costs, not what a trained model predicts.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

DEFAULT_LENGTHS = (1024, 4096)


def _measure(attention_type: str, length: int, args: dict, queue) -> None:
    import torch

    from longbird import BigBirdConfig, BigBirdModel

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])
    config = BigBirdConfig(
        vocab_size=32000,
        hidden_size=args["hidden"],
        num_hidden_layers=args["layers"],
        num_attention_heads=args["hidden"] // 64,
        intermediate_size=4 * args["hidden"],
        max_position_embeddings=max(length, 4096),
        attention_type=attention_type,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BigBirdModel(config, add_pooling_layer=False).eval()
    input_ids = torch.randint(5, config.vocab_size, (1, length))
    with torch.no_grad():
        model(input_ids)  # warm-up
        start = time.perf_counter()
        for _ in range(args["repeats"]):
            model(input_ids)
        seconds = (time.perf_counter() - start) / args["repeats"]
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run(lengths=DEFAULT_LENGTHS, hidden: int = 768, layers: int = 4, repeats: int = 2, threads: int = 2) -> list[dict]:
    """Measure eval forward time and peak memory of block_sparse vs original_full attention."""
    ctx = mp.get_context("spawn")
    args = {"hidden": hidden, "layers": layers, "repeats": repeats, "threads": threads}
    rows = []
    for length in lengths:
        for attention_type in ("block_sparse", "original_full"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(attention_type, length, args, queue))
            proc.start()
            seconds, peak_mib = queue.get()
            proc.join()
            rows.append(
                {
                    "length": length,
                    "attention": attention_type,
                    "seconds": seconds,
                    "tokens_per_s": length / seconds,
                    "peak_mib": peak_mib,
                }
            )
            print(
                f"{length:>7} {attention_type:>14} {seconds:8.2f} s {length / seconds:10.0f} tok/s {peak_mib:9.0f} MiB",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="longbird speed", description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"BigBird encoder, hidden {args.hidden}, {args.layers} layers, block 64, 3 random blocks, batch 1, "
        f"eval forward on CPU ({args.threads} threads); random weights and random tokens."
    )
    print(f"{'tokens':>7} {'attention':>14} {'time':>10} {'throughput':>16} {'peak memory':>13}")
    rows = run(args.lengths, args.hidden, args.layers, args.repeats, args.threads)
    for length in args.lengths:
        sparse, full = (r for r in rows if r["length"] == length)
        print(
            f"{length} tokens: block_sparse is {full['seconds'] / sparse['seconds']:.2f}x the speed of "
            f"full attention (same weights, same process setup)."
        )
