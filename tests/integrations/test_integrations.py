"""The framework adapters against the real frameworks and the real model: same vectors as the
Encoder, the types each framework expects, async parity, one end-to-end retrieval per framework,
and the ImportError that names the pip extra when a framework is missing."""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import pickle
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest

from minilm_fast import Encoder

if TYPE_CHECKING:  # the frameworks are optional: each test imports what it needs
    from chromadb.api import ClientAPI

    from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction
    from minilm_fast.integrations.langchain import MiniLMEmbeddings
    from minilm_fast.integrations.llama_index import MiniLMEmbedding

DOCS = [
    "Bread is baked from flour, water, salt and yeast.",
    "The cat sleeps on the warm windowsill all afternoon.",
    "Stock markets fell sharply after the interest rate decision.",
    "The violinist tuned her instrument before the concert.",
]
QUERY = "How do I bake a loaf of bread at home?"
ANSWER = DOCS[0]
DIM = 384
PROMPTS = {"query": "query: ", "document": "passage: "}


def reference(encoder: Encoder, texts: str | list[str]) -> npt.NDArray[np.float32]:
    """What the adapters must reproduce: the Encoder's own unit-length vectors."""
    return encoder.encode(texts, normalize_embeddings=True)


@pytest.fixture(scope="module")
def prompted_encoder(model_dir: pathlib.Path) -> Encoder:
    """An encoder with query and document prompts: the adapters must route to encode_query and
    encode_document, which put them before the text."""
    return Encoder(model_dir, threads=2, prompts=PROMPTS)


def prompted(encoder: Encoder, task: str, texts: str | list[str]) -> npt.NDArray[np.float32]:
    return encoder.encode(texts, prompt=PROMPTS[task], normalize_embeddings=True)


def assert_same_vectors(got: object, expected: npt.NDArray[np.float32]) -> None:
    array = np.asarray(got, dtype=np.float64)
    assert array.shape == expected.shape
    rows = array.reshape(-1, expected.shape[-1])
    want = expected.reshape(-1, expected.shape[-1]).astype(np.float64)
    cosine = np.sum(rows * want, axis=1) / (
        np.linalg.norm(rows, axis=1) * np.linalg.norm(want, axis=1)
    )
    assert np.all(cosine >= 0.99999), cosine
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def assert_float_list(vector: object) -> None:
    assert type(vector) is list
    assert len(vector) == DIM
    assert all(type(value) is float for value in vector)


def assert_float_lists(vectors: object, count: int) -> None:
    assert type(vectors) is list
    assert len(vectors) == count
    for vector in vectors:
        assert_float_list(vector)


# --- packaging: nothing heavy on import, and a missing framework names its extra -----------------

FRAMEWORKS = [
    ("langchain", "langchain_core", "langchain"),
    ("llama_index", "llama_index", "llama-index"),
    ("chroma", "chromadb", "chroma"),
]


