"""The `longbird` command line."""

from __future__ import annotations

import sys

COMMANDS = {"demo": "longbird.tasks.demo"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: longbird {{{','.join(COMMANDS)}}} [options]   (longbird COMMAND --help for options)")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import importlib

    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
