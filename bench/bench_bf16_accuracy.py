#!/usr/bin/env python
"""bf16 vs fp32 agreement of TRAINED longbird models on real held-out data (CPU; accuracy, not speed).

Two trained models, each run three ways on the same batches:

  fp32           the checkpoint as saved (fp32 weights and activations): the reference
  bf16           a copy after model.to(torch.bfloat16): weights and activations bf16
  bf16-autocast  the fp32 model under torch.autocast("cpu", dtype=torch.bfloat16)

(a) the promoter classifier of `longbird demo` (BigBird, hidden 128, 2 layers, block 16, 300 bp DNA,
    one token per base) on the demo's held-out file (longbird/tasks/data/promoters_test.csv.gz, 500
    sequences): `--demo-dir DIR` is a finished `longbird demo --output_dir DIR` run; a DIR without a
    model (or no --demo-dir) trains the demo first (~5 min on 2 idle cores; `--demo-epochs` shortens it).
(b) a BigBird masked LM trained by the pretraining recipe (`longbird train pretraining`, the setup of
    tests/test_task_pretraining.py's WikiText-2 test: wordpiece 8000, hidden 128, 2 layers, block 64,
    2 random blocks, 1024-token blocks, batch 4, lr 1e-3) on WikiText-2 valid for `--mlm-steps` steps
    (`--mlm-dir DIR` reuses a finished run), evaluated on 1024-token blocks of the first 400 lines of
    WikiText-2 test with 15% of the tokens masked by DataCollatorForLanguageModeling (seed 0).
    Needs ../shared/data/wikitext2_subset (or `--wikitext-dir`); without it the script stops at once
    and says so (`--skip-mlm` runs (a) alone).

Reported per variant: accuracy (class; masked token), argmax agreement with fp32 (% of examples;
% of masked tokens), relative error ||h - h_fp32|| / ||h_fp32|| of the last hidden state (real
tokens of all examples together, and the largest of one example), the same for the logits, and
the evaluation time (on a CPU without native bf16, bf16 matmuls run a slow fallback kernel).

    python bench/bench_bf16_accuracy.py --demo-dir /tmp/demo          # full: ~5 min (+5 if it trains the demo)
    python bench/bench_bf16_accuracy.py --quick                       # smoke: tiny training, few examples

Output: Markdown on stdout and in bench/results/bf16_accuracy.md; trained models under
bench/results/bf16_accuracy_work/ unless --demo-dir/--mlm-dir say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import gzip
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, cpu_bf16_line, environment_lines, table_head, table_row  # noqa: E402

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext2_subset"
RESULTS = ROOT / "bench" / "results"
VARIANTS = ("fp32", "bf16", "bf16-autocast")
MLM_CONFIG = (
    "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256,"
    "block_size=64,num_random_blocks=2,max_position_embeddings=1024"
)
MLM_SEQ_LEN = 1024
TEST_LINES = 400  # the first articles of wiki.test.tokens, as the recipe's slow test evaluates


# ----------------------------------------------------------------------------------------------
# Comparison of the three variants
# ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One variant's running sums over all batches."""

    examples: int = 0  # predictions compared (examples or masked tokens)
    agree: int = 0
    correct: int = 0
    hidden_sq: float = 0.0  # Σ ||h - h_fp32||² over real tokens
    hidden_ref_sq: float = 0.0
    hidden_worst: float = 0.0  # largest per-example relative error
    logits_sq: float = 0.0
    logits_ref_sq: float = 0.0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def variants(model) -> dict:
    """name -> (model, context factory): fp32, a bf16 copy, the fp32 model under CPU autocast."""
    import torch

    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    return {
        "fp32": (model, contextlib.nullcontext),
        "bf16": (bf16, contextlib.nullcontext),
        "bf16-autocast": (model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
    }


def compare(model, batches: list[tuple[dict, object]], pick) -> dict[str, Tally]:
    """Run every `(inputs, target)` batch through the three variants; `pick(target, logits)` -> (logits
    at the predicted positions [P, C], their labels [P]). Hidden states are compared on the tokens
    with attention_mask 1. The labels stay out of the forward: the loss is not what we compare."""
    import torch

    runs = variants(model)
    tallies = {name: Tally() for name in runs}
    for batch, target in batches:
        outputs = {}
        for name, (m, context) in runs.items():
            t0 = time.perf_counter()
            try:
                with torch.no_grad(), context():
                    out = m(**batch, output_hidden_states=True)
            except Exception as e:  # noqa: BLE001  (a failing variant is a finding, not the end of the run)
                tallies[name].errors.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
                continue
            tallies[name].seconds += time.perf_counter() - t0
            outputs[name] = (out.hidden_states[-1].float(), out.logits.float())
        if "fp32" not in outputs:
            continue
        mask = batch["attention_mask"].bool()
        h32, l32 = outputs["fp32"]
        p32, labels = pick(target, l32)
        for name, (h, logits) in outputs.items():
            t = tallies[name]
            p, _ = pick(target, logits)
            t.examples += len(labels)
            t.agree += int((p.argmax(-1) == p32.argmax(-1)).sum())
            t.correct += int((p.argmax(-1) == labels).sum())
            diff = (h - h32)[mask]
            t.hidden_sq += float(diff.pow(2).sum())
            t.hidden_ref_sq += float(h32[mask].pow(2).sum())
            per_example = ((h - h32).pow(2) * mask[..., None]).sum((1, 2)) / (h32.pow(2) * mask[..., None]).sum((1, 2))
            t.hidden_worst = max(t.hidden_worst, float(per_example.sqrt().max()))
            t.logits_sq += float((p - p32).pow(2).sum())
            t.logits_ref_sq += float(p32.pow(2).sum())
    return tallies


def result_table(tallies: dict[str, Tally], what: str) -> list[str]:
    header = [
        "variant", f"{what} accuracy", "argmax agreement with fp32", "last hidden rel. error",
        "worst example hidden rel. error", "logits rel. error", "eval s",
    ]  # fmt: skip
    lines = table_head(header)
    for name, t in tallies.items():
        if t.errors and not t.examples:
            lines.append(table_row([name, f"error: {t.errors[0]}".replace("|", "\\|"), *[""] * (len(header) - 2)]))
            continue
        n = max(t.examples, 1)
        rel = lambda a, b: "—" if b == 0 else f"{(a / b) ** 0.5:.2e}"  # noqa: E731
        lines.append(
            table_row([
                name,
                f"{100 * t.correct / n:.2f}% ({t.correct}/{t.examples})",
                f"{100 * t.agree / n:.2f}% ({t.examples - t.agree} differ)",
                rel(t.hidden_sq, t.hidden_ref_sq),
                f"{t.hidden_worst:.2e}",
                rel(t.logits_sq, t.logits_ref_sq),
                f"{t.seconds:.1f}",
            ])
        )  # fmt: skip
    for name, t in tallies.items():
        if t.errors:  # its other batches are in the row above (if any)
            lines.append(f"\n- {name}: {len(t.errors)} batch(es) raised, first: {t.errors[0]}")
    return lines


def describe(config) -> str:
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "block_size",
            "num_random_blocks", "attention_type", "vocab_size")  # fmt: skip
    return ", ".join(f"{k} {getattr(config, k)}" for k in keys if hasattr(config, k))


