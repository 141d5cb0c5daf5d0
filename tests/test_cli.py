"""The `longbird` command: usage, `longbird speed`, `longbird train` dispatch (the demo: test_task_classification)."""

import subprocess
import sys
from pathlib import Path

import pytest

from longbird.tasks import speed

ROOT = Path(__file__).resolve().parent.parent


def test_speed_measures_sparse_and_full_attention():
    rows = speed.run(lengths=(512,), hidden=64, layers=1, repeats=1, threads=1)
    assert [(r["length"], r["attention"]) for r in rows] == [(512, "block_sparse"), (512, "original_full")]
    for row in rows:
        assert row["seconds"] > 0 and row["tokens_per_s"] > 0 and row["peak_mib"] > 50


def test_cli_without_command_prints_usage():
    done = subprocess.run([sys.executable, "-m", "longbird.cli"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: longbird" in done.stdout
    done = subprocess.run([sys.executable, "-m", "longbird.cli", "train", "translation"], capture_output=True, text=True)
    assert done.returncode == 2 and "question-answering,summarization,classification,pretraining" in done.stdout


def test_train_help_lists_recipe_and_trainer_flags():
    done = subprocess.run([sys.executable, "-m", "longbird.cli", "train", "classification", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    for flag in ("--label_column", "--train_tokenizer", "--model_name_or_path", "--per_device_train_batch_size",
                 "--resume_from_checkpoint"):
        assert flag in done.stdout
    assert done.stdout.startswith("usage: longbird train classification")


@pytest.mark.slow
def test_benchmark_smoke_prints_targets(tmp_path):
    """The side-by-side benchmark runs end to end (one short length) and prints its target list."""
    out = tmp_path / "encoders.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_encoders.py"), "--lengths", "1024", "--repeats", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = out.read_text()
    for model in ("longbird", "hf_bigbird", "sdpa_full", "longformer", "floor"):
        assert f"| 1024 | {model} |" in table
    assert "target <= 1.1" in table
