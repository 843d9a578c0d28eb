"""``minilm-fast serve``: an OpenAI-compatible embeddings server (``POST /v1/embeddings``, plus
``/v1/models``, ``/health`` and ``/metrics``) on Starlette and uvicorn, from the ``[serve]``
extra; docs/SERVING.md has the details."""

from __future__ import annotations

import argparse
import sys

from .. import DEFAULT_MODEL
from .._pipeline import MAX_BATCH_TOKENS
from .common import EXIT_INTERRUPTED, EXIT_OK, PROG, CliError
from .options import (
    engine_options,
    load_encoder,
    messages_options,
    model_options,
    non_negative_int,
    positive_int,
)

__all__ = ["add_parser", "run"]

_INSTALL_HINT = "pip install 'minilm-fast[serve]'"

_EPILOG = """\
examples:
  # all-MiniLM-L6-v2 on http://127.0.0.1:8000/v1 (OpenAI base URL)
  minilm-fast serve

  # on every interface, port 9000, int8 arithmetic, 4 threads, also answering to "embed"
  minilm-fast serve --host 0.0.0.0 --port 9000 --compute int8 --threads 4 \\
      --served-model-name embed

  curl -s http://127.0.0.1:8000/v1/embeddings -H 'Content-Type: application/json' \\
      -d '{"model": "all-MiniLM-L6-v2", "input": ["A man is eating food."]}'

  # from Python: any OpenAI client
  #   OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").embeddings.create(
  #       model="all-MiniLM-L6-v2", input=["A man is eating food."])

Endpoints: POST /v1/embeddings (OpenAI's: input, model, encoding_format, dimensions),
GET /v1/models, GET /health, GET /metrics (Prometheus). Concurrent requests share engine
batches. SIGTERM or Ctrl-C stops gracefully: no new requests, those in flight are answered.
Needs the [serve] extra: pip install 'minilm-fast[serve]'.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and its options to ``commands``."""
    parser = commands.add_parser(
        "serve",
        parents=[model_options(), engine_options(), messages_options()],
        help="serve embeddings over HTTP with OpenAI's API (pip install 'minilm-fast[serve]')",
        description=(
            "Serve the model over HTTP with OpenAI's embeddings API, so OpenAI clients,\n"
            "LangChain's OpenAIEmbeddings and others use it by their base URL. Concurrent\n"
            "requests are coalesced into shared engine batches."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for every "
        "interface)",
    )
    server.add_argument(
        "--port",
        type=non_negative_int,
        default=8000,
        help="TCP port (default: %(default)s; 0 picks a free one, shown at startup)",
    )
    server.add_argument(
        "--served-model-name",
        dest="served_names",
        action="append",
        default=[],
        metavar="NAME",
        help="a model name clients may ask for, besides --model and its last path component; "
        "repeat for more (the first is the one /health shows)",
    )
    server.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="uvicorn's access log, one line per request on standard output (default: on; "
        "off with -q)",
    )
    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max-batch-tokens",
        type=positive_int,
        default=MAX_BATCH_TOKENS,
        metavar="N",
        help="most word pieces (rows x longest row) of one engine batch of coalesced requests "
        "(default: %(default)s)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-input-texts",
        type=positive_int,
        default=2048,
        metavar="N",
        help="texts per request; more is a 400 error (default: %(default)s, OpenAI's)",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=8 * 1024 * 1024,
        metavar="N",
        help="bytes of a request body; more is a 413 error (default: %(default)s, 8 MiB)",
    )
    limits.add_argument(
        "--max-queue-texts",
        type=positive_int,
        metavar="N",
        help="texts admitted and not yet answered, across requests; a request that would go "
        "past it gets 503 with Retry-After (default: 4 x --max-input-texts)",
    )
    limits.add_argument(
        "--shutdown-timeout",
        type=non_negative_int,
        default=30,
        metavar="SECONDS",
        help="at shutdown, how long requests in flight may take before they are cancelled "
        "(default: %(default)s)",
    )
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """``minilm-fast serve``: load the model, serve it until SIGTERM or Ctrl-C."""
    parser: argparse.ArgumentParser = args.parser
    try:
        from .. import server
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise CliError(
            f"serve needs the [serve] extra ({missing} is not installed): {_INSTALL_HINT}"
        ) from None

    queue_texts = args.max_queue_texts or 4 * args.max_input_texts
    try:
        limits = server.ServerLimits(
            max_input_texts=args.max_input_texts,
            max_body_bytes=args.max_body_bytes,
            max_queue_texts=queue_texts,
            shutdown_timeout=args.shutdown_timeout,
        )
    except ValueError as exc:
        parser.error(f"argument --max-queue-texts: {exc}")

    model = args.model or DEFAULT_MODEL
    encoder = load_encoder(args, max_batch_tokens=args.max_batch_tokens)
    served_names = server.served_model_names(model, args.served_names)

    def started(url: str) -> None:
        if args.quiet:
            return
        print(
            f"{PROG}: serving {served_names[0]} at {url}/v1 (OpenAI base URL; dim "
            f"{encoder.get_sentence_embedding_dimension()}, compute {encoder.compute}, "
            f"{encoder.threads} threads); SIGTERM or Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    try:
        graceful = server.serve(
            encoder,
            host=args.host,
            port=args.port,
            served_names=served_names,
            limits=limits,
            log_level=_uvicorn_log_level(args),
            access_log=args.access_log and not args.quiet,
            on_started=started,
        )
    except server.ServerStartError as exc:
        raise CliError(f"{exc}; see the message above") from None
    if not graceful:
        print(f"{PROG}: stopped without waiting for requests in flight", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(f"{PROG}: stopped", file=sys.stderr)
    return EXIT_OK


def _uvicorn_log_level(args: argparse.Namespace) -> str:
    """uvicorn's messages: warnings and errors with -q, request lines by default, -vv debug."""
    if args.quiet:
        return "warning"
    return "debug" if args.verbose >= 2 else "info"
