#!/usr/bin/env python
"""CPU benchmark of the ONNX export: ONNX Runtime vs PyTorch eager, forward, same weights, one run.

The model: longbird.BigBirdModel at bench_common's sizes (4 layers, hidden 768, 12 heads, FFN 3072,
vocab 32000), block_sparse, block 64, 3 random blocks, no pooler, fp32, dropout 0, seeded random init,
max_position_embeddings = the longest `--lengths` (default 8192): one exported file serves every
length. Input: batch 1, random ids (the same at each length for both runtimes, numpy seed 1234 +
length), attention_mask all ones, token_type_ids zeros.

The parent runs, each in a fresh subprocess (this script with --worker KIND):

  prepare      builds the model (torch.manual_seed(0)), saves it (save_pretrained, safetensors) into
               the work folder and exports it ONCE to ONNX (`exportable_graphs(model)[0]` and
               `write_graph(graph, dir, "onnx")`, opset graphs.ONNX_OPSET, every axis dynamic): export
               time, file size
  eager        per length: loads the saved model (from_pretrained), torch.no_grad(), eval,
               torch.set_num_threads(--threads); one warm-up, --repeats timed forwards (median)
  onnxruntime  per length: onnxruntime.InferenceSession on the exported file, CPUExecutionProvider,
               SessionOptions as longbird.export.load_exported sets them (ORT's defaults, memory pattern
               and buffer reuse off: longbird/export/ort_session.py, loaded as a file) and
               intra_op_num_threads = --threads; this process imports
               numpy and onnxruntime only (no torch), as a deployment runs it; warm-up + --repeats
  interleaved  per length: both runtimes in one process, on the same ids: parity first (max |ORT - eager|
               of last_hidden_state), then both timed round by round (bench_common.time_rounds, the
               order rotating), so the host's drift over the run hits both alike; the speed target uses
               the median of the rounds' eager / ORT ratios
  ort_defaults (unless --no-variant; not a target) per length, like `onnxruntime` with ORT's default
               SessionOptions (memory pattern and buffer reuse on): why load_exported turns them off
  profile      (unless --no-profile) ORT with SessionOptions.enable_profiling at the longest length: one
               warm-up, one profiled run; the report lists the top op types by kernel time

Memory: each eager / onnxruntime worker reports its peak RSS (VmHWM of the whole process: imports,
weights and the forwards; not ru_maxrss, which after the parent's fork + exec starts at the parent's
RSS), its RSS after loading the model (VmRSS then) and the growth during the forwards (VmHWM after the
timed forwards, the high-water mark reset after loading through /proc/self/clear_refs, minus the RSS
after loading). The memory target compares the peak RSS of the two processes.

    python bench/bench_export.py                        # full run: 1024,4096,8192 (~9 min idle, 2 cores)
    python bench/bench_export.py --quick                # smoke run: tiny model, lengths 256,512, 1 repeat
    python bench/bench_export.py --lengths 1024 --repeats 2

Output: Markdown (environment, tables, targets) on stdout and in bench/results/export.md; raw worker
records in bench/results/export.jsonl. The saved model and model.onnx go to a temporary folder, removed
at the end (--work-dir keeps them, and a folder that already holds both is reused without exporting).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
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
    median_ratio,
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

LENGTHS = (1024, 4096, 8192)
QUICK_LENGTHS = (256, 512)
# --quick: a tiny model (the export and every step take seconds)
QUICK_SIZES = dict(
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    block_size=16,
    num_random_blocks=2,
    attention_type="block_sparse",
)
RUNTIMES = ("eager", "onnxruntime")
# not a target: ORT with its default SessionOptions (memory pattern and buffer reuse on: most of its
# peak memory on inputs of new lengths, so load_exported turns them off), timed and measured alike
ORT_DEFAULTS = "ort_defaults"
PARITY_TOL = 1e-4  # what tests/test_export_bigbird.py asserts (tiny models)
TOP_OPS = 10


# ----------------------------------------------------------------------------------------------
# Worker
# ----------------------------------------------------------------------------------------------


def model_dir(work: Path) -> Path:
    return work / "model"


def onnx_path(work: Path) -> Path:
    return work / "onnx" / "model.onnx"


def vocab_size(quick: bool) -> int:
    return (QUICK_SIZES if quick else SIZES)["vocab_size"]


def make_inputs(length: int, quick: bool) -> dict:
    """numpy int64 [1, length]: ids >= 3, mask ones, token types zeros; the same in every worker."""
    import numpy as np

    rng = np.random.default_rng(1234 + length)
    ids = rng.integers(3, vocab_size(quick), size=(1, length), dtype=np.int64)
    return dict(input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids))


def rss_now_mib() -> float:
    return _status_mib("VmRSS")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


_HWM_BEFORE_RESET = 0.0


def process_peak_mib() -> float:
    """Peak RSS of this process image: VmHWM, and its value before a `reset_hwm`. Not ru_maxrss: after
    fork + exec that starts at the parent's RSS at the fork (the parent imported torch: ~400 MiB)."""
    return max(_HWM_BEFORE_RESET, _status_mib("VmHWM"))


def reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    global _HWM_BEFORE_RESET
    _HWM_BEFORE_RESET = process_peak_mib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def prepare(args) -> dict:
    import torch

    work = Path(args.work_dir)
    record = dict(kind="prepare", length=None)
    if (model_dir(work) / "config.json").exists() and onnx_path(work).exists():
        earlier = work / "prepare.json"  # what the run that exported wrote
        record.update(json.loads(earlier.read_text()) if earlier.exists() else {})
        record.update(reused=True, onnx_mib=onnx_path(work).stat().st_size / 2**20)
        return record
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    max_pos = max(args.lengths)
    if args.quick:
        import longbird

        config = longbird.BigBirdConfig(**QUICK_SIZES, max_position_embeddings=max_pos,
                                        attention_backend=args.longbird_backend)  # fmt: skip
        model = longbird.BigBirdModel(config, add_pooling_layer=False)
    else:
        model = bigbird_model("longbird", max_pos, args.longbird_backend)
    model.eval()
    t0 = time.perf_counter()
    model.save_pretrained(model_dir(work))
    record["save_s"] = time.perf_counter() - t0
    record["params"] = sum(p.numel() for p in model.parameters())
    from longbird.export import exportable_graphs
    from longbird.export.graphs import ONNX_OPSET, write_graph

    t0 = time.perf_counter()
    graph = exportable_graphs(model)[0]
    path = write_graph(graph, onnx_path(work).parent, "onnx")
    record.update(export_s=time.perf_counter() - t0, onnx_mib=path.stat().st_size / 2**20, opset=ONNX_OPSET,
                  outputs=graph.output_names, reused=False)  # fmt: skip
    from bench_common import loadavg

    record["load_at_export"] = loadavg()
    (work / "prepare.json").write_text(json.dumps(record))
    return record


def load_eager(args):
    """(forward(inputs) -> last_hidden_state as numpy, load seconds)."""
    import torch

    import longbird

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = longbird.BigBirdModel.from_pretrained(model_dir(Path(args.work_dir)), add_pooling_layer=False)
    model.eval()
    load_s = time.perf_counter() - t0

    def forward(inputs: dict):
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return out.last_hidden_state.numpy()

    return forward, load_s


def ort_options(args, profile_prefix: str | None = None, ort_defaults: bool = False):
    """load_exported's SessionOptions (or ORT's own defaults), --threads intra-op threads. The options
    come from longbird/export/ort_session.py loaded as a file: this worker never imports torch."""
    import importlib.util

    import onnxruntime

    spec = importlib.util.spec_from_file_location("ort_session", ROOT / "longbird" / "export" / "ort_session.py")
    ort_session = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ort_session)
    options = onnxruntime.SessionOptions() if ort_defaults else ort_session.session_options()
    options.intra_op_num_threads = args.threads
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def load_ort(args, profile_prefix: str | None = None, ort_defaults: bool = False):
    """(forward(inputs) -> last_hidden_state, load seconds, session)."""
    import onnxruntime

    t0 = time.perf_counter()
    options = ort_options(args, profile_prefix, ort_defaults)
    session = onnxruntime.InferenceSession(
        str(onnx_path(Path(args.work_dir))), options, providers=["CPUExecutionProvider"]
    )
    load_s = time.perf_counter() - t0
    names = [i.name for i in session.get_inputs()]

    def forward(inputs: dict):
        return session.run(["last_hidden_state"], {n: inputs[n] for n in names})[0]

    return forward, load_s, session


