#!/usr/bin/env python
"""CPU benchmark of a padded batch of long-tailed lengths: what padding costs (one invocation, one table).

The batch: 8 examples of lengths 4096, 2600, 1700, 1100, 800, 600, 450, 350 (11,696 real tokens),
like real long-document data; `--lengths` changes it. Models (the sizes of bench_encoders.py:
hidden 768, 12 heads, FFN 3072, 4 layers, vocab 32000, fp32, dropout 0, seeded random init,
max_position_embeddings max(4096, longest length)):

  longbird    longbird.BigBirdModel, block_sparse, block 64, 3 random blocks; three inputs:
                padded     the batch right-padded to the longest length (pad id 0, attention_mask 0)
                alone      each example alone (batch 1, no padding); reported: the SUM of the times
                flattened  all examples in one row [1, total] with position_ids restarting at 0 per
                           example, exactly as transformers.DataCollatorWithFlattening() returns it
                           (its `labels` dropped: the base model takes none)
  hf_bigbird  transformers.BigBirdModel, same config, on the padded batch (the reference)
  modernbert  transformers.ModernBertModel (4 layers, hidden 768, 12 heads, intermediate 3072,
              vocab 32000, SDPA, transformers' default global/local layer pattern and window), on
              the padded batch as a user runs it: model(input_ids, attention_mask)

Modes: `fwd` (torch.no_grad, eval), `train` (forward + backward of the sum of last_hidden_state
over the real tokens, bench_encoders' loss with padding masked out; no optimizer) and, for longbird,
`train_ckpt` (the same step after model.gradient_checkpointing_enable(): activations of one layer at
a time, what a user turns on when memory is the limit) and `train_micro` (padded batch only: the same
step in token-budget micro-batches of at most the longest example's length, gradients accumulated,
as `longbird train --micro_batch_tokens` runs it: longbird.tasks.micro_batches' split_by_tokens
and run_in_turn). The parent runs
one fresh subprocess (this script with --worker) per (model, input, mode); the worker builds the
model, does one warm-up, times `--repeats` runs and prints one JSON line with the median and
resource.getrusage(RUSAGE_SELF).ru_maxrss (peak RSS of the whole process). The `alone` worker runs
the examples longest first, each with its own warm-up, so the peak RSS after the first one is that
of the longest example alone. A model that raises (e.g. the flattened format before longbird
supports it) is recorded as `error: <first line>` and the run goes on. longbird's padded and
flattened forward workers also check, after timing, that every example's output equals its output
alone (max |difference|; `--no-check` turns it off). Last, per mode, one more longbird worker times
the three inputs round by round in one process (`interleaved`: padded, flattened, every example alone,
the order rotating each round): the host's drift over a run hits all three alike, so the targets'
ratios (padded / Σ alone) come from it, each the median of the rounds' ratios.

    python bench/bench_padding.py                      # full run (run on an idle CPU)
    python bench/bench_padding.py --quick              # smoke run: lengths 512,300,200,100, 1 repeat
    python bench/bench_padding.py --models longbird --skip-train

Output: Markdown (environment, table, target summary) on stdout and in bench/results/padding.md;
raw worker records in bench/results/padding.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
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

MODELS = ("longbird", "hf_bigbird", "modernbert")
LAYOUTS = {"longbird": ("padded", "alone", "flattened"), "hf_bigbird": ("padded",), "modernbert": ("padded",)}
# longbird's three inputs timed round by round in one process (the ratios of the targets)
INTERLEAVED = "interleaved"
LENGTHS = (4096, 2600, 1700, 1100, 800, 600, 450, 350)
QUICK_LENGTHS = (512, 300, 200, 100)
MODES = ("fwd", "train", "train_ckpt", "train_micro")
# Training with model.gradient_checkpointing_enable(): longbird only (its memory target, both sides checkpointed).
CKPT_MODELS = ("longbird",)
# Training in token-budget micro-batches: longbird's padded batch only (an example alone is one micro-batch).
MICRO = ("longbird", "padded")
PAD_ID = 0
CHECK_TOL = 1e-4  # max |difference| of an example's output batched vs alone, fp32
# A reference's training step is predicted as this many forward passes (skip if it cannot fit).
TRAIN_OVER_FWD = 3.0


def max_positions(lengths: list[int]) -> int:
    return max(4096, max(lengths))


# ----------------------------------------------------------------------------------------------
# Worker: one (model, input, mode) in this fresh process
# ----------------------------------------------------------------------------------------------


def build_model(name: str, max_pos: int, backend: str):
    import torch

    torch.manual_seed(0)
    if name in ("longbird", "hf_bigbird"):
        return bigbird_model(name, max_pos, backend)
    if name == "modernbert":
        # FFN 3072 like the other models here (transformers' default is 1152, GLU)
        return modernbert_model(max_pos, PAD_ID, intermediate_size=SIZES["intermediate_size"])
    raise ValueError(f"unknown model {name!r}")


def make_examples(lengths: list[int]):
    """One token sequence per length; ids >= 3, never the pad id."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    return [torch.randint(3, SIZES["vocab_size"], (n,), generator=gen) for n in lengths]


