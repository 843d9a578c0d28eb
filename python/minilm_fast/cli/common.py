"""What every command shares: the program name, exit codes, CliError, the logger, and helpers for
terminals and messages."""

from __future__ import annotations

import logging
from typing import Any

import numpy.typing as npt

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "Embeddings",
    "isatty",
    "logger",
    "os_reason",
    "printable",
    "shorten",
]

PROG = "minilm-fast"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` reports for `yes`

logger = logging.getLogger("minilm_fast")

Embeddings = npt.NDArray[Any]  # float32, or int8 / uint8 for the quantized precisions


class CliError(Exception):
    """A runtime failure the user can act on: printed as ``minilm-fast: error: ...``, exit 1."""


def isatty(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal (False for None and closed streams)."""
    try:
        return bool(stream is not None and stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def os_reason(exc: OSError) -> str:
    """``strerror`` in lower case ("no such file or directory"), or the message."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def shorten(text: str, limit: int = 70) -> str:
    """One line of at most ``limit`` characters, for summaries and search hits."""
    flat = " ".join(text.split())
    if not flat:
        return "(empty)" if not text else "(whitespace only)"
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat


def printable(text: str, stream: object) -> str:
    """``text`` with characters the stream cannot encode written as escapes."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        return text
