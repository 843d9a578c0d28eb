"""Real clients against a real server: the official ``openai`` package and LangChain's
``OpenAIEmbeddings``, pointed at uvicorn on a loopback port; every vector must equal what
``Encoder.encode`` gives for the same texts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
from langchain_openai import OpenAIEmbeddings
from serve_support import ALIAS, MODEL

from minilm_fast import Encoder

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "",  # sentence-transformers embeds the empty text; so does the server, inside a list
    "  Ein Mann isst Nudeln. \u00e9\u4e2d\u6587 \U0001f35d",
    "The new movie is awesome. " * 60,  # longer than 256 word pieces: truncated
]
ATOL = 1e-6


def rows(data: list[Any]) -> npt.NDArray[np.float32]:
    """The vectors of a reply; an explicit ``encoding_format="base64"`` leaves them encoded
    (the client decodes only the base64 it asked for on its own)."""
    return np.array(
        [
            np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
            if isinstance(item.embedding, str)
            else item.embedding
            for item in data
        ],
        dtype=np.float32,
    )


@pytest.fixture
def api(base_url: str) -> Iterator[openai.OpenAI]:
    """The official client on the test server (closed afterwards: no socket left to the GC)."""
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    """For LangChain, which would otherwise open clients of its own that nobody closes."""
    with httpx.Client() as client:
        yield client


def test_openai_client_default_base64(api: openai.OpenAI, encoder: Encoder) -> None:
    reply = api.embeddings.create(model=MODEL, input=TEXTS)
    vectors = rows(reply.data)
    assert [item.index for item in reply.data] == list(range(len(TEXTS)))
    np.testing.assert_allclose(vectors, encoder.encode(TEXTS), atol=ATOL)
    assert reply.model == MODEL
    tokens = sum(encoder.count_tokens(TEXTS))
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens


def test_openai_client_float_and_a_single_string(api: openai.OpenAI, encoder: Encoder) -> None:
    reply = api.embeddings.create(model=ALIAS, input=TEXTS[0], encoding_format="float")
    assert len(reply.data) == 1 and reply.model == ALIAS
    np.testing.assert_allclose(reply.data[0].embedding, encoder.encode(TEXTS[0]), atol=ATOL)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
@pytest.mark.parametrize("dimensions", [1, 64, 384])
def test_openai_client_dimensions(
    api: openai.OpenAI, encoder: Encoder, dimensions: int, encoding_format: str
) -> None:
    reply = api.embeddings.create(
        model=MODEL,
        input=TEXTS,
        dimensions=dimensions,
        encoding_format=encoding_format,  # type: ignore[arg-type]
    )
    vectors = rows(reply.data)
    assert vectors.shape == (len(TEXTS), dimensions)
    expected = encoder.encode(TEXTS, truncate_dim=dimensions, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, expected, atol=ATOL)
    # shortened vectors stay unit length, as OpenAI's do
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_base64_is_little_endian_float32(base_url: str, encoder: Encoder) -> None:
    """The raw wire format, without the client's decoding."""
    body = {"model": MODEL, "input": ["bytes on the wire"], "encoding_format": "base64"}
    reply = httpx.post(f"{base_url}/v1/embeddings", json=body, timeout=30)
    assert reply.status_code == 200
    encoded = reply.json()["data"][0]["embedding"]
    vector = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    np.testing.assert_allclose(vector, encoder.encode("bytes on the wire"), atol=ATOL)


def test_models_list_and_retrieve(api: openai.OpenAI) -> None:
    names = [model.id for model in api.models.list()]
    assert names[:2] == [MODEL, ALIAS]
    assert api.models.retrieve(ALIAS).id == ALIAS
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("text-embedding-3-small")


def test_openai_client_sees_the_error_shape(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        api.embeddings.create(model="text-embedding-3-small", input=["x"])
    error = caught.value
    assert error.code == "model_not_found" and error.param == "model"
    assert "text-embedding-3-small" in error.message and MODEL in error.message
    with pytest.raises(openai.BadRequestError) as bad:
        api.embeddings.create(model=MODEL, input=[])
    assert bad.value.param == "input"


def test_langchain_openai_embeddings(
    base_url: str, http_client: httpx.Client, encoder: Encoder
) -> None:
    embeddings = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{base_url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        max_retries=0,
        http_client=http_client,
    )
    documents = embeddings.embed_documents(TEXTS)
    np.testing.assert_allclose(np.array(documents), encoder.encode(TEXTS), atol=ATOL)
    query = embeddings.embed_query("Who is eating?")
    np.testing.assert_allclose(query, encoder.encode("Who is eating?"), atol=ATOL)


def test_langchain_openai_embeddings_dimensions(
    base_url: str, http_client: httpx.Client, encoder: Encoder
) -> None:
    embeddings = OpenAIEmbeddings(
        model=ALIAS,
        base_url=f"{base_url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        dimensions=128,
        max_retries=0,
        http_client=http_client,
    )
    documents = np.array(embeddings.embed_documents(TEXTS[:2]))
    expected = encoder.encode(TEXTS[:2], truncate_dim=128, normalize_embeddings=True)
    np.testing.assert_allclose(documents, expected, atol=ATOL)


def test_concurrent_requests_get_their_own_rows(base_url: str, encoder: Encoder) -> None:
    """32 requests at once, distinct texts, mixed dimensions and formats: each answer holds
    the rows of its own texts (coalesced batches must not mix them up)."""
    requests = []
    for index in range(32):
        count = 1 + index % 4
        filler = "words " * (index % 7 * 5)
        texts = [f"request {index} text {row}: {filler}" for row in range(count)]
        dimensions = (None, 32, 128, 384)[index % 4]
        encoding_format = ("float", "base64")[index % 2]
        requests.append((texts, dimensions, encoding_format))

    async def run_all() -> list[npt.NDArray[np.float32]]:
        api = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        async with api:

            async def one(
                texts: list[str], dimensions: int | None, fmt: str
            ) -> npt.NDArray[np.float32]:
                extra = {} if dimensions is None else {"dimensions": dimensions}
                reply = await api.embeddings.create(
                    model=MODEL,
                    input=texts,
                    encoding_format=fmt,  # type: ignore[arg-type]
                    **extra,  # type: ignore[arg-type]
                )
                return rows(reply.data)

            return await asyncio.wait_for(
                asyncio.gather(*(one(*request) for request in requests)), timeout=60
            )

    answers = asyncio.run(run_all())
    for (texts, dimensions, _), answer in zip(requests, answers):
        if dimensions is None:
            expected = encoder.encode(texts)
        else:
            expected = encoder.encode(texts, truncate_dim=dimensions, normalize_embeddings=True)
        np.testing.assert_allclose(answer, expected, atol=ATOL)
