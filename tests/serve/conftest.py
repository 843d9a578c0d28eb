"""Fixtures for the embeddings server: real uvicorn servers on loopback ports, in a thread of
this process, in front of the session's Encoder (real weights)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from serve_support import ALIAS, MODEL, GatedEncoder, running

from minilm_fast import Encoder
from minilm_fast.server import ServerLimits, create_app

ServerFactory = Callable[..., "contextlib.AbstractContextManager[str]"]


@pytest.fixture(scope="session")
def start_server(encoder: Encoder) -> ServerFactory:
    """``with start_server(limits=..., engine=...) as url:`` a server of its own."""

    def start(
        *, engine: Any = None, limits: ServerLimits | None = None
    ) -> contextlib.AbstractContextManager[str]:
        app = create_app(engine or encoder, served_names=[MODEL, ALIAS], limits=limits)
        return running(app)

    return start


@pytest.fixture(scope="module")
def base_url(start_server: ServerFactory) -> Iterator[str]:
    """One server with the default limits, shared by a test module."""
    with start_server() as url:
        yield url


@pytest.fixture
def gated(encoder: Encoder) -> Iterator[GatedEncoder]:
    gated = GatedEncoder(encoder)
    try:
        yield gated
    finally:
        gated.gate.set()  # never leave a request (or a to_thread worker) waiting
