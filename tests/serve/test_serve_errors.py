"""Every refusal the server makes, over HTTP, in OpenAI's error shape: bad input (400), unknown
model (404), oversized body (413), a full queue and a shutdown in progress (503), a client that
goes away (its texts leave the queue)."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from serve_support import ALIAS, MODEL, GatedEncoder, running

from minilm_fast import Encoder
from minilm_fast.server import ServerLimits, create_app, service_of


def post(url: str, body: Any, **options: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    options.setdefault("timeout", 30)
    return httpx.post(f"{url}/v1/embeddings", content=content, headers=headers, **options)


def assert_error(
    reply: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> str:
    """The reply is OpenAI's error shape with this status, param and code; returns the message."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    expected_type = "server_error" if status >= 500 else "invalid_request_error"
    assert error["type"] == expected_type
    assert error["param"] == param
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": MODEL}, "missing"),
        ({"model": MODEL, "input": None}, "missing"),
        ({"model": MODEL, "input": []}, "empty list"),
        ({"model": MODEL, "input": ""}, "empty string"),
    ],
    ids=["missing", "null", "empty-list", "empty-string"],
)
def test_empty_input(base_url: str, body: dict[str, Any], words: str) -> None:
    code = None if words == "missing" else "empty_input"
    assert words in assert_error(post(base_url, body), 400, param="input", code=code)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (["a", 3], "'input[1]' must be a string, got a number"),
        (["a", None], "'input[1]' must be a string, got null"),
        ([{"text": "a"}], "'input[0]' must be a string, got an object"),
        ([["a"]], "'input[0]' must be a string, got a list"),
        ([True], "'input[0]' must be a string, got a boolean"),
        (5, "must be a string or a list of strings, got a number"),
        ({"a": 1}, "must be a string or a list of strings, got an object"),
    ],
)
def test_non_strings(base_url: str, value: Any, words: str) -> None:
    message = assert_error(post(base_url, {"model": MODEL, "input": value}), 400, param="input")
    assert words in message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"input": "a\\ud800b"}', "'input' is not valid Unicode"),
        (b'{"input": ["ok", "a\\udc00"]}', "'input[1]' is not valid Unicode"),
    ],
)
def test_lone_surrogates(base_url: str, body: bytes, words: str) -> None:
    """JSON escapes can spell half a character; the tokenizer cannot take it."""
    message = assert_error(post(base_url, body), 400, param="input")
    assert words in message and "lone surrogate" in message


@pytest.mark.parametrize("value", [[101, 2023, 102], [[101, 2023], [102]]], ids=["ids", "lists"])
def test_token_ids_are_refused_with_a_hint(base_url: str, value: Any) -> None:
    """What LangChain's OpenAIEmbeddings sends by default (tiktoken ids)."""
    reply = post(base_url, {"model": MODEL, "input": value})
    message = assert_error(reply, 400, param="input", code="token_ids_input")
    assert "send the texts as strings" in message
    assert "check_embedding_ctx_length=False" in message


def test_too_many_texts(base_url: str) -> None:
    reply = post(base_url, {"model": MODEL, "input": ["a"] * 2049})
    message = assert_error(reply, 400, param="input", code="too_many_inputs")
    assert "2049" in message and "2048" in message


def test_unknown_or_bad_model(base_url: str) -> None:
    reply = post(base_url, {"model": "text-embedding-3-small", "input": "x"})
    message = assert_error(reply, 404, param="model", code="model_not_found")
    assert "text-embedding-3-small" in message and MODEL in message and ALIAS in message
    assert_error(post(base_url, {"model": 3, "input": "x"}), 400, param="model")


def test_missing_model_means_the_served_one(base_url: str, encoder: Encoder) -> None:
    reply = post(base_url, {"input": ["no model given"]})
    assert reply.status_code == 200 and reply.json()["model"] == MODEL
    vector = reply.json()["data"][0]["embedding"]
    np.testing.assert_allclose(vector, encoder.encode("no model given"), atol=1e-6)


@pytest.mark.parametrize("value", [0, 385, -1, 12.5, "64", True])
def test_bad_dimensions(base_url: str, value: Any) -> None:
    reply = post(base_url, {"model": MODEL, "input": "x", "dimensions": value})
    assert "from 1 to 384" in assert_error(reply, 400, param="dimensions")


