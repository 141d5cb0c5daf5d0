"""The `longbird` command line: `longbird demo`, `longbird speed`, `longbird train <task> ...`,
`longbird convert etc-tf ...` (`longbird-convert` is an alias of `longbird convert`), `longbird export ...`.

Errors the user caused (a bad flag value, a missing file, data or a checkpoint that does not fit)
end the command with one line, `longbird: error: ...`, and exit code 2; anything else (a bug)
keeps its traceback. `LONGBIRD_TRACEBACK=1` shows the traceback of every error.
"""

from __future__ import annotations

import contextlib
import importlib
import linecache
import os
import re
import sys

from huggingface_hub.errors import StrictDataclassError

from longbird.tasks import RECIPES

COMMANDS = {
    "demo": "longbird.tasks.demo",
    "speed": "longbird.tasks.speed",
    "train": None,
    "convert": None,
    "export": "longbird.export.cli",
}


def _usage() -> str:
    return (
        f"usage: longbird demo [options]      (train, evaluate and use a small model on shipped data)\n"
        f"       longbird speed [options]     (block-sparse vs full attention: time and memory)\n"
        f"       longbird train {{{','.join(RECIPES)}}} [options]   (add --help for a command's options)\n"
        "       longbird convert etc-tf --tf-checkpoint CKPT --config JSON --output DIR   (TF ETC -> EtcModel)\n"
        "       longbird export MODEL_DIR --format {onnx,torch-export} --output DIR   (ONNX Runtime, torch.export)\n"
        f"An error in the input is reported in one line; LONGBIRD_TRACEBACK=1 shows its traceback."
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    with user_errors_as_one_line("longbird"):
        _run(argv)


def _run(argv: list[str]) -> None:
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
    if argv[0] == "convert":
        from longbird.conversion.cli import parse_args, run

        run(parse_args(argv[1:], prog="longbird convert"))  # a user error: main's one line, `longbird: error: ...`
        return
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


#: where a ValueError/TypeError/OSError is a check of the user's input, not a bug: transformers'
#: argument parsing and validation, its lookup of model/tokenizer files, huggingface_hub's checks
#: of config values (e.g. from --config_overrides)
_CHECKING_MODULES = (
    "transformers.hf_argparser",
    "transformers.training_args",
    "transformers.utils.hub",
    "huggingface_hub.dataclasses",
)
#: errors about the file system the user controls, wherever they are raised
_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` reports bad input rather than a bug.

    True for a missing or unreadable file or folder, and for a ValueError/TypeError/OSError (or a
    config field's validation error) raised by a `raise` statement of longbird's own checks or by
    one of `_CHECKING_MODULES`. A ValueError that escapes from inside torch, or from a builtin called
    by our code (e.g. `max([])`), is a bug: it keeps its traceback.
    """
    if isinstance(error, _FILE_ERRORS):
        return True
    if not isinstance(error, (ValueError, TypeError, OSError, StrictDataclassError)):
        return False
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    if module == "longbird" or module.startswith("longbird."):
        line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        return line.lstrip().startswith("raise")
    return module in _CHECKING_MODULES


def report_user_error(prog: str, error: BaseException) -> bool:
    """Print a user error (`is_user_error`) as one line on stderr, `prog: error: <message>`; False,
    printing nothing, for any other error (and for every error with LONGBIRD_TRACEBACK set)."""
    if os.environ.get("LONGBIRD_TRACEBACK") or not is_user_error(error):
        return False
    message = re.sub(r"\s*\n\s*", " ", str(error).strip()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
        message = f"{message}: {error.filename}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return True


@contextlib.contextmanager
def user_errors_as_one_line(prog: str):
    """A user error raised inside the block: one line (`report_user_error`) and exit code 2
    (argparse's, for a bad command line); other exceptions pass through with their traceback."""
    try:
        yield
    except Exception as error:
        if not report_user_error(prog, error):
            raise
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
