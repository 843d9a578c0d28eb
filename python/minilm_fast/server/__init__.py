"""An OpenAI-compatible embeddings server (``pip install "minilm-fast[serve]"``): Starlette on
uvicorn, in front of a coalescing :class:`~minilm_fast.Encoder`.

``minilm-fast serve`` runs it from the command line; in Python, :func:`serve` runs it until
SIGTERM or Ctrl-C, and :func:`create_app` gives the ASGI app to run under a server of your own.
docs/SERVING.md describes the endpoints, errors, metrics and limits.

Modules: ``openai_api`` (the API's requests, responses and errors as plain data), ``service``
(admission, the encode call, draining), ``metrics`` (Prometheus text format), ``app`` (the
Starlette routes and lifespan), ``runner`` (uvicorn and the signals).

Example::

    from minilm_fast import Encoder
    from minilm_fast.server import serve

    serve(Encoder(), port=8000)  # POST http://127.0.0.1:8000/v1/embeddings

and from any OpenAI client::

    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.embeddings.create(model="all-MiniLM-L6-v2", input=["A man is eating food."])
"""

from __future__ import annotations

from .app import create_app, service_of
from .runner import ServerStartError, serve
from .service import EmbeddingService, ServerLimits, served_model_names

__all__ = [
    "EmbeddingService",
    "ServerLimits",
    "ServerStartError",
    "create_app",
    "serve",
    "served_model_names",
    "service_of",
]
