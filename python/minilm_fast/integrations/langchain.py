"""LangChain ``Embeddings`` computed by minilm_fast.

Needs langchain-core: ``pip install "minilm-fast[langchain]"``.

Example:
    >>> from langchain_core.vectorstores import InMemoryVectorStore
    >>> from minilm_fast.integrations.langchain import MiniLMEmbeddings
    >>> store = InMemoryVectorStore(MiniLMEmbeddings(encoder=encoder))  # or (threads=2), ...
    >>> ids = store.add_texts(["Bread needs flour, water and yeast.", "Cats sleep a lot."])
    >>> store.similarity_search("How do I bake bread?", k=1)[0].page_content
    'Bread needs flour, water and yeast.'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..encoder import Encoder
from ._common import EncoderArgs, ModelArg, build_encoder, check_batch_size, missing_framework

try:
    from langchain_core.embeddings import Embeddings
except ImportError as error:
    raise ImportError(missing_framework("langchain", "langchain-core", "langchain")) from error

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MiniLMEmbeddings"]


class MiniLMEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over a minilm_fast :class:`~minilm_fast.Encoder`.

    Documents are embedded with ``Encoder.encode_document`` and queries with
    ``Encoder.encode_query``, so a model's document and query prompts apply, as unit-length
    vectors (``normalize_embeddings=True``). The async methods run the encoder in a worker
    thread (the Rust engine releases the GIL), so the event loop keeps serving meanwhile.

    Args:
        model: a Hub repo id or a local model folder; ``None`` means the Encoder's default
            (sentence-transformers/all-MiniLM-L6-v2).
        encoder: an Encoder to share, instead of building one here.
        batch_size: texts per forward pass.
        **encoder_args: any other :class:`~minilm_fast.Encoder` keyword argument (``threads``,
            ``max_seq_length``, ``long_text``, ``prompts``, ...), used to build the encoder.
            ``model`` and these cannot be combined with ``encoder``.

    Example:
        >>> embeddings = MiniLMEmbeddings(encoder=encoder)
        >>> vectors = embeddings.embed_documents(["A cat sits.", "A dog runs."])
        >>> len(vectors), len(vectors[0])
        (2, 384)
        >>> len(embeddings.embed_query("Where is the cat?"))
        384
    """

    def __init__(
        self,
        model: ModelArg | None = None,
        *,
        encoder: Encoder | None = None,
        batch_size: int = 32,
        **encoder_args: Unpack[EncoderArgs],
    ) -> None:
        self.encoder = build_encoder(encoder, model, **encoder_args)
        self.batch_size = check_batch_size(batch_size)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents: one vector per text, in order."""
        vectors = self.encoder.encode_document(
            texts, batch_size=self.batch_size, normalize_embeddings=True
        )
        result: list[list[float]] = vectors.tolist()
        return result

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        vector = self.encoder.encode_query(
            text, batch_size=self.batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread."""
        vectors = await self.encoder.aencode_document(
            texts, batch_size=self.batch_size, normalize_embeddings=True
        )
        result: list[list[float]] = vectors.tolist()
        return result

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        vector = await self.encoder.aencode_query(
            text, batch_size=self.batch_size, normalize_embeddings=True
        )
        result: list[float] = vector.tolist()
        return result

    def __repr__(self) -> str:
        return f"MiniLMEmbeddings(encoder={self.encoder!r}, batch_size={self.batch_size})"