def time_one(args, kind: str, deadline: float) -> dict:
    """One runtime alone in this process: load, then warm-up + timed forwards, with its memory."""
    record = dict(rss_after_imports_mib=None)
    if kind == "eager":
        import torch

        import longbird  # noqa: F401 -- imports (torch, transformers) before the baseline reading

        record["rss_after_imports_mib"] = rss_now_mib()
        forward, load_s = load_eager(args)
        record["torch_threads"] = torch.get_num_threads()
    else:
        import numpy  # noqa: F401
        import onnxruntime

        record["rss_after_imports_mib"] = rss_now_mib()
        forward, load_s, _ = load_ort(args, ort_defaults=kind == ORT_DEFAULTS)
        record["onnxruntime"] = onnxruntime.__version__
    inputs = make_inputs(args.length, args.quick)
    record.update(load_s=load_s, rss_after_load_mib=rss_now_mib(), peak_rss_after_load_mib=process_peak_mib())
    hwm_reset = reset_hwm()
    record.update(time_step(lambda: forward(inputs), args.repeats, deadline - time.perf_counter()))
    if hwm_reset:
        record["peak_fwd_mib"] = _status_mib("VmHWM")
        record["growth_mib"] = record["peak_fwd_mib"] - record["rss_after_load_mib"]
    else:  # the whole process's peak: also counts a higher transient while loading
        record["growth_mib"] = process_peak_mib() - record["rss_after_load_mib"]
    record["growth_from"] = "VmHWM reset after load" if hwm_reset else "VmHWM of the process"
    return record


def interleaved(args, deadline: float) -> dict:
    """Both runtimes in this process, on the same ids: parity, then timed round by round."""
    import numpy as np

    eager, eager_load_s = load_eager(args)
    ort, ort_load_s, _ = load_ort(args)
    inputs = make_inputs(args.length, args.quick)
    a, b = eager(inputs), ort(inputs)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    record = dict(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        max_abs_eager=float(np.abs(a).max()),
        output_shape=list(b.shape),
        eager_load_s=eager_load_s,
        ort_load_s=ort_load_s,
    )
    times = time_rounds({"eager": lambda: eager(inputs), "onnxruntime": lambda: ort(inputs)}, args.repeats, deadline)
    import statistics

    record.update(
        eager_over_ort=median_ratio(times["eager"], times["onnxruntime"]),
        eager_median_s=statistics.median(times["eager"]),
        ort_median_s=statistics.median(times["onnxruntime"]),
        times_s=times,
        repeats=len(times["eager"]),
        median_s=statistics.median(times["onnxruntime"]),
    )
    return record


def profile(args) -> dict:
    """ORT with enable_profiling: one warm-up, one profiled run; kernel time per op type in that run."""
    work = Path(args.work_dir)
    forward, _, session = load_ort(args, str(work / f"ort_profile_{args.length}"))
    inputs = make_inputs(args.length, args.quick)
    forward(inputs)
    t0 = time.perf_counter()
    forward(inputs)
    run_s = time.perf_counter() - t0
    trace = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = max(e["ts"] for e in runs) if runs else 0
    by_op: dict[str, list] = {}
    for e in trace:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= start:
            op = e.get("args", {}).get("op_name", "?")
            entry = by_op.setdefault(op, [0, 0])
            entry[0] += e["dur"]
            entry[1] += 1
    total_us = sum(v[0] for v in by_op.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1][0])
    run_us = runs[-1]["dur"] if runs else None
    return dict(
        median_s=run_s,
        repeats=1,
        kernel_total_s=total_us / 1e6,
        model_run_s=None if run_us is None else run_us / 1e6,
        ops=[dict(op=op, s=us / 1e6, calls=n, share=us / total_us if total_us else 0.0) for op, (us, n) in top],
    )


