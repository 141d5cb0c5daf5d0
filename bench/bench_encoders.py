#!/usr/bin/env python
"""Side-by-side CPU benchmark of long-sequence encoders (one invocation, one table).

Models (all: hidden 768, 12 heads, FFN 3072, 4 layers, vocab 32000, batch 1, fp32, dropout 0,
seeded random init, max_position_embeddings 16384):

  longbird    longbird.BigBirdModel, block_sparse, block 64, 3 random blocks
  hf_bigbird  transformers.BigBirdModel, same config (the reference)
  sdpa_full   transformers.BertModel, full attention through SDPA, gelu_pytorch_tanh
  longformer  transformers.LongformerModel, attention_window 256, no global tokens
  floor       longbird's model with the attention itself replaced by identity
              (run_attention -> value): embeddings, q/k/v/out projections, FFN, LayerNorm only
  etc         longbird.EtcModel: the released layout (ten projections, shared FFN, hard g2l),
              local_radius 84, relative_pos_max_distance 12, and `--etc-globals` (150) global
              tokens, one per equal-length "sentence" of the long input, at every length

The parent process runs one fresh subprocess (this script with --worker) per
(model, length, mode); the worker builds the model, does one warm-up, times `--repeats` runs,
and prints one JSON line with the times and resource.getrusage(RUSAGE_SELF).ru_maxrss (peak
RSS of that whole process: nothing is subtracted). Runs are interleaved: for each length, for
each mode, every model in turn.

    python bench/bench_encoders.py                                    # full run
    python bench/bench_encoders.py --lengths 1024 --repeats 1         # smoke run
    python bench/bench_encoders.py --models longbird,hf_bigbird --lengths 4096,8192 --skip-train

Output: Markdown (environment, table, target summary) on stdout and in
bench/results/encoders.md; raw worker records in bench/results/encoders.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    ROOT,
    SIZES,
    bigbird_model,
    environment_lines,
    fmt_mem,
    fmt_ratio,
    fmt_time,
    inv,
    peak_mib,
    ratio,
    run_all,
    run_worker,
    table_head,
    table_row,
    target_line,
    time_step,
)

MODELS = ("longbird", "hf_bigbird", "sdpa_full", "longformer", "floor", "etc")
LENGTHS = (1024, 4096, 8192, 16384)
MODES = ("fwd", "train")
MAX_POS = 16384
# How time grows with length, used only to predict whether a run can finish before --timeout.
GROWTH = {"sdpa_full": 2.0}
DEFAULT_GROWTH = 1.0
# Skipped by default (when predicted too slow) unless --no-skip.
PREDICT_SKIP = {("hf_bigbird", "train"), ("sdpa_full", "train")}


# ----------------------------------------------------------------------------------------------
# Worker: one (model, length, mode) in this fresh process
# ----------------------------------------------------------------------------------------------


def build_model(name: str, floor_keep_qk: bool, backend: str):
    import torch

    torch.manual_seed(0)
    if name == "etc":
        import longbird

        return longbird.EtcModel(longbird.EtcConfig(**SIZES, local_radius=84, relative_pos_max_distance=12))
    if name in ("longbird", "floor"):
        if name == "floor":
            import longbird.modeling.modeling_longbird_bigbird as lbm

            if floor_keep_qk:
                # Keep q and k in the autograd graph (their projections get a zero gradient) so
                # the floor's backward also runs all four attention projections.
                def no_attention(query, key, value, graph, scale, backend="auto", output_attentions=False):
                    return value + 0.0 * (query.sum() + key.sum()), None
            else:

                def no_attention(query, key, value, graph, scale, backend="auto", output_attentions=False):
                    return value, None

            lbm.run_attention = no_attention
        return bigbird_model("longbird", MAX_POS, backend)
    if name == "hf_bigbird":
        return bigbird_model("hf_bigbird", MAX_POS, backend)
    import transformers

    if name == "sdpa_full":
        config = transformers.BertConfig(**SIZES, max_position_embeddings=MAX_POS, hidden_act="gelu_pytorch_tanh")
        return transformers.BertModel._from_config(config, attn_implementation="sdpa", add_pooling_layer=False)
    if name == "longformer":
        config = transformers.LongformerConfig(
            **SIZES,
            max_position_embeddings=MAX_POS + 2,  # positions start after padding_idx (1)
            attention_window=256,
            hidden_act="gelu_pytorch_tanh",
        )
        return transformers.LongformerModel(config, add_pooling_layer=False)
    raise ValueError(f"unknown model {name!r}")


def worker(args) -> None:
    t_start = time.perf_counter()
    deadline = t_start + 0.9 * args.timeout
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.floor_keep_qk, args.longbird_backend)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(1234)
    # ids >= 3: never a pad id (0 for BERT/BigBird, 1 for Longformer)
    input_ids = torch.randint(3, SIZES["vocab_size"], (1, args.length), generator=gen)
    inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    if args.model == "etc":
        globals_ = args.etc_globals
        inputs["global_input_ids"] = torch.ones(1, globals_, dtype=torch.long)
        inputs["sentence_ids"] = torch.arange(args.length).unsqueeze(0) * globals_ // args.length
    rss_built = peak_mib()

    if args.mode == "fwd":
        model.eval()

        def step():
            with torch.no_grad():
                model(**inputs)
    else:
        model.train()

        def step():
            model(**inputs).last_hidden_state.sum().backward()
            model.zero_grad(set_to_none=True)

    # one warm-up, then fewer repeats (at least one) if the warm-up says they won't fit the time limit
    timed = time_step(step, args.repeats, deadline - time.perf_counter())
    record = dict(
        model=args.model,
        length=args.length,
        mode=args.mode,
        status="ok",
        **timed,
        repeats_requested=args.repeats,
        peak_rss_mib=peak_mib(),
        rss_after_build_mib=rss_built,
        params=n_params,
        threads=torch.get_num_threads(),
        wall_s=time.perf_counter() - t_start,
    )
    print("RESULT " + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------------------------
# Parent: spawn, guard, collect
# ----------------------------------------------------------------------------------------------


def run_one(args, model: str, length: int, mode: str, mem_limit_mib: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model", model,
        "--length", str(length),
        "--mode", mode,
        "--repeats", str(args.repeats),
        "--threads", str(args.threads),
        "--timeout", str(args.timeout),
        "--longbird-backend", args.longbird_backend,
        "--etc-globals", str(args.etc_globals),
    ]  # fmt: skip
    if not args.floor_keep_qk:
        cmd.append("--floor-drop-qk")
    base = dict(model=model, length=length, mode=mode)
    return run_worker(cmd, base, args.threads, args.timeout, mem_limit_mib)


def predicted_skip(args, results: dict, model: str, length: int, mode: str) -> str | None:
    """A reason to skip this run, or None."""
    earlier = [(n, r) for (m, n, md), r in results.items() if m == model and md == mode and n < length]
    for n, r in earlier:
        if r["status"] != "ok" and not r["status"].startswith("skipped: predicted"):
            short = "OOM" if r["status"].startswith("OOM") else r["status"].replace("skipped: ", "")
            return f"skipped: {short} at {n}"
    if args.no_skip or (model, mode) not in PREDICT_SKIP:
        return None
    ok = [(n, r) for n, r in earlier if r["status"] == "ok"]
    if not ok:
        return None
    l0, r0 = max(ok, key=lambda x: x[0])
    step = r0["median_s"] * (length / l0) ** GROWTH.get(model, DEFAULT_GROWTH)
    # warm-up plus the requested repeats must fit in the limit
    if step * (1 + args.repeats) > args.timeout:
        return f"skipped: predicted ~{step:.0f} s/step"
    return None


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def environment(args) -> list[str]:
    return [
        *environment_lines(args.threads),
        f"- repeats {args.repeats} (median, after 1 warm-up), timeout {args.timeout} s per run, "
        f"longbird attention_backend={args.longbird_backend}, floor keeps q/k in backward: {args.floor_keep_qk}",
    ]


def report(args, results: dict, env_lines: list[str]) -> str:
    g = lambda m, n, md: results.get((m, n, md))  # noqa: E731
    lines = ["# Encoder benchmark (CPU)", "", *env_lines, ""]
    header = [
        "length", "model", "fwd s", "train s", "fwd peak MiB", "train peak MiB",
        "fwd × hf_bigbird", "train × hf_bigbird", "train mem × hf_bigbird", "fwd × floor", "train × floor",
    ]  # fmt: skip
    lines += table_head(header)
    for length in args.lengths:
        for m in args.models:
            f, t = g(m, length, "fwd"), g(m, length, "train")
            hf_f, hf_t = g("hf_bigbird", length, "fwd"), g("hf_bigbird", length, "train")
            fl_f, fl_t = g("floor", length, "fwd"), g("floor", length, "train")
            row = [
                str(length),
                m,
                fmt_time(f, args.repeats),
                "skipped (--skip-train)" if args.skip_train else fmt_time(t, args.repeats),
                fmt_mem(f),
                fmt_mem(t),
                fmt_ratio(ratio(f, hf_f, "median_s")),
                fmt_ratio(ratio(t, hf_t, "median_s")),
                fmt_ratio(ratio(t, hf_t, "peak_rss_mib")),
                fmt_ratio(ratio(f, fl_f, "median_s")),
                fmt_ratio(ratio(t, fl_t, "median_s")),
            ]
            lines.append(table_row(row))
    lines += [
        "",
        "Times: median seconds per call (batch 1); `(n=k)`: only k repeats fitted in the timeout. "
        "Peak MiB: ru_maxrss of a fresh process running only that model, length and mode "
        "(includes the Python/torch baseline). Ratios `× X` are this model / X "
        "(time or memory; < 1 means faster or smaller than X).",
        "",
        "## Targets",
        "",
    ]
    lines += summary(results)
    return "\n".join(lines) + "\n"


def summary(results: dict) -> list[str]:
    g = lambda m, n, md: results.get((m, n, md))  # noqa: E731
    out = []

    def target(label: str, value: float | None, op: str, bound: float) -> None:
        out.append(target_line(label, value, op, bound))

    for length in (4096, 8192):
        lb_f, lb_t = g("longbird", length, "fwd"), g("longbird", length, "train")
        target(f"{length}: fwd speedup longbird vs hf_bigbird",
               inv(ratio(lb_f, g("hf_bigbird", length, "fwd"), "median_s")), ">=", 2.5)  # fmt: skip
        target(f"{length}: train speedup longbird vs hf_bigbird",
               inv(ratio(lb_t, g("hf_bigbird", length, "train"), "median_s")), ">=", 2.0)  # fmt: skip
        for mode, r in (("fwd", lb_f), ("train", lb_t)):
            x = ratio(r, g("longformer", length, mode), "median_s")
            label = f"{length}: longbird {mode} faster than longformer (time ratio longbird/longformer)"
            if x is None:
                out.append(f"- {label}: n/a (not measured)  [target: yes]")
            else:
                out.append(f"- {label}: {'yes' if x < 1 else 'no'} ({x:.2f})  [target: yes] "
                           f"**{'PASS' if x < 1 else 'MISS'}**")  # fmt: skip
    target("8192: longbird fwd / floor fwd",
           ratio(g("longbird", 8192, "fwd"), g("floor", 8192, "fwd"), "median_s"), "<=", 1.5)  # fmt: skip
    target("8192: longbird train / floor train",
           ratio(g("longbird", 8192, "train"), g("floor", 8192, "train"), "median_s"), "<=", 1.4)  # fmt: skip
    for length in (4096, 8192):
        target(f"{length}: peak train memory longbird / hf_bigbird",
               ratio(g("longbird", length, "train"), g("hf_bigbird", length, "train"), "peak_rss_mib"),
               "<=", 0.6)  # fmt: skip
    for mode in ("fwd", "train"):
        target(f"longbird {mode} time(16384) / time(4096)",
               ratio(g("longbird", 16384, mode), g("longbird", 4096, mode), "median_s"), "<=", 4.5)  # fmt: skip
    for mode in ("fwd", "train"):
        for key, what in (("median_s", "time"), ("peak_rss_mib", "peak memory")):
            target(f"etc {mode} {what}(16384) / {what}(4096) (linear growth)",
                   ratio(g("etc", 16384, mode), g("etc", 4096, mode), key), "<=", 4.5)  # fmt: skip
    target("1024: longbird fwd / sdpa_full fwd",
           ratio(g("longbird", 1024, "fwd"), g("sdpa_full", 1024, "fwd"), "median_s"), "<=", 1.1)  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_int = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--lengths", type=csv_int, default=list(LENGTHS), help="comma list (default 1024,4096,8192,16384)")
    p.add_argument("--models", type=csv, default=list(MODELS), help=f"comma list from {','.join(MODELS)}")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--skip-train", action="store_true", help="forward only")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, length, mode) subprocess")
    p.add_argument("--no-skip", action="store_true",
                   help="run hf_bigbird/sdpa_full training even when predicted slower than --timeout")  # fmt: skip
    p.add_argument("--mem-limit-mib", type=float, default=None,
                   help="kill a worker whose RSS exceeds this (default: 90%% of MemAvailable at start)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each worker")
    p.add_argument("--etc-globals", type=int, default=150, help="global tokens of the etc model at every length")
    p.add_argument("--longbird-backend", default="auto", help="longbird attention_backend (auto/gather/dense/flex)")
    p.add_argument(
        "--floor-drop-qk",
        dest="floor_keep_qk",
        action="store_false",
        help="floor: drop the q/k projections from the backward (default keeps them, zero gradient)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encoders.md")
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown models {bad}; choose from {MODELS}")
    if any(n > MAX_POS or n % 256 for n in args.lengths):
        p.error(f"lengths must be multiples of 256 and <= {MAX_POS}")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    modes = ["fwd"] if args.skip_train else list(MODES)
    # interleaved: for each length, for each mode, every model in turn
    plan = [
        ((m, length, mode), dict(model=m, length=length, mode=mode), f"{length:>6} {mode:<5} {m:<11}")
        for length in args.lengths
        for mode in modes
        for m in args.models
    ]
    run_all(args, plan, environment, predicted_skip, run_one, report)


if __name__ == "__main__":
    main()
