"""ONNX Runtime session options for exported models.

This file imports nothing but ONNX Runtime (and that only when called), so a deployment, or the
benchmark's torch-free worker, can load it alone."""

from __future__ import annotations

# ONNX Runtime's defaults plan memory for fixed shapes. With a new length per input, the memory
# pattern pre-plans a block per shape, and buffer reuse ties each buffer to the size of the first
# tensor it held, so at the peak every size of tensor holds its own maximum at once. Off, each
# tensor comes from the arena when made and goes back after its last reader: a lower peak at no
# speed cost (bench/bench_export.py measures both).
SESSION_OPTIONS = {"enable_mem_pattern": False, "enable_mem_reuse": False}


def session_options(**overrides):
    """`onnxruntime.SessionOptions` with `SESSION_OPTIONS`, then `overrides` (attribute: value)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    for name, value in {**SESSION_OPTIONS, **overrides}.items():
        setattr(options, name, value)
    return options
