"""The Encoder users hold: a model folder resolved, tokenized as sentence-transformers does, and
encoded by the native engine in length-sorted batches."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np
import numpy.typing as npt

from ._hub import DEFAULT_MODEL, resolve_model
from ._minilm_fast import NativeModel
from ._tokenize import SentenceTokenizer

__all__ = ["Encoder"]

logger = logging.getLogger("minilm_fast")

Sentences = Union[str, Sequence[str]]


class Encoder:
    """A sentence encoder with sentence-transformers' results, computed by a Rust engine.

    Args:
        model: a Hugging Face Hub repo id (``"sentence-transformers/all-MiniLM-L6-v2"``, the
            default) or a local folder with config.json, model.safetensors and tokenizer.json.
        threads: worker threads for the compute; ``None`` uses every CPU this process may run
            on (CPU affinity and container limits included).
        max_seq_length: longest input in word pieces; longer texts are truncated. Defaults to
            the model's ``sentence_bert_config.json`` (256 for all-MiniLM-L6-v2).
        cache_dir: where the fallback mirror unpacks models (see ``resolve_model``).
        revision: Hub revision; ``local_files_only`` never touches the network.

    Example:
        >>> encoder = Encoder()  # doctest: +SKIP
        >>> vectors = encoder.encode(["A cat sits.", "A dog runs."])  # doctest: +SKIP
        >>> vectors.shape, vectors.dtype  # doctest: +SKIP
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
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
        self.model_name = os.fsdecode(model) if isinstance(model, os.PathLike) else model
        self.model_path: pathlib.Path = resolve_model(
            model, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only
        )
        self._native = NativeModel(str(self.model_path), threads)
        self._tokenizer = SentenceTokenizer(
            self.model_path, self._native.max_position_embeddings, max_seq_length
        )

    @property
    def threads(self) -> int:
        """Worker threads the engine computes with."""
        return self._native.threads

    @property
    def max_seq_length(self) -> int:
        """Longest input in word pieces ([CLS] and [SEP] included); longer texts are truncated."""
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._tokenizer.max_seq_length = value

    @property
    def native(self) -> NativeModel:
        """The native model, for callers that bring their own token ids."""
        return self._native

    def get_sentence_embedding_dimension(self) -> int:
        """Length of one sentence embedding (384 for all-MiniLM-L6-v2)."""
        return self._native.output_dim

    def encode(
        self,
        sentences: Sentences,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = True,
    ) -> npt.NDArray[np.float32]:
        """Embed one text (-> shape (dim,)) or a list of texts (-> shape (n, dim)), in order.

        Texts are tokenized as sentence-transformers does (truncated at ``max_seq_length``
        word pieces) and encoded in batches of ``batch_size`` texts of
        similar length, so little padding is computed.

        ``normalize_embeddings=True`` L2-normalises every vector. With ``False`` the model's own
        pipeline decides, exactly as in sentence-transformers: all-MiniLM-L6-v2 ends with a
        Normalize module, so its vectors are unit length either way.

        ``show_progress_bar=None`` shows a bar when the ``minilm_fast`` logger is at INFO or
        DEBUG level, as sentence-transformers does.

        Example:
            >>> encoder.encode("How do I bake bread?").shape  # doctest: +SKIP
            (384,)
        """
        single = isinstance(sentences, str)
        texts = _as_text_list(sentences)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")

        dim = self._native.output_dim
        output = np.empty((len(texts), dim), dtype=np.float32)
        if texts:
            normalize = True if normalize_embeddings else None
            encodings = self._tokenizer.encode(texts, parallel=self.threads > 1)
            # Longest first, like sentence-transformers; a stable sort keeps ties in input order.
            order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
            with _progress(len(texts), show_progress_bar) as bar:
                for start in range(0, len(texts), batch_size):
                    rows = order[start : start + batch_size]
                    ids, mask = SentenceTokenizer.pad([encodings[i] for i in rows])
                    output[rows] = self._native.encode(ids, mask, normalize=normalize)
                    bar.update(len(rows))
        return output[0] if single else output

    def __repr__(self) -> str:
        return (
            f"Encoder(model={self.model_name!r}, dim={self._native.output_dim}, "
            f"max_seq_length={self.max_seq_length}, threads={self.threads})"
        )


def _as_text_list(sentences: object) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    if isinstance(sentences, (bytes, bytearray)) or not isinstance(sentences, Sequence):
        raise TypeError(
            f"sentences must be a str or a sequence of str, got {type(sentences).__name__}"
        )
    texts = list(sentences)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"sentences[{index}] must be a str, got {type(text).__name__}")
    return texts


class _NoBar:
    def update(self, n: int) -> object:
        return None


@contextlib.contextmanager
def _progress(total: int, show: bool | None) -> Iterator[_NoBar]:
    if show is None:
        show = logger.getEffectiveLevel() <= logging.INFO
    if not show:
        yield _NoBar()
        return
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # lazily: most calls never show one

    with tqdm(total=total, desc="Encoding", unit="text") as bar:
        yield bar