def worker(args) -> None:
    t_start = time.perf_counter()
    deadline = t_start + 0.9 * args.timeout
    base = dict(kind=args.worker, length=args.length)
    try:
        if args.worker == "prepare":
            record = dict(base, **prepare(args))
            record.update(median_s=record.get("export_s") or 0.0, repeats=1)
        elif args.worker in (*RUNTIMES, ORT_DEFAULTS):
            record = dict(base, **time_one(args, args.worker, deadline), repeats_requested=args.repeats)
        elif args.worker == "interleaved":
            record = dict(base, **interleaved(args, deadline))
        elif args.worker == "profile":
            record = dict(base, **profile(args))
        else:
            raise ValueError(f"unknown worker {args.worker!r}")
        record.update(status="ok", peak_rss_mib=process_peak_mib(), ru_maxrss_mib=peak_mib(), threads=args.threads)
    except Exception as e:  # noqa: BLE001 -- any failure is a result, never a crash of the whole run
        text = first_line(e)
        oom = isinstance(e, MemoryError) or any(s in text for s in ("can't allocate memory", "out of memory"))
        record = dict(base, status="OOM" if oom else f"error: {text}", traceback=traceback.format_exc()[-2000:])
    record["wall_s"] = time.perf_counter() - t_start
    print("RESULT " + json.dumps(record), flush=True)


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


# ----------------------------------------------------------------------------------------------
# Parent: spawn, guard, collect
# ----------------------------------------------------------------------------------------------


def run_one(args, kind: str, length: int | None, mem_limit_mib: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker", kind,
        "--work-dir", str(args.work_dir),
        "--lengths", ",".join(map(str, args.lengths)),
        "--repeats", str(args.repeats),
        "--threads", str(args.threads),
        "--timeout", str(args.timeout),
        "--longbird-backend", args.longbird_backend,
    ]  # fmt: skip
    if length is not None:
        cmd += ["--length", str(length)]
    if args.quick:
        cmd.append("--quick")
    return run_worker(cmd, dict(kind=kind, length=length), args.threads, args.timeout, mem_limit_mib)


def predicted_skip(args, results: dict, kind: str, length: int | None) -> str | None:
    """Nothing runs without its files; a runtime that timed out at a shorter length is not run longer."""
    if kind == "prepare":
        return None
    work = Path(args.work_dir)
    if not (model_dir(work) / "config.json").exists():
        return "skipped: no saved model (prepare failed)"
    if kind != "eager" and not onnx_path(work).exists():  # every other kind runs the exported file
        return "skipped: no model.onnx (export failed)"
    for (k, n), r in results.items():
        timed_out = r["status"] in ("skipped: timeout", "skipped: timeout at a shorter length")
        if k == kind and n is not None and n < length and timed_out:
            return "skipped: timeout at a shorter length"
    return None


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def environment(args) -> list[str]:
    import onnxruntime

    sizes = QUICK_SIZES if args.quick else dict(SIZES, block_size=64, num_random_blocks=3)
    return [
        *environment_lines(args.threads),
        f"- onnxruntime {onnxruntime.__version__} (CPUExecutionProvider; SessionOptions as load_exported: "
        f"ORT's defaults, enable_mem_pattern=False, enable_mem_reuse=False, "
        f"intra_op_num_threads={args.threads})",
        f"- model: longbird.BigBirdModel{' (--quick: tiny)' if args.quick else ''}, "
        f"{sizes['num_hidden_layers']} layers, "
        f"hidden {sizes['hidden_size']}, {sizes['num_attention_heads']} heads, FFN {sizes['intermediate_size']}, "
        f"vocab {sizes['vocab_size']}, block_sparse (block {sizes['block_size']}, {sizes['num_random_blocks']} random "
        f"blocks), no pooler, fp32, max_position_embeddings {max(args.lengths)}; eager attention_backend="
        f"{args.longbird_backend}; batch 1",
        f"- repeats {args.repeats} (median, after 1 warm-up; interleaved: {args.repeats} rounds), timeout "
        f"{args.timeout:.0f} s per worker",
    ]


