"""The OpenAI embeddings API on the wire: a request body checked into an :class:`EmbeddingRequest`
(or an :class:`ApiError` in OpenAI's error shape), and the response bodies built from vectors.

Everything here is plain data in, bytes or dicts out: no Starlette, no Encoder, so the rules of
the API can be read (and tested) in one place.

>>> request = parse_embedding_request(
...     b'{"input": ["a", "b"], "model": "all-MiniLM-L6-v2", "dimensions": 64}',
...     served_names=("all-MiniLM-L6-v2",), dim=384, max_input_texts=2048,
... )
>>> request.texts, request.model, request.dimensions, request.encoding_format
(['a', 'b'], 'all-MiniLM-L6-v2', 64, 'float')
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "ENCODING_FORMATS",
    "ApiError",
    "EmbeddingRequest",
    "EncodingFormat",
    "embedding_response",
    "encode_base64",
    "error_body",
    "model_object",
    "models_response",
    "parse_embedding_request",
]

EncodingFormat = Literal["float", "base64"]
ENCODING_FORMATS: tuple[EncodingFormat, ...] = ("float", "base64")

#: The hint every token-id input gets: what LangChain sends unless told otherwise.
_TOKEN_IDS_HINT = (
    "'input' holds token ids; ids of another tokenizer (tiktoken's, for OpenAI models) cannot "
    "be embedded by this model: send the texts as strings (LangChain: "
    "OpenAIEmbeddings(..., check_embedding_ctx_length=False))"
)


class ApiError(Exception):
    """A request the server answers with an OpenAI-shaped error body and ``status``.

    >>> error = ApiError(404, "the model 'gpt' does not exist", param="model",
    ...                  code="model_not_found")
    >>> error_body(error)["error"]["code"]
    'model_not_found'
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        """OpenAI's error type: ``invalid_request_error`` for 4xx, ``server_error`` for 5xx."""
        return "server_error" if self.status >= 500 else "invalid_request_error"


