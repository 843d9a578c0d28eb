"""Embed a corpus on a Ray cluster with Ray Data: one Encoder per actor, rows in, a column out.

Needs Ray Data: ``pip install "minilm-fast[ray]"``. Nothing here starts or manages a cluster:
connect to yours with ``ray.init(address=...)`` (or set ``RAY_ADDRESS``) before running a
dataset, or let Ray start a local one.

- :func:`embed_dataset` adds an embedding column to a ``ray.data.Dataset`` with a fixed pool
  of actors, each reserving ``threads_per_actor`` CPUs and computing with as many threads.
- :class:`BatchEmbedder` is the callable class it hands to ``Dataset.map_batches``; use it
  directly for pipelines of your own.

The embedding column is a plain Arrow ``fixed_size_list<float>[384]``, so the Parquet files
``Dataset.write_parquet`` writes are read by pyarrow, pandas, DuckDB, Spark or Polars as they
are, with no Ray extension type.

Row order: Ray Data does not keep rows in input order (unless
``DataContext.execution_options.preserve_order`` is set, which slows the pipeline). Keep an id
column in the dataset; every other column travels through unchanged, so the ids say which
vector belongs to which document.

Faults: an actor that dies (a killed process, a lost node) is restarted by Ray and its
unfinished batches are retried (Ray Data's actor defaults); the output still holds every row
once. Paths: Ray's workers do not run in the driver's working directory, so give
``read_parquet`` / ``write_parquet`` absolute local paths or URIs every node can read.

Example (the Ray part; run it against your cluster or a local Ray):

>>> import ray  # doctest: +SKIP
>>> from minilm_fast.ray import embed_dataset  # doctest: +SKIP
>>> ds = ray.data.read_parquet("s3://bucket/docs/")  # columns id, text  # doctest: +SKIP
>>> embedded = embed_dataset(ds, num_actors=8, threads_per_actor=4)  # doctest: +SKIP
>>> embedded.write_parquet("s3://bucket/embedded/")  # columns id, text, embedding  # doctest: +SKIP

What each actor computes, without a cluster:

>>> import pyarrow as pa
>>> embed = BatchEmbedder(encoder.model_path, threads=1)
>>> table = embed(pa.table({"id": [7, 8], "text": ["A cat sleeps.", "Bread needs yeast."]}))
>>> table.column_names, table.schema.field("embedding").type
(['id', 'text', 'embedding'], FixedSizeListType(fixed_size_list<item: float>[384]))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from ._hub import DEFAULT_MODEL
from .encoder import Encoder
from .integrations._common import DEFAULT_RAY_BATCH_SIZE, EncoderArgs, ModelArg, check_batch_size

try:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
    import ray
    import ray.data
except ImportError as error:
    raise ImportError(
        "minilm_fast.ray needs Ray Data, which is not installed; install it with: "
        'pip install "minilm-fast[ray]"'
    ) from error

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_RAY_BATCH_SIZE", "BatchEmbedder", "embed_dataset"]

Batch = Union["pa.Table", Mapping[str, npt.NDArray[Any]]]


class BatchEmbedder:
    """A callable class for ``Dataset.map_batches``: embeds one text column into a new column.

    Ray builds one instance per actor, so the model is loaded once per actor, in the actor
    (the class and its arguments travel to it, never weights). Each call takes a batch of
    rows and returns it with ``output_column`` added (replaced if present); every other
    column is kept.

    With ``batch_format="pyarrow"`` (what :func:`embed_dataset` uses) the new column is an
    Arrow ``fixed_size_list<float>[dim]``; with NumPy batches it is a ``(rows, dim)`` float32
    array, which Ray stores as its own tensor type.

    Args:
        model: a Hub repo id or a model folder that exists on every node (the default,
            all-MiniLM-L6-v2, is fetched and cached by each node as ``Encoder`` does).
        column: the text column.
        output_column: the column the embeddings go to.
        batch_size: texts per forward pass inside the actor (the Encoder's ``batch_size``).
        normalize_embeddings: force unit length (all-MiniLM-L6-v2 is unit length either way).
        truncated_column: if given, also add a bool column saying which texts were cut at
            ``max_seq_length`` (only with ``long_text="truncate"``, the default).
        **encoder_args: :class:`~minilm_fast.Encoder` keyword arguments (``threads``,
            ``max_seq_length``, ``long_text``, ``truncate_dim``, ``prompts``, ...). Without
            ``threads`` the Encoder computes with the CPUs Ray reserved for this actor
            (``num_cpus``), so actors never oversubscribe a node.

    Example:
        >>> embed = BatchEmbedder(encoder.model_path, threads=1, truncated_column="cut")
        >>> out = embed({"text": np.array(["short", "word " * 300], dtype=object)})
        >>> out["embedding"].shape, out["embedding"].dtype, out["cut"].tolist()
        ((2, 384), dtype('float32'), [False, True])
    """

    def __init__(
        self,
        model: ModelArg = DEFAULT_MODEL,
        *,
        column: str = "text",
        output_column: str = "embedding",
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        truncated_column: str | None = None,
        **encoder_args: Unpack[EncoderArgs],
    ) -> None:
        _check_name("column", column)
        _check_name("output_column", output_column)
        if truncated_column is not None:
            _check_name("truncated_column", truncated_column)
        self.column = column
        self.output_column = output_column
        self.batch_size = check_batch_size(batch_size)
        self.normalize_embeddings = normalize_embeddings
        self.truncated_column = truncated_column
        if encoder_args.get("threads") is None:
            encoder_args["threads"] = _reserved_cpus()
        self.encoder = Encoder(model, **encoder_args)

    def __call__(self, batch: Batch) -> Batch:
        """``batch`` (an Arrow table or a dict of NumPy columns) with the embeddings added."""
        if isinstance(batch, pa.Table):
            return self._arrow(batch)
        if isinstance(batch, Mapping):
            return self._numpy(batch)
        raise TypeError(
            "BatchEmbedder takes pyarrow.Table or dict-of-NumPy batches "
            f'(map_batches(..., batch_format="pyarrow")), got {type(batch).__name__}'
        )

    def embed(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The float32 embeddings of ``texts``, in order, and which texts were cut."""
        embeddings, truncated = self.encoder.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_embeddings,
            return_truncation=True,
        )
        dim = self.encoder.get_sentence_embedding_dimension()
        return embeddings.reshape(len(texts), dim), truncated

    def _arrow(self, table: pa.Table) -> pa.Table:
        if self.column not in table.column_names:
            raise ValueError(_missing_column(self.column, table.column_names))
        column = table.column(self.column)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise TypeError(
                f"column {self.column!r} must hold strings, got Arrow type {column.type}"
            )
        if column.null_count:
            raise ValueError(_null_message(self.column, column.null_count))
        embeddings, truncated = self.embed(column.to_pylist())
        values = pa.array(np.ascontiguousarray(embeddings).reshape(-1), type=pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
        table = _put_column(table, self.output_column, vectors)
        if self.truncated_column is not None:
            table = _put_column(table, self.truncated_column, pa.array(truncated, pa.bool_()))
        return table

    def _numpy(self, batch: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        if self.column not in batch:
            raise ValueError(_missing_column(self.column, list(batch)))
        texts = list(batch[self.column])
        nulls = sum(1 for text in texts if text is None)
        if nulls:
            raise ValueError(_null_message(self.column, nulls))
        embeddings, truncated = self.embed([str(text) for text in texts])
        out = dict(batch)
        out[self.output_column] = embeddings
        if self.truncated_column is not None:
            out[self.truncated_column] = truncated
        return out

    def __repr__(self) -> str:
        return (
            f"BatchEmbedder({self.encoder!r}, column={self.column!r}, "
            f"output_column={self.output_column!r}, batch_size={self.batch_size})"
        )


def embed_dataset(
    ds: ray.data.Dataset,
    column: str = "text",
    output_column: str = "embedding",
    *,
    model: ModelArg = DEFAULT_MODEL,
    num_actors: int = 1,
    threads_per_actor: int = 1,
    batch_size: int = DEFAULT_RAY_BATCH_SIZE,
    rows_per_block: int | None = None,
    encode_batch_size: int = 32,
    normalize_embeddings: bool = False,
    truncated_column: str | None = None,
    map_batches_args: Mapping[str, Any] | None = None,
    **encoder_args: Unpack[EncoderArgs],
) -> ray.data.Dataset:
    """``ds`` with an embedding column, computed by a fixed pool of ``num_actors`` actors.

    Lazy, like every Ray Data transformation: nothing runs until the result is written,
    iterated or materialized. Every column of ``ds`` is kept; rows come out in no particular
    order, so keep an id column (see the module docs).

    Args:
        ds: the dataset; ``column`` must hold strings without nulls.
        column: the text column.
        output_column: the new column, ``fixed_size_list<float>[dim]`` (float32).
        model: a Hub repo id, or a model folder present on every node.
        num_actors: actors in the pool, each with its own Encoder.
        threads_per_actor: CPUs each actor reserves (``num_cpus``) and the threads its
            Encoder computes with, so a node runs no more threads than it has CPUs. Leave
            room for Ray's read and write tasks (they need CPUs too): on a node of C CPUs,
            ``actors on the node x threads_per_actor`` below C.
        batch_size: rows Ray hands an actor per call (``map_batches(batch_size=...)``).
        rows_per_block: blocks of ``ds`` with more rows are split (streaming, no shuffle:
            ``Dataset.repartition(target_num_rows_per_block=...)``) before they reach the
            actors. A block goes to one actor, and Ray reads small files into one block,
            so without this a small corpus would keep all actors but one idle. ``None``
            means ``batch_size``: one call per block, shared out evenly.
        encode_batch_size: texts per forward pass inside the actor.
        normalize_embeddings: force unit length.
        truncated_column: also add a bool column saying which texts were cut.
        map_batches_args: more keyword arguments for ``Dataset.map_batches``: ``memory``,
            ``resources``, ``runtime_env``, ``label_selector``, ... Fault tolerance is Ray
            Data's: an actor that dies (killed process, lost node) is restarted and its
            unfinished batches are retried, without limit by default (Ray >= 2.60 deprecates
            passing ``max_restarts`` / ``max_task_retries`` here).
        **encoder_args: other :class:`~minilm_fast.Encoder` keyword arguments
            (``max_seq_length``, ``long_text``, ``truncate_dim``, ``local_files_only``, ...);
            ``threads`` is ``threads_per_actor``.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> ds = ray.data.from_items([{"id": 1, "text": "A cat sleeps."}])  # doctest: +SKIP
        >>> embed_dataset(ds, num_actors=2, threads_per_actor=2).take(1)[0]["embedding"].shape
        ... # doctest: +SKIP
        (384,)
    """
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    _check_count("num_actors", num_actors)
    _check_count("threads_per_actor", threads_per_actor)
    if "threads" in encoder_args:
        raise TypeError("pass threads_per_actor=, not threads= (the actors' CPUs and threads)")
    extra = dict(map_batches_args or {})
    for reserved in ("num_cpus", "compute", "concurrency", "batch_size", "batch_format"):
        if reserved in extra:
            raise TypeError(
                f"{reserved} is set by embed_dataset (num_actors, threads_per_actor, "
                "batch_size); do not pass it in map_batches_args"
            )
    constructor: dict[str, Any] = {
        "column": column,
        "output_column": output_column,
        "batch_size": check_batch_size(encode_batch_size),
        "normalize_embeddings": normalize_embeddings,
        "truncated_column": truncated_column,
        "threads": threads_per_actor,
        **encoder_args,
    }
    # The model path as a str: an os.PathLike from the driver pickles as its own class.
    model_arg = os.fspath(model) if isinstance(model, os.PathLike) else model
    rows = check_batch_size(batch_size if rows_per_block is None else rows_per_block)
    return ds.repartition(target_num_rows_per_block=rows).map_batches(
        BatchEmbedder,
        fn_constructor_args=(model_arg,),
        fn_constructor_kwargs=constructor,
        batch_size=check_batch_size(batch_size),
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=threads_per_actor,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# Helpers


def _reserved_cpus() -> int | None:
    """The CPUs Ray reserved for the calling actor or task, or None outside Ray (all CPUs)."""
    if not ray.is_initialized():
        return None
    resources = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    cpus = resources.get("CPU")
    return max(1, int(cpus)) if cpus else None


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _missing_column(column: str, present: list[str]) -> str:
    return f"the batch has no column {column!r} (columns: {present}); pass column= to name it"


def _null_message(column: str, count: int) -> str:
    return (
        f"column {column!r} holds {count} null value(s) in this batch; fill them "
        '(ds.filter(...) or an empty string "") before embedding'
    )


def _put_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with column ``name`` set to ``values``: replaced in place, or appended."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
