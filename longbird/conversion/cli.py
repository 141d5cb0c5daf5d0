"""`longbird-convert`: checkpoints of other implementations -> longbird folders."""

from __future__ import annotations

import argparse
import sys

from ..cli import report_user_error
from .etc_tf import convert_etc_tf_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="longbird-convert", description=__doc__)
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
    args = parser.parse_args(argv)
    try:
        _, report = convert_etc_tf_checkpoint(args.tf_checkpoint, args.config, args.output, args.allow_missing)
    except Exception as error:  # a user error (missing file, a checkpoint that does not fit): one line
        if not report_user_error("longbird-convert", error):
            raise  # a bug: its traceback
        return 2
    print(report.summary())
    print(f"saved to {args.output}; load it with longbird.EtcModel.from_pretrained({args.output!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