def padded_inputs(examples) -> dict:
    import torch

    longest = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), longest), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, e in enumerate(examples):
        input_ids[i, : len(e)] = e
        attention_mask[i, : len(e)] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask)


def flattened_inputs(examples) -> dict:
    from transformers import DataCollatorWithFlattening

    batch = DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": e.tolist()} for e in examples])
    batch.pop("labels", None)  # the base model takes no labels
    return dict(batch)


def alone_inputs(example) -> dict:
    import torch

    input_ids = example.unsqueeze(0)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))


def make_step(model, inputs: dict, mode: str):
    import torch

    if mode == "fwd":

        def step():
            with torch.no_grad():
                model(**inputs)

        return step
    from longbird.tasks.micro_batches import MicroBatch, real_lengths, run_in_turn, split_by_tokens

    # train_micro: budget the longest example (the loss is a sum: no piece weights)
    pieces = (
        split_by_tokens(inputs, int(real_lengths(inputs).max())) if mode == "train_micro" else [MicroBatch(inputs, 1)]
    )

    def backward(piece: MicroBatch, last: bool) -> None:
        hidden = model(**piece.inputs).last_hidden_state
        mask = piece.inputs.get("attention_mask")
        loss = hidden.sum() if mask is None else (hidden * mask.unsqueeze(-1).to(hidden.dtype)).sum()
        loss.backward()

    def step():
        run_in_turn(pieces, backward, model.device)
        model.zero_grad(set_to_none=True)

    return step


def check_vs_alone(model, examples, layout: str, inputs: dict) -> dict:
    """Max |difference| between each example's output in `inputs` and its output alone (real tokens)."""
    import torch

    model.eval()
    diffs = []
    with torch.no_grad():
        out = model(**inputs).last_hidden_state
        offset = 0
        for i, e in enumerate(examples):
            n = len(e)
            ref = model(**alone_inputs(e)).last_hidden_state[0]
            got = out[i, :n] if layout == "padded" else out[0, offset : offset + n]
            offset += n
            diffs.append((got - ref).abs().max().item())
    return dict(max_abs_diff_vs_alone=max(diffs), abs_diff_vs_alone=diffs)