def report(args, results: dict, env_lines: list[str]) -> str:
    g = lambda kind, n=None: results.get((kind, n))  # noqa: E731
    lines = ["# ONNX Runtime vs PyTorch eager, forward (CPU)", "", *env_lines]
    p = g("prepare")
    if ok(p):
        if p.get("reused") and p.get("export_s") is None:
            lines.append(f"- export: reused {onnx_path(Path(args.work_dir))} ({p['onnx_mib']:.0f} MiB)")
        elif p.get("reused"):
            lines.append(
                f"- export: reused {onnx_path(Path(args.work_dir))} ({p['onnx_mib']:.0f} MiB, opset {p['opset']}, "
                f"{p['params'] / 1e6:.1f}M parameters), exported by an earlier run (same --work-dir) in "
                f"{p['export_s']:.1f} s at load average {' '.join(p.get('load_at_export', ['?']))}"
            )
        else:
            lines.append(
                f"- export (once, in its own process): {p['export_s']:.1f} s (load average at its end "
                f"{' '.join(p.get('load_at_export', ['?']))}), model.onnx {p['onnx_mib']:.0f} MiB, opset {p['opset']}, "
                f"outputs {', '.join(p['outputs'])}; {p['params'] / 1e6:.1f}M parameters; prepare worker peak RSS "
                f"{p['peak_rss_mib']:.0f} MiB, wall {p['wall_s']:.0f} s (model build, save and export)"
            )
    elif p is not None:
        lines.append(f"- export: {p['status']}" + (f" — {p.get('stderr_tail')}" if p.get("stderr_tail") else ""))
    lines += ["", "## Speed", ""]
    lines += table_head([
        "length", "eager s", "onnxruntime s", "eager / ORT (separate)", "rounds", "eager s (interleaved)",
        "ORT s (interleaved)", "eager / ORT (interleaved)", "max abs Δ (ORT vs eager)", "eager load s", "ORT load s",
    ])  # fmt: skip
    for n in args.lengths:
        e, o, i = g("eager", n), g("onnxruntime", n), g("interleaved", n)
        lines.append(table_row([
            str(n),
            fmt_time(e, args.repeats),
            fmt_time(o, args.repeats),
            fmt_ratio(ratio(e, o, "median_s")),
            str(i["repeats"]) if ok(i) else "—",
            f"{i['eager_median_s']:.3f}" if ok(i) else fmt_time(i, 0),
            f"{i['ort_median_s']:.3f}" if ok(i) else "—",
            fmt_ratio(i["eager_over_ort"]) if ok(i) else "—",
            f"{i['max_abs_diff']:.1e}" if ok(i) else "—",
            f"{e['load_s']:.1f}" if ok(e) else "—",
            f"{o['load_s']:.1f}" if ok(o) else "—",
        ]))  # fmt: skip
    lines += ["", "## Memory (MiB, RSS of each runtime's own process)", ""]
    lines += table_head([
        "length", "eager peak", "ORT peak", "ORT / eager peak", "eager after imports", "ORT after imports",
        "eager after load", "ORT after load", "eager growth in forward", "ORT growth in forward",
    ])  # fmt: skip
    for n in args.lengths:
        e, o = g("eager", n), g("onnxruntime", n)
        lines.append(table_row([
            str(n),
            fmt_mem(e),
            fmt_mem(o),
            fmt_ratio(ratio(o, e, "peak_rss_mib")),
            fmt_mem(e, "rss_after_imports_mib"),
            fmt_mem(o, "rss_after_imports_mib"),
            fmt_mem(e, "rss_after_load_mib"),
            fmt_mem(o, "rss_after_load_mib"),
            fmt_mem(e, "growth_mib"),
            fmt_mem(o, "growth_mib"),
        ]))  # fmt: skip
    lines += variant_table(args, results)
    lines += profile_table(args, results)
    lines += [
        "",
        "Times: median seconds per forward (batch 1) after one warm-up; `(n=k)`: only k repeats fitted in the "
        "timeout. `eager / ORT` > 1: ONNX Runtime is faster. `separate`: each runtime in its own fresh process "
        "(the processes the memory columns come from); `interleaved`: both in one process, round by round, the "
        "ratio the median of the rounds' ratios (the host's drift cancels). `max abs Δ`: largest |ORT - eager| "
        f"over last_hidden_state on the same ids (tests/test_export_bigbird.py asserts <= {PARITY_TOL:g} on tiny "
        "models). Load: from_pretrained of the saved folder / InferenceSession creation (graph optimisation). "
        "Peak: the whole process's peak RSS (VmHWM: imports, weights, forwards; the eager process imports torch "
        "and transformers, the ORT one numpy and onnxruntime only; not ru_maxrss, which after fork + exec starts "
        "at the parent's RSS). After imports / after load: VmRSS then. Growth in "
        "forward: the high-water RSS over the warm-up and timed forwards (reset after loading) minus the RSS "
        "after loading.",
        "",
        "## Targets",
        "",
    ]
    lines += summary(args, results)
    return "\n".join(lines) + "\n"


