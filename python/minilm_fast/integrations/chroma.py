"""Chroma ``EmbeddingFunction`` computed by minilm_fast.

Needs chromadb: ``pip install "minilm-fast[chroma]"``. Importing this module registers the
function with Chroma under the name ``"minilm_fast"``, so a collection created with it can be
opened again without passing it: Chroma rebuilds it from the configuration it stored.

Example:
    >>> import chromadb
    >>> from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction
    >>> client = chromadb.EphemeralClient(chromadb.Settings(anonymized_telemetry=False))
    >>> docs = client.get_or_create_collection(
    ...     "example-docs",
    ...     embedding_function=MiniLMEmbeddingFunction(encoder=encoder),  # or (threads=2), ...
    ... )
    >>> docs.upsert(ids=["bread", "cats"], documents=["Bread needs yeast.", "Cats nap."])
    >>> docs.query(query_texts=["How do I bake bread?"], n_results=1)["ids"]
    [['bread']]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..encoder import Encoder
from ._common import EncoderArgs, ModelArg, build_encoder, check_batch_size, missing_framework

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as error:
    raise ImportError(missing_framework("chroma", "chromadb", "chroma")) from error

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MiniLMEmbeddingFunction"]

#: The Encoder settings that change a vector, stored in a collection's configuration so the
#: function rebuilt from it embeds queries exactly as the stored documents were embedded.
_CONFIG_ENCODER_ARGS = (
    "max_seq_length",
    "long_text",
    "chunk_stride",
    "truncate_dim",
    "prompts",
    "default_prompt_name",
)


class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """A Chroma embedding function over a minilm_fast :class:`~minilm_fast.Encoder`.

    Chroma calls it on documents (``Encoder.encode_document``) when records are added and
    uses ``embed_query`` (``Encoder.encode_query``) for ``query(query_texts=...)``, so a
    model's document and query prompts apply. Vectors are unit length, one float32 numpy array
    per text; a new collection's space defaults to ``"cosine"``.

    Args:
        model: a Hub repo id or a local model folder; ``None`` means the Encoder's default
            (sentence-transformers/all-MiniLM-L6-v2).
        encoder: an Encoder to share, instead of building one here.
        batch_size: texts per forward pass.
        **encoder_args: any other :class:`~minilm_fast.Encoder` keyword argument (``threads``,
            ``max_seq_length``, ``long_text``, ``prompts``, ...), used to build the encoder.
            ``model`` and these cannot be combined with ``encoder``.

    ``get_config`` (what Chroma stores with a collection) holds the model name, the batch size
    and the Encoder settings that change a vector (``max_seq_length``, ``long_text``,
    ``chunk_stride``, ``truncate_dim``, ``prompts``, ``default_prompt_name``). The thread count
    is left out, so a collection opened on another machine uses that machine's CPUs.

    Example:
        >>> embed = MiniLMEmbeddingFunction(encoder=encoder)
        >>> vectors = embed(["A cat sits.", "A dog runs."])
        >>> len(vectors), vectors[0].shape, vectors[0].dtype
        (2, (384,), dtype('float32'))
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

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents: one float32 vector per text, in order."""
        vectors = self.encoder.encode_document(
            input, batch_size=self.batch_size, normalize_embeddings=True
        )
        return list(vectors.reshape(-1, vectors.shape[-1]))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed search queries: one float32 vector per text, in order."""
        vectors = self.encoder.encode_query(
            input, batch_size=self.batch_size, normalize_embeddings=True
        )
        return list(vectors.reshape(-1, vectors.shape[-1]))

    @staticmethod
    def name() -> str:
        return "minilm_fast"

    def default_space(self) -> Space:
        # Unit-length vectors: cosine ranks as inner product and L2 do, and reads as a similarity.
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "model_name": self.encoder.model_name,
            "batch_size": self.batch_size,
        }
        for key in _CONFIG_ENCODER_ARGS:
            value = getattr(self.encoder, key)
            config[key] = dict(value) if key == "prompts" else value
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        MiniLMEmbeddingFunction.validate_config(config)
        encoder_args: Any = {key: config[key] for key in _CONFIG_ENCODER_ARGS if key in config}
        return MiniLMEmbeddingFunction(
            config["model_name"], batch_size=config.get("batch_size", 32), **encoder_args
        )

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model_name"), str):
            raise ValueError(f"a minilm_fast config needs a str 'model_name', got {config!r}")
        unknown = set(config) - {"model_name", "batch_size", *_CONFIG_ENCODER_ARGS}
        if unknown:
            raise ValueError(f"unknown keys in a minilm_fast config: {sorted(unknown)}")

    def is_legacy(self) -> bool:
        # The base class decides by building a second instance from get_config(), which would
        # load the model again each time Chroma serialises a collection's configuration.
        # name(), get_config() and build_from_config() are all implemented: not legacy.
        return False

    def __repr__(self) -> str:
        return f"MiniLMEmbeddingFunction(encoder={self.encoder!r}, batch_size={self.batch_size})"


# Registered at import (chromadb's decorator is untyped), so Chroma can rebuild this function
# from a stored configuration by its name().
register_embedding_function(MiniLMEmbeddingFunction)  # type: ignore[no-untyped-call]
