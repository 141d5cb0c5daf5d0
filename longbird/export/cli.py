"""`longbird export MODEL_DIR --format onnx|torch-export --output OUT_DIR`."""

from __future__ import annotations

import argparse

from . import FORMATS, export_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="longbird export",
        description="Export a saved BigBird / ETC / BigBird-Pegasus checkpoint (or a transformers BigBird folder) "
        "to ONNX or a torch.export program; every batch size and length stays dynamic and the graph sparse.",
    )
    parser.add_argument("model_dir", help="a folder written by save_pretrained() (config.json + weights)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torch-export (.pt2)")
    parser.add_argument("--output", required=True, help="the folder to write the graphs, config and tokenizer to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = export_model(args.model_dir, args.output, args.format)
    print(f"wrote {', '.join(str(f) for f in files)} (and config, tokenizer, README.md) to {args.output}")