def train_subprocess(argv: list[str], what: str) -> float:
    """`longbird <argv>` in a fresh process, its output on our stderr (stdout stays the report); seconds."""
    print(f"training {what}: longbird {' '.join(argv)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    code = "import sys; from longbird.cli import main; main(sys.argv[1:])"
    subprocess.run([sys.executable, "-c", code, *argv], check=True, stdout=sys.stderr, cwd=ROOT)
    return time.perf_counter() - t0


def finished(path: Path | None) -> bool:
    return path is not None and (path / "config.json").is_file() and (path / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------
# (a) the demo's promoter classifier
# ----------------------------------------------------------------------------------------------


def demo_part(args) -> list[str]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from longbird.tasks.demo import DEMO_ARGS

    flag = lambda name: DEMO_ARGS[DEMO_ARGS.index(name) + 1]  # noqa: E731
    out = args.demo_dir or args.work_dir / "demo"
    trained = ""
    if not finished(out):
        extra = ["--num_train_epochs", str(args.demo_epochs)] if args.demo_epochs else []
        secs = train_subprocess(["demo", "--output_dir", str(out), *extra], "the demo classifier")
        trained = f" (trained now: {secs:.0f} s{', ' + str(args.demo_epochs) + ' epochs' if extra else ''})"
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with gzip.open(flag("--validation_file"), "rt") as handle:
        rows = list(csv.DictReader(handle))[: args.demo_samples]
    text, label = flag("--text_column"), flag("--label_column")
    label2id = {str(k): v for k, v in model.config.label2id.items()}
    batches = []
    for i in range(0, len(rows), args.batch_size):
        chunk = rows[i : i + args.batch_size]
        enc = tokenizer([r[text] for r in chunk], truncation=True, max_length=int(flag("--max_seq_length")),
                        padding=True, return_tensors="pt")  # fmt: skip
        batches.append((dict(enc), torch.tensor([label2id[r[label]] for r in chunk])))
    tokens = int(sum(b["attention_mask"].sum() for b, _ in batches))
    tallies = compare(model, batches, lambda labels, logits: (logits, labels))
    return [
        "## (a) promoter classifier (`longbird demo`)",
        "",
        f"- checkpoint: `{out}`{trained}; {describe(model.config)}",
        f"- held-out: `{Path(flag('--validation_file')).name}`, {len(rows)} sequences ({tokens:,} tokens with "
        f"[CLS]/[SEP]), batches of {args.batch_size}; accuracy: the predicted class; agreement: the same class "
        "as fp32",
        "",
        *result_table(tallies, "class"),
    ]


# ----------------------------------------------------------------------------------------------
# (b) a masked LM trained on WikiText-2 by the pretraining recipe
# ----------------------------------------------------------------------------------------------


def mlm_train_argv(args, out: Path) -> list[str]:
    """tests/test_task_pretraining.py's WikiText-2 BigBird run, without its evaluation, --mlm-steps steps."""
    return [
        "train", "pretraining",
        "--model_type", "longbird_bigbird",
        "--config_overrides", MLM_CONFIG,
        "--train_tokenizer", "wordpiece",
        "--tokenizer_vocab_size", "8000",
        "--train_file", str(args.wikitext_dir / "wiki.valid.tokens"),
        "--sample_by", "article",
        "--max_seq_length", str(MLM_SEQ_LEN),
        "--do_train",
        "--max_steps", str(args.mlm_steps),
        "--learning_rate", "1e-3",
        "--warmup_steps", str(min(20, args.mlm_steps // 3)),
        "--weight_decay", "0.01",
        "--per_device_train_batch_size", "4",
        "--save_strategy", "no",
        "--logging_steps", "25",
        "--report_to", "none",
        "--use_cpu",
        "--seed", "0",
        "--dataloader_drop_last",
        "--output_dir", str(out),
    ]  # fmt: skip


def mlm_part(args) -> list[str]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from longbird.tasks import pretraining

    out = args.mlm_dir or args.work_dir / "mlm"
    trained = ""
    if not finished(out):
        secs = train_subprocess(mlm_train_argv(args, out), f"the WikiText-2 masked LM ({args.mlm_steps} steps)")
        trained = f" (trained now: {args.mlm_steps} steps, {secs:.0f} s)"
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    lines = (args.wikitext_dir / "wiki.test.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
    samples = pretraining.split_samples("".join(lines[:TEST_LINES]), "article")
    seq_len = min(MLM_SEQ_LEN, model.config.max_position_embeddings)
    blocks = pretraining.group_texts({"text": samples}, tokenizer, seq_len, pretraining.special_affixes(tokenizer))
    features = [
        {"input_ids": ids, "attention_mask": mask} for ids, mask in zip(blocks["input_ids"], blocks["attention_mask"])
    ][: args.mlm_blocks]
    # the recipe's evaluation masking: 15% of the tokens (80/10/10), a generator seeded once
    collator = pretraining.make_collator("mlm", tokenizer, SimpleNamespace(mlm_probability=0.15), seed=0)
    batches = []
    for i in range(0, len(features), args.mlm_batch_size):
        batch = dict(collator(features[i : i + args.mlm_batch_size]))
        labels = batch.pop("labels")
        batches.append((batch, labels))

    def pick(labels, logits):
        masked = labels != -100
        return logits[masked], labels[masked]

    tallies = compare(model, batches, pick)
    masked = int(sum((labels != -100).sum() for _, labels in batches))
    tokens = int(sum(b["attention_mask"].sum() for b, _ in batches))
    return [
        "## (b) masked LM on WikiText-2 (pretraining recipe)",
        "",
        f"- checkpoint: `{out}`{trained}; {describe(model.config)}; trained on `wiki.valid.tokens`",
        f"- held-out: the first {TEST_LINES} lines of `wiki.test.tokens` ({len(samples)} articles) as {len(features)} "
        f"blocks of up to {seq_len} tokens ({tokens:,} tokens), {masked:,} masked (15%, seed 0), batches of "
        f"{args.mlm_batch_size}; accuracy: the masked token predicted exactly; agreement: the same token as fp32",
        "",
        *result_table(tallies, "masked-token"),
    ]


# ----------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo-dir", type=Path, default=None,
                   help="a finished `longbird demo --output_dir DIR` run; trained there first when it holds no model "
                   "(default: train into WORK_DIR/demo unless that holds one)")  # fmt: skip
    p.add_argument("--demo-epochs", type=float, default=None,
                   help="when the demo is trained here: --num_train_epochs (default the demo's 4)")  # fmt: skip
    p.add_argument("--demo-samples", type=int, default=None, help="held-out sequences to compare (default all 500)")
    p.add_argument("--batch-size", type=int, default=64, help="(a): sequences per batch")
    p.add_argument("--mlm-dir", type=Path, default=None,
                   help="a finished masked-LM run to reuse; trained there first when it holds no model "
                   "(default: WORK_DIR/mlm)")  # fmt: skip
    p.add_argument("--mlm-steps", type=int, default=100, help="training steps of the masked LM when trained here")
    p.add_argument("--mlm-blocks", type=int, default=None, help="held-out 1024-token blocks to compare (default all)")
    p.add_argument("--mlm-batch-size", type=int, default=4, help="(b): blocks per batch")
    p.add_argument("--wikitext-dir", type=Path, default=WIKITEXT,
                   help=f"folder with wiki.valid.tokens and wiki.test.tokens (default {WIKITEXT})")  # fmt: skip
    p.add_argument("--skip-demo", action="store_true", help="run (b) only")
    p.add_argument("--skip-mlm", action="store_true", help="run (a) only (no WikiText-2 needed)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a demo of 0.05 epochs when it trains one, 64 sequences; an MLM of 3 steps, "
                   "4 blocks (unless given); into WORK_DIR/quick-*")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--work-dir", type=Path, default=RESULTS / "bf16_accuracy_work",
                   help="where models trained here go")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "bf16_accuracy.md")
    args = p.parse_args()
    if args.quick:
        args.demo_epochs = args.demo_epochs or 0.05
        args.demo_samples = args.demo_samples or 64
        args.mlm_blocks = args.mlm_blocks or 4
        if args.mlm_steps == p.get_default("mlm_steps"):
            args.mlm_steps = 3
        args.work_dir = args.work_dir / "quick"
    if args.mlm_steps < 1:
        p.error("--mlm-steps must be >= 1")
    if not args.skip_mlm:
        # the data is checked before any training: a missing folder should cost nothing but this message
        needed = ["wiki.test.tokens"] if finished(args.mlm_dir) else ["wiki.valid.tokens", "wiki.test.tokens"]
        missing = [f for f in needed if not (args.wikitext_dir / f).is_file()]
        if missing:
            sys.exit(
                f"bench_bf16_accuracy.py: error: WikiText-2 not found: {', '.join(missing)} missing in "
                f"{args.wikitext_dir}. Part (b) trains on wiki.valid.tokens and evaluates on wiki.test.tokens from "
                "../shared/data/wikitext2_subset next to the repository. Point --wikitext-dir at a folder holding "
                "them, or pass --skip-mlm to run part (a) alone."
            )
    return args


def main() -> None:
    args = parse_args()
    import torch
    import transformers

    import longbird  # noqa: F401  (registers longbird's models with the Auto classes)

    transformers.logging.set_verbosity_error()  # group_texts tokenizes whole articles: its length warning is noise
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lines = [
        "# bf16 vs fp32 agreement of trained longbird models (CPU)",
        "",
        *environment_lines(args.threads),
        cpu_bf16_line(),
        "",
        "Variants: `fp32` the checkpoint (reference); `bf16` a copy after `model.to(torch.bfloat16)`; "
        '`bf16-autocast` the fp32 model under `torch.autocast("cpu", dtype=torch.bfloat16)`. Relative errors: '
        "||x - x_fp32|| / ||x_fp32|| over all real tokens (hidden) or predicted positions (logits) together; "
        "worst example: the largest of one example's own hidden-state relative error. Eval s: forward time of "
        "the variant over all batches (no_grad).",
    ]
    if not args.skip_demo:
        lines += ["", *demo_part(args)]
    if not args.skip_mlm:
        lines += ["", *mlm_part(args)]
    lines += ["", f"Total wall {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
