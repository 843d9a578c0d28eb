"""The Encoder users hold: a model folder resolved, tokenized as sentence-transformers does, and
encoded by the native engine in length-sorted batches.

The keyword names and their meaning follow `SentenceTransformer.encode`, so code written for
sentence-transformers runs unchanged. Beyond it: iterables are streamed in windows of texts
(`encode_iter` for corpora larger than memory), long texts can be chunked instead of cut, and
`aencode` keeps an event loop free while the engine computes with the GIL released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import pathlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union, overload

import numpy as np
import numpy.typing as npt

from ._hub import DEFAULT_MODEL, resolve_model
from ._minilm_fast import NativeModel
from ._quantize import Precision, check_precision, quantize_embeddings
from ._tokenize import SentenceTokenizer, TokenIds, pad, read_config_text

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EncodeOptions", "Encoder", "TruncationWarning"]

logger = logging.getLogger("minilm_fast")

Sentences = Union[str, Iterable[str]]
OutputValue = Literal["sentence_embedding", "token_embeddings"]
LongText = Literal["truncate", "chunk"]
Compute = Literal["float32", "bfloat16", "int8", "auto"]
_COMPUTE_MODES = ("float32", "bfloat16", "int8", "auto")

#: Word pieces shared by consecutive windows of a chunked long text (at most half a window).
DEFAULT_CHUNK_STRIDE = 32

#: Texts tokenized, length-sorted and encoded together; bounds memory for streamed input.
_WINDOW_TEXTS = 4096

#: Most tokens (rows x padded width) given to the engine in one call: a larger `batch_size` is
#: run in several calls, so working memory (~40 KB a token for all-MiniLM-L6-v2) stays bounded
#: whatever `batch_size` says. 32 texts of 256 word pieces, the default, is one call.
_MAX_BATCH_TOKENS = 8192


class TruncationWarning(UserWarning):
    """Texts were longer than `max_seq_length` word pieces and were cut (shown once per Encoder)."""


class EncodeOptions(TypedDict, total=False):
    """Keyword arguments `encode_query`, `encode_document` and the async methods pass through."""

    prompt_name: str | None
    prompt: str | None
    batch_size: int
    show_progress_bar: bool | None
    output_value: OutputValue
    precision: Precision
    convert_to_numpy: bool
    convert_to_tensor: bool
    device: str | None
    normalize_embeddings: bool
    truncate_dim: int | None
    long_text: LongText | None
    chunk_stride: int | None
    quantization_ranges: npt.ArrayLike | None
    return_truncation: bool


@dataclass(frozen=True)
class _Plan:
    """One call's resolved options, shared by the window pipeline."""

    prompt: str
    batch_size: int
    normalize: bool
    truncate_dim: int | None
    long_text: LongText
    stride: int


