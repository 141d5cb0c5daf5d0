"""bench/bench_export.py (ONNX Runtime vs PyTorch eager) runs end to end in its quick mode: a tiny model
exported once, both runtimes at one length, parity, profile and the target lines in the report."""

import json

import pytest
from helpers import run_bench


@pytest.mark.slow
def test_bench_export_quick_smoke(tmp_path):
    """~2-4 min on 2 cores: the export of the tiny model dominates (~30-90 s), then 6 fresh processes."""
    out = tmp_path / "export.md"
    work = tmp_path / "work"
    run_bench("bench_export.py", "--quick", "--lengths", "256", "--work-dir", str(work), "--out", str(out))
    table = out.read_text()
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [(r["kind"], r["length"]) for r in records] == [
        ("prepare", None),
        ("eager", 256),
        ("onnxruntime", 256),
        ("interleaved", 256),
        ("ort_defaults", 256),
        ("profile", 256),
    ]
    assert all(r["status"] == "ok" for r in records), [r["status"] for r in records]
    assert (work / "onnx" / "model.onnx").exists() and (work / "model" / "config.json").exists()
    # same weights: the exported graph gives the eager output
    assert records[3]["max_abs_diff"] <= 1e-4
    # the ORT process imports no torch: its peak is its own, far below the eager process's
    assert records[2]["peak_rss_mib"] < records[1]["peak_rss_mib"]
    assert "ORT with its default SessionOptions" in table and "enable_mem_reuse=False" in table
    assert "| 256 |" in table and "## ONNX Runtime profile at 256 tokens" in table and "| MatMul |" in table
    assert "ORT at least as fast as eager at every length (min of eager / ORT)" in table
    assert "ORT peak memory no higher than eager's at every length (max of ORT / eager)" in table
    assert "target >= 1.0" in table and "target <= 1.0" in table
