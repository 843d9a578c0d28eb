"""Adapters that plug an :class:`~minilm_fast.Encoder` into retrieval frameworks.

Each adapter lives in its own submodule and needs its framework, installed through a pip extra;
importing this package imports none of them.

- ``minilm_fast.integrations.langchain.MiniLMEmbeddings``: a LangChain ``Embeddings``
  (``pip install "minilm-fast[langchain]"``).
- ``minilm_fast.integrations.llama_index.MiniLMEmbedding``: a LlamaIndex ``BaseEmbedding``
  (``pip install "minilm-fast[llama-index]"``).
- ``minilm_fast.integrations.chroma.MiniLMEmbeddingFunction``: a Chroma ``EmbeddingFunction``
  (``pip install "minilm-fast[chroma]"``).

Every adapter takes either an existing encoder (``encoder=``) or the :class:`~minilm_fast.Encoder`
arguments (``model``, ``threads``, ...), embeds queries with ``Encoder.encode_query`` and
documents with ``Encoder.encode_document``, and returns unit-length vectors.

Example:
    >>> from minilm_fast.integrations.langchain import MiniLMEmbeddings
    >>> embeddings = MiniLMEmbeddings(encoder=encoder)  # or MiniLMEmbeddings(threads=2), ...
    >>> len(embeddings.embed_query("How do I bake bread?"))
    384
"""

from __future__ import annotations

__all__: list[str] = []
