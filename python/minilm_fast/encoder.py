"""The Encoder users hold, with sentence-transformers' API: keyword names and meanings follow
`SentenceTransformer.encode`, so code written for it runs unchanged. Beyond it: iterables are
streamed (`encode_iter`), long texts can be chunked instead of cut, and `aencode` keeps an event
loop free. This module is the facade; the jobs behind it live in `_options` (argument checks),
`_prompts`, `_pipeline` (texts to vectors), `_chunking`, `_tokenize`, `_progress`, `_outputs`
and `_quantize`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt

from . import _options as checks
from . import _pipeline as pipeline
from ._hub import DEFAULT_MODEL, resolve_model
from ._minilm_fast import NativeModel, read_text_config
from ._options import (
    DEFAULT_CHUNK_STRIDE,
    Compute,
    EncodeOptions,
    EncoderArgs,
    LongText,
    OutputValue,
    Plan,
    Sentences,
)
from ._outputs import TruncationReport, TruncationWarning, finish, finish_tokens, unit_rows
from ._prompts import Prompts
from ._quantize import Precision, check_precision, quantize_embeddings
from ._tokenize import SentenceTokenizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_CHUNK_STRIDE",
    "Compute",
    "EncodeOptions",
    "Encoder",
    "EncoderArgs",
    "LongText",
    "TruncationWarning",
]


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
        compute: the linear layers' arithmetic: ``"float32"`` (the default, sentence-transformers
            to cosine 0.99999), ``"bfloat16"`` (AVX512-BF16; faster on AMD Zen 4, slower than
            float32 on Intel Xeon) or ``"int8"`` (AVX-512 VNNI or AVX2), faster within the
            quality gates of docs/PERFORMANCE.md, or ``"auto"``, the fastest this CPU runs. A
            mode the CPU lacks computes in float32 with a warning (``Encoder.compute`` says
            what runs). Unrelated to ``encode(precision=...)``.

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
        checks.check_compute(compute)
        checks.check_threads(threads)
        self.model_name = os.fsdecode(model) if isinstance(model, os.PathLike) else model
        self.model_path: pathlib.Path = resolve_model(
            model, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only
        )
        self._native = NativeModel(str(self.model_path), threads, compute)
        checks.warn_if_computing_less(compute, self._native.compute)
        text_config = read_text_config(self.model_path)
        self._tokenizer = SentenceTokenizer(
            self.model_path, self._native.max_position_embeddings, max_seq_length, text_config
        )
        self.long_text: LongText = checks.check_long_text(long_text)
        self.chunk_stride = chunk_stride
        self.truncate_dim = checks.check_truncate_dim(truncate_dim, self._native.output_dim)
        model_prompts = (text_config.prompts, text_config.default_prompt_name)
        self._prompts = Prompts(
            *model_prompts, prompts, default_prompt_name, self._native.include_prompt
        )
        self._report_truncation = TruncationReport()
        # What pickling needs to build the same Encoder again (weights are reloaded by path).
        self._init_args: EncoderArgs = {
            "threads": threads,
            "compute": compute,
            "cache_dir": cache_dir,
            "revision": revision,
            "local_files_only": local_files_only,
            "prompts": dict(prompts or {}),
            "default_prompt_name": default_prompt_name,
        }

    @property
    def prompts(self) -> dict[str, str]:
        """Named prompts: the model's ``config_sentence_transformers.json`` and the Encoder's."""
        return self._prompts.named

    @property
    def default_prompt_name(self) -> str | None:
        """The prompt used by every ``encode`` that names none."""
        return self._prompts.default_name

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
        return unit_rows(a) @ unit_rows(b).T

    @staticmethod
    def similarity_pairwise(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Cosine similarity of row i of `a` with row i of `b`: shape (len(a),)."""
        left, right = unit_rows(a), unit_rows(b)
        if left.shape != right.shape:
            raise ValueError(
                f"pairwise similarity needs equal shapes, got {left.shape} and {right.shape}"
            )
        pairwise: npt.NDArray[np.float32] = np.einsum("ij,ij->i", left, right)
        return pairwise

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

        - ``sentences``: a str, or any iterable of str (a generator is read a window of texts
          at a time, never held whole; only the output array is).
        - ``prompt_name`` / ``prompt``: text put before every input (``prompt`` wins).
        - ``batch_size``: texts (or chunk windows) per forward pass, of similar lengths; more
          than 8,192 word pieces (padded) run in several passes. Repeated texts run once.
        - ``show_progress_bar``: ``None`` shows a bar when the ``minilm_fast`` logger is at
          INFO or DEBUG level, as sentence-transformers does; it counts sequences run (a
          chunked long text counts each of its windows).
        - ``output_value``: ``"sentence_embedding"``, or ``"token_embeddings"`` for a list with
          one (tokens, hidden) array per text, padding removed.
        - ``precision``: ``"float32"``, or ``"int8"``/``"uint8"``/``"binary"``/``"ubinary"`` as
          sentence-transformers' ``quantize_embeddings``; int8/uint8 ranges come from
          ``quantization_ranges`` or else from this call's embeddings.
        - ``convert_to_numpy=False`` gives a list of 1-D arrays; ``convert_to_tensor=True`` a
          torch tensor (torch must be installed); ``device`` may only be ``None``/``"cpu"``.
        - ``normalize_embeddings``: force unit length (after ``truncate_dim``). With ``False``
          the model's own pipeline decides; all-MiniLM-L6-v2 ends in a Normalize module.
        - ``truncate_dim``: keep the first dimensions only (default: the Encoder's).
        - ``long_text`` / ``chunk_stride``: override the Encoder's settings for this call.
        - ``return_truncation=True`` returns ``(embeddings, truncated)``, a bool per text;
          otherwise the first cut is reported once per Encoder by a ``TruncationWarning``.

        Example:
            >>> encoder.encode("How do I bake bread?").shape
            (384,)
            >>> vectors, cut = encoder.encode(["short", "word " * 300], return_truncation=True)
            >>> cut.tolist()
            [False, True]
        """
        single = isinstance(sentences, str)
        precision = check_precision(precision)
        checks.check_output_options(output_value, convert_to_tensor, device)
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
            checks.check_token_output(plan.long_text, precision)
            tokens, truncated = pipeline.token_embeddings(
                self._native,
                self._tokenizer,
                checks.checked_texts(sentences),
                plan,
                show_progress_bar,
            )
            self._report_truncation(truncated, return_truncation, self.max_seq_length)
            return finish_tokens(
                tokens, truncated, single=single, return_truncation=return_truncation
            )

        quick = (
            pipeline.one_embedding(self._native, self._tokenizer, sentences, plan)
            if isinstance(sentences, str) and not show_progress_bar
            else None
        )
        embeddings, truncated = quick or pipeline.sentence_embeddings(
            self._native, self._tokenizer, sentences, plan, show_progress_bar
        )
        self._report_truncation(truncated, return_truncation, self.max_seq_length)
        return finish(
            embeddings,
            truncated,
            single=single,
            precision=precision,
            ranges=quantization_ranges,
            convert_to_numpy=convert_to_numpy,
            convert_to_tensor=convert_to_tensor,
            return_truncation=return_truncation,
        )

    def encode_query(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"query"`` prompt, if it has one (as sentence-transformers).

        all-MiniLM-L6-v2 has no prompts, so this equals ``encode``.

        >>> encoder.encode_query("Where is the Eiffel tower?").shape
        (384,)
        """
        return self.encode(sentences, **self._prompts.for_task("query", options))

    def encode_document(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"document"`` (or ``"passage"``/``"corpus"``) prompt."""
        return self.encode(sentences, **self._prompts.for_task("document", options))

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
        precision = checks.check_streamed_precision(precision, quantization_ranges)
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
        total = checks.count(sentences)
        for embeddings, truncated in pipeline.iter_sentence_embeddings(
            self._native,
            self._tokenizer,
            checks.checked_texts(sentences),
            total,
            plan,
            show_progress_bar,
        ):
            self._report_truncation(truncated, False, self.max_seq_length)
            for start in range(0, len(embeddings), batch_size):
                rows = embeddings[start : start + batch_size]
                yield quantize_embeddings(rows, precision, ranges=quantization_ranges)

    def _plan(
        self,
        prompt_name: str | None,
        prompt: str | None,
        batch_size: int,
        normalize: bool,
        truncate_dim: int | None,
        long_text: LongText | None,
        chunk_stride: int | None,
    ) -> Plan:
        """One call's options, checked, with the Encoder's where the call gives none."""
        return checks.resolve_plan(
            prompt=self._prompts.resolve(prompt, prompt_name),
            batch_size=batch_size,
            normalize=normalize,
            truncate_dim=self.truncate_dim if truncate_dim is None else truncate_dim,
            long_text=self.long_text if long_text is None else long_text,
            stride=self.chunk_stride if chunk_stride is None else chunk_stride,
            output_dim=self._native.output_dim,
            content_budget=self._tokenizer.content_budget,
            parallel=self.threads > 1,
        )

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
        path, model = pathlib.Path(state.pop("model_path")), state.pop("model")
        # The same folder when this machine has it; otherwise resolve the name again.
        self.__init__(path if (path / "config.json").is_file() else model, **state)  # type: ignore[misc]
        self.model_name = model

    def __repr__(self) -> str:
        return (
            f"Encoder(model={self.model_name!r}, dim={self.get_sentence_embedding_dimension()}, "
            f"max_seq_length={self.max_seq_length}, threads={self.threads}, "
            f"compute={self.compute!r})"
        )