def worker(args) -> None:
    t_start = time.perf_counter()
    deadline = t_start + 0.9 * args.timeout
    base = dict(model=args.model, layout=args.layout, mode=args.mode, lengths=args.lengths)
    try:
        import torch

        torch.set_num_threads(args.threads)
        model = build_model(args.model, max_positions(args.lengths), args.longbird_backend)
        model.train(args.mode != "fwd")
        if args.mode == "train_ckpt":
            model.gradient_checkpointing_enable()
        n_params = sum(p.numel() for p in model.parameters())
        examples = make_examples(args.lengths)
        record = dict(base, params=n_params, rss_after_build_mib=peak_mib(), threads=torch.get_num_threads())
        if args.layout == INTERLEAVED:
            record.update(time_interleaved(model, examples, args.mode, args.repeats, deadline))
        elif args.layout == "alone":
            order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
            per_example = [None] * len(examples)
            for k, i in enumerate(order):
                remaining = sum(len(examples[j]) for j in order[k:])
                share = (deadline - time.perf_counter()) * len(examples[i]) / remaining
                r = time_step(make_step(model, alone_inputs(examples[i]), args.mode), args.repeats, share)
                per_example[i] = dict(r, index=i, length=len(examples[i]), peak_rss_after_mib=peak_mib())
                if k == 0:
                    record["longest_peak_rss_mib"] = peak_mib()
            record.update(
                median_s=sum(r["median_s"] for r in per_example),
                repeats=min(r["repeats"] for r in per_example),
                examples=per_example,
            )
        else:
            inputs = padded_inputs(examples) if args.layout == "padded" else flattened_inputs(examples)
            record["input_shape"] = list(inputs["input_ids"].shape)
            record.update(time_step(make_step(model, inputs, args.mode), args.repeats, deadline - time.perf_counter()))
        record.update(status="ok", peak_rss_mib=peak_mib(), repeats_requested=args.repeats)
        if args.check and args.model == "longbird" and args.layout in ("padded", "flattened") and args.mode == "fwd":
            try:  # after the peak was read: the check's own allocations are not counted
                record.update(check_vs_alone(model, examples, args.layout, inputs))
            except Exception as e:  # noqa: BLE001
                record["check_error"] = first_line(e)
    except Exception as e:  # noqa: BLE001 -- any failure is a result, never a crash of the whole run
        text = first_line(e)
        oom = isinstance(e, MemoryError) or any(s in text for s in ("can't allocate memory", "out of memory"))
        record = dict(base, status="OOM" if oom else f"error: {text}", traceback=traceback.format_exc()[-2000:])
    record["wall_s"] = time.perf_counter() - t_start
    print("RESULT " + json.dumps(record), flush=True)


def time_interleaved(model, examples, mode: str, rounds: int, deadline: float) -> dict:
    """padded, flattened and every example alone, round by round in one process (`time_rounds`)."""
    import statistics

    alone = [make_step(model, alone_inputs(e), "train" if mode == "train_micro" else mode) for e in examples]

    def all_alone():
        for step in alone:
            step()

    steps = {"padded": make_step(model, padded_inputs(examples), mode), "alone": all_alone}
    if mode != "train_micro":  # a flattened row is one example to the splitter: nothing to micro-batch
        steps["flattened"] = make_step(model, flattened_inputs(examples), mode)
    times = time_rounds(steps, rounds, deadline)
    ratios = {f"{name}_over_alone": median_ratio(times[name], times["alone"]) for name in steps if name != "alone"}
    medians = {f"{name}_median_s": statistics.median(v) for name, v in times.items()}
    return dict(ratios, **medians, times_s=times, repeats=len(times["alone"]), median_s=medians["padded_median_s"])


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


# ----------------------------------------------------------------------------------------------
# Parent: spawn, guard, collect
# ----------------------------------------------------------------------------------------------


def run_one(args, model: str, layout: str, mode: str, mem_limit_mib: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model", model,
        "--layout", layout,
        "--mode", mode,
        "--lengths", ",".join(map(str, args.lengths)),
        "--repeats", str(args.repeats),
        "--threads", str(args.threads),
        "--timeout", str(args.timeout),
        "--longbird-backend", args.longbird_backend,
    ]  # fmt: skip
    if not args.check:
        cmd.append("--no-check")
    base = dict(model=model, layout=layout, mode=mode, lengths=args.lengths)
    return run_worker(cmd, base, args.threads, args.timeout, mem_limit_mib)