def test_integrations_package_imports_no_framework() -> None:
    code = (
        "import sys, minilm_fast.integrations; "
        "print([m for m in ('langchain_core', 'llama_index', 'chromadb') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "framework", "extra"), FRAMEWORKS)
def test_missing_framework_raises_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    # None in sys.modules makes Python treat the framework (and every submodule) as absent.
    for name in list(sys.modules):
        if name == framework or name.startswith(framework + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    adapter = f"minilm_fast.integrations.{module}"
    monkeypatch.delitem(sys.modules, adapter, raising=False)
    with pytest.raises(ImportError, match=rf'pip install "minilm-fast\[{extra}\]"'):
        importlib.import_module(adapter)


# --- LangChain -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def langchain_embeddings(encoder: Encoder) -> MiniLMEmbeddings:
    pytest.importorskip("langchain_core")
    from minilm_fast.integrations.langchain import MiniLMEmbeddings

    return MiniLMEmbeddings(encoder=encoder, batch_size=2)


def test_langchain_is_an_embeddings(
    langchain_embeddings: MiniLMEmbeddings, encoder: Encoder
) -> None:
    from langchain_core.embeddings import Embeddings

    assert isinstance(langchain_embeddings, Embeddings)
    assert langchain_embeddings.encoder is encoder


def test_langchain_vectors_match_the_encoder(
    langchain_embeddings: MiniLMEmbeddings, encoder: Encoder
) -> None:
    documents = langchain_embeddings.embed_documents(DOCS)
    assert_float_lists(documents, len(DOCS))
    assert_same_vectors(documents, reference(encoder, DOCS))

    query = langchain_embeddings.embed_query(QUERY)
    assert_float_list(query)
    assert_same_vectors(query, reference(encoder, QUERY))

    assert langchain_embeddings.embed_documents([]) == []


def test_langchain_async_matches_sync(langchain_embeddings: MiniLMEmbeddings) -> None:
    async def both() -> tuple[list[list[float]], list[float]]:
        return await asyncio.gather(
            langchain_embeddings.aembed_documents(DOCS), langchain_embeddings.aembed_query(QUERY)
        )

    documents, query = asyncio.run(both())
    assert_float_lists(documents, len(DOCS))
    assert_float_list(query)
    np.testing.assert_allclose(documents, langchain_embeddings.embed_documents(DOCS), atol=1e-6)
    np.testing.assert_allclose(query, langchain_embeddings.embed_query(QUERY), atol=1e-6)


def test_langchain_in_memory_vector_store_finds_the_obvious_document(
    langchain_embeddings: MiniLMEmbeddings,
) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(langchain_embeddings)
    store.add_texts(DOCS)
    assert [d.page_content for d in store.similarity_search(QUERY, k=1)] == [ANSWER]

    async def search() -> list[str]:
        async_store = InMemoryVectorStore(langchain_embeddings)
        await async_store.aadd_texts(DOCS)
        return [d.page_content for d in await async_store.asimilarity_search(QUERY, k=1)]

    assert asyncio.run(search()) == [ANSWER]


def test_langchain_queries_and_documents_get_their_prompts(prompted_encoder: Encoder) -> None:
    pytest.importorskip("langchain_core")
    from minilm_fast.integrations.langchain import MiniLMEmbeddings

    embeddings = MiniLMEmbeddings(encoder=prompted_encoder)
    query = prompted(prompted_encoder, "query", QUERY)
    documents = prompted(prompted_encoder, "document", DOCS)
    assert float(query @ reference(prompted_encoder, QUERY)) < 0.999  # the prompt matters
    assert_same_vectors(embeddings.embed_query(QUERY), query)
    assert_same_vectors(embeddings.embed_documents(DOCS), documents)
    assert_same_vectors(asyncio.run(embeddings.aembed_query(QUERY)), query)
    assert_same_vectors(asyncio.run(embeddings.aembed_documents(DOCS)), documents)


def test_langchain_builds_its_own_encoder(model_dir: pathlib.Path, encoder: Encoder) -> None:
    pytest.importorskip("langchain_core")
    from minilm_fast.integrations.langchain import MiniLMEmbeddings

    embeddings = MiniLMEmbeddings(model_dir, threads=1)
    assert embeddings.encoder is not encoder
    assert embeddings.encoder.threads == 1
    assert_same_vectors(embeddings.embed_documents(DOCS), reference(encoder, DOCS))
    assert "MiniLMEmbeddings(encoder=Encoder(" in repr(embeddings)
    clone = pickle.loads(pickle.dumps(embeddings))  # the encoder reloads its weights by path
    assert clone.encoder.threads == 1
    assert_same_vectors(clone.embed_query(QUERY), reference(encoder, QUERY))


def test_langchain_rejects_an_encoder_with_encoder_arguments(encoder: Encoder) -> None:
    pytest.importorskip("langchain_core")
    from minilm_fast.integrations.langchain import MiniLMEmbeddings

    with pytest.raises(TypeError, match="either encoder= or the Encoder arguments"):
        MiniLMEmbeddings(encoder=encoder, threads=2)
    with pytest.raises(TypeError, match="encoder must be a minilm_fast.Encoder"):
        MiniLMEmbeddings(encoder="all-MiniLM-L6-v2")  # type: ignore[arg-type]


# --- LlamaIndex ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_embedding(encoder: Encoder) -> MiniLMEmbedding:
    pytest.importorskip("llama_index.core")
    from minilm_fast.integrations.llama_index import MiniLMEmbedding

    return MiniLMEmbedding(encoder=encoder, embed_batch_size=3)


def test_llama_index_is_a_base_embedding(
    llama_embedding: MiniLMEmbedding, encoder: Encoder
) -> None:
    from llama_index.core.embeddings import BaseEmbedding

    from minilm_fast.integrations.llama_index import MiniLMEmbedding

    assert isinstance(llama_embedding, BaseEmbedding)
    assert isinstance(llama_embedding, MiniLMEmbedding)
    assert llama_embedding.model_name == encoder.model_name
    assert llama_embedding.embed_batch_size == 3
    assert llama_embedding.encoder is encoder
    assert MiniLMEmbedding.class_name() == "MiniLMEmbedding"
    # The Encoder is private state, not a pydantic field: the model still serialises.
    assert llama_embedding.to_dict()["model_name"] == encoder.model_name


def test_llama_index_vectors_match_the_encoder(
    llama_embedding: MiniLMEmbedding, encoder: Encoder
) -> None:
    # get_text_embedding_batch splits DOCS into calls of embed_batch_size texts.
    texts = llama_embedding.get_text_embedding_batch(DOCS)
    assert_float_lists(texts, len(DOCS))
    assert_same_vectors(texts, reference(encoder, DOCS))

    text = llama_embedding.get_text_embedding(DOCS[1])
    assert_float_list(text)
    assert_same_vectors(text, reference(encoder, DOCS[1]))

    query = llama_embedding.get_query_embedding(QUERY)
    assert_float_list(query)
    assert_same_vectors(query, reference(encoder, QUERY))


def test_llama_index_async_matches_sync(llama_embedding: MiniLMEmbedding) -> None:
    async def all_three() -> tuple[list[list[float]], list[float], list[float]]:
        return await asyncio.gather(
            llama_embedding.aget_text_embedding_batch(DOCS),
            llama_embedding.aget_text_embedding(DOCS[1]),
            llama_embedding.aget_query_embedding(QUERY),
        )

    texts, text, query = asyncio.run(all_three())
    assert_float_lists(texts, len(DOCS))
    assert_float_list(text)
    assert_float_list(query)
    np.testing.assert_allclose(texts, llama_embedding.get_text_embedding_batch(DOCS), atol=1e-6)
    np.testing.assert_allclose(text, llama_embedding.get_text_embedding(DOCS[1]), atol=1e-6)
    np.testing.assert_allclose(query, llama_embedding.get_query_embedding(QUERY), atol=1e-6)


def test_llama_index_vector_store_index_retrieves_the_obvious_node(
    llama_embedding: MiniLMEmbedding,
) -> None:
    from llama_index.core import Document, VectorStoreIndex

    # Retrieval needs no LLM; embed_model= keeps the global Settings (and OpenAI) out of it.
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in DOCS], embed_model=llama_embedding
    )
    nodes = index.as_retriever(similarity_top_k=1).retrieve(QUERY)
    assert [node.get_content() for node in nodes] == [ANSWER]

    async def aretrieve() -> list[str]:
        found = await index.as_retriever(similarity_top_k=1).aretrieve(QUERY)
        return [node.get_content() for node in found]

    assert asyncio.run(aretrieve()) == [ANSWER]


