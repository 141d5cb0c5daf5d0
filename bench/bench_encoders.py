#!/usr/bin/env python
"""Side-by-side CPU benchmark of long-sequence encoders (one invocation, one report).

Models (all: hidden 768, 12 heads, FFN 3072 unless said, 4 layers, vocab 32000, batch 1, dropout 0,
seeded random init, max_position_embeddings 16384):

  longbird    longbird.BigBirdModel, block_sparse, block 64, 3 random blocks
  hf_bigbird  transformers.BigBirdModel, same config (the reference)
  sdpa_full   transformers.BertModel, full attention through SDPA, gelu_pytorch_tanh
  longformer  transformers.LongformerModel, attention_window 256, no global tokens
  modernbert  transformers.ModernBertModel, SDPA, local_attention 128, global_attn_every_n_layers 3
              (layers 0 and 3 full attention, 1 and 2 sliding window), its own default
              intermediate_size 1152 (a GeGLU: Wi 768 -> 2·1152, Wo 1152 -> 768, no biases, so its FFN
              has 2.65M weights per layer against the 4.72M of the 3072 FFN of the others), RoPE
  floor       longbird's model with the attention itself replaced by identity
              (run_attention -> value): embeddings, q/k/v/out projections, FFN, LayerNorm only
  etc         longbird.EtcModel: the released layout (ten projections, shared FFN, hard g2l),
              local_radius 84, relative_pos_max_distance 12, and `--etc-globals` (150) global
              tokens, one per equal-length "sentence" of the long input, at every length

Dtypes (`--dtype`, a comma list; default fp32,bf16):

  fp32           fp32 weights and activations
  bf16           model.to(torch.bfloat16): weights and activations bf16 (the loss is summed in fp32)
  bf16-autocast  fp32 weights, forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)

The parent process runs one fresh subprocess (this script with --worker) per
(model, length, mode, dtype); the worker builds the model, does one warm-up, times `--repeats` runs,
and prints one JSON line with the times and resource.getrusage(RUSAGE_SELF).ru_maxrss (peak
RSS of that whole process: nothing is subtracted). Runs are interleaved: for each length, for
each mode, for each dtype, every model in turn. A run that cannot fit its warm-up and one step in
--timeout, predicted linearly from the same model, mode and dtype at a shorter length, is skipped.

Ratios between fresh processes carry the host's drift (a fresh process's first steps here are
slow and vary over minutes), so the ratios the targets use are also timed round by round inside
one process (`time_rounds`: every step once per round, the order rotating; the ratio is the
median of the rounds' ratios), by extra workers:

  longbird/floor   per length, mode and dtype (when both are in --models): one longbird model,
                   its steps with and without the attention (the floor's patch, switched per step)
  <model>:growth   etc and longbird at 4096 and 16384 (when both lengths are in --lengths)
  longbird/fp32    at 4096 (else the longest length) per mode and low-precision dtype (when fp32 is in
                   --dtype too): one longbird model in fp32 and a copy in that dtype (the bf16 speedup
                   targets)

    python bench/bench_encoders.py                                    # full run
    python bench/bench_encoders.py --lengths 512 --repeats 1          # smoke run
    python bench/bench_encoders.py --models longbird,hf_bigbird --lengths 4096,8192 --skip-train
    python bench/bench_encoders.py --models longbird,floor --dtype fp32,bf16,bf16-autocast

Output: Markdown (environment, one table per dtype, the bf16/fp32 speedups, target summary) on
stdout and in bench/results/encoders.md; raw worker records in bench/results/encoders.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    ROOT,
    SIZES,
    bigbird_model,
    cpu_bf16_line,
    environment_lines,
    fmt_mem,
    fmt_ratio,
    fmt_time,
    inv,
    median_ratio,
    modernbert_model,
    ok,
    peak_mib,
    ratio,
    run_all,
    run_worker,
    table_head,
    table_row,
    target_line,
    time_rounds,
    time_step,
)

MODELS = ("longbird", "hf_bigbird", "sdpa_full", "longformer", "modernbert", "floor", "etc")
LENGTHS = (1024, 4096, 8192, 16384)
MODES = ("fwd", "train")
DTYPES = ("fp32", "bf16", "bf16-autocast")
DEFAULT_DTYPES = ("fp32", "bf16")
MAX_POS = 16384
# How time grows with length, used only to predict whether a run can finish before --timeout.
# ModernBERT on CPU: SDPA with a dense mask, quadratic in every layer (its window only masks).
GROWTH = {"sdpa_full": 2.0, "modernbert": 2.0}
DEFAULT_GROWTH = 1.0
# Skipped by default when the warm-up and all repeats are predicted not to fit, unless --no-skip
# (every other run: only when not even the warm-up and one step fit).
PREDICT_SKIP = {("hf_bigbird", "train"), ("sdpa_full", "train"), ("modernbert", "train")}
# The models longbird should beat in every dtype (the summary's "fastest" targets).
RIVALS = ("hf_bigbird", "longformer", "modernbert")
# Round-by-round workers (module docstring): the pair with the floor, and length growth.
FLOOR_PAIR = "longbird/floor"
DTYPE_PAIR = "longbird/fp32"  # longbird in fp32 and in the worker's dtype: the speedup of that dtype
DTYPE_PAIR_LENGTH = 4096  # the speedup targets' length (else the longest of --lengths)
GROWTH_LENGTHS = (4096, 16384)
GROWN = ("longbird", "etc")


# ----------------------------------------------------------------------------------------------
# Worker: one (model, length, mode, dtype) in this fresh process
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def attention_removed(keep_qk: bool):
    """longbird's BigBird with the attention itself replaced by identity (the floor) inside the block."""
    import longbird.modeling.modeling_longbird_bigbird as lbm

    def no_attention(query, key, value, graph, scale, backend="auto", output_attentions=False):
        if keep_qk:
            # Keep q and k in the autograd graph (their projections get a zero gradient) so
            # the floor's backward also runs all four attention projections.
            return value + 0.0 * (query.sum() + key.sum()), None
        return value, None

    original, lbm.run_attention = lbm.run_attention, no_attention
    try:
        yield
    finally:
        lbm.run_attention = original


