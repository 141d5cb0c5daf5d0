"""The `longbird` command: usage, `longbird speed`, `longbird train` and `longbird convert` dispatch (the demo:
test_task_classification; conversion of the reference checkpoints: test_etc_parity)."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_bench

from longbird import cli
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
    assert "longbird convert etc-tf --tf-checkpoint" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "longbird.cli", "train", "translation"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "question-answering,summarization,classification,pretraining" in done.stdout


def test_train_help_lists_recipe_and_trainer_flags():
    done = subprocess.run(
        [sys.executable, "-m", "longbird.cli", "train", "classification", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for flag in (
        "--label_column",
        "--train_tokenizer",
        "--model_name_or_path",
        "--per_device_train_batch_size",
        "--resume_from_checkpoint",
    ):
        assert flag in done.stdout
    assert done.stdout.startswith("usage: longbird train classification")


@pytest.mark.slow
def test_benchmark_smoke_prints_targets(tmp_path):
    """The side-by-side benchmark runs end to end (one short length) and prints its target list."""
    out = tmp_path / "encoders.md"
    run_bench("bench_encoders.py", "--lengths", "1024", "--repeats", "1", "--out", str(out))
    table = out.read_text()
    for model in ("longbird", "hf_bigbird", "sdpa_full", "longformer", "floor"):
        assert f"| 1024 | {model} |" in table
    assert "target <= 1.1" in table
    # the floor ratio also timed round by round in one process, and the target says it used that
    assert "| longbird / floor | 1024 | fwd |" in table
    assert "fp32 1024: longbird fwd / floor fwd (interleaved)" in table


@pytest.mark.slow
def test_benchmark_times_the_bf16_speedup_round_by_round(tmp_path):
    """The bf16 speedup is also timed in one process (fp32 model and its bf16 copy, round by round)."""
    out = tmp_path / "encoders.md"
    run_bench("bench_encoders.py", "--models", "longbird", "--lengths", "256", "--repeats", "1", "--skip-train",
              "--dtype", "fp32,bf16", "--out", str(out))  # fmt: skip
    table = out.read_text()
    assert "| longbird fp32 / bf16 | 256 | fwd | bf16 |" in table
    assert "bf16 4096: longbird fwd speedup vs fp32 longbird (separate processes): n/a" in table


def test_help_lists_convert(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0 and "longbird convert etc-tf" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli.main(["convert", "etc-tf", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("usage: longbird convert etc-tf")
    for flag in ("--tf-checkpoint", "--config", "--output", "--allow-missing"):
        assert flag in out


def test_convert_without_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["convert"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "usage: longbird convert" in err and "longbird convert: error:" in err


def test_convert_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
    """`longbird convert etc-tf` reports a bad path like every `longbird` command: one line, exit code 2."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "longbird.cli",
            "convert",
            "etc-tf",
            "--tf-checkpoint",
            str(tmp_path / "none" / "model.ckpt"),
            "--config",
            str(tmp_path / "etc_config.json"),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and err[0].startswith("longbird: error: "), done.stderr
    assert str(tmp_path / "none") in err[0] or str(tmp_path / "etc_config.json") in err[0], err
    assert not (tmp_path / "out").exists()