@pytest.mark.parametrize("value", ["hex", "FLOAT", 1])
def test_bad_encoding_format(base_url: str, value: Any) -> None:
    reply = post(base_url, {"model": MODEL, "input": "x", "encoding_format": value})
    assert_error(reply, 400, param="encoding_format")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'["a list"]', "must be a JSON object, got a list"),
    ],
)
def test_bad_json(base_url: str, body: bytes, words: str) -> None:
    assert words in assert_error(post(base_url, body), 400)


def test_unknown_route_and_method(base_url: str) -> None:
    reply = httpx.get(f"{base_url}/v1/embeddings", timeout=30)
    assert "GET is not allowed" in assert_error(reply, 405)
    assert reply.headers["allow"] == "POST"
    reply = httpx.post(f"{base_url}/v1/chat/completions", json={}, timeout=30)
    assert "no such endpoint" in assert_error(reply, 404)


def test_oversized_body(start_server: Any) -> None:
    with start_server(limits=ServerLimits(max_body_bytes=1024)) as url:
        small = post(url, {"model": MODEL, "input": ["x" * 900]})
        assert small.status_code == 200
        big = {"model": MODEL, "input": ["x" * 2000]}
        message = assert_error(post(url, big), 413, code="request_too_large")
        assert "at most 1024 bytes" in message

        def chunks() -> Any:  # no Content-Length: the server counts as it reads
            data = json.dumps(big).encode()
            for start in range(0, len(data), 256):
                yield data[start : start + 256]

        reply = httpx.post(f"{url}/v1/embeddings", content=chunks(), timeout=30)
        assert_error(reply, 413, code="request_too_large")


def test_queue_full_is_503_with_retry_after(gated: GatedEncoder) -> None:
    limits = ServerLimits(max_input_texts=4, max_queue_texts=6)
    app = create_app(gated, served_names=[MODEL], limits=limits)  # type: ignore[arg-type]
    with running(app) as url, concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, url, {"input": ["one", "two", "three", "four"]})
        gated.wait_entered()  # four texts are in flight, the queue holds six
        second = pool.submit(post, url, {"input": ["five", "six"]})
        gated.wait_entered()  # six now
        reply = post(url, {"input": ["seven"]})
        message = assert_error(reply, 503, code="queue_full")
        assert "6 texts are queued" in message
        assert reply.headers["retry-after"] == "1"
        # a request refused before admission is refused as usual
        assert_error(post(url, {"input": []}), 400, param="input", code="empty_input")
        gated.gate.set()
        assert first.result(timeout=30).status_code == 200
        assert second.result(timeout=30).status_code == 200
        assert post(url, {"input": ["seven"]}).status_code == 200
        assert service_of(app).queued_texts == 0


def test_draining_refuses_new_requests_and_answers_those_in_flight(
    gated: GatedEncoder, encoder: Encoder
) -> None:
    app = create_app(gated, served_names=[MODEL])  # type: ignore[arg-type]
    service = service_of(app)
    with running(app) as url, concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
        in_flight = pool.submit(post, url, {"input": ["in flight"]})
        gated.wait_entered()
        service.begin_draining()  # what SIGTERM does first
        assert_error(post(url, {"input": ["late"]}), 503, code="shutting_down")
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 503 and health.json()["status"] == "draining"
        gated.gate.set()
        reply = in_flight.result(timeout=30)
        assert reply.status_code == 200
        vector = reply.json()["data"][0]["embedding"]
        np.testing.assert_allclose(vector, encoder.encode("in flight"), atol=1e-6)


def test_client_going_away_frees_its_place_in_the_queue(gated: GatedEncoder) -> None:
    app = create_app(gated, served_names=[MODEL])  # type: ignore[arg-type]
    service = service_of(app)
    with running(app) as url:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            doomed = pool.submit(post, url, {"input": ["a", "b", "c"]}, timeout=0.5)
            gated.wait_entered()
            assert service.queued_texts == 3
            with pytest.raises(httpx.ReadTimeout):
                doomed.result(timeout=30)  # the client gives up and closes its connection
        deadline = time.monotonic() + 10
        while service.queued_texts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.queued_texts == 0
        assert service.metrics.requests.value(("/v1/embeddings", "499")) == 1
        assert service.metrics.texts.value() == 0
        gated.gate.set()  # the gate's thread outlives the cancelled call; the loop waits for it