def build_model(name: str, backend: str):
    import torch

    torch.manual_seed(0)
    if name == "etc":
        import longbird

        return longbird.EtcModel(longbird.EtcConfig(**SIZES, local_radius=84, relative_pos_max_distance=12))
    if name in ("longbird", "floor"):  # the floor: the same model, run inside `attention_removed`
        return bigbird_model("longbird", MAX_POS, backend)
    if name == "hf_bigbird":
        return bigbird_model("hf_bigbird", MAX_POS, backend)
    if name == "modernbert":
        # intermediate_size left at transformers' default (1152, GeGLU): the model as ModernBERT ships it
        return modernbert_model(MAX_POS, local_attention=128, global_attn_every_n_layers=3)
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


def model_inputs(model: str, length: int, etc_globals: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(1234)
    # ids >= 3: never a pad id (0 for BERT/BigBird/ModernBERT here, 1 for Longformer)
    input_ids = torch.randint(3, SIZES["vocab_size"], (1, length), generator=gen)
    inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    if model == "etc":
        inputs["global_input_ids"] = torch.ones(1, etc_globals, dtype=torch.long)
        inputs["sentence_ids"] = torch.arange(length).unsqueeze(0) * etc_globals // length
    return inputs


def make_step(model, inputs: dict, mode: str, dtype: str):
    """One forward (no_grad) or forward + backward of the sum of last_hidden_state, in `dtype`."""
    import torch

    def precision():
        if dtype == "bf16-autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    if mode == "fwd":

        def step():
            with torch.no_grad(), precision():
                model(**inputs)

        return step

    def step():
        with precision():
            # summed in fp32: a bf16 sum of millions of values would round; the gradient is ones either way
            loss = model(**inputs).last_hidden_state.float().sum()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def worker(args) -> None:
    t_start = time.perf_counter()
    deadline = t_start + 0.9 * args.timeout
    import torch

    torch.set_num_threads(args.threads)
    dtype = args.dtype[0]
    name = args.model.split(":")[0].split("/")[0]  # the model an interleaved worker builds
    model = build_model(name, args.longbird_backend)
    fp32_model = copy.deepcopy(model).train(args.mode == "train") if args.model == DTYPE_PAIR else None
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    rss_built = peak_mib()
    model.train(args.mode == "train")
    if args.model == FLOOR_PAIR:
        step = make_step(model, model_inputs(name, args.length, args.etc_globals), args.mode, dtype)

        def floor_step():
            with attention_removed(args.floor_keep_qk):
                step()

        timed = interleaved({"longbird": step, "floor": floor_step}, args.repeats, deadline)
    elif args.model == DTYPE_PAIR:  # fp32 first: the ratio is the speedup of `dtype`
        inputs = model_inputs(name, args.length, args.etc_globals)
        steps = {
            "fp32": make_step(fp32_model, inputs, args.mode, "fp32"),
            dtype: make_step(model, inputs, args.mode, dtype),
        }
        timed = interleaved(steps, args.repeats, deadline)
    elif args.model.endswith(":growth"):
        lengths = reversed(GROWTH_LENGTHS)  # the longer first: the ratio is the growth
        steps = {str(n): make_step(model, model_inputs(name, n, args.etc_globals), args.mode, dtype) for n in lengths}
        timed = interleaved(steps, args.repeats, deadline)
    else:
        step = make_step(model, model_inputs(name, args.length, args.etc_globals), args.mode, dtype)
        with attention_removed(args.floor_keep_qk) if name == "floor" else contextlib.nullcontext():
            # one warm-up, then fewer repeats (at least one) if the warm-up says they won't fit the time limit
            timed = time_step(step, args.repeats, deadline - time.perf_counter())
    record = dict(
        model=args.model,
        length=args.length,
        mode=args.mode,
        dtype=dtype,
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


def interleaved(steps: dict, rounds: int, deadline: float) -> dict:
    """Two steps timed round by round (`time_rounds`): medians and the median ratio first / second."""
    first, second = steps
    times = time_rounds(steps, rounds, deadline)
    medians = {f"{name}_median_s": statistics.median(v) for name, v in times.items()}
    first_over_second = median_ratio(times[first], times[second])
    # median_s (the first step's) for the parent's progress line
    return dict(medians, median_s=medians[f"{first}_median_s"], ratio=first_over_second, times_s=times,
                repeats=len(times[first]))  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Parent: spawn, guard, collect
# ----------------------------------------------------------------------------------------------


def run_one(args, model: str, length: int, mode: str, dtype: str, mem_limit_mib: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model", model,
        "--length", str(length),
        "--mode", mode,
        "--dtype", dtype,
        "--repeats", str(args.repeats),
        "--threads", str(args.threads),
        "--timeout", str(args.timeout),
        "--longbird-backend", args.longbird_backend,
        "--etc-globals", str(args.etc_globals),
    ]  # fmt: skip
    if not args.floor_keep_qk:
        cmd.append("--floor-drop-qk")
    base = dict(model=model, length=length, mode=mode, dtype=dtype)
    return run_worker(cmd, base, args.threads, args.timeout, mem_limit_mib)


def predicted_skip(args, results: dict, model: str, length: int, mode: str, dtype: str) -> str | None:
    """A reason to skip this run, or None: the same (model, mode, dtype) failed at a shorter length,
    or its time there, grown to this length, cannot fit the timeout."""
    earlier = [(n, r) for (m, n, md, dt), r in results.items() if (m, md, dt) == (model, mode, dtype) and n < length]
    for n, r in earlier:
        if r["status"] != "ok" and not r["status"].startswith("skipped: predicted"):
            short = "OOM" if r["status"].startswith("OOM") else r["status"].replace("skipped: ", "")
            return f"skipped: {short} at {n}"
    if args.no_skip:
        return None
    done = [(n, r) for n, r in earlier if r["status"] == "ok"]
    if not done:
        return None
    l0, r0 = max(done, key=lambda x: x[0])
    step = r0["median_s"] * (length / l0) ** GROWTH.get(model, DEFAULT_GROWTH)
    # the warm-up plus the requested repeats (the listed slow references), else plus one step, must fit
    calls = 1 + (args.repeats if (model, mode) in PREDICT_SKIP else 1)
    if step * calls > args.timeout:
        return f"skipped: predicted ~{step:.0f} s/step"
    return None


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def environment(args) -> list[str]:
    return [
        *environment_lines(args.threads),
        cpu_bf16_line(),
        f"- dtypes {','.join(args.dtype)}; repeats {args.repeats} (median, after 1 warm-up), timeout "
        f"{args.timeout} s per run, longbird attention_backend={args.longbird_backend}, floor keeps q/k in "
        f"backward: {args.floor_keep_qk}",
    ]


DTYPE_TITLES = {
    "fp32": "fp32",
    "bf16": "bf16 (model.to(torch.bfloat16): weights and activations bf16)",
    "bf16-autocast": 'bf16-autocast (fp32 weights, torch.autocast("cpu", dtype=torch.bfloat16))',
}


def report(args, results: dict, env_lines: list[str]) -> str:
    lines = ["# Encoder benchmark (CPU)", "", *env_lines]
    for dtype in args.dtype:
        lines += ["", f"## {DTYPE_TITLES[dtype]}", "", *dtype_table(args, results, dtype)]
    lines += speedup_table(args, results)
    lines += [
        "",
        "Times: median seconds per call (batch 1); `(n=k)`: only k repeats fitted in the timeout. "
        "Peak MiB: ru_maxrss of a fresh process running only that model, length, mode and dtype "
        "(includes the Python/torch baseline). Ratios `× X` are this model / X in the same dtype "
        "(time or memory; < 1 means faster or smaller than X).",
        *interleaved_table(args, results),
        "",
        "## Targets",
        "",
    ]
    lines += summary(args, results)
    return "\n".join(lines) + "\n"


def interleaved_table(args, results: dict) -> list[str]:
    """The round-by-round workers: the ratios the targets use."""
    rows = [(key, r) for key, r in results.items() if key[0] in (FLOOR_PAIR, DTYPE_PAIR) or key[0].endswith(":growth")]
    if not rows:
        return []
    header = ["compared in one process", "length", "mode", "dtype", "rounds", "first s", "second s", "first / second"]
    lines = ["", "## Timed round by round in one process", "", *table_head(header)]
    for (m, length, mode, dtype), r in rows:
        grown = f"{m.split(':')[0]} {GROWTH_LENGTHS[-1]} / {GROWTH_LENGTHS[0]}"
        what = {FLOOR_PAIR: "longbird / floor", DTYPE_PAIR: f"longbird fp32 / {dtype}"}.get(m, grown)
        cells = [what, str(length), mode, dtype, str(r.get("repeats", "—"))]
        if ok(r):
            first, second = (k for k in r if k.endswith("_median_s"))
            cells += [f"{r[first]:.3f}", f"{r[second]:.3f}", f"{r['ratio']:.2f}"]
        else:
            cells += [fmt_time(r, 0), "—", "—"]
        lines.append(table_row(cells))
    lines.append(
        "Each round runs both steps back to back (the order rotating) on one model in one process; times are "
        "medians over rounds, the ratio the median of the rounds' ratios. The targets use these ratios where "
        "they were measured; the tables above time each run in its own fresh process (needed for its peak memory)."
    )
    return lines


def interleaved_or(results: dict, key: tuple, fallback: float | None) -> tuple[float | None, str]:
    """The round-by-round ratio of `key` when measured, else `fallback` (separate processes)."""
    r = results.get(key)
    return (r["ratio"], "interleaved") if ok(r) else (fallback, "separate processes")


def dtype_table(args, results: dict, dtype: str) -> list[str]:
    """One dtype's table: times, peaks and ratios vs hf_bigbird, longbird and the floor in that dtype."""
    g = lambda m, n, md: results.get((m, n, md, dtype))  # noqa: E731
    header = [
        "length", "model", "fwd s", "train s", "fwd peak MiB", "train peak MiB",
        "fwd × hf_bigbird", "train × hf_bigbird", "train mem × hf_bigbird",
        "fwd × longbird", "train × longbird", "fwd × floor", "train × floor",
    ]  # fmt: skip
    lines = table_head(header)
    for length in args.lengths:
        refs = {ref: (g(ref, length, "fwd"), g(ref, length, "train")) for ref in ("hf_bigbird", "longbird", "floor")}
        for m in args.models:
            f, t = g(m, length, "fwd"), g(m, length, "train")
            row = [
                str(length),
                m,
                fmt_time(f, args.repeats),
                "skipped (--skip-train)" if args.skip_train else fmt_time(t, args.repeats),
                fmt_mem(f),
                fmt_mem(t),
                fmt_ratio(ratio(f, refs["hf_bigbird"][0], "median_s")),
                fmt_ratio(ratio(t, refs["hf_bigbird"][1], "median_s")),
                fmt_ratio(ratio(t, refs["hf_bigbird"][1], "peak_rss_mib")),
                fmt_ratio(ratio(f, refs["longbird"][0], "median_s")),
                fmt_ratio(ratio(t, refs["longbird"][1], "median_s")),
                fmt_ratio(ratio(f, refs["floor"][0], "median_s")),
                fmt_ratio(ratio(t, refs["floor"][1], "median_s")),
            ]
            lines.append(table_row(row))
    return lines


def speedup_table(args, results: dict) -> list[str]:
    """fp32 time / this dtype's time for longbird (and the floor, the same dense work without the
    attention: is a slow dtype longbird's doing or the matmuls'?)."""
    others = [dt for dt in args.dtype if dt != "fp32"]
    if "fp32" not in args.dtype or not others:
        return []
    shown = [m for m in ("longbird", "floor") if m in args.models]
    header = ["length", "dtype"] + [f"{m} {md} speedup vs fp32" for m in shown for md in MODES]
    lines = ["", "## bf16 speedup vs fp32 (fp32 time / bf16 time; > 1: bf16 faster)", "", *table_head(header)]
    for length in args.lengths:
        for dt in others:
            cells = [fmt_ratio(speedup(results, m, length, md, dt)) for m in shown for md in MODES]
            lines.append(table_row([str(length), dt, *cells]))
    return lines


def speedup(results: dict, model: str, length: int, mode: str, dtype: str) -> float | None:
    """fp32 time / `dtype` time of one model, length and mode (> 1: `dtype` is faster)."""
    return inv(ratio(results.get((model, length, mode, dtype)), results.get((model, length, mode, "fp32")), "median_s"))


def fastest_line(results: dict, length: int, mode: str, dtype: str) -> str:
    """Whether longbird beats every rival that ran; a rival that did not finish (timeout, OOM, predicted
    too slow) counts as slower, one that raised is listed and left out."""
    label = f"{dtype} {length}: longbird {mode} fastest of longbird, {', '.join(RIVALS)}"
    lb = results.get(("longbird", length, mode, dtype))
    rivals = {m: results.get((m, length, mode, dtype)) for m in RIVALS}
    rivals = {m: r for m, r in rivals.items() if r is not None}
    if not ok(lb) or not rivals:
        return f"- {label}: n/a (not measured)  [target: yes]"
    slower_status = ("skipped", "OOM")
    cells, met = [f"longbird {lb['median_s']:.3f} s"], True
    for m, r in rivals.items():
        if ok(r):
            cells.append(f"{m} {r['median_s']:.3f}")
            met &= lb["median_s"] < r["median_s"]
        else:
            cells.append(f"{m} {r['status']}" + ("" if r["status"].startswith(slower_status) else " (left out)"))
    return f"- {label}: {'yes' if met else 'no'} ({'; '.join(cells)})  [target: yes] **{'PASS' if met else 'MISS'}**"


def summary(args, results: dict) -> list[str]:
    g = lambda m, n, md, dt="fp32": results.get((m, n, md, dt))  # noqa: E731
    out = []

    def target(label: str, value: float | None, op: str, bound: float) -> None:
        out.append(target_line(label, value, op, bound))

    # fp32: longbird close to the floor (the dense work every encoder of this size does)
    for length, bound in ((1024, 1.1), (4096, 1.2), (8192, 1.2)):
        for mode in MODES:
            value, where = interleaved_or(
                results,
                (FLOOR_PAIR, length, mode, "fp32"),
                ratio(g("longbird", length, mode), g("floor", length, mode), "median_s"),
            )
            target(f"fp32 {length}: longbird {mode} / floor {mode} ({where})", value, "<=", bound)  # fmt: skip
    target("fp32 8192: peak train memory longbird / floor",
           ratio(g("longbird", 8192, "train"), g("floor", 8192, "train"), "peak_rss_mib"), "<=", 1.3)  # fmt: skip
    for length in (4096, 8192):
        lb_f, lb_t = g("longbird", length, "fwd"), g("longbird", length, "train")
        target(f"fp32 {length}: fwd speedup longbird vs hf_bigbird",
               inv(ratio(lb_f, g("hf_bigbird", length, "fwd"), "median_s")), ">=", 2.5)  # fmt: skip
        target(f"fp32 {length}: train speedup longbird vs hf_bigbird",
               inv(ratio(lb_t, g("hf_bigbird", length, "train"), "median_s")), ">=", 2.0)  # fmt: skip
        target(f"fp32 {length}: peak train memory longbird / hf_bigbird",
               ratio(lb_t, g("hf_bigbird", length, "train"), "peak_rss_mib"), "<=", 0.6)  # fmt: skip
    # bf16 (weights and activations): worth it only if clearly faster than fp32
    for mode, bound in (("fwd", 2.0), ("train", 1.5)):
        value, where = interleaved_or(
            results, (DTYPE_PAIR, 4096, mode, "bf16"), speedup(results, "longbird", 4096, mode, "bf16")
        )
        target(f"bf16 4096: longbird {mode} speedup vs fp32 longbird ({where})", value, ">=", bound)
    if "bf16-autocast" in args.dtype:
        for mode in MODES:
            x, where = interleaved_or(
                results,
                (DTYPE_PAIR, 4096, mode, "bf16-autocast"),
                speedup(results, "longbird", 4096, mode, "bf16-autocast"),
            )
            value = "n/a (not measured)" if x is None else f"{x:.2f}"
            out.append(
                f"- bf16-autocast 4096: longbird {mode} speedup vs fp32 longbird ({where}): {value}  [no target]"
            )
    for dtype in args.dtype:
        for length in (4096, 8192):
            for mode in MODES:
                out.append(fastest_line(results, length, mode, dtype))
    for m in GROWN:
        for mode in MODES:
            value, where = interleaved_or(
                results, (f"{m}:growth", 16384, mode, "fp32"), ratio(g(m, 16384, mode), g(m, 4096, mode), "median_s")
            )
            target(f"fp32: {m} {mode} time(16384) / time(4096) ({where})", value, "<=", 4.5)  # fmt: skip
    for mode in MODES:
        target(f"fp32: etc {mode} peak memory(16384) / peak memory(4096) (linear growth)",
               ratio(g("etc", 16384, mode), g("etc", 4096, mode), "peak_rss_mib"), "<=", 4.5)  # fmt: skip
    target("fp32 1024: longbird fwd / sdpa_full fwd",
           ratio(g("longbird", 1024, "fwd"), g("sdpa_full", 1024, "fwd"), "median_s"), "<=", 1.1)  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_int = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--lengths", type=csv_int, default=list(LENGTHS),
                   help=f"comma list (default {','.join(map(str, LENGTHS))})")  # fmt: skip
    p.add_argument("--models", type=csv, default=list(MODELS), help=f"comma list from {','.join(MODELS)}")
    p.add_argument("--dtype", type=csv, default=list(DEFAULT_DTYPES),
                   help=f"comma list from {','.join(DTYPES)} (default {','.join(DEFAULT_DTYPES)})")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--skip-train", action="store_true", help="forward only")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, length, mode, dtype) subprocess")
    p.add_argument("--no-skip", action="store_true",
                   help="run every run even when predicted slower than --timeout")  # fmt: skip
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
    bad = [d for d in args.dtype if d not in DTYPES]
    if bad or not args.dtype:
        p.error(f"--dtype: a comma list from {','.join(DTYPES)}; got {args.dtype}")
    if any(n > MAX_POS or n % 256 for n in args.lengths):
        p.error(f"lengths must be multiples of 256 and <= {MAX_POS}")
    return args


