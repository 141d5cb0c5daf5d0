"""Run by tests/test_remote_code_finetune.py in a fresh process where `import longbird` fails:
everything here uses checkpoints through `trust_remote_code=True` only, as a Hub user would.

    python remote_code_without_longbird.py <spec.json>

spec.json (written by the test): `out` (a folder for results), `metrics` (the package's offline
`evaluate` metrics folder), `finetune` (cases: name, auto, folder, task, and `push` for the one to
push to the Hub endpoint in HF_ENDPOINT), `heads` (cases: name, auto, folder, inputs: a torch file
with the inputs and the outputs the package model gave). Each case runs on its own; its outcome
(`ok`, or the traceback) and what the test checks go to <out>/results.json, so one failing case
does not hide the others. One process for all of them: importing torch and transformers is the
slow part.
"""

import sys

sys.modules["longbird"] = None  # as if longbird were not installed

import filecmp  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import evaluate  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, DataCollatorForSeq2Seq  # noqa: E402

torch.set_num_threads(1)  # tiny models: more threads only spin
spec = json.loads(Path(sys.argv[1]).read_text())
OUT = Path(spec["out"])
results: dict[str, dict] = {}


def load(auto: str, source) -> torch.nn.Module:
    model = getattr(transformers, auto).from_pretrained(str(source), trust_remote_code=True).eval()
    module = type(model).__module__
    assert module.startswith("transformers_modules."), f"{source} loaded {module}, not remote code"
    return model


def outputs(model, inputs: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model.eval()(**inputs)
    return {k: v for k, v in out.items() if torch.is_tensor(v) and k != "loss"}


def same_outputs(model, inputs: dict, expected: dict, what: str) -> None:
    got = outputs(model, inputs)
    assert set(got) == set(expected), f"{what}: outputs {sorted(got)} != {sorted(expected)}"
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=lambda m, key=key: f"{what} {key}: {m}")


def code_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).glob("*.py"))