def error_body(error: ApiError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers errors."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


@dataclasses.dataclass(frozen=True)
class EmbeddingRequest:
    """A checked ``POST /v1/embeddings`` body."""

    #: the texts, in order (a single string input becomes a list of one)
    texts: list[str]
    #: the model name as the client gave it (one of the served names), echoed in the response
    model: str
    encoding_format: EncodingFormat
    #: OpenAI's ``dimensions``: keep this many leading dimensions, renormalised; None keeps all
    dimensions: int | None


def parse_embedding_request(
    body: bytes,
    *,
    served_names: Sequence[str],
    dim: int,
    max_input_texts: int,
) -> EmbeddingRequest:
    """Check a request body against the API and this server's limits.

    Raises :class:`ApiError`: 400 for a body that is not a JSON object, bad ``input`` (missing,
    empty, not strings, token ids, more than ``max_input_texts`` texts), bad ``encoding_format``
    or ``dimensions`` (not a whole number from 1 to ``dim``); 404 for a ``model`` that is not
    one of ``served_names``. A missing ``model`` means the served one; fields the API has and
    this server does not need (``user``) and unknown fields are ignored.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_json_type(payload)}")
    model = _check_model(payload.get("model"), served_names)
    texts = _check_input(payload.get("input"), max_input_texts)
    encoding_format = _check_encoding_format(payload.get("encoding_format"))
    dimensions = _check_dimensions(payload.get("dimensions"), dim)
    return EmbeddingRequest(texts, model, encoding_format, dimensions)


def _check_model(model: object, served_names: Sequence[str]) -> str:
    if model is None:
        return served_names[0]
    if not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, got {_json_type(model)}", param="model")
    if model not in served_names:
        served = ", ".join(repr(name) for name in served_names)
        raise ApiError(
            404,
            f"the model {model!r} does not exist on this server; it serves {served}",
            param="model",
            code="model_not_found",
        )
    return model


def _check_input(value: object, max_input_texts: int) -> list[str]:
    if value is None:
        raise ApiError(400, "'input' is missing: give a string or a list of strings", param="input")
    if isinstance(value, str):
        if not value:
            raise ApiError(400, "'input' is an empty string", param="input", code="empty_input")
        _check_unicode(value, "input")
        return [value]
    if not isinstance(value, list):
        raise ApiError(
            400,
            f"'input' must be a string or a list of strings, got {_json_type(value)}",
            param="input",
        )
    if not value:
        raise ApiError(400, "'input' is an empty list", param="input", code="empty_input")
    if len(value) > max_input_texts:
        raise ApiError(
            400,
            f"'input' holds {len(value)} texts; this server takes at most {max_input_texts} "
            "per request",
            param="input",
            code="too_many_inputs",
        )
    for index, item in enumerate(value):
        if isinstance(item, str):
            _check_unicode(item, f"input[{index}]")
            continue
        if _is_token_ids(value):
            raise ApiError(400, _TOKEN_IDS_HINT, param="input", code="token_ids_input")
        raise ApiError(
            400,
            f"'input[{index}]' must be a string, got {_json_type(item)}",
            param="input",
        )
    return value


def _check_unicode(text: str, where: str) -> None:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which no tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400,
            f"'{where}' is not valid Unicode: it holds the lone surrogate "
            f"{text[exc.start]!r} at position {exc.start}",
            param="input",
        ) from None


def _is_token_ids(value: list[Any]) -> bool:
    """One list of ints, or a list of lists of ints: what the API takes as token ids."""

    def is_ids(items: object) -> bool:
        return isinstance(items, list) and all(_is_int(item) for item in items)

    return is_ids(value) or all(is_ids(item) and item for item in value)


def _check_encoding_format(value: object) -> EncodingFormat:
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    raise ApiError(
        400,
        f"'encoding_format' must be 'float' or 'base64', got {json.dumps(value)}",
        param="encoding_format",
    )


def _check_dimensions(value: object, dim: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= dim:
        raise ApiError(
            400,
            f"'dimensions' must be a whole number from 1 to {dim} (this model's dimension), "
            f"got {json.dumps(value)}",
            param="dimensions",
        )
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --------------------------------------------------------------------------------------------
# Responses


def encode_base64(vector: npt.NDArray[np.float32]) -> str:
    """A vector as OpenAI's ``encoding_format="base64"``: little-endian float32 bytes, base64.

    >>> encode_base64(np.array([1.0, -2.0], dtype=np.float32))
    'AACAPwAAAMA='
    """
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embedding_response(
    vectors: npt.NDArray[np.float32],
    *,
    model: str,
    encoding_format: EncodingFormat,
    prompt_tokens: int,
) -> bytes:
    """The JSON body of a successful ``POST /v1/embeddings``: one ``embedding`` object per row.

    >>> body = embedding_response(np.ones((1, 2), np.float32), model="m",
    ...                           encoding_format="float", prompt_tokens=3)
    >>> json.loads(body)["data"][0]["embedding"], json.loads(body)["usage"]
    ([1.0, 1.0], {'prompt_tokens': 3, 'total_tokens': 3})
    """
    rows: list[Any]
    if encoding_format == "base64":
        rows = [encode_base64(row) for row in vectors]
    else:
        # float32 values written as the float64 reprs of themselves: they read back exactly.
        rows = vectors.tolist()
    content = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": row}
            for index, row in enumerate(rows)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return json.dumps(content, separators=(",", ":")).encode("utf-8")


def model_object(name: str, created: int) -> dict[str, Any]:
    """One entry of ``GET /v1/models``, as OpenAI writes them."""
    return {"id": name, "object": "model", "created": created, "owned_by": "minilm-fast"}


def models_response(names: Sequence[str], created: int) -> dict[str, Any]:
    """The body of ``GET /v1/models``: every name the server answers to."""
    return {"object": "list", "data": [model_object(name, created) for name in names]}