def interleaved_runs(args) -> list[tuple[str, int]]:
    """(worker model, length) of the round-by-round workers this run's models and lengths allow."""
    runs = []
    if {"longbird", "floor"} <= set(args.models):
        runs += [(FLOOR_PAIR, n) for n in args.lengths]
    if set(GROWTH_LENGTHS) <= set(args.lengths):
        runs += [(f"{m}:growth", GROWTH_LENGTHS[-1]) for m in GROWN if m in args.models]
    if "longbird" in args.models and "fp32" in args.dtype:
        runs.append((DTYPE_PAIR, DTYPE_PAIR_LENGTH if DTYPE_PAIR_LENGTH in args.lengths else max(args.lengths)))
    return runs


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    modes = ["fwd"] if args.skip_train else list(MODES)

    def entry(m: str, length: int, mode: str, dtype: str):
        label = f"{length:>6} {mode:<5} {dtype:<13} {m}"
        return (m, length, mode, dtype), dict(model=m, length=length, mode=mode, dtype=dtype), label

    # interleaved: for each length, for each mode, for each dtype, every model in turn; then the
    # round-by-round workers
    plan = [entry(m, n, mode, dt) for n in args.lengths for mode in modes for dt in args.dtype for m in args.models]
    plan += [
        entry(m, n, mode, dt)
        for m, n in interleaved_runs(args)
        for mode in modes
        for dt in args.dtype
        if not (m == DTYPE_PAIR and dt == "fp32")  # that pair compares fp32 with the other dtypes
    ]
    run_all(args, plan, environment, predicted_skip, run_one, report)


if __name__ == "__main__":
    main()