def identical(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders (names present in only one count too)."""
    names = sorted({p.name for p in a.iterdir() if p.is_file()} | {p.name for p in b.iterdir() if p.is_file()})
    return [
        n for n in names if not ((a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, shallow=False))
    ]


# -- datasets: a few tiny examples per task, lists of dicts as Trainer takes them -----------------

TEXTS = [
    "The river Nile flows north through Egypt.",
    "Paris is the capital of France.",
    "Long documents need sparse attention.",
    "Birds fly south in the winter.",
]


def qa_examples(tokenizer, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        enc = tokenizer("Where?", TEXTS[i % 4] * 6, truncation=True, max_length=96, padding="max_length")
        start = 10 + i % 5  # inside the context: BigBird's QA head masks the question
        rows.append(
            {
                "input_ids": torch.tensor(enc["input_ids"]),
                "attention_mask": torch.tensor(enc["attention_mask"]),
                "token_type_ids": torch.tensor(enc["token_type_ids"]),
                "start_positions": torch.tensor(start),
                "end_positions": torch.tensor(start + 2),
            }
        )
    return rows


def classification_examples(tokenizer, n: int, num_labels: int) -> list[dict]:
    rows = []
    for i in range(n):
        enc = tokenizer(TEXTS[i % 4] * 6, truncation=True, max_length=96, padding="max_length")
        rows.append(
            {
                "input_ids": torch.tensor(enc["input_ids"]),
                "attention_mask": torch.tensor(enc["attention_mask"]),
                "labels": torch.tensor(i % num_labels),
            }
        )
    return rows


def summarization_examples(tokenizer, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        source = tokenizer(" ".join(TEXTS[j % 4] for j in range(i, i + 6)), truncation=True, max_length=96)
        rows.append(
            {
                "input_ids": source["input_ids"],
                "attention_mask": source["attention_mask"],
                "labels": tokenizer(TEXTS[i % 4])["input_ids"],
            }
        )
    return rows


def probe(rows: list[dict], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([torch.as_tensor(r[k]) for r in rows[:2]]) for k in keys}


# -- cases --------------------------------------------------------------------------------------


def finetune(case: dict) -> dict:
    """trust_remote_code load -> Trainer (3 steps, checkpoints at steps 2 and 3) -> save_model -> evaluate
    -> reload the saved folder and the checkpoints the same way -> same outputs as the trained model."""
    name, auto, folder, task = case["name"], case["auto"], Path(case["folder"]), case["task"]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = load(auto, folder)
    model.train()
    output_dir = OUT / name
    common = dict(
        output_dir=str(output_dir),
        max_steps=3,
        save_strategy="steps",
        save_steps=2,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        learning_rate=5e-3,
        use_cpu=True,
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    if task == "summarization":
        rows = summarization_examples(tokenizer, 8)
        rouge = evaluate.load(str(Path(spec["metrics"]) / "rouge"))  # as run_summarization.py does with "rouge"

        def compute_metrics(prediction):
            predictions = np.where(prediction.predictions < 0, tokenizer.pad_token_id, prediction.predictions)
            labels = np.where(prediction.label_ids < 0, tokenizer.pad_token_id, prediction.label_ids)
            return rouge.compute(
                predictions=tokenizer.batch_decode(predictions, skip_special_tokens=True),
                references=tokenizer.batch_decode(labels, skip_special_tokens=True),
            )

        args = transformers.Seq2SeqTrainingArguments(**common, predict_with_generate=True, generation_max_length=6)
        trainer = transformers.Seq2SeqTrainer(
            model=model,
            args=args,
            train_dataset=rows,
            eval_dataset=rows[:4],
            processing_class=tokenizer,
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
            compute_metrics=compute_metrics,
        )
        probe_inputs = dict(
            tokenizer.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows[:2]], return_tensors="pt")
        )
        probe_inputs["decoder_input_ids"] = torch.tensor([[model.config.decoder_start_token_id, 7, 8, 9]] * 2)
    else:
        if task == "question-answering":
            rows, compute_metrics = qa_examples(tokenizer, 8), None
            keys = ("input_ids", "attention_mask", "token_type_ids")
            # ETC's QA head also takes supporting_fact_labels, which Trainer would then require for an eval loss
            common["label_names"] = ["start_positions", "end_positions"]
        else:
            rows = classification_examples(tokenizer, 8, model.config.num_labels)
            keys = ("input_ids", "attention_mask")
            # --metric_name <offline metric>: run_classification.py passes the argmax (class ids)
            metric = evaluate.load(str(Path(spec["metrics"]) / "classification"))

            def compute_metrics(prediction):
                logits = (
                    prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
                )
                return metric.compute(predictions=np.argmax(logits, axis=1), references=prediction.label_ids)

        args = transformers.TrainingArguments(**common)
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            eval_dataset=rows[:4],
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
        )
        probe_inputs = probe(rows, keys)
    before = outputs(model, probe_inputs)
    model.train()
    trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    expected = outputs(trainer.model, probe_inputs)
    changed = any(not torch.equal(before[k], expected[k]) for k in expected)
    same_outputs(load(auto, output_dir), probe_inputs, expected, f"{name}: reloaded save_model() folder")
    # the checkpoint of the last step holds the final weights; the one mid-training, earlier ones
    same_outputs(load(auto, output_dir / "checkpoint-3"), probe_inputs, expected, f"{name}: reloaded checkpoint-3")
    middle = outputs(load(auto, output_dir / "checkpoint-2"), probe_inputs)
    torch.save({"inputs": probe_inputs, "outputs": expected}, output_dir / "probe.pt")
    result = {
        "metrics": metrics,
        "trained": changed,
        "code": code_files(output_dir),
        "checkpoint_code": code_files(output_dir / "checkpoint-2"),
        "module": type(trainer.model).__module__,
        "checkpoint_2_differs": any(not torch.equal(middle[k], expected[k]) for k in expected),
    }
    if case.get("push"):
        result["push"] = push(case["push"], auto, trainer.model, tokenizer, probe_inputs, expected, output_dir)
    return result


def push(repo_id: str, auto: str, model, tokenizer, probe_inputs: dict, expected: dict, saved: Path) -> dict:
    """push_to_hub the remote-code model, load it back from the endpoint by repo id, save that again."""
    model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)
    from_hub = load(auto, repo_id)
    same_outputs(from_hub, probe_inputs, expected, f"{repo_id}: loaded from the Hub endpoint")
    again = OUT / "from-hub-saved"
    from_hub.save_pretrained(again)  # its code came from the Hub download in the module cache
    return {
        "module": type(from_hub).__module__,
        "differ_from_local_save": [
            n for n in identical(saved, again) if n.endswith(".py") or n in ("config.json", "model.safetensors")
        ],
    }


def head_round_trip(case: dict) -> dict:
    """load -> save -> load -> save: every step gives the package model's outputs, and both saves are
    byte-identical to each other (and their code to the package's)."""
    name, auto, folder = case["name"], case["auto"], Path(case["folder"])
    io = torch.load(case["inputs"])
    first = load(auto, folder)
    same_outputs(first, io["inputs"], io["outputs"], f"{name}: package checkpoint")
    a, b = OUT / f"{name}-a", OUT / f"{name}-b"  # distinct names: each load gets its own module cache folder
    first.save_pretrained(a)
    second = load(auto, a)
    same_outputs(second, io["inputs"], io["outputs"], f"{name}: saved through remote code once")
    second.save_pretrained(b)
    same_outputs(load(auto, b), io["inputs"], io["outputs"], f"{name}: saved through remote code twice")
    return {
        "differ": identical(a, b),
        "code_differ_from_package": [n for n in identical(folder, a) if n.endswith(".py")],
        "code": code_files(b),
        "modules": [type(first).__module__, type(second).__module__],
    }


for run, cases in ((finetune, spec["finetune"]), (head_round_trip, spec["heads"])):
    for case in cases:
        start = time.perf_counter()
        try:
            results[case["name"]] = {"ok": True, **run(case)}
        except Exception:
            results[case["name"]] = {"ok": False, "error": traceback.format_exc()}
        results[case["name"]]["seconds"] = round(time.perf_counter() - start, 2)
(OUT / "results.json").write_text(json.dumps(results, indent=1, default=float))