class Encoder:
    """A sentence encoder with sentence-transformers' results, computed by a Rust engine.

    Args:
        model: a Hugging Face Hub repo id (``"sentence-transformers/all-MiniLM-L6-v2"``, the
            default) or a local folder with config.json, model.safetensors and tokenizer.json.
        threads: worker threads for the compute; ``None`` uses every CPU this process may run
            on (CPU affinity and container limits included).
        max_seq_length: longest input in word pieces; longer texts are truncated (or chunked).
            Defaults to the model's ``sentence_bert_config.json`` (256 for all-MiniLM-L6-v2).
        cache_dir: where the fallback mirror unpacks models (see ``resolve_model``).
        revision: Hub revision; ``local_files_only`` never touches the network.
        long_text: ``"truncate"`` (the default, as sentence-transformers) cuts a text at
            ``max_seq_length``; ``"chunk"`` embeds all of it as overlapping windows whose
            embeddings are averaged, weighted by their word pieces.
        chunk_stride: word pieces consecutive windows share (default 32).
        prompts: named prompts (``{"query": "query: "}``) added to those of the model's
            ``config_sentence_transformers.json``; ``default_prompt_name`` picks one for
            every ``encode`` that names none.
        truncate_dim: keep only the first dimensions of every embedding (Matryoshka models).
        compute: the arithmetic of the encoder's linear layers. ``"float32"`` (the default)
            matches sentence-transformers to cosine 0.99999. ``"bfloat16"`` (CPUs with
            AVX512-BF16) and ``"int8"`` (AVX-512 VNNI, or AVX2) are faster and stay within
            the quality gates in docs/PERFORMANCE.md; ``"auto"`` picks the fastest this CPU
            runs. A mode the CPU lacks computes in float32 with a warning; ``Encoder.compute``
            says what runs. Unrelated to ``encode(precision=...)``, which quantizes the output.

    Example:
        >>> vectors = encoder.encode(["A cat sits on the mat.", "A dog runs in the park."])
        >>> vectors.shape, vectors.dtype
        ((2, 384), dtype('float32'))
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        threads: int | None = None,
        max_seq_length: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        long_text: LongText = "truncate",
        chunk_stride: int | None = None,
        prompts: Mapping[str, str] | None = None,
        default_prompt_name: str | None = None,
        truncate_dim: int | None = None,
        compute: Compute = "float32",
    ) -> None:
        if compute not in _COMPUTE_MODES:
            raise ValueError(
                f"compute must be one of {', '.join(map(repr, _COMPUTE_MODES))}, got {compute!r}"
            )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
        self.model_name = os.fsdecode(model) if isinstance(model, os.PathLike) else model
        self.model_path: pathlib.Path = resolve_model(
            model, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only
        )
        self._native = NativeModel(str(self.model_path), threads, compute)
        if compute not in ("auto", self._native.compute):
            warnings.warn(
                f"compute={compute!r} needs {_COMPUTE_NEEDS[compute]}, which this process "
                f"cannot use (the CPU lacks it, or MINILM_FAST_ISA chose less); computing in "
                f"{self._native.compute}",
                RuntimeWarning,
                stacklevel=2,
            )
        self._tokenizer = SentenceTokenizer(
            self.model_path, self._native.max_position_embeddings, max_seq_length
        )
        self.long_text: LongText = _check_long_text(long_text)
        self.chunk_stride = chunk_stride
        self.truncate_dim = _check_truncate_dim(truncate_dim, self._native.output_dim)
        st_config = _read_object(self.model_path / "config_sentence_transformers.json")
        model_prompts = st_config.get("prompts")
        self.prompts: dict[str, str] = (
            {k: v for k, v in model_prompts.items() if isinstance(v, str)}
            if isinstance(model_prompts, dict)
            else {}
        )
        self.prompts.update(prompts or {})
        configured_default = st_config.get("default_prompt_name")
        self.default_prompt_name = default_prompt_name or (
            configured_default if isinstance(configured_default, str) else None
        )
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts "
                f"{sorted(self.prompts)}"
            )
        self._pooling_includes_prompt = _pooling_includes_prompt(self.model_path)
        self._warned_truncation = False
        # What pickling needs to build the same Encoder again (weights are reloaded by path).
        self._init_args: dict[str, Any] = {
            "threads": threads,
            "compute": compute,
            "cache_dir": cache_dir,
            "revision": revision,
            "local_files_only": local_files_only,
            "prompts": dict(prompts or {}),
            "default_prompt_name": default_prompt_name,
        }

    # ----------------------------------------------------------------------------------------
    # Properties and small helpers sentence-transformers users know

    @property
    def threads(self) -> int:
        """Worker threads the engine computes with."""
        return self._native.threads

    @property
    def compute(self) -> str:
        """The arithmetic the linear layers run in: "float32", "bfloat16" or "int8"."""
        return self._native.compute

    @property
    def max_seq_length(self) -> int:
        """Longest input in word pieces ([CLS] and [SEP] included); longer texts are cut."""
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._tokenizer.max_seq_length = value

    def get_max_seq_length(self) -> int:
        """``max_seq_length``, as sentence-transformers' method of that name returns it."""
        return self.max_seq_length

    @property
    def native(self) -> NativeModel:
        """The native model, for callers that bring their own token ids."""
        return self._native

    def get_sentence_embedding_dimension(self) -> int:
        """Length of one sentence embedding (384 for all-MiniLM-L6-v2; less with truncate_dim)."""
        return self.truncate_dim or self._native.output_dim

    @staticmethod
    def similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Cosine similarity of every row of `a` with every row of `b`: shape (len(a), len(b)).

        A 1-D argument counts as one row. Zero vectors have similarity 0 to everything.

        >>> queries = encoder.encode(["How do I bake bread?"])
        >>> docs = encoder.encode(["Knead the dough, let it rise, bake it.", "Tax forms."])
        >>> encoder.similarity(queries, docs).argmax()
        np.int64(0)
        """
        return _unit_rows(a) @ _unit_rows(b).T

    @staticmethod
    def similarity_pairwise(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Cosine similarity of row i of `a` with row i of `b`: shape (len(a),)."""
        left, right = _unit_rows(a), _unit_rows(b)
        if left.shape != right.shape:
            raise ValueError(
                f"pairwise similarity needs equal shapes, got {left.shape} and {right.shape}"
            )
        pairwise: npt.NDArray[np.float32] = np.einsum("ij,ij->i", left, right)
        return pairwise

    # ----------------------------------------------------------------------------------------
    # Encoding

    @overload
    def encode(
        self,
        sentences: Sentences,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        output_value: Literal["sentence_embedding"] = ...,
        precision: Precision = ...,
        convert_to_numpy: Literal[True] = ...,
        convert_to_tensor: Literal[False] = ...,
        device: str | None = ...,
        normalize_embeddings: bool = ...,
        truncate_dim: int | None = ...,
        *,
        long_text: LongText | None = ...,
        chunk_stride: int | None = ...,
        quantization_ranges: npt.ArrayLike | None = ...,
        return_truncation: Literal[False] = ...,
    ) -> npt.NDArray[Any]: ...

    @overload
    def encode(
        self,
        sentences: Sentences,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        output_value: OutputValue = ...,
        precision: Precision = ...,
        convert_to_numpy: bool = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        normalize_embeddings: bool = ...,
        truncate_dim: int | None = ...,
        *,
        long_text: LongText | None = ...,
        chunk_stride: int | None = ...,
        quantization_ranges: npt.ArrayLike | None = ...,
        return_truncation: bool = ...,
    ) -> Any: ...

    def encode(
        self,
        sentences: Sentences,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: OutputValue = "sentence_embedding",
        precision: Precision = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        *,
        long_text: LongText | None = None,
        chunk_stride: int | None = None,
        quantization_ranges: npt.ArrayLike | None = None,
        return_truncation: bool = False,
    ) -> Any:
        """Embed one text (-> shape (dim,)) or many (-> shape (n, dim)), rows in input order.

        Arguments mean what they mean in sentence-transformers' ``encode``, positions included:

        - ``sentences``: a str, or any iterable of str (lists, tuples, generators, a pandas
          Series). Iterables are read in windows of texts, so a generator is never held in
          memory whole; only the output array is.
        - ``prompt_name`` / ``prompt``: text put before every input (``prompt`` wins).
        - ``batch_size``: texts (or chunk windows) per forward pass; texts of similar length
          are batched together so little padding is computed. A batch of more than 8,192
          word pieces (padding included) is run in several passes, so memory stays bounded;
          a text repeated in the input is computed once.
        - ``show_progress_bar``: ``None`` shows a bar (texts/s, ETA) when the ``minilm_fast``
          logger is at INFO or DEBUG level, as sentence-transformers does.
        - ``output_value``: ``"sentence_embedding"``, or ``"token_embeddings"`` for a list with
          one (tokens, hidden) array per text, padding removed.
        - ``precision``: ``"float32"``, or ``"int8"``/``"uint8"``/``"binary"``/``"ubinary"`` to
          quantize as sentence-transformers' ``quantize_embeddings`` does; int8/uint8 take
          their per-dimension ranges from ``quantization_ranges`` or else from this call's
          embeddings.
        - ``convert_to_numpy=False`` gives a list of 1-D arrays; ``convert_to_tensor=True`` a
          torch tensor (torch must be installed); ``device`` may only be ``None``/``"cpu"``.
        - ``normalize_embeddings``: force unit length (after ``truncate_dim``). With ``False``
          the model's own pipeline decides; all-MiniLM-L6-v2 ends in a Normalize module.
        - ``truncate_dim``: keep the first dimensions only (default: the Encoder's).
        - ``long_text`` / ``chunk_stride``: override the Encoder's settings for this call.
        - ``return_truncation=True`` returns ``(embeddings, truncated)``, a bool per text
          saying whether it was cut; otherwise the first cut is reported once per Encoder
          with a ``TruncationWarning``.

        Example:
            >>> encoder.encode("How do I bake bread?").shape
            (384,)
            >>> vectors, cut = encoder.encode(["short", "word " * 300], return_truncation=True)
            >>> cut.tolist()
            [False, True]
        """
        single = isinstance(sentences, str)
        precision = check_precision(precision)
        _check_output_options(output_value, convert_to_tensor, device)
        plan = self._plan(
            prompt_name,
            prompt,
            batch_size,
            normalize_embeddings,
            truncate_dim,
            long_text,
            chunk_stride,
        )
        if output_value == "token_embeddings":
            if plan.long_text == "chunk":
                raise ValueError('output_value="token_embeddings" needs long_text="truncate"')
            if precision != "float32":
                raise ValueError('output_value="token_embeddings" needs precision="float32"')
            tokens, truncated = self._token_embeddings(
                _checked_texts(sentences), plan, show_progress_bar
            )
            self._report_truncation(truncated, return_truncation)
            result: Any = tokens[0] if single else tokens
            return (
                (result, bool(truncated[0]) if single else truncated)
                if return_truncation
                else result
            )

        quick = (
            self._one_embedding(sentences, plan)
            if isinstance(sentences, str) and not show_progress_bar
            else None
        )
        embeddings, truncated = (
            quick
            if quick is not None
            else self._sentence_embeddings(sentences, plan, show_progress_bar)
        )
        self._report_truncation(truncated, return_truncation)
        if precision in ("int8", "uint8") and quantization_ranges is None and len(embeddings) == 1:
            raise ValueError(
                f"{precision} quantization needs ranges from at least two embeddings; pass "
                "quantization_ranges= (see minilm_fast.quantization_ranges)"
            )
        output: Any = (
            embeddings  # float32 already; the dtype checks are a few microseconds per query
            if precision == "float32"
            else quantize_embeddings(embeddings, precision, ranges=quantization_ranges)
        )
        if convert_to_tensor:
            output = _to_torch(output)
        elif not convert_to_numpy:
            output = list(output)
        if single:
            output = output[0]
        if return_truncation:
            return output, (bool(truncated[0]) if single else truncated)
        return output

    def encode_query(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"query"`` prompt, if it has one (as sentence-transformers).

        all-MiniLM-L6-v2 has no prompts, so this equals ``encode``.

        >>> encoder.encode_query("Where is the Eiffel tower?").shape
        (384,)
        """
        return self.encode(sentences, **self._task_options("query", options))

    def encode_document(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"document"`` (or ``"passage"``/``"corpus"``) prompt."""
        return self.encode(sentences, **self._task_options("document", options))

    async def aencode(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` in a worker thread, so an asyncio event loop keeps serving meanwhile.

        The engine releases the GIL while it computes, so other coroutines and threads run.

        >>> import asyncio
        >>> asyncio.run(encoder.aencode(["async", "texts"])).shape
        (2, 384)
        """
        return await asyncio.to_thread(functools.partial(self.encode, sentences, **options))

    async def aencode_query(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode_query`` in a worker thread."""
        return await asyncio.to_thread(functools.partial(self.encode_query, sentences, **options))

    async def aencode_document(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode_document`` in a worker thread."""
        return await asyncio.to_thread(
            functools.partial(self.encode_document, sentences, **options)
        )

    def encode_iter(
        self,
        sentences: Iterable[str],
        batch_size: int = 32,
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        precision: Precision = "float32",
        quantization_ranges: npt.ArrayLike | None = None,
        long_text: LongText | None = None,
        chunk_stride: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> Iterator[npt.NDArray[Any]]:
        """Yield the embeddings of ``sentences`` as arrays of ``batch_size`` rows, in input order.

        For corpora larger than memory: texts are read from the iterable a window at a time
        and each array can be written away before the next is computed. int8/uint8 need
        ``quantization_ranges`` here, so every batch shares one scale.

        >>> lines = (f"line {i}" for i in range(70))
        >>> [batch.shape for batch in encoder.encode_iter(lines, batch_size=32)]
        [(32, 384), (32, 384), (6, 384)]
        """
        precision = check_precision(precision)
        if precision in ("int8", "uint8") and quantization_ranges is None:
            raise ValueError(
                f"encode_iter with precision={precision!r} needs quantization_ranges, so every "
                "batch is quantized with the same scale (see minilm_fast.quantization_ranges)"
            )
        plan = self._plan(
            prompt_name,
            prompt,
            batch_size,
            normalize_embeddings,
            truncate_dim,
            long_text,
            chunk_stride,
        )
        if isinstance(sentences, str):
            raise TypeError("encode_iter takes an iterable of texts, not one str")
        texts = _checked_texts(sentences)
        total = len(sentences) if isinstance(sentences, Sequence) else None
        with _progress(total, show_progress_bar) as bar:
            for window in _windows(texts, max(_WINDOW_TEXTS, batch_size)):
                embeddings, truncated = self._embed_window(window, plan, bar)
                self._report_truncation(truncated, False)
                for start in range(0, len(window), batch_size):
                    rows = embeddings[start : start + batch_size]
                    yield quantize_embeddings(rows, precision, ranges=quantization_ranges)

    # ----------------------------------------------------------------------------------------
    # The pipeline: texts -> word pieces -> framed rows (or chunk windows) -> batches -> vectors

    def _plan(
        self,
        prompt_name: str | None,
        prompt: str | None,
        batch_size: int,
        normalize: bool,
        truncate_dim: int | None,
        long_text: LongText | None,
        chunk_stride: int | None,
    ) -> _Plan:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        resolved_prompt = self._resolve_prompt(prompt, prompt_name)
        if resolved_prompt and not self._pooling_includes_prompt:
            raise ValueError(
                "this model's pooling excludes prompt tokens (include_prompt=false), which "
                "minilm_fast does not support; encode without a prompt"
            )
        stride = self.chunk_stride if chunk_stride is None else chunk_stride
        if stride is None:
            stride = min(DEFAULT_CHUNK_STRIDE, self._tokenizer.content_budget // 2)
        if isinstance(stride, bool) or not isinstance(stride, int):
            raise TypeError(f"chunk_stride must be an int, got {type(stride).__name__}")
        return _Plan(
            prompt=resolved_prompt,
            batch_size=batch_size,
            normalize=_check_flag("normalize_embeddings", normalize),
            truncate_dim=_check_truncate_dim(truncate_dim, self._native.output_dim)
            or self.truncate_dim,
            long_text=_check_long_text(self.long_text if long_text is None else long_text),
            stride=stride,
        )

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
            return _check_unicode("prompt", prompt)
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise ValueError(
                f"prompt_name {name!r} is not one of the prompts {sorted(self.prompts)}"
            )
        return self.prompts[name]

    def _task_options(self, task: str, options: EncodeOptions) -> EncodeOptions:
        """Options with the task's prompt filled in, as sentence-transformers' encode_query does."""
        if options.get("prompt") is not None or options.get("prompt_name") is not None:
            return options
        names = ("query",) if task == "query" else ("document", "passage", "corpus")
        chosen = next((name for name in names if name in self.prompts), None)
        # An empty prompt, not the default one: a task method never falls back to it.
        return {**options, "prompt": self.prompts[chosen] if chosen else ""}

    def _sentence_embeddings(
        self, sentences: Sentences, plan: _Plan, show_progress_bar: bool | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """All sentence embeddings of `sentences` (float32), and which texts were cut."""
        texts = _checked_texts(sentences)
        total = _count(sentences)
        dim = plan.truncate_dim or self._native.output_dim
        # With the count known, windows are written into the result as they come, instead of
        # being concatenated at the end (which would hold every row twice).
        rows = np.empty((total, dim), dtype=np.float32) if total else None
        filled = 0
        parts: list[npt.NDArray[np.float32]] = []
        cuts: list[npt.NDArray[np.bool_]] = []
        with _progress(total, show_progress_bar) as bar:
            for window in _windows(texts, max(_WINDOW_TEXTS, plan.batch_size)):
                embeddings, truncated = self._embed_window(window, plan, bar)
                cuts.append(truncated)
                if rows is not None and not parts and filled + len(embeddings) <= len(rows):
                    rows[filled : filled + len(embeddings)] = embeddings
                    filled += len(embeddings)
                else:  # no count, or a sequence that grew while it was read
                    parts.append(embeddings)
        if rows is not None:
            parts.insert(0, rows[:filled])
        if not parts:
            return np.empty((0, dim), dtype=np.float32), np.zeros(0, dtype=bool)
        truncated_all = cuts[0] if len(cuts) == 1 else np.concatenate(cuts)
        if len(parts) == 1:
            return parts[0], truncated_all
        return np.concatenate(parts), truncated_all

    def _one_embedding(
        self, text: str, plan: _Plan
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]] | None:
        """`_sentence_embeddings` of one text without the batching machinery (windows, dedup,
        length sorting, progress): the per-request call of a service, where that machinery was
        a tenth of the latency. None when the text needs chunk windows."""
        budget = self._tokenizer.content_budget
        prompted = plan.prompt + _check_unicode("sentences", text)
        pieces = self._tokenizer.word_pieces([prompted], parallel=False, limit=budget)[0]
        cut = len(pieces) > budget
        if cut and plan.long_text == "chunk":
            return None
        ids = np.array([self._tokenizer.frame(pieces)], dtype=np.int64)
        force_unit = True if plan.normalize and plan.truncate_dim is None else None
        embeddings = self._native.encode(ids, np.ones_like(ids), normalize=force_unit)
        return _truncated_dims(embeddings, plan), np.array([cut])

    def _embed_window(
        self, texts: list[str], plan: _Plan, bar: _Bar
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Sentence embeddings of one window of texts, in order, and which were cut.

        A text that occurs several times is computed once (crawls repeat empty strings and
        boilerplate by the million) and its copies get its row.
        """
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == len(texts):
            return self._embed_distinct(texts, plan, bar, len(texts))
        slot = {text: index for index, text in enumerate(distinct)}
        inverse = np.fromiter((slot[text] for text in texts), dtype=np.intp, count=len(texts))
        embeddings, truncated = self._embed_distinct(distinct, plan, bar, len(texts))
        return embeddings[inverse], truncated[inverse]

    def _embed_distinct(
        self, texts: list[str], plan: _Plan, bar: _Bar, shown: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """`_embed_window` for distinct texts; the progress bar advances by `shown` texts."""
        rows, owners, truncated = self._rows(texts, plan)
        # The engine normalises in its SIMD epilogue unless truncate_dim must come first.
        force_unit = True if plan.normalize and plan.truncate_dim is None else None

        def run(ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            return self._native.encode(ids, mask, normalize=force_unit)

        row_vectors = self._run_batches(rows, plan.batch_size, run, bar, shown)
        embeddings = _combine_windows(row_vectors, rows, owners, len(texts), self._prefix_len())
        if len(rows) != len(texts) and (force_unit or self._native.normalize):
            embeddings = _l2_normalize(embeddings)  # a mean of unit vectors is shorter than 1
        return _truncated_dims(embeddings, plan), truncated

    def _token_embeddings(
        self, texts: Iterable[str], plan: _Plan, show_progress_bar: bool | None
    ) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.bool_]]:
        """One (tokens, hidden) array per text, padding removed, and which texts were cut."""
        outputs: list[npt.NDArray[np.float32]] = []
        cuts: list[npt.NDArray[np.bool_]] = []
        with _progress(None, show_progress_bar) as bar:
            for window in _windows(texts, max(_WINDOW_TEXTS, plan.batch_size)):
                rows, _, truncated = self._rows(window, plan)
                per_row: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(rows)
                for batch in _batches(_longest_first(rows), rows, plan.batch_size):
                    ids, mask = pad([rows[i] for i in batch])
                    hidden = self._native.token_embeddings(ids, mask)
                    for slot, index in enumerate(batch):
                        per_row[index] = hidden[slot, : len(rows[index])].copy()
                    bar.update(len(batch))
                outputs.extend(per_row)
                cuts.append(truncated)
        truncated_all = np.concatenate(cuts) if cuts else np.zeros(0, dtype=bool)
        return outputs, truncated_all

    def _rows(
        self, texts: list[str], plan: _Plan
    ) -> tuple[list[TokenIds], list[int], npt.NDArray[np.bool_]]:
        """The token-id rows to run for `texts`, the text each row belongs to, and the cuts.

        A text that fits is one framed row, exactly as sentence-transformers feeds it. In
        chunk mode a longer text becomes several overlapping windows, each with the prompt.
        """
        parallel = self.threads > 1
        prompted = [plan.prompt + text for text in texts] if plan.prompt else texts
        budget = self._tokenizer.content_budget
        # Truncation needs only the first word pieces: a 10 MB text is not read to its end.
        limit = budget if plan.long_text == "truncate" else None
        pieces = self._tokenizer.word_pieces(prompted, parallel=parallel, limit=limit)
        truncated = np.fromiter((len(p) > budget for p in pieces), dtype=bool, count=len(pieces))
        if plan.long_text == "truncate" or not truncated.any():
            return [self._tokenizer.frame(p) for p in pieces], list(range(len(texts))), truncated
        head = self._tokenizer.word_pieces([plan.prompt])[0] if plan.prompt else []
        rows: list[TokenIds] = []
        owners: list[int] = []
        for index, text_pieces in enumerate(pieces):
            if not truncated[index]:
                rows.append(self._tokenizer.frame(text_pieces))
                owners.append(index)
                continue
            body = self._tokenizer.word_pieces([texts[index]])[0] if plan.prompt else text_pieces
            windows = self._tokenizer.windows(body, head, plan.stride)
            rows.extend(windows)
            owners.extend([index] * len(windows))
        return rows, owners, np.zeros(len(texts), dtype=bool)

    def _run_batches(
        self,
        rows: list[TokenIds],
        batch_size: int,
        run: Any,
        bar: _Bar,
        texts: int,
    ) -> npt.NDArray[np.float32]:
        """`run` over length-sorted batches of `rows`; results back in row order."""
        output = np.empty((len(rows), self._native.output_dim), dtype=np.float32)
        reported = finished = 0
        for batch in _batches(_longest_first(rows), rows, batch_size):
            ids, mask = pad([rows[i] for i in batch])
            output[batch] = run(ids, mask)
            # The bar counts texts; chunk windows advance it proportionally.
            finished += len(batch)
            done = texts * finished // max(len(rows), 1)
            bar.update(done - reported)
            reported = done
        return output

    def _prefix_len(self) -> int:
        return len(self._tokenizer.prefix) + len(self._tokenizer.suffix)

    def _report_truncation(self, truncated: npt.NDArray[np.bool_], returned: bool) -> None:
        if returned or self._warned_truncation:
            return
        cut = int(np.count_nonzero(truncated))  # cheaper than .sum(), a ufunc reduction
        if cut == 0:
            return
        self._warned_truncation = True
        warnings.warn(
            TruncationWarning(
                f"{cut} of {len(truncated)} texts were longer than {self.max_seq_length} word "
                "pieces and were truncated, as sentence-transformers does. Pass "
                'long_text="chunk" to embed all of each text, or return_truncation=True to '
                "see which were cut. (Shown once per Encoder.)"
            ),
            stacklevel=3,
        )

    # ----------------------------------------------------------------------------------------
    # Pickling: the configuration travels, the weights are reloaded by path on the other side

    def __getstate__(self) -> dict[str, Any]:
        return {
            **self._init_args,
            "model": self.model_name,
            "model_path": str(self.model_path),
            "max_seq_length": self.max_seq_length,
            "long_text": self.long_text,
            "chunk_stride": self.chunk_stride,
            "truncate_dim": self.truncate_dim,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        model_path = pathlib.Path(state.pop("model_path"))
        model = state.pop("model")
        # The same folder when this machine has it; otherwise resolve the name again.
        source = model_path if (model_path / "config.json").is_file() else model
        self.__init__(source, **state)  # type: ignore[misc]
        self.model_name = model

    def __repr__(self) -> str:
        return (
            f"Encoder(model={self.model_name!r}, dim={self.get_sentence_embedding_dimension()}, "
            f"max_seq_length={self.max_seq_length}, threads={self.threads}, "
            f"compute={self.compute!r})"
        )


# --------------------------------------------------------------------------------------------
# Helpers


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


_COMPUTE_NEEDS = {"bfloat16": "AVX512-BF16", "int8": "AVX2 or AVX-512 VNNI", "float32": "nothing"}


def _check_long_text(value: object) -> LongText:
    if value == "truncate":
        return "truncate"
    if value == "chunk":
        return "chunk"
    raise ValueError(f'long_text must be "truncate" or "chunk", got {value!r}')


def _check_truncate_dim(value: object, dim: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"truncate_dim must be an int or None, got {type(value).__name__}")
    if not 1 <= value <= dim:
        raise ValueError(f"truncate_dim must be between 1 and {dim}, got {value}")
    return value


def _check_output_options(output_value: object, convert_to_tensor: object, device: object) -> None:
    if output_value not in ("sentence_embedding", "token_embeddings"):
        raise ValueError(
            f'output_value must be "sentence_embedding" or "token_embeddings", got {output_value!r}'
        )
    if convert_to_tensor and output_value != "sentence_embedding":
        raise ValueError('convert_to_tensor=True needs output_value="sentence_embedding"')
    if device is not None and device != "cpu":
        raise ValueError(
            f"minilm_fast computes on the CPU; device must be None or 'cpu', got {device!r}"
        )


def _checked_texts(sentences: object) -> Iterator[str]:
    """The texts of `sentences` one by one, each checked to be a str (index in the message)."""
    if isinstance(sentences, str):
        return iter([_check_unicode("sentences", sentences)])
    if isinstance(
        sentences, (bytes, bytearray, memoryview, Mapping, set, frozenset)
    ) or not isinstance(sentences, Iterable):
        raise TypeError(
            "sentences must be a str or an ordered iterable of str (list, tuple, generator), "
            f"got {type(sentences).__name__}"
        )

    def checked() -> Iterator[str]:
        for index, text in enumerate(sentences):
            if not isinstance(text, str):
                raise TypeError(f"sentences[{index}] must be a str, got {type(text).__name__}")
            yield _check_unicode(f"sentences[{index}]", text)

    return checked()


def _check_unicode(name: str, text: str) -> str:
    """`text`, refused with a ValueError if it is not valid Unicode (holds a lone surrogate).

    Such strings come from decoding bytes with ``errors="surrogateescape"`` (file names,
    ``sys.argv``) or from broken JSON escapes; tokenizers cannot take them.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} is not valid Unicode: it holds the lone surrogate {text[exc.start]!r} at "
            f"position {exc.start}; decode the bytes with errors='replace' (or remove it) first"
        ) from None
    return text


def _count(sentences: object) -> int | None:
    """How many texts `sentences` holds, if it says (one for a str)."""
    if isinstance(sentences, str):
        return 1
    return len(sentences) if isinstance(sentences, Sequence) else None


def _windows(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while window := list(itertools.islice(iterator, size)):
        yield window


def _batches(
    order: npt.NDArray[np.intp], rows: Sequence[TokenIds], batch_size: int
) -> Iterator[npt.NDArray[np.intp]]:
    """The rows of each engine call: `batch_size` at a time in `order` (longest first), a batch
    split further when its rows, padded to the first (longest), exceed _MAX_BATCH_TOKENS."""
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        step = max(1, _MAX_BATCH_TOKENS // max(len(rows[batch[0]]), 1))
        for first in range(0, len(batch), step):
            yield batch[first : first + step]


def _truncated_dims(embeddings: npt.NDArray[np.float32], plan: _Plan) -> npt.NDArray[np.float32]:
    """The first `plan.truncate_dim` dimensions (Matryoshka), re-normalised if asked."""
    if plan.truncate_dim is None:
        return embeddings
    embeddings = np.ascontiguousarray(embeddings[:, : plan.truncate_dim])
    return _l2_normalize(embeddings) if plan.normalize else embeddings


def _longest_first(rows: Sequence[TokenIds]) -> npt.NDArray[np.intp]:
    """Row order longest first, like sentence-transformers; stable, so ties keep input order."""
    return np.argsort(
        np.fromiter((-len(r) for r in rows), dtype=np.int64, count=len(rows)), kind="stable"
    )


def _combine_windows(
    vectors: npt.NDArray[np.float32],
    rows: list[TokenIds],
    owners: list[int],
    texts: int,
    specials: int,
) -> npt.NDArray[np.float32]:
    """Per text, the mean of its rows' vectors weighted by each row's word pieces of text."""
    if len(rows) == texts:
        return vectors
    owner_of = np.asarray(owners, dtype=np.intp)
    weights = np.asarray([len(r) - specials for r in rows], dtype=np.float64)
    totals = np.zeros((texts, vectors.shape[1]), dtype=np.float64)
    np.add.at(totals, owner_of, vectors.astype(np.float64) * weights[:, None])
    weight_sums = np.zeros(texts, dtype=np.float64)
    np.add.at(weight_sums, owner_of, weights)
    combined = (totals / np.maximum(weight_sums, 1.0)[:, None]).astype(np.float32)
    # A text with one row keeps that row's vector bit for bit (parity with truncate mode).
    single = np.bincount(owner_of, minlength=texts) == 1
    first_row = np.searchsorted(owner_of, np.arange(texts))
    combined[single] = vectors[first_row[single]]
    return combined


def _l2_normalize(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def _unit_rows(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be 1-D or 2-D, got shape {matrix.shape}")
    return _l2_normalize(matrix)


def _to_torch(embeddings: npt.NDArray[Any]) -> Any:
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ImportError(
            "convert_to_tensor=True needs torch; install it, or use the NumPy array "
            "minilm_fast returns by default"
        ) from None
    return torch.from_numpy(embeddings)


def _read_object(path: pathlib.Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing or not an object (optional config).

    A FIFO, a device or a file over 16 MiB raises MiniLMError (see ``read_config_text``).
    """
    if not os.path.lexists(path):
        return {}
    try:
        value = json.loads(read_config_text(path))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return {}
    return value if isinstance(value, dict) else {}


def _pooling_includes_prompt(model_path: pathlib.Path) -> bool:
    """Whether the Pooling module pools prompt tokens too (sentence-transformers' default)."""
    try:
        modules = json.loads(read_config_text(model_path / "modules.json"))
    except (OSError, ValueError):
        return True
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            config = _read_object(model_path / str(module.get("path", "")) / "config.json")
            return bool(config.get("include_prompt", True))
    return True


class _Bar:
    """The progress-bar interface used by the pipeline (tqdm's, or one that shows nothing)."""

    def update(self, n: int) -> object:
        return None


@contextlib.contextmanager
def _progress(total: int | None, show: bool | None) -> Iterator[_Bar]:
    if show is None:
        show = logger.getEffectiveLevel() <= logging.INFO
    if not show:
        yield _Bar()
        return
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # lazily: most calls never show one

    with tqdm(total=total, desc="Encoding", unit="text") as bar:
        yield bar
