"""The `longbird` command line: `longbird demo`, `longbird speed`, `longbird train <task> ...`."""

from __future__ import annotations

import importlib
import sys

from longbird.tasks import RECIPES

COMMANDS = {"demo": "longbird.tasks.demo", "speed": "longbird.tasks.speed", "train": None}


def _usage() -> str:
    return (f"usage: longbird demo [options]      (train, evaluate and use a small model on shipped data)\n"
            f"       longbird speed [options]     (block-sparse vs full attention: time and memory)\n"
            f"       longbird train {{{','.join(RECIPES)}}} [options]   (add --help for a command's options)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(_usage())
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    if argv[0] == "train":
        if len(argv) < 2 or argv[1] not in RECIPES:
            print(_usage())
            sys.exit(0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2)
        sys.argv = [f"longbird train {argv[1]}", *argv[2:]]  # --help and the model card show this command
        importlib.import_module(RECIPES[argv[1]]).main(argv[2:])
        return
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
