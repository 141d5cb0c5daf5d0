"""What the CPU encoder benchmarks (bench_encoders.py, bench_padding.py) share; not a script.

- the model sizes (SIZES), the block-sparse BigBird both build, longbird's or transformers'
  (bigbird_model), and transformers' ModernBERT at the same sizes (modernbert_model)
- in the worker: peak RSS of the process (peak_mib), one warm-up and the timed repeats (time_step)
- in the parent: one worker subprocess with its timeout and RSS guard (run_worker), the whole run
  over a plan of workers with its progress lines, JSONL records and report (run_all), and the /proc
  readings (mem_available_mib, rss_mib, loadavg)
- in the report: the environment lines at its top (environment_lines, with busy; cpu_bf16_line), Markdown table rows
  (table_head, table_row), cells (fmt_time, fmt_mem, fmt_ratio), ratios of two records (ok, ratio,
  inv) and the target lines (target_line)

The scripts import it after putting their own folder on sys.path, so it needs no install.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = dict(
    vocab_size=32000,
    hidden_size=768,
    num_hidden_layers=4,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


# ----------------------------------------------------------------------------------------------
# Worker
# ----------------------------------------------------------------------------------------------


def bigbird_model(name: str, max_pos: int, backend: str):
    """BigBirdModel at SIZES, block_sparse, block 64, 3 random blocks, no pooler: longbird's
    (`name` "longbird", with attention_backend=`backend`) or transformers' (any other name)."""
    kwargs = dict(
        **SIZES,
        max_position_embeddings=max_pos,
        attention_type="block_sparse",
        block_size=64,
        num_random_blocks=3,
    )
    if name == "longbird":
        import longbird

        config = longbird.BigBirdConfig(**kwargs, attention_backend=backend)
        return longbird.BigBirdModel(config, add_pooling_layer=False)
    import transformers

    config = transformers.BigBirdConfig(**kwargs)
    return transformers.BigBirdModel(config, add_pooling_layer=False)


def modernbert_model(max_pos: int, pad_id: int = 0, **overrides):
    """transformers.ModernBertModel at SIZES' vocabulary, hidden size, layers and heads, SDPA, dropout 0,
    special token ids inside the vocabulary; `overrides` go to ModernBertConfig (e.g. intermediate_size,
    local_attention, global_attn_every_n_layers); what is not given keeps transformers' default."""
    import transformers

    config = transformers.ModernBertConfig(
        vocab_size=SIZES["vocab_size"],
        hidden_size=SIZES["hidden_size"],
        num_hidden_layers=SIZES["num_hidden_layers"],
        num_attention_heads=SIZES["num_attention_heads"],
        max_position_embeddings=max_pos,
        # its defaults (50281..50283) lie outside a 32000 vocabulary
        pad_token_id=pad_id,
        bos_token_id=1,
        cls_token_id=1,
        eos_token_id=2,
        sep_token_id=2,
        attention_dropout=0.0,
        embedding_dropout=0.0,
        mlp_dropout=0.0,
        **overrides,
    )
    return transformers.ModernBertModel._from_config(config, attn_implementation="sdpa")


