"""``minilm-fast search``: embed a small corpus and some queries, and print for each query the
corpus texts of highest cosine similarity (as text, or one JSON object per query)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from .common import EXIT_OK, CliError, logger, printable, shorten
from .formats import check_arguments, pick_input_format, read_texts, source_name
from .options import (
    check_chunk_options,
    encoding_options,
    engine_options,
    input_format_options,
    load_encoder,
    messages_options,
    model_options,
    positive_int,
    report_truncation,
    show_progress,
)

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  # the 5 lines of faq.txt closest to a question
  minilm-fast search faq.txt "How do I reset my password?"

  # several queries, 3 hits each, from the "question" field of a JSONL file
  minilm-fast search faq.jsonl --field question -k 3 "reset password" "delete my account"

  # one JSON object per query: {"query": ..., "hits": [{"rank", "score", "line", "text"}]}
  minilm-fast search faq.txt --json "refund policy" | jq '.hits[0].text'

Scores are cosine similarities; [line N] is the line of CORPUS the hit comes from.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``search`` and its options to ``commands``."""
    parser = commands.add_parser(
        "search",
        parents=[
            model_options(),
            engine_options(),
            input_format_options(),
            encoding_options(),
            messages_options(),
        ],
        help="print the texts of a small corpus nearest to each query",
        description=(
            "Embed every text of CORPUS (one per line, or JSONL) and each QUERY, and print\n"
            "for each query the -k corpus texts of highest cosine similarity, with their\n"
            "line numbers. Blank texts are skipped. The corpus is embedded on every run, so\n"
            "this suits corpora of up to some ten thousand texts."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "corpus", metavar="CORPUS", help="file of texts to search, or '-' for standard input"
    )
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="what to look for")
    parser.add_argument(
        "-k",
        "--top-k",
        type=positive_int,
        default=5,
        metavar="K",
        help="hits to print per query (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per query instead"
    )
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """``minilm-fast search``: the corpus texts nearest to each query, printed."""
    check_chunk_options(args)
    queries = check_arguments(args.queries, what="query")
    input_format = pick_input_format(args, args.corpus)
    texts = read_texts(args.corpus, input_format, args.field or "text", quiet=args.quiet)
    # (line number, text); blank texts would only ever be noise among the hits.
    corpus = [(number, text) for number, text in enumerate(texts, 1) if text.strip()]
    if not corpus:
        blank = f" (only {len(texts)} blank lines)" if texts else ""
        raise CliError(f"{source_name(args.corpus)} holds no text to search{blank}")
    if len(corpus) < len(texts):
        logger.info("skipped %d blank texts", len(texts) - len(corpus))

    encoder = load_encoder(args)
    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "long_text": args.long_text,
        "chunk_stride": args.chunk_stride,
        "return_truncation": True,
    }
    documents, documents_cut = encoder.encode_document(
        [text for _, text in corpus], show_progress_bar=show_progress(args), **options
    )
    query_vectors, queries_cut = encoder.encode_query(queries, show_progress_bar=False, **options)
    if not args.quiet:
        cut = int(np.count_nonzero(documents_cut)) + int(np.count_nonzero(queries_cut))
        report_truncation(encoder, args, cut, len(corpus) + len(queries))
    scores = np.asarray(encoder.similarity(query_vectors, documents), dtype=np.float32)

    top_k = min(args.top_k, len(corpus))
    width = len(str(top_k))  # of the rank column
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
        print(f"query: {printable(shorten(query, 100), out)}", file=out)
        for hit in hits:
            text = printable(shorten(str(hit["text"]), 100), out)
            print(
                f"  {hit['rank']:>{width}}. {hit['score']:.4f}  [line {hit['line']}] {text}",
                file=out,
            )
    out.flush()
    return EXIT_OK
