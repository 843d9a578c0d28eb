"""Reading texts (one per line, or a JSONL field; from a file or standard input) and writing
embeddings (.npy, .jsonl, .parquet, replaced atomically), with errors a shell user can act on."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import shlex
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any, Callable

import numpy as np

from .common import PROG, CliError, Embeddings, isatty, logger, os_reason

__all__ = [
    "JSONL_SUFFIXES",
    "OUTPUT_FORMATS",
    "check_arguments",
    "check_output",
    "pick_input_format",
    "pick_output_format",
    "read_texts",
    "require_pyarrow",
    "save",
    "source_name",
]

#: Output formats by the suffix of ``-o`` (lower-cased).
OUTPUT_FORMATS = {".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

#: Input suffixes read as JSONL when ``--format`` is not given.
JSONL_SUFFIXES = (".jsonl", ".ndjson")


# --------------------------------------------------------------------------------------------
# Input


def source_name(source: str) -> str:
    """How messages name an input: ``standard input`` or ``input file 'x.txt'``."""
    return "standard input" if source == "-" else f"input file '{source}'"


def pick_input_format(args: argparse.Namespace, source: str) -> str:
    """``"lines"`` or ``"jsonl"``: --format, else implied by --field or the file's suffix."""
    if args.format is not None:
        if args.format == "lines" and args.field is not None:
            args.parser.error("--field NAME reads JSONL; it cannot be used with --format lines")
        return str(args.format)
    if args.field is not None:
        return "jsonl"
    suffix = pathlib.PurePath(source).suffix.lower() if source != "-" else ""
    return "jsonl" if suffix in JSONL_SUFFIXES else "lines"


def read_texts(source: str, input_format: str, field: str, *, quiet: bool) -> list[str]:
    """The texts of a file or stdin (``"-"``), as lines or from a JSONL field."""
    name = source_name(source)
    text = _decode(_read_source(source, quiet=quiet), name)
    if input_format == "jsonl":
        return _parse_jsonl(text, field, name)
    return _split_lines(text)


def check_arguments(texts: Sequence[str], what: str = "text") -> list[str]:
    """Texts given as arguments; bytes the locale could not decode are refused, not mangled."""
    for index, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CliError(
                f"{what} argument {index} is not valid UTF-8 (check the terminal's locale, "
                "or put the texts in a UTF-8 file)"
            ) from None
    return list(texts)


def _read_source(source: str, *, quiet: bool) -> bytes:
    """The bytes of a file or of stdin (``"-"``), with errors a shell user can act on."""
    if source == "-":
        if isatty(sys.stdin) and not quiet:
            print(
                f"{PROG}: reading texts from the terminal, one per line; end with Ctrl-D",
                file=sys.stderr,
            )
        logger.info("reading texts from standard input")
        return _read_stdin()
    logger.info("reading texts from %s", source)
    try:
        return pathlib.Path(source).read_bytes()
    except FileNotFoundError:
        where = "" if os.path.isabs(source) else f" (looked in {os.getcwd()})"
        hint = ""
        if not pathlib.PurePath(source).suffix or " " in source:
            hint = f"; to embed the text itself, pass it with -t: -t {_shell_quote(source)}"
        raise CliError(f"input file '{source}' does not exist{where}{hint}") from None
    except IsADirectoryError:
        raise CliError(f"input file '{source}' is a folder; pass a text file") from None
    except OSError as exc:
        raise CliError(f"cannot read input file '{source}': {os_reason(exc)}") from None


def _read_stdin() -> bytes:
    """All of standard input as bytes (text streams, e.g. in a notebook, are encoded back)."""
    if sys.stdin is None:
        raise CliError("there is no standard input to read texts from")
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def _shell_quote(text: str) -> str:
    """``text`` quoted for a POSIX shell, for hints (shortened when long)."""
    return shlex.quote(text if len(text) <= 60 else text[:57] + "...")