def predicted_skip(args, results: dict, model: str, layout: str, mode: str) -> str | None:
    """A reference's training step is skipped when its forward failed or predicts it cannot fit."""
    if mode == "fwd" or model == "longbird" or args.no_skip:
        return None
    f = results.get((model, layout, "fwd"))
    if f is None:
        return None
    if f["status"] != "ok":
        short = "OOM" if f["status"].startswith("OOM") else f["status"].replace("skipped: ", "")
        return f"skipped: fwd {short}"
    step = TRAIN_OVER_FWD * f["median_s"]
    if 2 * step > args.timeout:  # the warm-up and one timed step must fit
        return f"skipped: predicted ~{step:.0f} s/step"
    return None


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def environment(args) -> list[str]:
    real, longest = sum(args.lengths), max(args.lengths)
    slots = longest * len(args.lengths)
    return [
        *environment_lines(args.threads),
        f"- batch: {len(args.lengths)} examples, lengths {','.join(map(str, args.lengths))}: {real:,} real tokens; "
        f"padded {len(args.lengths)}×{longest} = {slots:,} slots ({100 * (1 - real / slots):.0f}% padding); "
        f"flattened 1×{real:,}",
        f"- repeats {args.repeats} (median, after 1 warm-up), timeout {args.timeout:.0f} s per run, "
        f"longbird attention_backend={args.longbird_backend}",
    ]


def above_build(r: dict | None, key: str) -> dict | None:
    """The record with `key` minus its RSS after building the model (the baseline left out)."""
    if not ok(r) or key not in r:
        return None
    return dict(r, delta=r[key] - r["rss_after_build_mib"])


def fmt_diff(r: dict | None) -> str:
    if not ok(r):
        return "—"
    if "check_error" in r:
        return "check " + fmt_time(dict(status="error: " + r["check_error"]), 0)
    d = r.get("max_abs_diff_vs_alone")
    return "—" if d is None else f"{d:.1e}"


def describe(args, layout: str) -> str:
    n, longest, real = len(args.lengths), max(args.lengths), sum(args.lengths)
    if layout == "padded":
        return f"padded {n}×{longest}"
    if layout == "flattened":
        return f"flattened 1×{real} (position_ids restart)"
    return f"alone, Σ of {n}"


def report(args, results: dict, env_lines: list[str]) -> str:
    g = lambda m, lay, md: results.get((m, lay, md))  # noqa: E731
    lines = ["# Padding benchmark (CPU)", "", *env_lines, ""]
    header = [
        "model", "input", "fwd s", "train s", "fwd peak MiB", "train peak MiB",
        "fwd / Σalone", "train / Σalone", "train peak / longest alone",
        "fwd / longbird padded", "train / longbird padded", "max abs Δ vs alone",
    ]  # fmt: skip
    lines += table_head(header)
    al_f, al_t = g("longbird", "alone", "fwd"), g("longbird", "alone", "train")
    lb_f, lb_t = g("longbird", "padded", "fwd"), g("longbird", "padded", "train")
    skipped = "skipped (--skip-train)"
    for m in args.models:
        for layout in LAYOUTS[m]:
            f, t = g(m, layout, "fwd"), g(m, layout, "train")
            longbird_row = m == "longbird" and layout != "alone"
            row = [
                m,
                describe(args, layout),
                fmt_time(f, args.repeats),
                skipped if args.skip_train else fmt_time(t, args.repeats),
                fmt_mem(f, "longest_peak_rss_mib" if layout == "alone" else "peak_rss_mib"),
                fmt_mem(t, "longest_peak_rss_mib" if layout == "alone" else "peak_rss_mib"),
                fmt_ratio(ratio(f, al_f, "median_s")) if longbird_row else "—",
                fmt_ratio(ratio(t, al_t, "median_s")) if longbird_row else "—",
                fmt_ratio(ratio(t, al_t, "peak_rss_mib", "longest_peak_rss_mib")) if longbird_row else "—",
                fmt_ratio(ratio(f, lb_f, "median_s")) if (m, layout) != ("longbird", "padded") else "—",
                fmt_ratio(ratio(t, lb_t, "median_s")) if (m, layout) != ("longbird", "padded") else "—",
                fmt_diff(f),
            ]
            lines.append(table_row(row))
            if layout == "alone":
                for k in sorted(range(len(args.lengths)), key=lambda i: -args.lengths[i]):
                    ef = al_f["examples"][k] if ok(al_f) else None
                    et = al_t["examples"][k] if ok(al_t) else None
                    cells = [
                        "",
                        f"  alone, L={args.lengths[k]}",
                        "—" if ef is None else f"{ef['median_s']:.3f}",
                        "—" if et is None else f"{et['median_s']:.3f}",
                    ]
                    lines.append(table_row(cells + [""] * (len(header) - len(cells))))
    lines += checkpointing_table(args, results)
    lines += micro_batch_table(args, results)
    lines += interleaved_table(args, results)
    notes = [
        "",
        "Times: median seconds per call (whole batch; `alone, Σ`: the sum of the examples' medians, each "
        "alone at batch 1); `(n=k)`: only k repeats fitted in the timeout. Train: forward + backward of the "
        "sum of last_hidden_state over the real tokens, no optimizer. Peak MiB: ru_maxrss of a fresh process "
        "running only that model, input and mode (includes the Python/torch baseline); for `alone`, the peak "
        "after the longest example, which runs first. `fwd / longbird padded`: this row's time / longbird's "
        "padded time (> 1: longbird padded is faster). `max abs Δ vs alone`: largest difference between an "
        "example's output in this input and its output alone (forward, real tokens).",
    ]
    if max(args.lengths) <= 11 * 64:
        notes.append(
            "At a padded length <= 704 (= (5 + 2·3 random)·64) transformers' BigBird switches to full attention."
        )
    lines += notes + ["", "## Targets", ""]
    lines += summary(args, results)
    return "\n".join(lines) + "\n"


