"""What the server tests share: the served names, a uvicorn server in a thread, and an
Encoder whose requests stay in flight until the test lets them go."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from minilm_fast import Encoder

#: The names the test servers answer to.
MODEL = "all-MiniLM-L6-v2"
ALIAS = "mini"


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL
    (``http://127.0.0.1:PORT``); stop it gracefully (as a signal would) on exit."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the test server did not start"
        assert time.monotonic() < deadline, "the test server took over 30 s to start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the test server did not stop within 30 s"


class GatedEncoder:
    """The session Encoder, except that ``aencode`` waits for ``gate`` (set by the test):
    requests stay in flight for exactly as long as a test needs."""

    def __init__(self, inner: Encoder) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def aencode(self, texts: list[str], **options: Any) -> Any:
        self.entered.release()
        await asyncio.to_thread(self.gate.wait, 30)
        return await self._inner.aencode(texts, **options)

    def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=30), "no request reached the encoder"