def test_llama_index_queries_and_texts_get_their_prompts(prompted_encoder: Encoder) -> None:
    pytest.importorskip("llama_index.core")
    from minilm_fast.integrations.llama_index import MiniLMEmbedding

    embedding = MiniLMEmbedding(encoder=prompted_encoder)
    query = prompted(prompted_encoder, "query", QUERY)
    documents = prompted(prompted_encoder, "document", DOCS)
    assert_same_vectors(embedding.get_query_embedding(QUERY), query)
    assert_same_vectors(embedding.get_text_embedding(DOCS[0]), documents[0])
    assert_same_vectors(embedding.get_text_embedding_batch(DOCS), documents)
    assert_same_vectors(asyncio.run(embedding.aget_query_embedding(QUERY)), query)
    assert_same_vectors(asyncio.run(embedding.aget_text_embedding(DOCS[0])), documents[0])
    assert_same_vectors(asyncio.run(embedding.aget_text_embedding_batch(DOCS)), documents)


def test_llama_index_builds_its_own_encoder(model_dir: pathlib.Path, encoder: Encoder) -> None:
    pytest.importorskip("llama_index.core")
    from minilm_fast.integrations.llama_index import MiniLMEmbedding

    embedding = MiniLMEmbedding(model=model_dir, threads=1)
    assert embedding.encoder is not encoder
    assert embedding.encoder.threads == 1
    assert embedding.model_name == str(model_dir)
    assert_same_vectors(embedding.get_query_embedding(QUERY), reference(encoder, QUERY))
    # Pickled with its private encoder, as IngestionPipeline(num_workers=...) sends it.
    clone = pickle.loads(pickle.dumps(embedding))
    assert clone.encoder.threads == 1
    assert_same_vectors(clone.get_text_embedding_batch(DOCS), reference(encoder, DOCS))
    # model_name=, as other LlamaIndex embeddings take their model, means model=.
    assert MiniLMEmbedding(model_name=str(model_dir)).model_name == str(model_dir)
    with pytest.raises(TypeError, match="either encoder= or the Encoder arguments"):
        MiniLMEmbedding(model_dir, encoder=encoder)
    with pytest.raises(TypeError, match="model or model_name"):
        MiniLMEmbedding(model_dir, model_name=str(model_dir))


