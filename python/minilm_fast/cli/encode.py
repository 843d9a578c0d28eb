"""``minilm-fast encode``: texts in (a file, standard input or -t); a .npy, .jsonl or .parquet
file, or a printed summary with a cosine similarity matrix, out."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .. import Encoder
from .._quantize import PRECISIONS
from . import ray_encode
from .common import EXIT_OK, PROG, Embeddings, isatty, printable, shorten
from .formats import (
    check_arguments,
    check_output,
    pick_input_format,
    pick_output_format,
    read_texts,
    save,
    source_name,
)
from .options import (
    check_chunk_options,
    encoding_options,
    engine_options,
    input_format_options,
    load_encoder,
    messages_options,
    model_options,
    report_truncation,
    show_progress,
)

__all__ = ["SIMILARITY_LIMIT", "add_parser", "run"]

#: Largest number of texts for which ``encode`` prints the cosine similarity matrix.
SIMILARITY_LIMIT = 10

_EPILOG = """\
examples:
  # one text per line -> embeddings.npy, shape (lines, 384), float32; row i is line i
  minilm-fast encode sentences.txt -o embeddings.npy
  python -c "import numpy as np; print(np.load('embeddings.npy').shape)"

  # JSONL, the text in field "body" -> Parquet with columns id, text, embedding
  minilm-fast encode docs.jsonl --field body -o embeddings.parquet

  # one {"id": i, "text": ..., "embedding": [...]} object per line
  minilm-fast encode sentences.txt -o embeddings.jsonl

  # from a pipe, the .npy to standard output, another local model, 4 threads
  cut -f2 data.tsv | minilm-fast encode -o - --model ./my-model --threads 4 > vectors.npy

  # compact vectors: int8 of shape (n, 384), or one bit per dimension, (n, 48) uint8
  minilm-fast encode sentences.txt --precision int8 -o vectors-int8.npy
  minilm-fast encode sentences.txt --precision ubinary -o vectors-bits.npy

  # long documents: embed all of each text, not only its first 256 word pieces
  minilm-fast encode articles.jsonl --long-text chunk -o articles.npy

  # on Ray Data (pip install "minilm-fast[ray]"): Parquet/JSONL in, a folder of Parquet out,
  # 2 actors of 2 threads; on a running cluster add --ray-address auto (or set RAY_ADDRESS)
  minilm-fast encode --ray docs.parquet -o embedded/ --actors 2 --threads-per-actor 2

  # compare a few texts: prints the shape, speed and a cosine similarity matrix
  minilm-fast encode -t "A man is eating food." -t "A man is eating pasta." -t "A plane takes off."

INPUT is read as JSONL when it ends in .jsonl or .ndjson (or --field is given), else as
one text per line (a blank line is an empty text, so row i is always line i). The suffix
of -o picks the output: .npy, .jsonl, or .parquet (pip install pyarrow).

