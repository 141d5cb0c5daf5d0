"""Checkpoints of other implementations -> longbird folders: `longbird convert etc-tf ...`.

`longbird-convert etc-tf ...` is the same command under its own name (an alias entry point).
"""

from __future__ import annotations

import argparse
import sys

from ..cli import report_user_error
from .etc_tf import convert_etc_tf_checkpoint


def parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    """The converter's command line (`prog` shows in its usage and argparse's errors)."""
    parser = argparse.ArgumentParser(prog=prog, description="checkpoints of other implementations -> longbird folders")
    commands = parser.add_subparsers(dest="command", required=True)
    etc = commands.add_parser(
        "etc-tf", help="Google's TF ETC checkpoint (e.g. etc_base_2x_pretrain) -> EtcModel folder (safetensors)"
    )
    etc.add_argument("--tf-checkpoint", required=True, help="checkpoint prefix, e.g. PATH/model.ckpt, or its folder")
    etc.add_argument("--config", required=True, help="the checkpoint's etc_config.json")
    etc.add_argument("--output", required=True, help="folder to write config.json and model.safetensors to")
    etc.add_argument(
        "--allow-missing", action="store_true", help="keep going when the checkpoint lacks some model parameters"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Convert as `args` say and print the report; a user error (a missing file, a checkpoint that does not
    fit) is raised for the caller to report (`longbird.cli.user_errors_as_one_line`)."""
    _, report = convert_etc_tf_checkpoint(args.tf_checkpoint, args.config, args.output, args.allow_missing)
    print(report.summary())
    print(f"saved to {args.output}; load it with longbird.EtcModel.from_pretrained({args.output!r})")


def main(argv: list[str] | None = None) -> int:
    """`longbird-convert`, the alias of `longbird convert`: exit code 0, or 2 after a one-line user error."""
    args = parse_args(argv, prog="longbird-convert")
    try:
        run(args)
    except Exception as error:  # a user error (missing file, a checkpoint that does not fit): one line
        if not report_user_error("longbird-convert", error):
            raise  # a bug: its traceback
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
