"""Running the app under uvicorn: the listening socket, the startup report, and a graceful stop
on SIGTERM or SIGINT (Ctrl-C) that refuses new requests and finishes those in flight."""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Callable

import uvicorn

from .app import create_app, service_of
from .service import EmbeddingService, ServerLimits

if TYPE_CHECKING:
    from .. import Encoder

__all__ = ["ServerStartError", "serve"]


class ServerStartError(RuntimeError):
    """The server could not start (the address is taken, the app's startup failed); uvicorn
    logged why."""


def serve(
    encoder: Encoder,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_names: Sequence[str] | None = None,
    limits: ServerLimits | None = None,
    log_level: str = "info",
    access_log: bool = True,
    on_started: Callable[[str], None] | None = None,
) -> bool:
    """Serve ``encoder`` with OpenAI's embeddings API on ``host:port`` until SIGTERM or Ctrl-C.

    The first signal starts a graceful stop: the socket closes, requests already admitted run
    to their answer (``limits.shutdown_timeout`` seconds at most), then the app shuts down. A
    second Ctrl-C stops at once. ``port=0`` takes a free port; ``on_started`` gets the base
    URL (``http://127.0.0.1:8000``) once the socket listens.

    Returns True after a graceful stop, False after a forced one. Raises
    :class:`ServerStartError` when the server could not start.
    """
    limits = limits or ServerLimits()
    app = create_app(encoder, served_names=served_names, limits=limits)
    timeout = limits.shutdown_timeout
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        ws="none",  # no websocket routes: never import a websockets package
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=None if timeout is None else math.ceil(timeout),
    )
    server = _Server(config, service_of(app), on_started)
    with _signals_end_quietly():
        try:
            server.run()
        except SystemExit as exc:  # uvicorn's way out of a failed startup
            raise ServerStartError(f"the server did not start (uvicorn exit {exc.code})") from None
    if not server.started:
        raise ServerStartError("the server did not start")
    return not server.force_exit


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the app to refuse new requests on the first signal
    and reports its URL once it listens."""

    def __init__(
        self,
        config: uvicorn.Config,
        service: EmbeddingService,
        on_started: Callable[[str], None] | None,
    ) -> None:
        super().__init__(config)
        self._service = service
        self._on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._service.begin_draining()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started(self.url())

    def url(self) -> str:
        """``http://host:port`` of the listening socket (the port it got, for port 0)."""
        host = self.config.host
        port = self.config.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets or ():
                port = sock.getsockname()[1]
                break
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """While serving, SIGINT and SIGTERM do nothing of their own.

    uvicorn catches both for its graceful stop and, once stopped, raises them again with the
    handlers it found, which would end the process by SIGTERM (or a KeyboardInterrupt) after a
    clean shutdown; with these handlers in place a graceful stop returns normally (exit 0).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _ignore) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A signal that arrives once uvicorn's own handlers are gone (after its stop)."""
