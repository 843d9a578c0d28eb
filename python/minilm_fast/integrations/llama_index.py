"""LlamaIndex ``BaseEmbedding`` computed by minilm_fast.

Needs llama-index-core: ``pip install "minilm-fast[llama-index]"``.

Example:
    >>> from llama_index.core import Document, VectorStoreIndex
    >>> from minilm_fast.integrations.llama_index import MiniLMEmbedding
    >>> index = VectorStoreIndex.from_documents(
    ...     [Document(text="Bread needs flour, water and yeast."), Document(text="Cats nap.")],
    ...     embed_model=MiniLMEmbedding(encoder=encoder),  # or MiniLMEmbedding(threads=2), ...
    ... )
    >>> index.as_retriever(similarity_top_k=1).retrieve("How do I bake bread?")[0].text
    'Bread needs flour, water and yeast.'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..encoder import Encoder
from ._common import EncoderArgs, ModelArg, build_encoder, check_batch_size, missing_framework

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.callbacks import CallbackManager
except ImportError as error:
    raise ImportError(
        missing_framework("llama_index", "llama-index-core", "llama-index")
    ) from error

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MiniLMEmbedding"]

#: The BaseEmbedding fields __init__ takes besides the model (see __setstate__).
_FIELDS = (
    "embed_batch_size",
    "callback_manager",
    "num_workers",
    "embeddings_cache",
    "rate_limiter",
)


class MiniLMEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model over a minilm_fast :class:`~minilm_fast.Encoder`.

    Texts (nodes) are embedded with ``Encoder.encode_document`` and queries with
    ``Encoder.encode_query``, so a model's document and query prompts apply, as unit-length
    vectors. The async hooks run the encoder in a worker thread (the Rust engine releases the
    GIL). ``model_name`` is the Encoder's model; the Encoder itself is private state (the
    ``encoder`` property), not a pydantic field.

    Args:
        model: a Hub repo id or a local model folder; ``None`` means the Encoder's default
            (sentence-transformers/all-MiniLM-L6-v2).
        encoder: an Encoder to share, instead of building one here.
        embed_batch_size: texts LlamaIndex hands over per call, which the encoder also uses as
            its batch size (LlamaIndex's own default is 10; 32 suits this engine better).
        callback_manager, num_workers, embeddings_cache, rate_limiter: as in ``BaseEmbedding``.
        model_name: another name for ``model``, as other LlamaIndex embeddings call it.
        **encoder_args: any other :class:`~minilm_fast.Encoder` keyword argument (``threads``,
            ``max_seq_length``, ``long_text``, ``prompts``, ...), used to build the encoder.
            ``model`` and these cannot be combined with ``encoder``.

    Example:
        >>> embed_model = MiniLMEmbedding(encoder=encoder)
        >>> embed_model.model_name == encoder.model_name
        True
        >>> len(embed_model.get_query_embedding("Where is the cat?"))
        384
        >>> len(embed_model.get_text_embedding_batch(["A cat sits.", "A dog runs."]))
        2
    """

    _encoder: Encoder = PrivateAttr()

    def __init__(
        self,
        model: ModelArg | None = None,
        *,
        encoder: Encoder | None = None,
        embed_batch_size: int = 32,
        callback_manager: CallbackManager | None = None,
        num_workers: int | None = None,
        embeddings_cache: Any | None = None,
        rate_limiter: Any | None = None,
        model_name: ModelArg | None = None,
        **encoder_args: Unpack[EncoderArgs],
    ) -> None:
        if model_name is not None:
            if model is not None:
                raise TypeError("pass model or model_name (the same thing), not both")
            model = model_name
        built = build_encoder(encoder, model, **encoder_args)
        # Only what was given: older llama-index-core versions lack some of these fields.
        fields: dict[str, Any] = {
            "callback_manager": callback_manager,
            "num_workers": num_workers,
            "embeddings_cache": embeddings_cache,
            "rate_limiter": rate_limiter,
        }
        super().__init__(
            model_name=built.model_name,
            embed_batch_size=check_batch_size(embed_batch_size),
            **{name: value for name, value in fields.items() if value is not None},
        )
        self._encoder = built

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle with the pickled Encoder: its settings (threads, prompts, ...) are kept and
        the weights are loaded once.

        LlamaIndex's ``BaseComponent`` unpickles by calling ``__init__`` with the fields alone,
        which here would build a second Encoder from ``model_name`` with default settings.
        """
        encoder = (state.get("__pydantic_private__") or {}).get("_encoder")
        if not isinstance(encoder, Encoder):
            super().__setstate__(state)
            return
        fields: dict[str, Any] = {k: v for k, v in state["__dict__"].items() if k in _FIELDS}
        MiniLMEmbedding.__init__(self, encoder=encoder, **fields)

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The Encoder this model computes with."""
        return self._encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        vector = self._encoder.encode_query(
            query, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    async def _aget_query_embedding(self, query: str) -> list[float]:
        vector = await self._encoder.aencode_query(
            query, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    def _get_text_embedding(self, text: str) -> list[float]:
        vector = self._encoder.encode_document(
            text, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    async def _aget_text_embedding(self, text: str) -> list[float]:
        vector = await self._encoder.aencode_document(
            text, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors = self._encoder.encode_document(
            texts, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[list[float]] = vectors.tolist()
        return result

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors = await self._encoder.aencode_document(
            texts, batch_size=self.embed_batch_size, normalize_embeddings=True
        )
        result: list[list[float]] = vectors.tolist()
        return result
