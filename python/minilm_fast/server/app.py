"""The Starlette app: routes, the request body under its bound, errors in OpenAI's shape, the
request metrics, and a lifespan that hooks the Encoder's batch reports and drains at shutdown.

Routes: ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{model}``, ``GET /health``,
``GET /metrics``. Any other path or method is answered in OpenAI's error shape too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import CONTENT_TYPE
from .openai_api import (
    ApiError,
    error_body,
    model_object,
    models_response,
    parse_embedding_request,
)
from .service import EmbeddingService, ServerLimits

if TYPE_CHECKING:
    from .. import Encoder

__all__ = ["CLIENT_CLOSED", "create_app", "service_of"]

T = TypeVar("T")

#: The status a request is counted with when its client went away before the answer (nginx's).
CLIENT_CLOSED = 499

_ROUTES = ("/v1/embeddings", "/v1/models", "/health", "/metrics")

logger = logging.getLogger("minilm_fast.server")


def create_app(
    encoder: Encoder,
    *,
    served_names: Sequence[str] | None = None,
    limits: ServerLimits | None = None,
) -> Starlette:
    """An ASGI app serving ``encoder`` with OpenAI's embeddings API.

    Args:
        encoder: the Encoder every request goes through; a coalescing one batches concurrent
            requests together. The app sets its ``on_batch`` hook while it runs (and restores
            the former one at shutdown).
        served_names: the model names clients may ask for (``model``); the first one is
            what ``/health`` and ``/v1/models`` show first. Default: the name the Encoder was
            loaded with and its last path component.
        limits: request and queue bounds (``ServerLimits()``: 2,048 texts per request, 8 MiB
            bodies, 8,192 texts queued).

    Run it with any ASGI server with lifespan support, e.g. ``uvicorn.run(app)``; the
    lifespan matters: it hooks the metrics and, at shutdown, waits for requests in flight.

    >>> from starlette.testclient import TestClient
    >>> with TestClient(create_app(encoder)) as client:
    ...     reply = client.post("/v1/embeddings", json={"input": "Hello"})
    >>> reply.status_code, len(reply.json()["data"][0]["embedding"])
    (200, 384)
    """
    service = EmbeddingService(encoder, served_names=served_names, limits=limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.open()
        try:
            yield
        finally:
            if not await service.close(service.limits.shutdown_timeout):
                logger.warning("shutting down with requests still in flight")

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        service.refuse_if_draining()
        body = await _read_body(request, service.limits.max_body_bytes)
        parsed = parse_embedding_request(
            body,
            served_names=service.served_names,
            dim=service.dim,
            max_input_texts=service.limits.max_input_texts,
        )
        answer = await _unless_disconnected(request.receive, service.embed(parsed, started=started))
        if answer is None:
            return Response(status_code=CLIENT_CLOSED)
        return Response(answer, media_type="application/json")

    async def models(request: Request) -> Response:
        return JSONResponse(models_response(service.served_names, service.created))

    async def model(request: Request) -> Response:
        name = request.path_params["model"]
        if name not in service.served_names:
            raise ApiError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        return JSONResponse(model_object(name, service.created))

    async def health(request: Request) -> Response:
        content = {
            "status": "draining" if service.draining else "ok",
            "model": service.model,
            "dim": service.dim,
            "compute": encoder.compute,
        }
        return JSONResponse(content, status_code=503 if service.draining else 200)

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    app = Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(_CountRequests, service=service)
    return app


def service_of(app: Starlette) -> EmbeddingService:
    """The :class:`EmbeddingService` behind an app :func:`create_app` made."""
    service = getattr(app.state, "service", None)
    if not isinstance(service, EmbeddingService):
        raise TypeError("not an app made by minilm_fast.server.create_app")
    return service


# --------------------------------------------------------------------------------------------
# The request body, the client's disconnect


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"bad Content-Length header {declared!r}") from None
        if size > limit:
            raise _too_large(limit, size)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, size: int | None) -> ApiError:
    got = f"{size} bytes" if size is not None else "more"
    return ApiError(
        413,
        f"the request body is too large: this server takes at most {limit} bytes, got {got}",
        code="request_too_large",
        headers={"Connection": "close"},
    )


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None (``work`` cancelled) if the client goes away first.

    Once the body is read, the ASGI server's ``receive`` only returns ``http.disconnect``;
    cancelling the encode call drops its texts from the Encoder's queue.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        watch.cancel()
    if task.cancelled():
        return None
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# --------------------------------------------------------------------------------------------
# Errors in OpenAI's shape


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (404 unknown path, 405 wrong method) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    error = ApiError(exc.status_code, message)
    return JSONResponse(error_body(error), status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    error = ApiError(500, f"internal error: {type(exc).__name__}: {exc}")
    return JSONResponse(error_body(error), status_code=500)


# --------------------------------------------------------------------------------------------
# Request metrics


class _CountRequests:
    """ASGI middleware: counts every HTTP response by route and status code."""

    def __init__(self, app: ASGIApp, service: EmbeddingService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = _route_label(str(scope.get("path", "")))
            self.service.metrics.requests.inc(labels=(route, str(status[0])))


def _route_label(path: str) -> str:
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"
