"""What the server does with a checked request, apart from HTTP: admission against the queue
bound, the encode call, usage, metrics, and draining at shutdown.

Everything here runs on the event loop except the Encoder's ``on_batch`` hook, which the engine's
threads call (the metrics lock for themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from .metrics import ServerMetrics
from .openai_api import ApiError, EmbeddingRequest, embedding_response

if TYPE_CHECKING:
    from .. import BatchInfo, Encoder

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_INPUT_TEXTS",
    "DEFAULT_MAX_QUEUE_TEXTS",
    "EmbeddingService",
    "ServerLimits",
    "served_model_names",
]

#: OpenAI's own bound on the texts of one request.
DEFAULT_MAX_INPUT_TEXTS = 2048
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: Texts admitted and not yet answered, across requests: four full requests.
DEFAULT_MAX_QUEUE_TEXTS = 4 * DEFAULT_MAX_INPUT_TEXTS

#: Requests with fewer texts count their word pieces on the event loop; larger ones in a thread.
_INLINE_TEXTS = 64
#: Float responses with more values than this are written to JSON in a thread.
_INLINE_FLOATS = 65_536
#: Seconds a client is told to wait before retrying when the queue is full.
_RETRY_AFTER = "1"


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """The bounds the server holds requests to.

    Args:
        max_input_texts: texts one request may hold (more: 400).
        max_body_bytes: bytes of one request body (more: 413).
        max_queue_texts: texts admitted and not yet answered, across all requests; a request
            that would go past it is refused with 503 and ``Retry-After``. At least
            ``max_input_texts``, so that every valid request fits an idle server.
        shutdown_timeout: seconds a shutdown waits for requests in flight before cancelling
            them; None waits as long as they take.
    """

    max_input_texts: int = DEFAULT_MAX_INPUT_TEXTS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_queue_texts: int = DEFAULT_MAX_QUEUE_TEXTS
    shutdown_timeout: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("max_input_texts", "max_body_bytes", "max_queue_texts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.max_queue_texts < self.max_input_texts:
            raise ValueError(
                f"max_queue_texts ({self.max_queue_texts}) must be at least max_input_texts "
                f"({self.max_input_texts}): a full request could never be admitted"
            )
        if self.shutdown_timeout is not None and not self.shutdown_timeout >= 0:
            raise ValueError(f"shutdown_timeout must be >= 0, got {self.shutdown_timeout!r}")


def served_model_names(model: str, extra: Sequence[str] = ()) -> list[str]:
    """The names the server answers to: ``extra`` (``--served-model-name``) first, then the
    model as given and its last path component; the first one is the main name.

    >>> served_model_names("sentence-transformers/all-MiniLM-L6-v2")
    ['sentence-transformers/all-MiniLM-L6-v2', 'all-MiniLM-L6-v2']
    >>> served_model_names("./models/mini/", ["mini-embed"])
    ['mini-embed', './models/mini/', 'mini']
    """
    names = [*extra, model, pathlib.PurePath(model).name]
    return [name for index, name in enumerate(names) if name and name not in names[:index]]


class EmbeddingService:
    """The Encoder behind the API: admits requests, embeds them, keeps the metrics.

    Args:
        encoder: the (coalescing) Encoder every request goes through.
        served_names: the model names clients may ask for; the first is the main one.
        limits: the request and queue bounds.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        served_names: Sequence[str] | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.encoder = encoder
        self.served_names = list(served_names or served_model_names(encoder.model_name))
        if not self.served_names:
            raise ValueError("served_names is empty: the server must answer to some model name")
        self.limits = limits or ServerLimits()
        self.metrics = ServerMetrics()
        self.dim = encoder.get_sentence_embedding_dimension()
        #: ``dimensions`` renormalises the cut vectors when the model's own are unit length.
        self.normalizes = bool(encoder.native.normalize)
        self.created = int(time.time())
        self._queued_texts = 0
        self._in_flight = 0
        self._draining = False
        self._hook: Callable[[BatchInfo], None] | None = None
        self._previous_hook: Callable[[BatchInfo], None] | None = None

    @property
    def model(self) -> str:
        """The main served name."""
        return self.served_names[0]

    @property
    def draining(self) -> bool:
        """True once shutdown began: new requests get 503."""
        return self._draining

    @property
    def queued_texts(self) -> int:
        """Texts admitted and not yet answered."""
        return self._queued_texts

    def begin_draining(self) -> None:
        """Refuse new requests from now on (503); those admitted run to the end."""
        self._draining = True

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is in flight (or ``timeout`` seconds); True if none is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        return not self._in_flight

    # ----------------------------------------------------------------------------------------
    # The Encoder's batch hook

    def open(self) -> None:
        """Take requests (again, after a :meth:`close`), and route the Encoder's ``on_batch``
        reports to the metrics (the hook it had is still called)."""
        self._draining = False
        if self._hook is not None:
            return
        self._previous_hook = self.encoder.on_batch
        self._hook = self._on_batch
        self.encoder.on_batch = self._hook

    async def close(self, timeout: float | None = None) -> bool:
        """Refuse new requests, wait for those in flight (``timeout`` seconds at most), give the
        Encoder its former ``on_batch`` back; True if no request was left in flight."""
        self.begin_draining()
        idle = await self.wait_idle(timeout)
        if self._hook is not None:
            if self.encoder.on_batch == self._hook:
                self.encoder.on_batch = self._previous_hook
            self._hook = self._previous_hook = None
        return idle

    def _on_batch(self, info: BatchInfo) -> None:
        metrics = self.metrics
        metrics.batch_texts.observe(info.texts)
        metrics.batch_calls.observe(info.calls)
        metrics.batch_tokens.observe(info.tokens)
        metrics.batch_seconds.observe(info.seconds)
        for wait in info.waits:
            metrics.queue_wait.observe(wait)
        if self._previous_hook is not None:
            self._previous_hook(info)

    # ----------------------------------------------------------------------------------------
    # Requests

    def refuse_if_draining(self) -> None:
        """503 while shutting down."""
        if self._draining:
            raise ApiError(
                503,
                "the server is shutting down and takes no new requests",
                code="shutting_down",
                headers={"Connection": "close"},
            )

    @contextlib.contextmanager
    def admit(self, texts: int) -> Iterator[None]:
        """Hold ``texts`` places in the queue for the block; 503 if they do not fit."""
        self.refuse_if_draining()
        limit = self.limits.max_queue_texts
        if self._queued_texts + texts > limit:
            raise ApiError(
                503,
                f"the server is busy: {self._queued_texts} texts are queued and it takes at "
                f"most {limit}; retry shortly",
                code="queue_full",
                headers={"Retry-After": _RETRY_AFTER},
            )
        self._queued_texts += texts
        self._in_flight += 1
        self.metrics.queue_texts.set(self._queued_texts)
        self.metrics.requests_in_flight.set(self._in_flight)
        try:
            yield
        finally:
            self._queued_texts -= texts
            self._in_flight -= 1
            self.metrics.queue_texts.set(self._queued_texts)
            self.metrics.requests_in_flight.set(self._in_flight)

    async def embed(self, request: EmbeddingRequest, *, started: float) -> bytes:
        """The response body for ``request``, which arrived at ``time.perf_counter()``
        ``started``; raises :class:`ApiError` (503) when it cannot be admitted."""
        texts = request.texts
        with self.admit(len(texts)):
            if len(texts) <= _INLINE_TEXTS:
                tokens = self.encoder.count_tokens(texts)
            else:
                tokens = await asyncio.to_thread(self.encoder.count_tokens, texts)
            vectors = await self.encoder.aencode(texts, **self.encode_options(request))
            prompt_tokens = int(sum(tokens))
            if request.encoding_format == "float" and vectors.size > _INLINE_FLOATS:
                body = await asyncio.to_thread(self._response, request, vectors, prompt_tokens)
            else:
                body = self._response(request, vectors, prompt_tokens)
        metrics = self.metrics
        metrics.texts.inc(len(texts))
        metrics.tokens.inc(prompt_tokens)
        metrics.request_texts.observe(len(texts))
        metrics.request_seconds.observe(time.perf_counter() - started)
        return body

    def encode_options(self, request: EmbeddingRequest) -> dict[str, Any]:
        """The ``Encoder.aencode`` options a request asks for: ``dimensions`` is
        ``truncate_dim``, renormalised when the model's vectors are unit length (as OpenAI's
        shortened vectors are)."""
        if request.dimensions is None:
            return {}
        options: dict[str, Any] = {"truncate_dim": request.dimensions}
        if self.normalizes:
            options["normalize_embeddings"] = True
        return options

    @staticmethod
    def _response(
        request: EmbeddingRequest, vectors: npt.NDArray[np.float32], prompt_tokens: int
    ) -> bytes:
        return embedding_response(
            vectors,
            model=request.model,
            encoding_format=request.encoding_format,
            prompt_tokens=prompt_tokens,
        )