def variant_table(args, results: dict) -> list[str]:
    """ORT with its default SessionOptions next to load_exported's session and eager (no target)."""
    rows = [(n, results.get((ORT_DEFAULTS, n))) for n in args.lengths]
    if all(r is None for _, r in rows):
        return []
    lines = [
        "",
        "## Not a target: ORT with its default SessionOptions (memory pattern and buffer reuse on; own process, "
        "else as above)",
        "",
    ]
    header = ["length", "s", "eager / this (separate)", "peak MiB", "this / eager peak",
              "this / load_exported ORT peak", "growth in forward MiB"]  # fmt: skip
    lines += table_head(header)
    for n, r in rows:
        e, o = results.get(("eager", n)), results.get(("onnxruntime", n))
        lines.append(table_row([
            str(n),
            fmt_time(r, args.repeats),
            fmt_ratio(ratio(e, r, "median_s")),
            fmt_mem(r),
            fmt_ratio(ratio(r, e, "peak_rss_mib")),
            fmt_ratio(ratio(r, o, "peak_rss_mib")),
            fmt_mem(r, "growth_mib"),
        ]))  # fmt: skip
    lines.append("")
    lines.append(
        "By default ORT plans the memory of a run from the previous run of the same shapes (memory pattern) and "
        "allocates it as one block, and gives a tensor the buffer of a dead one of the same size (buffer reuse), "
        "which keeps that buffer for its size class until the end of the run; load_exported turns both off, so "
        "each tensor is taken from the arena when made and given back after its last reader. Separate-process "
        "times carry the host's drift: compare them with the separate-process columns above."
    )
    return lines


def profile_table(args, results: dict) -> list[str]:
    n = max(args.lengths)
    r = results.get(("profile", n))
    if r is None:
        return []
    if not ok(r):
        return ["", f"ORT profile at {n}: {fmt_time(r, 0)}"]
    lines = [
        "",
        f"## ONNX Runtime profile at {n} tokens (one run after a warm-up; enable_profiling)",
        "",
        f"Run {r['median_s']:.3f} s (with profiling on); kernel time summed over nodes {r['kernel_total_s']:.3f} s "
        f"(with {args.threads} intra-op threads a node's time is wall time, so the sum is about the run).",
        "",
        *table_head(["op type", "s", "share of kernel time", "nodes run"]),
    ]
    for op in r["ops"][:TOP_OPS]:
        lines.append(table_row([op["op"], f"{op['s']:.3f}", f"{100 * op['share']:.1f}%", str(op["calls"])]))
    rest = r["ops"][TOP_OPS:]
    if rest:
        share, calls = sum(o["share"] for o in rest), sum(o["calls"] for o in rest)
        cells = [f"{len(rest)} other op types", f"{sum(o['s'] for o in rest):.3f}", f"{100 * share:.1f}%", str(calls)]
        lines.append(table_row(cells))
    return lines


def speed_ratio(results: dict, n: int) -> tuple[float | None, str]:
    """eager / ORT at length n: interleaved when measured, else from the separate processes."""
    i = results.get(("interleaved", n))
    if ok(i):
        return i["eager_over_ort"], "interleaved"
    return ratio(results.get(("eager", n)), results.get(("onnxruntime", n)), "median_s"), "separate processes"