# --- Chroma --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chroma_function(encoder: Encoder) -> MiniLMEmbeddingFunction:
    pytest.importorskip("chromadb")
    from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction

    return MiniLMEmbeddingFunction(encoder=encoder, batch_size=2)


@pytest.fixture(scope="module")
def chroma_client() -> ClientAPI:
    chromadb = pytest.importorskip("chromadb")
    from chromadb.config import Settings

    # In memory, no telemetry; the collections below always carry our embedding function, so
    # Chroma never reaches for its default ONNX model.
    return chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))


def assert_float32_vectors(vectors: object, count: int) -> None:
    assert type(vectors) is list
    assert len(vectors) == count
    for vector in vectors:
        assert isinstance(vector, np.ndarray)
        assert vector.dtype == np.float32
        assert vector.shape == (DIM,)


def test_chroma_vectors_match_the_encoder(
    chroma_function: MiniLMEmbeddingFunction, encoder: Encoder
) -> None:
    documents = chroma_function(DOCS)
    assert_float32_vectors(documents, len(DOCS))
    assert_same_vectors(np.stack(documents), reference(encoder, DOCS))

    queries = chroma_function.embed_query([QUERY])
    assert_float32_vectors(queries, 1)
    assert_same_vectors(np.stack(queries), reference(encoder, [QUERY]))


