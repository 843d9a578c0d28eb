"""The Encoder users hold, with sentence-transformers' API: keyword names and meanings follow
`SentenceTransformer.encode`, so code written for it runs unchanged. Beyond it: iterables are
streamed (`encode_iter`), long texts can be chunked instead of cut, concurrent calls share
batches and `aencode` keeps an event loop free. This module is the facade; the jobs behind it
live in `_options` (argument checks), `_prompts`, `_pipeline` (texts to vectors),
`_coalescing` (concurrent calls), `_chunking`, `_tokenize`, `_progress`, `_outputs` and
`_quantize`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy.typing as npt

from . import _encode_call as encode_call
from . import _options as checks
from . import _pipeline as pipeline
from ._coalescing import BatchInfo, BatchListener, Coalescer, Steps
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
from ._outputs import (
    TruncationReport,
    TruncationWarning,
    cosine_similarity,
    pairwise_cosine_similarity,
)
from ._prompts import Prompts
from ._quantize import Precision, check_precision
from ._tokenize import SentenceTokenizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_CHUNK_STRIDE",
    "BatchInfo",
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
        max_batch_tokens: most word pieces (rows x longest row) in one engine call; bounds
            working memory (~40 KB a word piece for all-MiniLM-L6-v2).
        coalesce: concurrent calls of at most ``batch_size`` texts share engine batches, each
            getting its own rows; a lone call runs at once. ``False`` runs each on its own.

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
        max_batch_tokens: int = pipeline.MAX_BATCH_TOKENS,
        coalesce: bool = True,
    ) -> None:
        checks.check_compute(compute)
        checks.check_threads(threads)
        self.max_batch_tokens = checks.check_max_batch_tokens(max_batch_tokens)
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
        coalesce = checks.check_flag("coalesce", coalesce)
        self._coalescer = Coalescer(
            self._native, self._tokenizer, self.max_batch_tokens, enabled=coalesce
        )
        self._parts = encode_call.EncoderParts(
            self._native, self._tokenizer, self._coalescer, self._report_truncation
        )
        # What pickling needs to build the same Encoder again (weights are reloaded by path).
        self._init_args: EncoderArgs = {
            "threads": threads,
            "compute": compute,
            "cache_dir": cache_dir,
            "revision": revision,
            "local_files_only": local_files_only,
            "prompts": dict(prompts or {}),
            "default_prompt_name": default_prompt_name,
            "max_batch_tokens": max_batch_tokens,
            "coalesce": coalesce,
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
    def on_batch(self) -> BatchListener | None:
        """Called with a :class:`BatchInfo` after each shared batch, on its thread (no encode)."""
        return self._coalescer.on_batch

    @on_batch.setter
    def on_batch(self, listener: BatchListener | None) -> None:
        self._coalescer.on_batch = listener

    def count_tokens(
        self, sentences: Sentences, *, prompt_name: str | None = None, prompt: str | None = None
    ) -> list[int]:
        """Word pieces each text runs with, [CLS] and [SEP] included, cut at max_seq_length.

        >>> encoder.count_tokens(["Hello world", "word " * 300])
        [4, 256]
        """
        prefix = self._prompts.resolve(prompt, prompt_name)
        texts = [prefix + text for text in checks.checked_texts(sentences)]
        return self._tokenizer.count_tokens(texts, parallel=self.threads > 1)

    @property
    def native(self) -> NativeModel:
        """The native model, for callers that bring their own token ids."""
        return self._native

    def get_sentence_embedding_dimension(self) -> int:
        """Length of one sentence embedding (384 for all-MiniLM-L6-v2; less with truncate_dim)."""
        return self.truncate_dim or self._native.output_dim

    similarity = staticmethod(cosine_similarity)
    similarity_pairwise = staticmethod(pairwise_cosine_similarity)

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
        return self._coalescer.drive(
            self._encode_steps(
                sentences,
                prompt_name,
                prompt,
                batch_size,
                show_progress_bar,
                output_value,
                precision,
                convert_to_numpy,
                convert_to_tensor,
                device,
                normalize_embeddings,
                truncate_dim,
                long_text,
                chunk_stride,
                quantization_ranges,
                return_truncation,
            )
        )

    def encode_query(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"query"`` prompt, if it has one (all-MiniLM-L6-v2 has
        none), as sentence-transformers does.

        >>> encoder.encode_query("Where is the Eiffel tower?").shape
        (384,)
        """
        return self.encode(sentences, **self._prompts.for_task("query", options))

    def encode_document(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` with the model's ``"document"`` (or ``"passage"``/``"corpus"``) prompt."""
        return self.encode(sentences, **self._prompts.for_task("document", options))

    async def aencode(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode`` for asyncio: the event loop runs on while the texts are computed.

        A call of at most ``batch_size`` texts queues for the Encoder's worker thread (sharing
        batches with concurrent calls) and resumes when its rows are ready; a larger one runs
        in a thread of its own. Cancelling the task withdraws texts that have not started.

        >>> import asyncio
        >>> asyncio.run(encoder.aencode(["async", "texts"])).shape
        (2, 384)
        """
        arguments = encode_call.with_defaults(
            options, _ENCODE_DEFAULTS
        )  # every option, in encode's order
        return await self._coalescer.drive_async(self._encode_steps(sentences, *arguments))

    async def aencode_query(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode_query`` for asyncio."""
        return await self.aencode(sentences, **self._prompts.for_task("query", options))

    async def aencode_document(self, sentences: Sentences, **options: Unpack[EncodeOptions]) -> Any:
        """``encode_document`` for asyncio."""
        return await self.aencode(sentences, **self._prompts.for_task("document", options))

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
        yield from encode_call.stream(
            self._parts, sentences, plan, precision, quantization_ranges, show_progress_bar
        )

    def _encode_steps(
        self,
        sentences: Sentences,
        prompt_name: str | None,
        prompt: str | None,
        batch_size: int,
        show_progress_bar: bool | None,
        output_value: OutputValue,
        precision: Precision,
        convert_to_numpy: bool,
        convert_to_tensor: bool,
        device: str | None,
        normalize: bool,
        truncate_dim: int | None,
        long_text: LongText | None,
        stride: int | None,
        quantization_ranges: npt.ArrayLike | None,
        return_truncation: bool,
    ) -> Steps:
        """One ``encode`` call's options checked, and the steps that compute it."""
        checked = check_precision(precision)
        checks.check_output_options(output_value, convert_to_tensor, device)
        plan = self._plan(
            prompt_name, prompt, batch_size, normalize, truncate_dim, long_text, stride
        )
        finishing = encode_call.Finishing(
            checked, quantization_ranges, convert_to_numpy, convert_to_tensor, return_truncation
        )
        return encode_call.encode_steps(
            self._parts, sentences, plan, output_value, show_progress_bar, finishing
        )

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
            max_batch_tokens=self.max_batch_tokens,
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


#: `encode`'s options and their defaults, in its order, which `aencode` fills in.
_ENCODE_DEFAULTS = encode_call.option_defaults(Encoder.encode)