def checkpointing_table(args, results: dict) -> list[str]:
    """longbird's training step with gradient checkpointing, when it was run (`train_ckpt`)."""
    g = lambda lay: results.get(("longbird", lay, "train_ckpt"))  # noqa: E731
    if all(g(lay) is None for lay in LAYOUTS["longbird"]):
        return []
    header = ["longbird, gradient checkpointing", "train s", "train peak MiB", "train / Σalone",
              "train peak / longest alone", "train s without checkpointing"]  # fmt: skip
    lines = ["", *table_head(header)]
    for layout in LAYOUTS["longbird"]:
        t, plain = g(layout), results.get(("longbird", layout, "train"))
        key = "longest_peak_rss_mib" if layout == "alone" else "peak_rss_mib"
        batched = layout != "alone"
        lines.append(
            table_row([
                describe(args, layout),
                fmt_time(t, args.repeats),
                fmt_mem(t, key),
                fmt_ratio(ratio(t, g("alone"), "median_s")) if batched else "—",
                fmt_ratio(ratio(t, g("alone"), "peak_rss_mib", "longest_peak_rss_mib")) if batched else "—",
                fmt_time(plain, args.repeats),
            ])
        )  # fmt: skip
    return lines


def micro_batch_table(args, results: dict) -> list[str]:
    """longbird's padded batch trained in token-budget micro-batches, when it was run (`train_micro`)."""
    r = results.get(("longbird", "padded", "train_micro"))
    if r is None:
        return []
    alone, plain = results.get(("longbird", "alone", "train")), results.get(("longbird", "padded", "train"))
    header = ["longbird, micro-batches of ≤ the longest example", "train s", "train peak MiB", "train / Σalone",
              "train peak / longest alone", "train peak without micro-batches"]  # fmt: skip
    row = [
        describe(args, "padded"),
        fmt_time(r, args.repeats),
        fmt_mem(r, "peak_rss_mib"),
        fmt_ratio(ratio(r, alone, "median_s")),
        fmt_ratio(ratio(r, alone, "peak_rss_mib", "longest_peak_rss_mib")),
        fmt_mem(plain, "peak_rss_mib"),
    ]
    return ["", *table_head(header), table_row(row)]