def test_chroma_implements_the_current_protocol(chroma_function: MiniLMEmbeddingFunction) -> None:
    from chromadb.api.types import EmbeddingFunction, validate_embedding_function
    from chromadb.utils.embedding_functions import known_embedding_functions

    from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction

    assert isinstance(chroma_function, MiniLMEmbeddingFunction)
    assert isinstance(chroma_function, EmbeddingFunction)
    validate_embedding_function(chroma_function)
    assert MiniLMEmbeddingFunction.name() == "minilm_fast"
    assert known_embedding_functions["minilm_fast"] is MiniLMEmbeddingFunction
    assert chroma_function.default_space() == "cosine"
    assert set(chroma_function.supported_spaces()) == {"cosine", "ip", "l2"}
    assert not chroma_function.is_legacy()

    config = chroma_function.get_config()
    assert config["model_name"] == chroma_function.encoder.model_name
    assert config["batch_size"] == 2
    assert config["max_seq_length"] == chroma_function.encoder.max_seq_length
    assert "threads" not in config
    rebuilt = MiniLMEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config
    np.testing.assert_allclose(np.stack(rebuilt(DOCS)), np.stack(chroma_function(DOCS)), atol=1e-6)
    with pytest.raises(ValueError, match="model_name"):
        MiniLMEmbeddingFunction.build_from_config({"batch_size": 2})
    with pytest.raises(ValueError, match="unknown keys"):
        MiniLMEmbeddingFunction.build_from_config({**config, "pooling": "cls"})


def test_chroma_queries_and_documents_get_their_prompts(prompted_encoder: Encoder) -> None:
    pytest.importorskip("chromadb")
    from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction

    function = MiniLMEmbeddingFunction(encoder=prompted_encoder)
    query = prompted(prompted_encoder, "query", [QUERY])
    documents = prompted(prompted_encoder, "document", DOCS)
    assert_same_vectors(np.stack(function.embed_query([QUERY])), query)
    assert_same_vectors(np.stack(function(DOCS)), documents)
    # The prompts travel in the stored configuration, so a rebuilt function embeds alike.
    rebuilt = MiniLMEmbeddingFunction.build_from_config(function.get_config())
    assert rebuilt.encoder.prompts == prompted_encoder.prompts
    assert_same_vectors(np.stack(rebuilt.embed_query([QUERY])), query)
    assert_same_vectors(np.stack(rebuilt(DOCS)), documents)


def test_chroma_collection_query_finds_the_obvious_document(
    chroma_function: MiniLMEmbeddingFunction, chroma_client: ClientAPI
) -> None:
    name = f"docs-{uuid.uuid4().hex}"
    collection = chroma_client.create_collection(name, embedding_function=chroma_function)
    ids = [f"doc{i}" for i in range(len(DOCS))]
    collection.add(ids=ids, documents=DOCS)

    found = collection.query(query_texts=[QUERY], n_results=1)
    assert found["ids"] == [["doc0"]]
    assert found["documents"] == [[ANSWER]]

    # Chroma stored our function by name (not as a "legacy" one) with cosine space ...
    stored = collection.configuration_json
    assert stored["embedding_function"]["name"] == "minilm_fast"
    assert stored["embedding_function"]["config"] == chroma_function.get_config()
    assert stored["hnsw"]["space"] == "cosine"

    # ... so the collection reopened without an embedding function rebuilds ours from it.
    reopened = chroma_client.get_collection(name)
    assert reopened.query(query_texts=[QUERY], n_results=1)["ids"] == [["doc0"]]
    chroma_client.delete_collection(name)


def test_chroma_builds_its_own_encoder(model_dir: pathlib.Path, encoder: Encoder) -> None:
    pytest.importorskip("chromadb")
    from minilm_fast.integrations.chroma import MiniLMEmbeddingFunction

    function = MiniLMEmbeddingFunction(str(model_dir), threads=1, max_seq_length=128)
    assert function.encoder is not encoder
    assert function.encoder.threads == 1
    assert function.get_config()["max_seq_length"] == 128
    assert_same_vectors(np.stack(function(DOCS)), reference(encoder, DOCS))
    clone = pickle.loads(pickle.dumps(function))
    assert clone.get_config() == function.get_config()
    with pytest.raises(TypeError, match=r"got encoder= and max_seq_length, threads"):
        MiniLMEmbeddingFunction(encoder=encoder, threads=1, max_seq_length=128)