def _decode(data: bytes, name: str) -> str:
    """UTF-8 text (a byte order mark dropped), or an error naming the line that is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise CliError(
            f"{name} is not UTF-8 text: byte 0x{byte} on line {line} cannot be decoded; "
            "convert it first (e.g. `iconv -f LATIN1 -t UTF-8 in.txt > out.txt`)"
        ) from None


def _split_lines(text: str) -> list[str]:
    """One text per line, blank lines kept, so row i == line i + 1.

    Only the line terminator is removed (``\\n`` or ``\\r\\n``); a final newline does not start
    another text. Splitting on ``\\n`` alone (not ``str.splitlines``) keeps row i == line i for
    texts holding form feeds or U+2028.
    """
    lines = text.split("\n")
    if lines[-1] == "":  # a final newline (or an empty input) ends the last line, adds none
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _parse_jsonl(text: str, field: str, name: str) -> list[str]:
    """The string ``field`` of each line's JSON object; any other line is an error naming it.

    Blank lines are refused rather than skipped, so row i is always line i + 1; only the
    newline ending the last line is allowed.
    """
    texts: list[str] = []
    for number, line in enumerate(_split_lines(text), 1):
        where = f"{name}, line {number}"
        if not line.strip():
            raise CliError(
                f"{where} is blank; JSONL input needs one JSON object per line "
                "(remove blank lines, e.g. with `grep -v '^[[:space:]]*$'`)"
            )
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(
                f"{where} is not valid JSON: {exc.msg} (column {exc.colno})"
                + ("; to read plain lines, pass --format lines" if number == 1 else "")
            ) from None
        except ValueError as exc:  # e.g. an integer too long to convert
            raise CliError(f"{where} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise CliError(
                f"{where} is a JSON {_json_type(record)}, not an object; JSONL input needs "
                f'one object per line such as {{"{field}": "..."}}'
            )
        if field not in record:
            fields = ", ".join(repr(key) for key in record) or "none"
            raise CliError(
                f"{where} has no field '{field}' (its fields: {fields}); "
                "pick the field with --field NAME"
            )
        value = record[field]
        if not isinstance(value, str):
            raise CliError(f"{where}: field '{field}' is a JSON {_json_type(value)}, not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CliError(
                f"{where}: field '{field}' holds an unpaired surrogate escape (such as \\ud800), "
                "which is not text"
            ) from None
        texts.append(value)
    return texts


def _json_type(value: object) -> str:
    """JSON's name for the type of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------------------------
# Output


def pick_output_format(destination: str, parser: argparse.ArgumentParser) -> str:
    """``"npy"``, ``"jsonl"`` or ``"parquet"`` from the suffix of -o (``"-"``: npy)."""
    if destination == "-":
        return "npy"
    suffix = pathlib.PurePath(destination).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        parser.error(
            f"argument -o/--output: cannot tell the format of '{destination}' from its "
            f"suffix; use one of {', '.join(OUTPUT_FORMATS)} ('-' writes .npy to standard "
            "output)"
        )
    return OUTPUT_FORMATS[suffix]


def check_output(destination: str, output_format: str) -> None:
    """Fail before the (possibly long) encoding when the output cannot be written."""
    if output_format == "parquet":
        require_pyarrow()
    if destination == "-":
        if isatty(sys.stdout):
            raise CliError(
                "refusing to write binary .npy data to a terminal; redirect stdout "
                "(-o - > out.npy) or pass -o OUT.npy"
            )
        return
    path = pathlib.Path(destination)
    if path.is_dir():
        raise CliError(f"output '{destination}' is a folder; pass a file name such as out.npy")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(
            f"cannot write output '{destination}': folder '{parent}' does not exist "
            f"(create it with `mkdir -p {parent}`)"
        )
    if not os.access(parent, os.W_OK):
        raise CliError(f"cannot write output '{destination}': folder '{parent}' is not writable")


def require_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an error saying how to install them."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise CliError(
            "writing .parquet needs pyarrow, which is not installed: pip install pyarrow "
            "(or write .npy or .jsonl, which need nothing more)"
        ) from None


def save(destination: str, output_format: str, texts: Sequence[str], array: Embeddings) -> str:
    """Write the embeddings in ``output_format`` to ``destination``; return where they went."""
    if output_format == "jsonl":
        return _write_atomically(destination, lambda handle: _write_jsonl(handle, texts, array))
    if output_format == "parquet":
        return _write_atomically(destination, lambda handle: _write_parquet(handle, texts, array))
    return _save_npy(destination, array)


def _save_npy(destination: str, array: Embeddings) -> str:
    """Write ``array`` as .npy to ``destination`` (``"-"``: stdout) and return where it went."""
    if destination == "-":
        stream = sys.stdout.buffer
        np.save(stream, array, allow_pickle=False)
        stream.flush()
        return "standard output"
    return _write_atomically(destination, lambda handle: np.save(handle, array, allow_pickle=False))


def _write_jsonl(handle: IO[bytes], texts: Sequence[str], array: Embeddings) -> None:
    """One ``{"id": i, "text": ..., "embedding": [...]}`` object per line, UTF-8."""
    for index, (text, row) in enumerate(zip(texts, array)):
        record = {"id": index, "text": text, "embedding": row.tolist()}
        handle.write(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        handle.write(b"\n")


def _write_parquet(handle: IO[bytes], texts: Sequence[str], array: Embeddings) -> None:
    """Columns ``id`` int64, ``text`` string, ``embedding`` fixed_size_list<dtype>[dim]."""
    pa, pq = require_pyarrow()
    rows, width = array.shape
    values = pa.array(np.ascontiguousarray(array).reshape(-1))
    table = pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "text": pa.array(list(texts), type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(values, width),
        }
    )
    pq.write_table(table, handle)


def _write_atomically(destination: str, write: Callable[[IO[bytes]], object]) -> str:
    """Call ``write`` on a temporary file beside ``destination``, then rename it over it.

    Readers never see a half-written file, and a failure leaves no debris.
    """
    path = pathlib.Path(destination)
    try:
        fd, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise CliError(f"cannot write output '{destination}': {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CliError(f"cannot write output '{destination}': {os_reason(exc)}") from None
        raise
    return destination


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