def peak_mib() -> float:
    """Peak RSS of this whole process so far (ru_maxrss), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_step(step, repeats: int, time_left: float) -> dict:
    """One warm-up, then up to `repeats` timed calls (at least one) that fit in `time_left` s."""
    t0 = time.perf_counter()
    step()
    warmup = time.perf_counter() - t0
    n = max(1, min(repeats, int((time_left - warmup) // max(warmup, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return dict(median_s=statistics.median(times), times_s=times, warmup_s=warmup, repeats=len(times))


def time_rounds(steps: dict, rounds: int, deadline: float) -> dict[str, list[float]]:
    """Every step once as a warm-up, then `rounds` rounds (at least one; fewer if the next would
    pass `deadline`, a perf_counter time) that run every step back to back, the order rotating.
    The host's drift (other load, clock changes over the minutes a run takes) then hits all steps
    alike, and each round gives its own ratios: compare with `median_ratio`."""
    t0 = time.perf_counter()
    for step in steps.values():
        step()
    per_round = time.perf_counter() - t0
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        if r and time.perf_counter() + per_round > deadline:
            break
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a / b (round by round, see `time_rounds`)."""
    return statistics.median(x / y for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------
# Parent: spawn, guard, collect
# ----------------------------------------------------------------------------------------------


def mem_available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_worker(cmd: list[str], base: dict, threads: int, timeout: float, mem_limit_mib: float) -> dict:
    """Run the worker command `cmd` in a fresh process group (OMP/MKL threads = `threads`) and return
    the record of its `RESULT <json>` line. Without one: `base` with a status, killed past `timeout` s
    ("skipped: timeout") or above `mem_limit_mib` of RSS ("OOM (> N MiB guard)"), else "OOM" or
    "error (rc N)" with the last lines of its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True)
        status, max_rss = None, 0.0
        while proc.poll() is None:
            time.sleep(0.2)
            max_rss = max(max_rss, rss_mib(proc.pid))
            if time.perf_counter() - t0 > timeout:
                status = "skipped: timeout"
            elif max_rss > mem_limit_mib:
                status = f"OOM (> {mem_limit_mib:.0f} MiB guard)"
            if status:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status:
        return dict(base, status=status, wall_s=wall)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = stderr.strip().splitlines()[-3:]
    oom = proc.returncode == -signal.SIGKILL or any(
        s in stderr for s in ("can't allocate memory", "MemoryError", "out of memory")
    )
    status = "OOM" if oom else f"error (rc {proc.returncode})"
    return dict(base, status=status, wall_s=wall, stderr_tail=tail)


def run_all(args, plan, environment, predicted_skip, run_one, report) -> None:
    """The parent's run: print `environment(args)` and the worker RSS guard (--mem-limit-mib, by default
    90% of MemAvailable now) to stderr; for each `(key, base, label)` of `plan` in order, the record of
    `run_one(args, *key, guard)`, or `base` with the status `predicted_skip(args, results, *key)` when
    that gives one, appended to the JSONL next to --out with a progress line on stderr; then the report
    `report(args, results, environment lines + the end-of-run line)` to --out and stdout."""
    env_lines = environment(args)
    mem_limit = args.mem_limit_mib or 0.9 * mem_available_mib()
    print("\n".join(env_lines), file=sys.stderr, flush=True)
    print(f"- worker RSS guard: {mem_limit:.0f} MiB", file=sys.stderr, flush=True)
    results: dict = {}
    jsonl = args.out.with_suffix(".jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    with open(jsonl, "w") as log:
        for key, base, label in plan:
            reason = predicted_skip(args, results, *key)
            r = dict(base, status=reason) if reason else run_one(args, *key, mem_limit)
            results[key] = r
            log.write(json.dumps(r) + "\n")
            log.flush()
            msg = (
                f"{r['median_s']:.3f} s (n={r['repeats']}), peak {r['peak_rss_mib']:.0f} MiB, wall {r['wall_s']:.0f} s"
                if r["status"] == "ok"
                else r["status"] + (f" — {r['stderr_tail']}" if r.get("stderr_tail") else "")
            )
            print(f"[{time.perf_counter() - t_all:7.0f} s] {label} {msg}", file=sys.stderr, flush=True)
    env_lines.append(
        f"- load average at end: {' '.join(loadavg())} (includes the benchmark's own {args.threads} threads); "
        f"total wall {time.perf_counter() - t_all:.0f} s"
    )
    text = report(args, results, env_lines)
    args.out.write_text(text)
    print(text)
    print(f"written: {args.out} and {jsonl}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def environment_lines(threads: int) -> list[str]:
    """The first environment lines of a report: versions and git commit, CPU, memory and load at start
    (with a warning when the CPU is already busy)."""
    import torch
    import transformers

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        commit += " (dirty)" if dirty.strip() else ""
    except OSError:
        commit = "?"
    try:
        import longbird

        lb_version = longbird.__version__
    except Exception:  # noqa: BLE001
        lb_version = "?"
    load = loadavg()
    return [
        f"- python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"longbird {lb_version} (git {commit})",
        f"- CPU: {cpu}; {os.cpu_count()} logical CPUs; torch threads per worker: {threads}",
        f"- memory available at start: {mem_available_mib() / 1024:.1f} GiB; load average at start: {' '.join(load)}"
        + ("  **WARNING: CPU already busy, timings are not clean**" if busy(load, threads) else ""),
    ]


def cpu_bf16_line() -> str:
    """Whether this CPU computes bf16 natively. Without avx512_bf16/AMX, torch's bf16 matmul falls back to
    a slow kernel (pytorch/pytorch#146508), so bf16 timings there measure that fallback."""
    import torch

    def has(name: str) -> bool | None:
        probe = getattr(torch.cpu, name, None)  # private helpers: absent in some torch versions
        try:
            return None if probe is None else bool(probe())
        except Exception:  # noqa: BLE001
            return None

    avx512_bf16, amx = has("_is_avx512_bf16_supported"), has("_is_amx_tile_supported")
    fmt = lambda x: "?" if x is None else ("yes" if x else "no")  # noqa: E731
    line = f"- CPU bf16 support: avx512_bf16 {fmt(avx512_bf16)}, AMX tiles {fmt(amx)}"
    if avx512_bf16 is False and amx is False:
        line += " (no native bf16: torch's bf16 matmuls take a slow fallback kernel here, pytorch#146508)"
    return line


def loadavg() -> list[str]:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return ["?"]


def busy(load: list[str], threads: int) -> bool:
    """Other work is running before the benchmark starts: 1-minute load above half a core."""
    try:
        return float(load[0]) > 0.5
    except ValueError:
        return False


def table_head(header: list[str]) -> list[str]:
    """A Markdown table's header row and separator row."""
    return [table_row(header), "|" + "|".join(["---"] * len(header)) + "|"]


def table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def ok(r: dict | None) -> bool:
    return r is not None and r["status"] == "ok"


def fmt_time(r: dict | None, repeats: int) -> str:
    """The median (with `(n=k)` when fewer than `repeats` fitted), or the status, cut to 70 characters
    and with `|` escaped for the table."""
    if r is None:
        return "—"
    if r["status"] != "ok":
        s = r["status"]
        return (s if len(s) <= 70 else s[:67] + "...").replace("|", "\\|")
    s = f"{r['median_s']:.3f}"
    return s + (f" (n={r['repeats']})" if r["repeats"] < repeats else "")


def fmt_mem(r: dict | None, key: str = "peak_rss_mib") -> str:
    return f"{r[key]:.0f}" if ok(r) and key in r else "—"


def ratio(a: dict | None, b: dict | None, key: str, key_b: str | None = None) -> float | None:
    """a[key] / b[key_b or key] when both records are ok and hold their key, else None."""
    if not ok(a) or not ok(b) or key not in a or (key_b or key) not in b:
        return None
    return a[key] / b[key_b or key]


def inv(x: float | None) -> float | None:
    return None if x is None else 1.0 / x


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def target_line(label: str, value: float | None, op: str, bound: float, fmt: str = "{:.2f}") -> str:
    """`- label: value  [target op bound] **PASS**` (or MISS; `op` ">=" or "<="), n/a when not measured."""
    if value is None:
        return f"- {label}: n/a (not measured)  [target {op} {bound}]"
    met = value >= bound if op == ">=" else value <= bound
    return f"- {label}: {fmt.format(value)}  [target {op} {bound}] **{'PASS' if met else 'MISS'}**"