Texts are embedded as sentence-transformers' SentenceTransformer.encode does (same
tokenization, truncation, pooling and normalisation).
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``encode`` and its options (those of --ray included) to ``commands``."""
    parser = commands.add_parser(
        "encode",
        parents=[
            model_options(),
            engine_options(),
            input_format_options(),
            encoding_options(),
            messages_options(),
        ],
        help="embed texts; write .npy, .jsonl or .parquet, or print a summary",
        description=(
            "Embed the texts of INPUT (one per line, or JSONL), of standard input, or given\n"
            "with -t. With -o, write the embeddings (row i is text i) as .npy, .jsonl or\n"
            ".parquet, chosen by the suffix; without -o, print a short summary with a cosine\n"
            "similarity matrix."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="file of texts (UTF-8), or '-' for standard input (the default when standard "
        "input is a pipe or file)",
    )
    parser.add_argument(
        "-f",
        "--file",
        metavar="PATH",
        help="same as INPUT (kept for existing scripts)",
    )
    parser.add_argument(
        "-t",
        "--text",
        dest="texts",
        action="append",
        metavar="TEXT",
        help="a text to embed; repeat for more (instead of INPUT)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the embeddings to OUT.npy, OUT.jsonl or OUT.parquet (needs pyarrow), "
        "replaced atomically; '-' writes .npy to standard output",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32, int8/uint8 (one byte per dimension, ranges taken from these texts) or "
        "binary/ubinary (one bit per dimension, packed: 384 -> 48 bytes) (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="do not force unit length (like normalize_embeddings=False; all-MiniLM-L6-v2 "
        "normalises in its own pipeline, so its vectors stay unit length)",
    )
    ray_encode.add_options(parser)
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """``minilm-fast encode``: texts in; a .npy, .jsonl or .parquet file, or a summary out."""
    parser: argparse.ArgumentParser = args.parser
    if args.ray:
        return ray_encode.run(args)
    ray_encode.refuse_options_without_ray(args)
    source = _encode_source(args)
    check_chunk_options(args)
    output_format: str | None = None
    if args.output is not None:
        output_format = pick_output_format(args.output, parser)
        check_output(args.output, output_format)

    if source is None:
        texts = check_arguments(args.texts)
        name = "arguments"
    else:
        input_format = pick_input_format(args, source)
        texts = read_texts(source, input_format, args.field or "text", quiet=args.quiet)
        name = source_name(source)

    started = time.perf_counter()
    encoder = load_encoder(args)
    loaded = time.perf_counter()
    embeddings, truncated = encoder.encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=show_progress(args),
        precision=args.precision,
        normalize_embeddings=args.normalize,
        long_text=args.long_text,
        chunk_stride=args.chunk_stride,
        return_truncation=True,
    )
    finished = time.perf_counter()
    timing = _Timing(load_s=loaded - started, encode_s=finished - loaded, count=len(texts))

    if not args.quiet:
        if not texts:
            print(f"{PROG}: warning: {name} holds no text", file=sys.stderr)
        report_truncation(encoder, args, int(np.count_nonzero(truncated)), len(texts))
    if output_format is None:  # no -o
        _print_summary(encoder, texts, embeddings, timing, args)
        return EXIT_OK

    written = save(args.output, output_format, texts, embeddings)
    if not args.quiet:
        rows, dim = embeddings.shape
        print(
            f"{PROG}: wrote {rows} x {dim} {embeddings.dtype} embeddings to {written} "
            f"({timing.rate()}, model loaded in {timing.load_s:.2f} s)",
            file=sys.stderr,
        )
    return EXIT_OK


def _encode_source(args: argparse.Namespace) -> str | None:
    """Where ``encode`` reads texts: a path, ``"-"`` for stdin, or None for -t texts."""
    parser: argparse.ArgumentParser = args.parser
    if args.input is not None and args.file is not None:
        parser.error("give INPUT or -f/--file, not both (-f PATH is the older spelling of INPUT)")
    source: str | None = args.input if args.input is not None else args.file
    if args.texts:
        if source is not None:
            parser.error(f"give texts with -t/--text or an INPUT file ('{source}'), not both")
        if args.format is not None or args.field is not None:
            parser.error("--format and --field describe an INPUT file; -t/--text gives texts")
        return None
    if source is None:
        if isatty(sys.stdin) or sys.stdin is None:
            parser.error(
                "nothing to encode: give an INPUT file ('-' reads standard input), pipe texts "
                "into standard input, or give texts with -t TEXT"
            )
        source = "-"  # a pipe or a redirected file: `cat texts.txt | minilm-fast encode`
    return source


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
    embeddings: Embeddings,
    timing: _Timing,
    args: argparse.Namespace,
) -> None:
    """The human summary ``encode`` prints on stdout when no -o is given."""
    rows, dim = embeddings.shape
    out = sys.stdout
    floats = args.precision == "float32"
    if floats:
        norms = np.linalg.norm(embeddings, axis=1)
        if rows and np.allclose(norms, 1.0, atol=1e-4):
            lengths = "unit length"
        elif rows:
            lengths = f"norms {float(norms.min()):.3f} to {float(norms.max()):.3f}"
        else:
            lengths = "empty"
        how = "normalized" if args.normalize else "not forced to unit length"
        print(f"embeddings: {rows} x {dim} float32 ({how}; {lengths})", file=out)
    else:
        print(f"embeddings: {rows} x {dim} {embeddings.dtype} ({args.precision})", file=out)
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
            print(f"  [{index}] {printable(shorten(text), out)}", file=out)
        if floats:
            print("cosine similarity:", file=out)
            for line in _similarity_lines(embeddings, norms):
                print(line, file=out)
    elif rows > SIMILARITY_LIMIT and floats:
        print(f"(cosine similarities are shown for at most {SIMILARITY_LIMIT} texts)", file=out)
    print("write the embeddings to a file with -o OUT.npy (or .jsonl, .parquet)", file=out)


def _similarity_lines(embeddings: Embeddings, norms: npt.NDArray[np.floating]) -> list[str]:
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
