"""``minilm-fast encode --ray``: Parquet or JSONL in, a folder of Parquet files out, embedded by
a pool of Ray Data actors (``minilm_fast.ray.embed_dataset``).

Its options are added to ``encode``'s parser here; Ray itself is imported only when ``--ray``
is given, so the rest of the command line runs without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np

from .. import DEFAULT_MODEL, resolve_model
from ..integrations._common import DEFAULT_RAY_BATCH_SIZE
from .common import EXIT_OK, PROG, CliError, logger
from .formats import JSONL_SUFFIXES, read_texts, require_pyarrow
from .options import check_chunk_options, positive_int, show_progress

__all__ = ["add_options", "refuse_options_without_ray", "run"]

#: The options of ``encode --ray`` and their argparse destinations.
_RAY_OPTIONS = (
    ("--actors", "actors"),
    ("--threads-per-actor", "threads_per_actor"),
    ("--id-column", "id_column"),
    ("--ray-batch-size", "ray_batch_size"),
    ("--ray-address", "ray_address"),
)

#: Options of ``encode`` that have no meaning with --ray, and what to use instead.
_NOT_WITH_RAY = (
    ("texts", "-t/--text", "put the texts in a Parquet or JSONL file"),
    ("threads", "--threads", "use --threads-per-actor"),
)


def add_options(encode: argparse.ArgumentParser) -> None:
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
        type=positive_int,
        metavar="N",
        help="actors embedding in parallel, one model each (default: 1)",
    )
    group.add_argument(
        "--threads-per-actor",
        type=positive_int,
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
        type=positive_int,
        metavar="N",
        help=f"rows Ray hands an actor per call (default: {DEFAULT_RAY_BATCH_SIZE}); "
        "--batch-size stays the texts per forward pass",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the cluster to run on, as ray.init(address=...) takes it (default: "
        "$RAY_ADDRESS, else a Ray started for this run on this machine)",
    )


def refuse_options_without_ray(args: argparse.Namespace) -> None:
    """The options of --ray given without it are a usage error."""
    given = [option for option, dest in _RAY_OPTIONS if getattr(args, dest) is not None]
    if given:
        args.parser.error(f"{', '.join(given)} apply to --ray only")


def run(args: argparse.Namespace) -> int:
    """Embed INPUT with Ray Data into the Parquet folder -o; the exit code."""
    parser: argparse.ArgumentParser = args.parser
    check_chunk_options(args)
    for dest, option, instead in _NOT_WITH_RAY:
        if getattr(args, dest):
            parser.error(f"{option} cannot be used with --ray; {instead}")
    source = args.input if args.input is not None else args.file
    if args.input is not None and args.file is not None:
        parser.error("give INPUT or -f/--file, not both")
    if source is None or source == "-":
        parser.error("--ray reads an INPUT file or folder (Parquet or JSONL), not standard input")
    if args.output is None or args.output == "-":
        parser.error("--ray writes a folder of Parquet files: give it with -o OUTPUT_DIR")
    if args.precision != "float32":
        parser.error("--ray writes float32 embeddings; --precision applies without --ray only")
    if args.format == "lines":
        parser.error("--ray reads Parquet or JSONL; --format lines applies without --ray only")
    input_format = _ray_input_format(source, args.format)
    _check_output_dir(args.output)
    # Ray's workers do not run in this working directory: local paths go to them absolute.
    given = source
    source, output = _absolute(source), _absolute(args.output)

    try:
        import ray
        import ray.data

        from ..ray import embed_dataset
    except ImportError:
        raise CliError(
            'encode --ray needs Ray Data, which is not installed: pip install "minilm-fast[ray]"'
        ) from None

    actors = args.actors or 1
    threads = args.threads_per_actor or 1
    column = args.field or "text"
    id_column = args.id_column or "id"
    initialised_here, remote = _start_ray(ray, args, actors * threads)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = show_progress(args)
        model = _model_for_actors(args, remote=remote)
        started = time.perf_counter()
        ds = _read_dataset(ray, args, source, input_format, column, id_column)
        embedded = embed_dataset(
            ds,
            column,
            model=model,
            num_actors=actors,
            threads_per_actor=threads,
            batch_size=args.ray_batch_size or DEFAULT_RAY_BATCH_SIZE,
            encode_batch_size=args.batch_size,
            normalize_embeddings=args.normalize,
            max_seq_length=args.max_seq_length,
            long_text=args.long_text,
            chunk_stride=args.chunk_stride,
            compute=args.compute,
            cache_dir=args.cache_dir,
            revision=args.revision,
            local_files_only=args.offline,
        )
        embedded.write_parquet(output)
        elapsed = time.perf_counter() - started
    finally:
        if initialised_here:  # a local Ray stops; a cluster is only disconnected from
            ray.shutdown()
    if not args.quiet:
        rows = _rows_written(output)
        count = f"{rows} rows" if rows is not None else "embeddings"
        rate = f", {rows / max(elapsed, 1e-9):,.0f} texts/s" if rows else ""
        print(
            f"{PROG}: wrote {count} of {given} to {args.output} with {actors} actor(s) x "
            f"{threads} thread(s) in {elapsed:.1f} s{rate}; rows are in no particular order, "
            f"column {id_column!r} identifies them",
            file=sys.stderr,
        )
    return EXIT_OK


def _ray_input_format(source: str, forced: str | None) -> str:
    """``"parquet"`` or ``"jsonl"``: --format jsonl, else the suffix (a folder is Parquet)."""
    if forced == "jsonl":
        return "jsonl"
    suffix = pathlib.PurePath(source.rstrip("/")).suffix.lower()
    if suffix in (*JSONL_SUFFIXES, ".json"):
        return "jsonl"
    if suffix == ".parquet" or not suffix:
        return "parquet"
    raise CliError(
        f"cannot tell the format of '{source}' from its suffix: --ray reads .parquet files or "
        "folders of them, and .jsonl/.ndjson (or --format jsonl)"
    )


def _is_uri(path: str) -> bool:
    return "://" in path


def _absolute(path: str) -> str:
    """A local path made absolute (and ~ expanded); a URI as it is."""
    return path if _is_uri(path) else str(pathlib.Path(path).expanduser().absolute())


def _check_output_dir(destination: str) -> None:
    """A local -o must be a new or empty folder: Ray appends files to whatever is there."""
    if _is_uri(destination):
        return
    path = pathlib.Path(destination)
    if path.exists() and not path.is_dir():
        raise CliError(f"output '{destination}' is a file; --ray writes a folder of Parquet files")
    if path.is_dir() and any(path.iterdir()):
        raise CliError(
            f"output folder '{destination}' is not empty; give a new or empty folder (Ray "
            "adds files to a folder, so an old run's files would mix with this one's)"
        )


def _start_ray(ray: Any, args: argparse.Namespace, actor_cpus: int) -> tuple[bool, bool]:
    """Connect to --ray-address / $RAY_ADDRESS, or start a local Ray.

    Returns (initialised here, runs on a cluster). A Ray already initialised in this process
    (a notebook, the tests) is used as it is. A local Ray gets at least two logical CPUs beyond
    the actors' reservation, or the actors would hold every CPU and Ray's read and write tasks
    could never run.
    """
    if ray.is_initialized():
        return False, False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False} if args.quiet else {}
    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, **quiet)
        return True, True
    cpus = max(os.cpu_count() or 1, actor_cpus + 2)
    logger.info("starting a local Ray with %d logical CPUs", cpus)
    ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    return True, False


def _model_for_actors(args: argparse.Namespace, *, remote: bool) -> str:
    """What each actor loads: a local Ray gets the folder resolved here (errors surface now,
    once); a cluster gets the model name, or the absolute path of a folder given here."""
    model: str = args.model or DEFAULT_MODEL
    if pathlib.Path(model).expanduser().is_dir():
        return str(pathlib.Path(model).expanduser().resolve())
    if remote:
        return model
    folder = resolve_model(
        model, cache_dir=args.cache_dir, revision=args.revision, local_files_only=args.offline
    )
    return str(folder)


def _read_dataset(
    ray: Any,
    args: argparse.Namespace,
    source: str,
    input_format: str,
    column: str,
    id_column: str,
) -> Any:
    """The input as a ``ray.data.Dataset`` with ``id_column``.

    An input with ids is read by Ray (in parallel, from any filesystem Ray reads). One without
    is read here, numbered in file order, and sent to Ray.
    """
    if not _is_uri(source) and not pathlib.Path(source).exists():
        raise CliError(f"input '{source}' does not exist")
    columns = _local_columns(source, input_format)
    if columns is not None and id_column not in columns:
        return _numbered_dataset(ray, args, source, input_format, column, id_column)
    if input_format == "jsonl":
        ds = ray.data.read_json(source, lines=True)
    else:
        ds = ray.data.read_parquet(source)
    names = columns if columns is not None else list(ds.schema().names)
    if id_column not in names:
        raise CliError(
            f"'{source}' has no {id_column!r} column, which --ray needs to identify rows "
            "that come back in any order: add one, name yours with --id-column, or pass a "
            "local file (numbered in file order)"
        )
    if column not in names:
        raise CliError(f"'{source}' has no text column {column!r} (columns: {names}); use --field")
    return ds


def _local_columns(source: str, input_format: str) -> list[str] | None:
    """The column names of a local input (first Parquet file's schema, first JSONL object's
    keys); None for a URI or an input whose columns cannot be seen cheaply."""
    if _is_uri(source):
        return None
    path = pathlib.Path(source)
    if path.is_dir():
        suffixes = JSONL_SUFFIXES if input_format == "jsonl" else (".parquet",)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise CliError(f"input folder '{source}' holds no {'/'.join(suffixes)} files")
        path = files[0]
    if input_format == "parquet":
        _, pq = require_pyarrow()
        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read Parquet file '{path}': {exc}") from None
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        record = json.loads(first) if first.strip() else {}
    except ValueError:
        raise CliError(f"'{path}' line 1 is not a JSON object") from None
    return list(record) if isinstance(record, dict) else None


def _numbered_dataset(
    ray: Any,
    args: argparse.Namespace,
    source: str,
    input_format: str,
    column: str,
    id_column: str,
) -> Any:
    """A local input without ids, read here, numbered 0, 1, ... in file order, sent to Ray."""
    pa, pq = require_pyarrow()
    if pathlib.Path(source).is_dir():
        raise CliError(
            f"input folder '{source}' has no {id_column!r} column; a folder must carry ids "
            "(rows come back in any order), or pass one file to have it numbered"
        )
    if input_format == "parquet":
        table = pq.read_table(source)
        if column not in table.column_names:
            raise CliError(
                f"'{source}' has no text column {column!r} (columns: {table.column_names}); "
                "use --field"
            )
    else:
        texts = read_texts(source, "jsonl", column, quiet=args.quiet)
        table = pa.table({column: pa.array(texts, type=pa.string())})
    rows = table.num_rows
    table = table.add_column(0, id_column, pa.array(np.arange(rows, dtype=np.int64)))
    logger.info("%s has no %r column: numbered its %d rows in file order", source, id_column, rows)
    return ray.data.from_arrow(table)


def _rows_written(destination: str) -> int | None:
    """Rows in the Parquet files of a local output folder (from their footers), else None."""
    if _is_uri(destination):
        return None
    _, pq = require_pyarrow()
    try:
        files = sorted(pathlib.Path(destination).glob("*.parquet"))
        return sum(int(pq.read_metadata(path).num_rows) for path in files)
    except (OSError, ValueError):
        return None
