"""GPU check of the sparse core: executors agree on CUDA, and what each costs.

Run on a CUDA machine: `python scripts/gpu/check_sparse_core.py`. Prints (1) max differences between the
gather, dense and flex executors (forward and gradients) on a padded batch, and (2) eval-forward
and training-step times of a 4-layer, hidden-768 encoder: longbird (gather, flex), transformers'
BigBird block_sparse and a full-attention SDPA encoder, side by side in one process.
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

import longbird
from longbird.modeling.longbird_block_executors import dense_attention, flex_attention, gather_attention
from longbird.modeling.longbird_block_graph import SparsePattern, build_block_graph


def executor_agreement(device: str) -> None:
    torch.manual_seed(0)
    pattern = SparsePattern(block_size=64, num_heads=4, num_random_blocks=3, max_position_embeddings=4096)
    nb, bs = 32, 64
    key_valid = torch.ones(2, nb * bs, dtype=torch.bool)
    key_valid[1, 1500:] = False
    graph = build_block_graph(pattern, 1, nb, [nb, 24], [(0, nb - 1), (0, 23)], key_valid, True).to(device)
    q, k, v = (torch.randn(2, 4, nb * bs, 64, device=device, requires_grad=True) for _ in range(3))
    valid_q = key_valid.to(device)[:, None, :, None]
    results = {}
    for name, fn in (
        ("gather", lambda: gather_attention(q, k, v, graph, 0.125)),
        ("dense", lambda: dense_attention(q, k, v, graph, 0.125)[0]),
        ("flex", lambda: flex_attention(q, k, v, graph, 0.125)),
    ):
        out = fn()
        grads = torch.autograd.grad((out * valid_q).sum(), (q, k, v))
        results[name] = (out.detach() * valid_q, grads)
    for name in ("gather", "flex"):
        out_err = (results[name][0] - results["dense"][0]).abs().max().item()
        grad_err = max((a - b).abs().max().item() for a, b in zip(results[name][1], results["dense"][1]))
        print(f"{name} vs dense on {device}: forward max|diff| {out_err:.2e}, grads max|diff| {grad_err:.2e}")


def timed(fn, device, repeats, warmup=3):
    for _ in range(warmup):  # lazy CUDA module loading and autotuning happen in the first calls
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def build(name: str, length: int):
    sizes = dict(
        hidden_size=768,
        num_hidden_layers=4,
        num_attention_heads=12,
        intermediate_size=3072,
        vocab_size=32000,
        max_position_embeddings=max(length, 4096),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if name.startswith("longbird"):
        backend = name.split("_")[1]
        cfg = longbird.BigBirdConfig(attention_backend=backend, **sizes)
        return longbird.BigBirdModel(cfg, add_pooling_layer=False)
    if name == "hf_bigbird":
        return transformers.BigBirdModel(transformers.BigBirdConfig(**sizes), add_pooling_layer=False)
    cfg = transformers.BertConfig(hidden_act="gelu_pytorch_tanh", **sizes)
    return transformers.BertModel._from_config(cfg, attn_implementation="sdpa", add_pooling_layer=False)


def speed(device: str, lengths, repeats: int) -> None:
    print(f"{'tokens':>7} {'model':>16} {'fwd ms':>9} {'train ms':>9} {'train peak GiB':>15}")
    for length in lengths:
        for name in ("longbird_gather", "longbird_flex", "hf_bigbird", "sdpa_full"):
            torch.manual_seed(0)
            model = build(name, length).to(device)
            ids = torch.randint(5, 32000, (1, length), device=device)

            def fwd(model=model, ids=ids):
                model.eval()
                with torch.no_grad():
                    model(ids)

            def train(model=model, ids=ids):
                model.train()
                model(ids).last_hidden_state.sum().backward()
                model.zero_grad(set_to_none=True)

            try:
                f = timed(fwd, device, repeats) * 1000
                torch.cuda.reset_peak_memory_stats()
                t = timed(train, device, repeats) * 1000
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(f"{length:>7} {name:>16} {f:9.1f} {t:9.1f} {peak:15.2f}", flush=True)
            except Exception as error:  # report and go on with the other models
                print(f"{length:>7} {name:>16} failed: {type(error).__name__}: {str(error)[:200]}", flush=True)
            del model
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}")
    executor_agreement("cuda")
    # Bring the GPU out of its idle clocks first, so the first model timed is not penalised.
    a = torch.randn(8192, 8192, device="cuda")
    start = time.perf_counter()
    while time.perf_counter() - start < 3:
        a @ a
    torch.cuda.synchronize()
    del a
    torch.cuda.empty_cache()
    speed("cuda", args.lengths, args.repeats)


if __name__ == "__main__":
    main()
