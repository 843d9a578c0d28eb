"""The ``minilm-fast`` program: the parser assembled from the command modules, and ``main``,
which runs a command and turns its failures into one message and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Callable

from .. import MiniLMError, ModelNotFoundError, __version__
from .._hub import ALLOW_DOWNLOADS_FIX, LOCAL_FILES_ONLY_REASON
from . import download, encode, info, search, serve
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    CliError,
    logger,
    os_reason,
)

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

_DEBUG_ENV = "MINILM_FAST_DEBUG"
_TRUE = {"1", "true", "yes", "on"}

_EPILOG = """\
examples:
  minilm-fast encode sentences.txt -o embeddings.npy
  minilm-fast encode docs.jsonl --field body -o embeddings.parquet
  cat sentences.txt | minilm-fast encode -o - > embeddings.npy
  minilm-fast encode -t "A man is eating food." -t "A man is eating pasta."
  minilm-fast search faq.txt "How do I reset my password?"
  MODEL_DIR=$(minilm-fast download)
  minilm-fast info
  minilm-fast serve --port 8000  # OpenAI's embeddings API (pip install 'minilm-fast[serve]')

Run `minilm-fast COMMAND --help` for the options of each command.

exit codes: 0 ok, 1 error (model not found, unreadable input, unwritable output),
2 bad usage, 130 interrupted. Set MINILM_FAST_DEBUG=1 to see Python tracebacks.
"""

#: The phrases of :class:`ModelNotFoundError` messages that name both ``local_files_only`` and
#: ``--offline``, and their command-line half: only ``--offline`` sets it here.
_OFFLINE_IN_CLI_TERMS = (
    (ALLOW_DOWNLOADS_FIX, "drop --offline"),
    (LOCAL_FILES_ONLY_REASON, "--offline"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Never raises for user errors and never calls ``sys.exit``: the console script and
    ``python -m minilm_fast`` pass the returned code to ``sys.exit``.

    >>> main(["--version"])  # doctest: +ELLIPSIS
    minilm-fast ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return _exit_code(exc.code)

    handler: Handler = args.handler
    restore_logging = _setup_logging(args.verbose, args.quiet)
    try:
        return handler(args)
    except SystemExit as exc:  # a command's args.parser.error(...): a usage error
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        _debug_traceback()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`minilm-fast info | head -1`): not an error to report.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        _debug_traceback()
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        restore_logging()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``minilm-fast``, with one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Sentence embeddings with sentence-transformers' all-MiniLM-L6-v2 (or another\n"
            "BERT-shaped sentence-transformers model), computed by a Rust engine on the CPU."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for command in (encode, search, download, info, serve):
        command.add_parser(commands)
    return parser


# --------------------------------------------------------------------------------------------
# Errors, logging, terminals


def _describe(exc: BaseException) -> str:
    """The message a shell user sees for ``exc`` (after ``minilm-fast: error:``)."""
    if isinstance(exc, ModelNotFoundError):
        return _in_cli_terms(str(exc))
    if isinstance(exc, (CliError, MiniLMError)):  # ChecksumError included
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{os_reason(exc)}: '{exc.filename}'"
    text = str(exc) or "(no message)"
    if isinstance(exc, (OSError, ValueError, TypeError)):
        return text
    return (
        f"unexpected {type(exc).__name__}: {text}\n"
        f"(this looks like a bug; run again with {_DEBUG_ENV}=1 and report the traceback)"
    )


def _in_cli_terms(message: str) -> str:
    """A model-not-found message with ``local_files_only`` said as ``--offline``.

    Text quoted from huggingface_hub (``pass 'local_files_only=False' as input``, in quotes) is
    left as the library wrote it.
    """
    for python, cli in _OFFLINE_IN_CLI_TERMS:
        message = message.replace(python, cli)
    return message


def _debug_traceback() -> None:
    """Print the current exception's traceback when ``MINILM_FAST_DEBUG`` is set."""
    if os.environ.get(_DEBUG_ENV, "").strip().lower() in _TRUE:
        traceback.print_exc(file=sys.stderr)


def _setup_logging(verbose: int, quiet: bool) -> Callable[[], None]:
    """Send the ``minilm_fast`` logger to stderr for this run; return a function undoing it."""
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate

    return restore


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as an int exit status."""
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR
