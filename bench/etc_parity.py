#!/usr/bin/env python
"""ETC vs the original TF implementation: max |difference| per reference case and executor.

Converts every checkpoint in tests/fixtures/etc/ with longbird's converter (no TensorFlow), runs
the inputs the reference was fed, and prints the largest absolute difference from the
reference's outputs at non-padding positions (long and global side), for the structure inputs
(breakpoints + sentence_ids, our graph builders) and for the reference's own side inputs.

    python bench/etc_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_etc_parity import CASES, FIXTURES, STRUCTURED, explicit_side_inputs, load_case, long_tensor, structure_inputs  # noqa: E402


def max_diffs(out, data) -> tuple[float, float]:
    long_real, global_real = data["long_real"].bool(), data["global_real"].bool()
    return (
        (out.last_hidden_state - data["long_output"])[long_real].abs().max().item(),
        (out.global_last_hidden_state - data["global_output"])[global_real].abs().max().item(),
    )


def main() -> None:
    print(f"reference cases: {FIXTURES}")
    print("| case | n_long | inputs | executor | max diff long | max diff global |")
    print("|---|---:|---|---|---:|---:|")
    for case in CASES:
        model, _, data = load_case(case)
        n_long = data["token_ids"].shape[1]
        runs = []
        if case in STRUCTURED:
            runs += [("structure", backend, structure_inputs(data)) for backend in ("dense", "blocked")]
        explicit = {
            "input_ids": data["token_ids"].long(), "global_input_ids": data["global_token_ids"].long(),
            "token_type_ids": long_tensor(data.get("segment_ids")),
            "global_token_type_ids": long_tensor(data.get("global_segment_ids")), **explicit_side_inputs(data),
        }
        runs += [("side inputs", backend, explicit) for backend in ("dense", "blocked")]
        for kind, backend, inputs in runs:
            model.config.attention_backend = backend
            with torch.no_grad():
                long_diff, global_diff = max_diffs(model(**inputs), data)
            print(f"| {case} | {n_long} | {kind} | {backend} | {long_diff:.1e} | {global_diff:.1e} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