def summary(args, results: dict) -> list[str]:
    out = []
    speeds = {n: speed_ratio(results, n) for n in args.lengths}
    mems = {n: ratio(results.get(("onnxruntime", n)), results.get(("eager", n)), "peak_rss_mib") for n in args.lengths}
    for n, (value, where) in speeds.items():
        out.append(target_line(f"{n}: speed eager time / ORT time ({where}; > 1: ORT faster)", value, ">=", 1.0))
    for n, value in mems.items():
        out.append(target_line(f"{n}: peak memory ORT / eager (peak RSS of each process)", value, "<=", 1.0))
    values = [v for v, _ in speeds.values()]
    worst = None if not values or None in values else min(values)
    out.append(target_line("ORT at least as fast as eager at every length (min of eager / ORT)", worst, ">=", 1.0))
    values = list(mems.values())
    worst = None if not values or None in values else max(values)
    out.append(target_line("ORT peak memory no higher than eager's at every length (max of ORT / eager)", worst,
                           "<=", 1.0))  # fmt: skip
    diffs = [results.get(("interleaved", n)) for n in args.lengths]
    diffs = [r["max_abs_diff"] for r in diffs if ok(r)]
    value = max(diffs) if len(diffs) == len(args.lengths) else None
    shown = "n/a (not measured)" if value is None else f"{value:.1e}"
    out.append(f"- parity: max abs Δ ORT vs eager over every length: {shown}  [no target; tests assert <= "
               f"{PARITY_TOL:g} on tiny models]")  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_int = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--lengths", type=csv_int, default=None,
                   help=f"comma list of lengths (default {','.join(map(str, LENGTHS))})")  # fmt: skip
    p.add_argument("--repeats", type=int, default=None,
                   help="timed forwards after one warm-up (median) and interleaved rounds (default 5)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: a tiny model, lengths {','.join(map(str, QUICK_LENGTHS))}, 1 repeat "
                   "(unless --lengths/--repeats given)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and ORT intra_op_num_threads")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker subprocess (the export's too)")
    p.add_argument("--mem-limit-mib", type=float, default=None,
                   help="kill a worker whose RSS exceeds this (default: 90%% of MemAvailable at start)")  # fmt: skip
    p.add_argument("--longbird-backend", default="auto", help="eager attention_backend (auto/gather/dense)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the ORT profile at the longest length")  # fmt: skip
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the saved model and model.onnx here (reused when both exist; default: a temporary "
                   "folder, removed at the end)")  # fmt: skip
    p.add_argument("--out", "--output", dest="out", type=Path, default=ROOT / "bench" / "results" / "export.md")
    # worker-only
    p.add_argument("--no-variant", dest="variant", action="store_false",
                   help="skip the extra ORT worker with ORT's default SessionOptions (not a target)")  # fmt: skip
    p.add_argument("--worker", choices=("prepare", *RUNTIMES, ORT_DEFAULTS, "interleaved", "profile"),
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else LENGTHS)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if not args.lengths or any(n < 1 for n in args.lengths):
        p.error("--lengths: a comma list of positive lengths")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    temporary = args.work_dir is None
    if temporary:
        args.work_dir = Path(tempfile.mkdtemp(prefix="bench_export_"))
    label = lambda kind, n: f"{kind:<18} {'' if n is None else n:>6}"  # noqa: E731
    plan = [(("prepare", None), dict(kind="prepare", length=None), label("prepare", None))]
    for n in args.lengths:
        kinds = (*RUNTIMES, "interleaved") + ((ORT_DEFAULTS,) if args.variant else ())
        plan += [((kind, n), dict(kind=kind, length=n), label(kind, n)) for kind in kinds]
    if args.profile:
        n = max(args.lengths)
        plan.append((("profile", n), dict(kind="profile", length=n), label("profile", n)))
    try:
        run_all(args, plan, environment, predicted_skip, run_one, report)
    finally:
        if temporary:
            shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