def interleaved_table(args, results: dict) -> list[str]:
    """longbird's inputs timed round by round in one process: the ratios the targets use."""
    rows = [(mode, results.get(("longbird", INTERLEAVED, mode))) for mode in MODES]
    rows = [(mode, r) for mode, r in rows if r is not None]
    if not rows:
        return []
    header = ["longbird, interleaved in one process", "rounds", "padded s", "flattened s", "Σ alone s",
              "padded / Σ alone", "flattened / Σ alone"]  # fmt: skip
    lines = ["", *table_head(header)]
    for mode, r in rows:
        cells = [mode, str(r.get("repeats", "—"))]
        if ok(r):
            cells += [
                f"{r[k + '_median_s']:.3f}" if k + "_median_s" in r else "—" for k in ("padded", "flattened", "alone")
            ]
            cells += [f"{r[k + '_over_alone']:.2f}" if k + "_over_alone" in r else "—" for k in ("padded", "flattened")]
        else:
            cells += [fmt_time(r, 0)] + ["—"] * 4
        lines.append(table_row(cells))
    lines.append(
        "Each round runs the padded batch, the flattened batch and every example alone back to back (the order "
        "rotating; `train_micro`: the padded batch in micro-batches against every example alone); times are medians "
        "over rounds, ratios the median of each round's ratio. The targets use these ratios; the table above times "
        "each input in its own process (needed for its peak memory)."
    )
    return lines


def interleaved_ratio(results: dict, mode: str, layout: str) -> float | None:
    r = results.get(("longbird", INTERLEAVED, mode))
    return r[f"{layout}_over_alone"] if ok(r) else None


def summary(args, results: dict) -> list[str]:
    g = lambda m, lay, md: results.get((m, lay, md))  # noqa: E731
    out = []

    def target(label: str, value: float | None, op: str, bound: float, fmt: str = "{:.2f}") -> None:
        out.append(target_line(label, value, op, bound, fmt))

    def info(label: str, value: float | None, note: str = "no target", fmt: str = "{:.2f}") -> None:
        out.append(f"- {label}: {'n/a (not measured)' if value is None else fmt.format(value)}  [{note}]")

    al_f, al_t = g("longbird", "alone", "fwd"), g("longbird", "alone", "train")
    lb_f, lb_t = g("longbird", "padded", "fwd"), g("longbird", "padded", "train")
    fl_f, fl_t = g("longbird", "flattened", "fwd"), g("longbird", "flattened", "train")
    for mode, r, a in (("fwd", lb_f, al_f), ("train", lb_t, al_t)):
        value = interleaved_ratio(results, mode, "padded")
        where = "interleaved" if value is not None else "separate processes"
        value = ratio(r, a, "median_s") if value is None else value
        target(f"longbird padded {mode} / Σ alone {mode} ({where})", value, "<=", 1.2)
    target(
        f"longbird peak memory: padded train / longest ({max(args.lengths)}) alone train",
        ratio(lb_t, al_t, "peak_rss_mib", "longest_peak_rss_mib"),
        "<=",
        1.3,
    )
    info(
        "longbird peak memory above the built model (baseline left out): padded train / longest alone train",
        ratio(above_build(lb_t, "peak_rss_mib"), above_build(al_t, "longest_peak_rss_mib"), "delta"),
    )
    lb_c, al_c = g("longbird", "padded", "train_ckpt"), g("longbird", "alone", "train_ckpt")
    if lb_c is not None or al_c is not None:
        target(
            "longbird peak memory with gradient checkpointing (both): padded train / longest alone train",
            ratio(lb_c, al_c, "peak_rss_mib", "longest_peak_rss_mib"),
            "<=",
            1.3,
        )
        value = interleaved_ratio(results, "train_ckpt", "padded")
        value = ratio(lb_c, al_c, "median_s") if value is None else value
        info("longbird with gradient checkpointing: padded train / Σ alone train", value)
    lb_m = g("longbird", "padded", "train_micro")
    if lb_m is not None:
        target(
            "longbird peak memory in micro-batches (--micro_batch_tokens = the longest): padded train / longest "
            "alone train",
            ratio(lb_m, al_t, "peak_rss_mib", "longest_peak_rss_mib"),
            "<=",
            1.3,
        )
        value = interleaved_ratio(results, "train_micro", "padded")
        where = "interleaved" if value is not None else "separate processes"
        value = ratio(lb_m, al_t, "median_s") if value is None else value
        target(f"longbird padded train in micro-batches / Σ alone train ({where})", value, "<=", 1.2)
    for mode, r, a in (("fwd", fl_f, al_f), ("train", fl_t, al_t)):
        if r is not None and r["status"] != "ok":
            out.append(f"- longbird flattened {mode} / Σ alone {mode}: {r['status']}  [no target]")
        else:
            value = interleaved_ratio(results, mode, "flattened")
            value = ratio(r, a, "median_s") if value is None else value
            info(f"longbird flattened {mode} / Σ alone {mode}", value, "no target; padded: <= 1.2")
    for name, r in (("padded", lb_f), ("flattened", fl_f)):
        d = r.get("max_abs_diff_vs_alone") if ok(r) else None
        target(f"longbird {name}: every example's output equals its output alone (max abs Δ)", d, "<=", CHECK_TOL,
               "{:.1e}")  # fmt: skip
    for ref, bound in (("hf_bigbird", 4.0), ("modernbert", 2.0)):
        target(f"padded fwd speedup longbird vs {ref}", inv(ratio(lb_f, g(ref, "padded", "fwd"), "median_s")),
               ">=", bound)  # fmt: skip
        info(f"padded train speedup longbird vs {ref}", inv(ratio(lb_t, g(ref, "padded", "train"), "median_s")))
    return out


