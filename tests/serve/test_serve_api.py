"""The API rules as plain data (no server): request parsing, base64, served names, limits."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from minilm_fast.server import ServerLimits, served_model_names
from minilm_fast.server.openai_api import (
    ApiError,
    EmbeddingRequest,
    embedding_response,
    encode_base64,
    error_body,
    parse_embedding_request,
)

NAMES = ("all-MiniLM-L6-v2", "mini")


def parse(body: object) -> EmbeddingRequest:
    return parse_embedding_request(
        json.dumps(body).encode(), served_names=NAMES, dim=384, max_input_texts=3
    )


def test_a_full_request() -> None:
    request = parse(
        {
            "input": ["a", "", "c"],
            "model": "mini",
            "encoding_format": "base64",
            "dimensions": 384,
            "user": "someone",  # accepted, not used
            "extra_field": True,  # unknown fields are ignored
        }
    )
    assert request == parse_embedding_request(
        b'{"input": ["a", "", "c"], "model": "mini", "encoding_format": "base64", '
        b'"dimensions": 384}',
        served_names=NAMES,
        dim=384,
        max_input_texts=3,
    )
    assert request.texts == ["a", "", "c"]
    assert request.model == "mini"


def test_defaults() -> None:
    request = parse({"input": "one text"})
    assert request.texts == ["one text"]
    assert request.model == NAMES[0]
    assert request.encoding_format == "float"
    assert request.dimensions is None


def test_the_model_is_checked_before_the_input() -> None:
    with pytest.raises(ApiError) as caught:
        parse({"model": "gpt", "input": []})
    assert caught.value.status == 404 and caught.value.code == "model_not_found"


def test_limit_is_inclusive() -> None:
    assert len(parse({"input": ["a"] * 3}).texts) == 3
    with pytest.raises(ApiError, match="holds 4 texts"):
        parse({"input": ["a"] * 4})


def test_error_body_shape() -> None:
    error = ApiError(503, "busy", code="queue_full", headers={"Retry-After": "1"})
    assert error_body(error) == {
        "error": {"message": "busy", "type": "server_error", "param": None, "code": "queue_full"}
    }


def test_base64_round_trip() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    decoded = np.frombuffer(base64.b64decode(encode_base64(vector)), dtype="<f4")
    np.testing.assert_array_equal(decoded, vector)
    # a big-endian or float64 input is written as little-endian float32 all the same
    np.testing.assert_array_equal(
        np.frombuffer(base64.b64decode(encode_base64(vector.astype(">f8"))), dtype="<f4"), vector
    )


def test_float_response_reads_back_exactly() -> None:
    vectors = np.random.default_rng(1).standard_normal((3, 384)).astype(np.float32)
    body = json.loads(
        embedding_response(vectors, model="m", encoding_format="float", prompt_tokens=9)
    )
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert {item["object"] for item in body["data"]} == {"embedding"}
    back = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(back, vectors)
    assert body["object"] == "list" and body["model"] == "m"
    assert body["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_served_model_names() -> None:
    assert served_model_names("sentence-transformers/all-MiniLM-L6-v2") == [
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
    ]
    assert served_model_names("/models/mini/", ["embed", "mini"]) == [
        "embed",
        "mini",
        "/models/mini/",
    ]
    assert served_model_names("all-MiniLM-L6-v2") == ["all-MiniLM-L6-v2"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"max_input_texts": 0}, "max_input_texts must be a whole number >= 1"),
        ({"max_body_bytes": 1.5}, "max_body_bytes must be a whole number >= 1"),
        ({"max_input_texts": 10, "max_queue_texts": 5}, "must be at least max_input_texts"),
        ({"shutdown_timeout": -1.0}, "shutdown_timeout must be >= 0"),
    ],
)
def test_bad_limits(options: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ServerLimits(**options)  # type: ignore[arg-type]