# ----------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_int = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--lengths", type=csv_int, default=None,
                   help=f"comma list of example lengths (default {','.join(map(str, LENGTHS))})")  # fmt: skip
    p.add_argument("--models", type=csv, default=list(MODELS), help=f"comma list from {','.join(MODELS)}")
    p.add_argument("--repeats", type=int, default=None, help="timed runs after one warm-up (median; default 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: lengths {','.join(map(str, QUICK_LENGTHS))} and 1 repeat "
                   "(unless --lengths/--repeats given)")  # fmt: skip
    p.add_argument("--skip-train", action="store_true", help="forward only")
    p.add_argument("--modes", type=csv, default=list(MODES),
                   help=f"comma list from {','.join(MODES)} (train_ckpt, train_micro: longbird only)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, input, mode) subprocess")
    p.add_argument("--no-skip", action="store_true",
                   help="run a reference's training even when predicted slower than --timeout")  # fmt: skip
    p.add_argument("--mem-limit-mib", type=float, default=None,
                   help="kill a worker whose RSS exceeds this (default: 90%% of MemAvailable at start)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each worker")
    p.add_argument("--longbird-backend", default="auto", help="longbird attention_backend (auto/gather/dense/flex)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the check of longbird's padded/flattened outputs against each example alone")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "padding.md")
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--layout", choices=(*LAYOUTS["longbird"], INTERLEAVED), help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else LENGTHS)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown models {bad}; choose from {MODELS}")
    if not args.lengths or any(n < 1 for n in args.lengths):
        p.error("--lengths: a comma list of positive lengths")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        p.error(f"--modes: a comma list from {','.join(MODES)}; got {args.modes}")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    modes = ["fwd"] if args.skip_train else args.modes
    # every forward first (a reference's training is predicted from its forward), then every training step
    plan = [
        (
            (m, layout, mode),
            dict(model=m, layout=layout, mode=mode, lengths=args.lengths),
            f"{mode:<5} {m:<10} {layout:<9}",
        )
        for mode in modes
        for m in args.models
        for layout in LAYOUTS[m]
        if (mode != "train_ckpt" or m in CKPT_MODELS) and (mode != "train_micro" or (m, layout) == MICRO)
    ]
    if "longbird" in args.models:  # the ratios' run: longbird's three inputs round by round, per mode
        plan += [
            (("longbird", INTERLEAVED, mode), dict(model="longbird", layout=INTERLEAVED, mode=mode,
             lengths=args.lengths), f"{mode:<5} longbird   interleaved")
            for mode in modes
        ]  # fmt: skip
    run_all(args, plan, environment, predicted_skip, run_one, report)


if __name__ == "__main__":
    main()
